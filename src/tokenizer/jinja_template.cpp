#include "tokenizer/jinja_template.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <fstream>
#include <map>
#include <set>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace ilm {

namespace {

// ---- Python's notion of whitespace (str.strip, re's \s), on UTF-8 --------------------------

// The code point at s[i] and its length; len 0 for an invalid sequence.
uint32_t decode_at(std::string_view s, size_t i, size_t& len) {
  const auto b = static_cast<unsigned char>(s[i]);
  len = 0;
  if (b < 0x80) {
    len = 1;
    return b;
  }
  size_t n = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  uint32_t c = b & (0x3Fu >> (n - 1));
  for (size_t k = 1; k < n; ++k) {
    const auto cb = static_cast<unsigned char>(s[i + k]);
    if ((cb & 0xC0) != 0x80) return 0;
    c = (c << 6) | (cb & 0x3F);
  }
  len = n;
  return c;
}

bool py_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

size_t lstrip_len(std::string_view s) {  // bytes of leading whitespace
  size_t i = 0;
  while (i < s.size()) {
    size_t len = 0;
    const uint32_t c = decode_at(s, i, len);
    if (len == 0 || !py_space(c)) break;
    i += len;
  }
  return i;
}

size_t rstrip_end(std::string_view s) {  // the end of s without its trailing whitespace
  size_t end = s.size();
  while (end > 0) {
    size_t j = end - 1;
    while (j > 0 && end - j < 4 && (static_cast<unsigned char>(s[j]) & 0xC0) == 0x80) --j;
    size_t len = 0;
    const uint32_t c = decode_at(s, j, len);
    if (len != end - j || !py_space(c)) break;
    end = j;
  }
  return end;
}

std::string py_strip(std::string_view s) {
  s = s.substr(0, rstrip_end(s));
  return std::string(s.substr(lstrip_len(s)));
}

// ---- Tokens of a tag ---------------------------------------------------------------------

struct Pos {
  int line = 1, col = 1;
};

struct Token {
  enum class T { Name, Str, Int, Op } t = T::Op;
  std::string text;  // the name, the string's value, the digits, the operator
  Pos pos;
};

enum class TagKind { Var, Block };

// A piece of the template: text (already whitespace-controlled) or a tag's tokens.
struct Segment {
  bool is_text = true;
  std::string text;
  TagKind kind = TagKind::Var;
  std::vector<Token> tokens;
  Pos pos;  // of the tag's opening
};

// ---- Expressions ----------------------------------------------------------------------------

enum class Ty { Str, Int, Bool, Any, Message, Loop };

enum class Builtin { Bos, Eos, AddGenerationPrompt };

struct Expr {
  enum class K { Lit, Builtin, SetVar, LoopVar, LoopObj, MsgKey, LoopAttr, Add, Eq, Ne, And, Or, Not, Trim, Raise } k = K::Lit;
  Ty ty = Ty::Any;
  Pos pos;
  // Lit
  enum class LitT { Str, Int, Bool } lit_t = LitT::Str;
  std::string s;  // Lit string; SetVar name; MsgKey key; LoopAttr attribute
  int64_t i = 0;  // Lit int/bool
  Builtin builtin = Builtin::Bos;
  size_t frame = 0;  // LoopVar, LoopObj, MsgKey, LoopAttr: which enclosing loop (0: outermost)
  std::unique_ptr<Expr> a, b;
};

struct Node {
  enum class K { Text, Output, For, If, Set } k = Node::K::Text;
  std::string text;             // Text; Set: the name
  std::unique_ptr<Expr> expr;   // Output, Set
  std::vector<Node> body;       // For
  // If: (condition, body) pairs; a null condition is the else branch.
  std::vector<std::pair<std::unique_ptr<Expr>, std::vector<Node>>> branches;
};

struct Value {
  enum class T { Undef, Str, Int, Bool } t = T::Undef;
  std::string s;
  int64_t i = 0;
};

Value str_value(std::string s) { return {Value::T::Str, std::move(s), 0}; }
Value bool_value(bool b) { return {Value::T::Bool, {}, b ? 1 : 0}; }

bool truthy(const Value& v) {
  switch (v.t) {
    case Value::T::Str: return !v.s.empty();
    case Value::T::Int:
    case Value::T::Bool: return v.i != 0;
    case Value::T::Undef: return false;
  }
  return false;
}

std::string to_text(const Value& v) {
  switch (v.t) {
    case Value::T::Str: return v.s;
    case Value::T::Int: return std::to_string(v.i);
    case Value::T::Bool: return v.i ? "True" : "False";
    case Value::T::Undef: return {};
  }
  return {};
}

const char* type_name(const Value& v) {
  switch (v.t) {
    case Value::T::Str: return "a string";
    case Value::T::Int: return "an integer";
    case Value::T::Bool: return "a boolean";
    case Value::T::Undef: return "an undefined variable";
  }
  return "?";
}

bool equal(const Value& x, const Value& y) {
  const bool xn = x.t == Value::T::Int || x.t == Value::T::Bool, yn = y.t == Value::T::Int || y.t == Value::T::Bool;
  if (xn && yn) return x.i == y.i;  // Python: True == 1
  if (x.t != y.t) return false;
  return x.t == Value::T::Undef || x.s == y.s;
}

}  // namespace

struct JinjaTemplate::Impl {
  std::vector<Node> nodes;
};

namespace {

// ---- Parsing ----------------------------------------------------------------------------------

class Parser {
 public:
  Parser(std::string_view source, std::string name) : name_(std::move(name)) {
    // As jinja2: \r\n and \r read as \n, and one trailing newline dropped (keep_trailing_newline off).
    src_.reserve(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\r') {
        src_ += '\n';
        if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
      } else {
        src_ += source[i];
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i)
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
  }

  std::vector<Node> run() {
    split();
    size_t i = 0;
    std::string ended_by;
    Pos end_pos;
    std::vector<Node> nodes = block(i, {}, ended_by, end_pos);
    for (const auto& [var, pos] : set_uses_)
      if (!set_names_.count(var)) fail(pos, fmt::format("unknown variable '{}'", var));
    return nodes;
  }

 private:
  std::string name_;
  std::string src_;
  std::vector<size_t> line_starts_;
  std::vector<Segment> segs_;
  std::vector<std::string> loop_vars_;  // the enclosing for loops' variables, outermost first
  std::vector<std::pair<std::string, Pos>> set_uses_;
  std::set<std::string> set_names_;

  Pos pos_of(size_t off) const {
    const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), off);
    const size_t line = static_cast<size_t>(it - line_starts_.begin());
    return {static_cast<int>(line), static_cast<int>(off - line_starts_[line - 1] + 1)};
  }

  [[noreturn]] void fail(Pos p, const std::string& what) const {
    throw Error(fmt::format("{}: {} at line {}, column {}", name_, what, p.line, p.col));
  }

  // ---- The template text into text and tag segments, with jinja2's whitespace handling
  // (trim_blocks, lstrip_blocks, '-' markers) applied to the text.
  void split() {
    size_t pos = 0;
    bool line_starting = true;  // the text to come starts a line
    bool strip_next = false;    // the previous tag ended with '-'
    while (true) {
      const size_t open = src_.find('{', pos);
      size_t tag = std::string::npos;
      for (size_t f = open; f != std::string::npos; f = src_.find('{', f + 1))
        if (f + 1 < src_.size() && (src_[f + 1] == '{' || src_[f + 1] == '%' || src_[f + 1] == '#')) {
          tag = f;
          break;
        }
      std::string text = src_.substr(pos, (tag == std::string::npos ? src_.size() : tag) - pos);
      if (strip_next) {
        const size_t n = lstrip_len(text);
        if (n > 0) line_starting = text[n - 1] == '\n';
        text.erase(0, n);
        strip_next = false;
      }
      if (tag == std::string::npos) {
        push_text(std::move(text));
        return;
      }
      const char kind = src_[tag + 1];
      size_t p = tag + 2;
      const Pos tag_pos = pos_of(tag);
      char sign = p < src_.size() ? src_[p] : '\0';
      if (sign == '+') fail(tag_pos, "the '+' whitespace control is not supported");
      if (sign == '-') {
        text.resize(rstrip_end(text));
        ++p;
      } else if (kind != '{') {  // lstrip_blocks: a block or comment tag alone on its line
        const size_t l_pos = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
        if ((l_pos > 0 || line_starting) && l_pos < text.size() &&
            text.find_first_not_of(" \t\f\v", l_pos) == std::string::npos)
          text.resize(l_pos);
      }
      push_text(std::move(text));
      bool strip_after = false;
      if (kind == '#') {
        const size_t close = src_.find("#}", p);
        if (close == std::string::npos) fail(tag_pos, "unclosed comment '{#'");
        strip_after = close > p && src_[close - 1] == '-';
        pos = close + 2;
      } else {
        Segment seg;
        seg.is_text = false;
        seg.kind = kind == '{' ? TagKind::Var : TagKind::Block;
        seg.pos = tag_pos;
        pos = lex_tag(p, kind == '{' ? "}}" : "%}", seg.tokens, strip_after, tag_pos);
        if (seg.kind == TagKind::Block && seg.tokens.empty()) fail(tag_pos, "an empty '{% %}' tag");
        if (seg.kind == TagKind::Var && seg.tokens.empty()) fail(tag_pos, "an empty '{{ }}' tag");
        segs_.push_back(std::move(seg));
      }
      line_starting = false;
      if (strip_after) {
        strip_next = true;
      } else if (kind != '{' && pos < src_.size() && src_[pos] == '\n') {  // trim_blocks
        ++pos;
        line_starting = true;
      }
    }
  }

  void push_text(std::string text) {
    if (text.empty()) return;
    if (!segs_.empty() && segs_.back().is_text) {
      segs_.back().text += text;
      return;
    }
    Segment s;
    s.text = std::move(text);
    segs_.push_back(std::move(s));
  }

  // Tokens from `p` up to the closing `close` (or "-" + close); returns the offset after it.
  size_t lex_tag(size_t p, std::string_view close, std::vector<Token>& out, bool& strip_after, Pos tag_pos) {
    while (true) {
      while (p < src_.size() && (src_[p] == ' ' || src_[p] == '\t' || src_[p] == '\n' || src_[p] == '\f' || src_[p] == '\v')) ++p;
      if (p >= src_.size()) fail(tag_pos, fmt::format("unclosed tag (no '{}')", close));
      const std::string_view rest = std::string_view(src_).substr(p);
      if (rest.starts_with(close)) return p + close.size();
      if (rest.size() > close.size() && rest[0] == '-' && rest.substr(1).starts_with(close)) {
        strip_after = true;
        return p + 1 + close.size();
      }
      if (rest[0] == '+' && rest.substr(1).starts_with(close)) fail(pos_of(p), "the '+' whitespace control is not supported");
      Token t;
      t.pos = pos_of(p);
      const char c = rest[0];
      if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_') {
        size_t n = 1;
        while (n < rest.size() && (std::isalnum(static_cast<unsigned char>(rest[n])) || rest[n] == '_')) ++n;
        t.t = Token::T::Name;
        t.text = std::string(rest.substr(0, n));
        p += n;
      } else if (c >= '0' && c <= '9') {
        size_t n = 1;
        while (n < rest.size() && rest[n] >= '0' && rest[n] <= '9') ++n;
        if (n > 15) fail(t.pos, "an integer literal this long is not supported");
        t.t = Token::T::Int;
        t.text = std::string(rest.substr(0, n));
        p += n;
      } else if (c == '\'' || c == '"') {
        t.t = Token::T::Str;
        size_t k = 1;
        while (true) {
          if (k >= rest.size()) fail(t.pos, "an unterminated string literal");
          const char d = rest[k];
          if (d == c) break;
          if (d == '\\') {
            if (k + 1 >= rest.size()) fail(t.pos, "an unterminated string literal");
            const char e = rest[k + 1];
            switch (e) {
              case 'n': t.text += '\n'; break;
              case 't': t.text += '\t'; break;
              case 'r': t.text += '\r'; break;
              case 'f': t.text += '\f'; break;
              case 'v': t.text += '\v'; break;
              case 'b': t.text += '\b'; break;
              case 'a': t.text += '\a'; break;
              case '\\': t.text += '\\'; break;
              case '\'': t.text += '\''; break;
              case '"': t.text += '"'; break;
              case '\n': break;  // a line continuation, as Python's unicode-escape
              default: fail(pos_of(p + k), fmt::format("the string escape '\\{}' is not supported", e));
            }
            k += 2;
            continue;
          }
          t.text += d;
          ++k;
        }
        p += k + 1;
      } else {
        static constexpr std::string_view kTwo[] = {"==", "!=", "<=", ">=", "**", "//"};
        size_t n = 1;
        for (std::string_view op : kTwo)
          if (rest.starts_with(op)) n = 2;
        if (n == 1 && std::string_view("+-*/%<>()[]{}.,|:=~!").find(c) == std::string_view::npos)
          fail(t.pos, fmt::format("unexpected character '{}'", c));
        t.t = Token::T::Op;
        t.text = std::string(rest.substr(0, n));
        p += n;
      }
      out.push_back(std::move(t));
    }
  }

  // ---- Statements.
  static std::string describe(const Token& t) {
    return t.t == Token::T::Str ? "a string literal" : fmt::format("'{}'", t.text);
  }

  // Nodes up to one of `ends` (a block tag's keyword, stored in ended_by), or the end of the
  // template when `ends` is empty.
  std::vector<Node> block(size_t& i, std::initializer_list<std::string_view> ends, std::string& ended_by, Pos& end_pos) {
    std::vector<Node> out;
    for (; i < segs_.size(); ++i) {
      Segment& s = segs_[i];
      if (s.is_text) {
        Node n;
        n.k = Node::K::Text;
        n.text = s.text;
        out.push_back(std::move(n));
        continue;
      }
      if (s.kind == TagKind::Var) {
        size_t t = 0;
        Node n;
        n.k = Node::K::Output;
        n.expr = full_expr(s.tokens, t);
        out.push_back(std::move(n));
        continue;
      }
      const Token& kw = s.tokens[0];
      if (kw.t != Token::T::Name) fail(kw.pos, fmt::format("unexpected {} at the start of a '{{% %}}' tag", describe(kw)));
      for (std::string_view e : ends)
        if (kw.text == e) {
          ended_by = kw.text;
          end_pos = kw.pos;
          return out;
        }
      if (kw.text == "for") {
        out.push_back(parse_for(i));
      } else if (kw.text == "if") {
        out.push_back(parse_if(i));
      } else if (kw.text == "set") {
        out.push_back(parse_set(s));
      } else if (kw.text == "endfor" || kw.text == "endif" || kw.text == "elif" || kw.text == "else") {
        fail(kw.pos, fmt::format("'{}' without a matching opening statement", kw.text));
      } else {
        fail(kw.pos, fmt::format("unsupported statement '{}'", kw.text));
      }
    }
    if (ends.size() > 0) fail(end_pos, fmt::format("missing '{{% {} %}}'", *(ends.end() - 1)));
    return out;
  }

  Node parse_for(size_t& i) {
    const Segment& s = segs_[i];
    const auto& tk = s.tokens;
    const Pos for_pos = tk[0].pos;
    if (tk.size() < 2 || tk[1].t != Token::T::Name) fail(for_pos, "a for loop must read '{% for NAME in messages %}'");
    if (tk[1].text == "loop" || is_reserved(tk[1].text)) fail(tk[1].pos, fmt::format("'{}' cannot be a loop variable", tk[1].text));
    if (tk.size() > 2 && tk[2].t == Token::T::Op && tk[2].text == ",") fail(tk[2].pos, "unpacking in a for loop is not supported");
    if (tk.size() < 3 || tk[2].t != Token::T::Name || tk[2].text != "in") fail(for_pos, "a for loop must read '{% for NAME in messages %}'");
    if (tk.size() < 4) fail(for_pos, "a for loop must read '{% for NAME in messages %}'");
    if (tk[3].t != Token::T::Name || tk[3].text != "messages")
      fail(tk[3].pos, fmt::format("a for loop over {} is not supported (only 'messages')", describe(tk[3])));
    if (tk.size() > 4) fail(tk[4].pos, fmt::format("unsupported {} in a for loop", describe(tk[4])));
    Node n;
    n.k = Node::K::For;
    loop_vars_.push_back(tk[1].text);
    ++i;
    std::string ended_by;
    Pos end_pos = for_pos;
    n.body = block(i, {"else", "endfor"}, ended_by, end_pos);
    if (ended_by == "else") fail(end_pos, "'{% else %}' in a for loop is not supported");
    check_bare(segs_[i]);
    loop_vars_.pop_back();
    return n;
  }

  Node parse_if(size_t& i) {
    Node n;
    n.k = Node::K::If;
    const Pos if_pos = segs_[i].tokens[0].pos;
    std::unique_ptr<Expr> cond = condition(segs_[i]);
    std::string ended_by;
    Pos end_pos = if_pos;
    while (true) {
      ++i;
      std::vector<Node> body = block(i, {"elif", "else", "endif"}, ended_by, end_pos);
      const bool was_else = !cond;
      n.branches.emplace_back(std::move(cond), std::move(body));
      if (ended_by == "endif") {
        check_bare(segs_[i]);
        return n;
      }
      if (was_else) fail(end_pos, fmt::format("'{}' after '{{% else %}}'", ended_by));
      if (ended_by == "elif") {
        cond = condition(segs_[i]);
      } else {
        check_bare(segs_[i]);
        cond = nullptr;
      }
    }
  }

  std::unique_ptr<Expr> condition(const Segment& s) {
    if (s.tokens.size() < 2) fail(s.tokens[0].pos, fmt::format("'{}' needs a condition", s.tokens[0].text));
    size_t t = 1;
    return full_expr(s.tokens, t);
  }

  void check_bare(const Segment& s) const {  // endfor, endif, else: nothing after the keyword
    if (s.tokens.size() > 1) fail(s.tokens[1].pos, fmt::format("unexpected {} after '{}'", describe(s.tokens[1]), s.tokens[0].text));
  }

  Node parse_set(const Segment& s) {
    const auto& tk = s.tokens;
    if (!loop_vars_.empty()) fail(tk[0].pos, "'{% set %}' inside a for loop is not supported (only outside loops)");
    if (tk.size() < 2 || tk[1].t != Token::T::Name) fail(tk[0].pos, "'{% set %}' must read '{% set NAME = expression %}'");
    if (tk.size() < 3 || tk[2].t != Token::T::Op || tk[2].text != "=") {
      if (tk.size() < 3) fail(tk[0].pos, "block '{% set %}' ... '{% endset %}' is not supported");
      fail(tk[2].pos, fmt::format("unsupported {} in '{{% set %}}' (only NAME = expression)", describe(tk[2])));
    }
    const std::string& var = tk[1].text;
    if (is_reserved(var) || var == "loop" || var == "messages" || var == "bos_token" || var == "eos_token" ||
        var == "add_generation_prompt" || var == "raise_exception")
      fail(tk[1].pos, fmt::format("'{}' cannot be set", var));
    if (tk.size() < 4) fail(tk[2].pos, "'{% set %}' needs a value");
    size_t t = 3;
    Node n;
    n.k = Node::K::Set;
    n.text = var;
    n.expr = full_expr(tk, t);
    if (n.expr->ty == Ty::Message || n.expr->ty == Ty::Loop) fail(n.expr->pos, "only strings, numbers and booleans can be set");
    set_names_.insert(var);
    return n;
  }

  static bool is_reserved(const std::string& n) {
    return n == "and" || n == "or" || n == "not" || n == "in" || n == "is" || n == "if" || n == "else" ||
           n == "true" || n == "false" || n == "True" || n == "False" || n == "none" || n == "None";
  }

  // ---- Expressions.
  std::unique_ptr<Expr> full_expr(const std::vector<Token>& tk, size_t& t) {
    auto e = parse_or(tk, t);
    if (t < tk.size()) {
      const Token& x = tk[t];
      if (x.t == Token::T::Name && x.text == "if") fail(x.pos, "inline if-expressions ('a if b else c') are not supported");
      if (x.t == Token::T::Name && x.text == "is") fail(x.pos, "tests ('is ...') are not supported");
      if (x.t == Token::T::Op) fail(x.pos, fmt::format("unsupported operator '{}'", x.text));
      fail(x.pos, fmt::format("unsupported {}", describe(x)));
    }
    check_value(*e);
    return e;
  }

  static bool is_op(const std::vector<Token>& tk, size_t t, std::string_view op) {
    return t < tk.size() && tk[t].t == Token::T::Op && tk[t].text == op;
  }
  static bool is_name(const std::vector<Token>& tk, size_t t, std::string_view n) {
    return t < tk.size() && tk[t].t == Token::T::Name && tk[t].text == n;
  }

  // A message or `loop` is only the base of a key or attribute.
  void check_value(const Expr& e) const {
    if (e.ty == Ty::Message)
      fail(e.pos, fmt::format("the message '{}' can only be used as {}['role'] or {}['content']", loop_vars_[e.frame],
                              loop_vars_[e.frame], loop_vars_[e.frame]));
    if (e.ty == Ty::Loop) fail(e.pos, "'loop' can only be used as loop.first, loop.last, loop.index0 or loop.index");
  }

  static std::unique_ptr<Expr> binary(Expr::K k, Ty ty, Pos pos, std::unique_ptr<Expr> a, std::unique_ptr<Expr> b) {
    auto e = std::make_unique<Expr>();
    e->k = k;
    e->ty = ty;
    e->pos = pos;
    e->a = std::move(a);
    e->b = std::move(b);
    return e;
  }

  // `a op b op c ...`, left-associative, each operand parsed by `operand`.
  template <class Operand>
  std::unique_ptr<Expr> parse_chain(const std::vector<Token>& tk, size_t& t, const char* op, Expr::K k,
                                    Operand operand) {
    auto e = operand(tk, t);
    while (is_name(tk, t, op)) {
      const Pos p = tk[t++].pos;
      auto r = operand(tk, t);
      check_value(*e);
      check_value(*r);
      e = binary(k, Ty::Any, p, std::move(e), std::move(r));
    }
    return e;
  }

  std::unique_ptr<Expr> parse_or(const std::vector<Token>& tk, size_t& t) {
    return parse_chain(tk, t, "or", Expr::K::Or, [this](const std::vector<Token>& k, size_t& i) { return parse_and(k, i); });
  }

  std::unique_ptr<Expr> parse_and(const std::vector<Token>& tk, size_t& t) {
    return parse_chain(tk, t, "and", Expr::K::And, [this](const std::vector<Token>& k, size_t& i) { return parse_not(k, i); });
  }

  std::unique_ptr<Expr> parse_not(const std::vector<Token>& tk, size_t& t) {
    if (is_name(tk, t, "not")) {
      const Pos p = tk[t++].pos;
      auto a = parse_not(tk, t);
      check_value(*a);
      return binary(Expr::K::Not, Ty::Bool, p, std::move(a), nullptr);
    }
    return parse_compare(tk, t);
  }

  std::unique_ptr<Expr> parse_compare(const std::vector<Token>& tk, size_t& t) {
    auto e = parse_add(tk, t);
    if (is_op(tk, t, "==") || is_op(tk, t, "!=")) {
      const bool eq = tk[t].text == "==";
      const Pos p = tk[t++].pos;
      auto r = parse_add(tk, t);
      check_value(*e);
      check_value(*r);
      e = binary(eq ? Expr::K::Eq : Expr::K::Ne, Ty::Bool, p, std::move(e), std::move(r));
      if (is_op(tk, t, "==") || is_op(tk, t, "!=")) fail(tk[t].pos, "chained comparisons are not supported");
    }
    return e;
  }

  std::unique_ptr<Expr> parse_add(const std::vector<Token>& tk, size_t& t) {
    auto e = parse_postfix(tk, t);
    while (is_op(tk, t, "+")) {
      const Pos p = tk[t++].pos;
      auto r = parse_postfix(tk, t);
      check_value(*e);
      check_value(*r);
      const Ty ty = e->ty == Ty::Str && r->ty == Ty::Str ? Ty::Str : Ty::Any;
      e = binary(Expr::K::Add, ty, p, std::move(e), std::move(r));
    }
    return e;
  }

  std::unique_ptr<Expr> parse_postfix(const std::vector<Token>& tk, size_t& t) {
    auto e = parse_primary(tk, t);
    while (t < tk.size()) {
      if (is_op(tk, t, ".") || is_op(tk, t, "[")) {
        const Token& op = tk[t++];
        std::string key;
        Pos key_pos = op.pos;
        if (op.text == ".") {
          if (t >= tk.size() || tk[t].t != Token::T::Name) fail(op.pos, "'.' must be followed by a name");
          key = tk[t].text;
          key_pos = tk[t++].pos;
        } else {
          if (t >= tk.size() || tk[t].t != Token::T::Str)
            fail(t < tk.size() ? tk[t].pos : op.pos, "subscripts other than a string literal ('[\"role\"]') are not supported");
          key = tk[t].text;
          key_pos = tk[t++].pos;
          if (!is_op(tk, t, "]")) fail(t < tk.size() ? tk[t].pos : op.pos, "expected ']'");
          ++t;
        }
        if (e->ty == Ty::Message) {
          if (key != "role" && key != "content")
            fail(key_pos, fmt::format("the message key '{}' is not supported (only 'role' and 'content')", key));
          auto k = std::make_unique<Expr>();
          k->k = Expr::K::MsgKey;
          k->ty = Ty::Str;
          k->pos = e->pos;
          k->frame = e->frame;
          k->s = key;
          e = std::move(k);
        } else if (e->ty == Ty::Loop) {
          if (key != "first" && key != "last" && key != "index0" && key != "index")
            fail(key_pos, fmt::format("'loop.{}' is not supported (only first, last, index0, index)", key));
          auto k = std::make_unique<Expr>();
          k->k = Expr::K::LoopAttr;
          k->ty = key == "first" || key == "last" ? Ty::Bool : Ty::Int;
          k->pos = e->pos;
          k->frame = e->frame;
          k->s = key;
          e = std::move(k);
        } else {
          fail(key_pos, op.text == "." ? fmt::format("attribute or method '.{}' is not supported", key)
                                       : fmt::format("the subscript ['{}'] is not supported here", key));
        }
      } else if (is_op(tk, t, "|")) {
        const Pos bar = tk[t++].pos;
        if (t >= tk.size() || tk[t].t != Token::T::Name) fail(bar, "'|' must be followed by a filter name");
        const Token& f = tk[t++];
        if (f.text != "trim") fail(f.pos, fmt::format("unsupported filter '{}' (only 'trim')", f.text));
        if (is_op(tk, t, "(")) {
          if (!is_op(tk, t + 1, ")")) fail(tk[t].pos, "arguments of the 'trim' filter are not supported");
          t += 2;
        }
        check_value(*e);
        e = binary(Expr::K::Trim, Ty::Str, f.pos, std::move(e), nullptr);
      } else if (is_op(tk, t, "(")) {
        fail(tk[t].pos, "calls are not supported (only raise_exception('...'))");
      } else {
        break;
      }
    }
    return e;
  }

  std::unique_ptr<Expr> parse_primary(const std::vector<Token>& tk, size_t& t) {
    if (t >= tk.size()) fail(tk.empty() ? Pos{} : tk.back().pos, "an expression is missing");
    const Token& x = tk[t++];
    auto e = std::make_unique<Expr>();
    e->pos = x.pos;
    switch (x.t) {
      case Token::T::Str:
        e->k = Expr::K::Lit;
        e->lit_t = Expr::LitT::Str;
        e->ty = Ty::Str;
        e->s = x.text;
        return e;
      case Token::T::Int:
        e->k = Expr::K::Lit;
        e->lit_t = Expr::LitT::Int;
        e->ty = Ty::Int;
        e->i = std::stoll(x.text);
        return e;
      case Token::T::Op:
        if (x.text == "(") {
          auto inner = parse_or(tk, t);
          if (!is_op(tk, t, ")")) {
            if (is_op(tk, t, ",")) fail(tk[t].pos, "tuples are not supported");
            fail(t < tk.size() ? tk[t].pos : x.pos, "expected ')'");
          }
          ++t;
          return inner;
        }
        if (x.text == "[") fail(x.pos, "list literals are not supported");
        if (x.text == "{") fail(x.pos, "dict literals are not supported");
        if (x.text == "-" || x.text == "+") fail(x.pos, fmt::format("unary '{}' is not supported", x.text));
        fail(x.pos, fmt::format("unexpected '{}'", x.text));
      case Token::T::Name:
        break;
    }
    const std::string& n = x.text;
    if (n == "true" || n == "True" || n == "false" || n == "False") {
      e->k = Expr::K::Lit;
      e->lit_t = Expr::LitT::Bool;
      e->ty = Ty::Bool;
      e->i = n == "true" || n == "True";
      return e;
    }
    if (n == "none" || n == "None") fail(x.pos, "'none' is not supported");
    if (is_reserved(n)) fail(x.pos, fmt::format("unexpected '{}'", n));
    if (n == "raise_exception") {
      if (!is_op(tk, t, "(")) fail(x.pos, "raise_exception must be called: raise_exception('message')");
      ++t;
      e->k = Expr::K::Raise;
      e->ty = Ty::Any;
      e->a = parse_or(tk, t);
      check_value(*e->a);
      if (!is_op(tk, t, ")")) fail(t < tk.size() ? tk[t].pos : x.pos, "raise_exception takes one argument");
      ++t;
      return e;
    }
    if (n == "messages") fail(x.pos, "'messages' is only supported as the sequence of a for loop");
    if (n == "bos_token" || n == "eos_token" || n == "add_generation_prompt") {
      e->k = Expr::K::Builtin;
      e->builtin = n == "bos_token" ? Builtin::Bos : n == "eos_token" ? Builtin::Eos : Builtin::AddGenerationPrompt;
      e->ty = n == "add_generation_prompt" ? Ty::Bool : Ty::Str;
      return e;
    }
    for (size_t f = loop_vars_.size(); f-- > 0;)
      if (loop_vars_[f] == n) {
        e->k = Expr::K::LoopVar;
        e->ty = Ty::Message;
        e->frame = f;
        return e;
      }
    if (n == "loop") {
      if (loop_vars_.empty()) fail(x.pos, "'loop' outside a for loop");
      e->k = Expr::K::LoopObj;
      e->ty = Ty::Loop;
      e->frame = loop_vars_.size() - 1;
      return e;
    }
    if (is_op(tk, t, "(")) fail(x.pos, fmt::format("unsupported function '{}'", n));
    e->k = Expr::K::SetVar;
    e->ty = Ty::Any;
    e->s = n;
    set_uses_.emplace_back(n, x.pos);
    return e;
  }
};

// ---- Rendering ----------------------------------------------------------------------------------

struct Frame {
  size_t index = 0, size = 0;
};

struct Renderer {
  const std::vector<ChatMessage>& messages;
  bool add_generation_prompt;
  const std::string& bos;
  const std::string& eos;
  std::vector<Frame> frames;
  std::map<std::string, Value> vars;
  std::string out;

  Value eval(const Expr& e) {
    switch (e.k) {
      case Expr::K::Lit:
        if (e.lit_t == Expr::LitT::Str) return str_value(e.s);
        return {e.lit_t == Expr::LitT::Int ? Value::T::Int : Value::T::Bool, {}, e.i};
      case Expr::K::Builtin:
        if (e.builtin == Builtin::AddGenerationPrompt) return bool_value(add_generation_prompt);
        return str_value(e.builtin == Builtin::Bos ? bos : eos);
      case Expr::K::SetVar: {
        const auto it = vars.find(e.s);
        return it == vars.end() ? Value{} : it->second;
      }
      case Expr::K::MsgKey: {
        const ChatMessage& m = messages[frames[e.frame].index];
        return str_value(e.s == "role" ? m.role : m.content);
      }
      case Expr::K::LoopAttr: {
        const Frame& f = frames[e.frame];
        if (e.s == "first") return bool_value(f.index == 0);
        if (e.s == "last") return bool_value(f.index + 1 == f.size);
        return {Value::T::Int, {}, static_cast<int64_t>(e.s == "index" ? f.index + 1 : f.index)};
      }
      case Expr::K::Add: {
        Value x = eval(*e.a), y = eval(*e.b);
        if (x.t == Value::T::Str && y.t == Value::T::Str) return str_value(x.s + y.s);
        const bool xn = x.t == Value::T::Int || x.t == Value::T::Bool, yn = y.t == Value::T::Int || y.t == Value::T::Bool;
        if (xn && yn) return {Value::T::Int, {}, x.i + y.i};
        throw TemplateError(fmt::format("chat template: cannot add {} and {} (line {}, column {})", type_name(x),
                                        type_name(y), e.pos.line, e.pos.col));
      }
      case Expr::K::Eq: return bool_value(equal(eval(*e.a), eval(*e.b)));
      case Expr::K::Ne: return bool_value(!equal(eval(*e.a), eval(*e.b)));
      case Expr::K::And: {
        Value x = eval(*e.a);
        return truthy(x) ? eval(*e.b) : x;
      }
      case Expr::K::Or: {
        Value x = eval(*e.a);
        return truthy(x) ? x : eval(*e.b);
      }
      case Expr::K::Not: return bool_value(!truthy(eval(*e.a)));
      case Expr::K::Trim: return str_value(py_strip(to_text(eval(*e.a))));
      case Expr::K::Raise: throw TemplateError(to_text(eval(*e.a)));
      case Expr::K::LoopVar:
      case Expr::K::LoopObj: break;  // refused when parsed
    }
    throw Error("chat template: internal error (a message or loop used as a value)");
  }

  void run(const std::vector<Node>& nodes) {
    for (const Node& n : nodes) {
      switch (n.k) {
        case Node::K::Text: out += n.text; break;
        case Node::K::Output: out += to_text(eval(*n.expr)); break;
        case Node::K::Set: vars[n.text] = eval(*n.expr); break;
        case Node::K::If:
          for (const auto& [cond, body] : n.branches)
            if (!cond || truthy(eval(*cond))) {
              run(body);
              break;
            }
          break;
        case Node::K::For:
          frames.push_back({0, messages.size()});
          for (size_t i = 0; i < messages.size(); ++i) {
            frames.back().index = i;
            run(n.body);
          }
          frames.pop_back();
          break;
      }
    }
  }
};

}  // namespace

JinjaTemplate::JinjaTemplate(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
JinjaTemplate::JinjaTemplate(JinjaTemplate&&) noexcept = default;
JinjaTemplate& JinjaTemplate::operator=(JinjaTemplate&&) noexcept = default;
JinjaTemplate::~JinjaTemplate() = default;

JinjaTemplate JinjaTemplate::parse(std::string_view source, const std::string& name) {
  if (!is_valid_utf8(source)) throw Error(fmt::format("{}: the template is not valid UTF-8", name));
  auto impl = std::make_unique<Impl>();
  impl->nodes = Parser(source, name).run();
  return JinjaTemplate(std::move(impl));
}

JinjaTemplate JinjaTemplate::load_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw Error(fmt::format("cannot read the chat template file '{}'", path.string()));
  const std::streamoff size = in.tellg();
  if (size < 0 || size > (64 << 20)) throw Error(fmt::format("cannot read the chat template file '{}' (size)", path.string()));
  std::string text(static_cast<size_t>(size), '\0');
  in.seekg(0);
  if (!in.read(text.data(), size)) throw Error(fmt::format("cannot read the chat template file '{}'", path.string()));
  const std::string name = path.string();
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '{') {
    // tokenizer_config.json (or any JSON object with a "chat_template" string); text that is
    // not JSON is the template itself (which may well start with '{{' or '{%').
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!j.is_discarded() && j.is_object()) {
      const auto it = j.find("chat_template");
      if (it == j.end()) throw Error(fmt::format("{}: a JSON file without a \"chat_template\" string", name));
      if (it->is_array())
        throw Error(fmt::format("{}: a list of named chat templates is not supported: give one template", name));
      if (!it->is_string()) throw Error(fmt::format("{}: \"chat_template\" must be a string", name));
      return parse(it->get<std::string>(), name + " (\"chat_template\")");
    }
  }
  return parse(text, name);
}

std::string JinjaTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                  const std::string& bos_token, const std::string& eos_token) const {
  Renderer r{messages, add_generation_prompt, bos_token, eos_token, {}, {}, {}};
  r.run(impl_->nodes);
  return std::move(r.out);
}

std::string render_chat_body(const Tokenizer& tok, const JinjaTemplate& tmpl, const std::vector<ChatMessage>& messages,
                             bool add_generation_prompt) {
  const std::string bos = tok.id_to_piece(tok.bos_id());
  std::string text = tmpl.render(messages, add_generation_prompt, bos, tok.id_to_piece(tok.eos_id()));
  size_t skip = 0;
  while (!bos.empty() && std::string_view(text).substr(skip).starts_with(bos)) skip += bos.size();
  text.erase(0, skip);
  return text;
}

std::vector<TokenId> encode_chat(const Tokenizer& tok, const JinjaTemplate& tmpl, const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt) {
  std::vector<TokenId> out{tok.bos_id()};
  const std::vector<TokenId> body = tok.encode(render_chat_body(tok, tmpl, messages, add_generation_prompt), false);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

}  // namespace ilm
