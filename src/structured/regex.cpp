#include "structured/regex.h"

#include <algorithm>
#include <map>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace ilm::structured {
namespace {

constexpr uint32_t kMaxCode = 0x10FFFF;
constexpr int kMaxRepeat = 1000;
constexpr size_t kMaxNfaStates = 100000;

// A set of code points as sorted, disjoint, non-adjacent ranges.
struct CodeSet {
  std::vector<std::pair<uint32_t, uint32_t>> r;

  static CodeSet of(uint32_t lo, uint32_t hi) { return CodeSet{{{lo, hi}}}; }
  void add(uint32_t lo, uint32_t hi) {
    r.push_back({lo, hi});
    normalize();
  }
  void add(const CodeSet& o) {
    r.insert(r.end(), o.r.begin(), o.r.end());
    normalize();
  }
  void normalize() {
    std::sort(r.begin(), r.end());
    std::vector<std::pair<uint32_t, uint32_t>> out;
    for (const auto& x : r) {
      if (!out.empty() && x.first <= out.back().second + 1) out.back().second = std::max(out.back().second, x.second);
      else out.push_back(x);
    }
    r.swap(out);
  }
  CodeSet complement() const {
    CodeSet c;
    uint32_t next = 0;
    for (const auto& [lo, hi] : r) {
      if (lo > next) c.r.push_back({next, lo - 1});
      next = hi + 1;
    }
    if (next <= kMaxCode) c.r.push_back({next, kMaxCode});
    return c;
  }
  CodeSet intersect(const CodeSet& o) const {
    CodeSet c;
    size_t i = 0, j = 0;
    while (i < r.size() && j < o.r.size()) {
      const uint32_t lo = std::max(r[i].first, o.r[j].first), hi = std::min(r[i].second, o.r[j].second);
      if (lo <= hi) c.r.push_back({lo, hi});
      if (r[i].second < o.r[j].second) ++i;
      else ++j;
    }
    return c;
  }
};

// What the matcher can write in a pattern string: no control characters but \b \t \n \f \r
// (it writes no \u escapes there), no surrogates (not UTF-8).
const CodeSet& writable() {
  static const CodeSet k{{{0x08, 0x0A}, {0x0C, 0x0D}, {0x20, 0xD7FF}, {0xE000, kMaxCode}}};
  return k;
}
CodeSet digits() { return CodeSet::of('0', '9'); }
CodeSet word() { return CodeSet{{{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}}}; }
// ECMA-262 WhiteSpace and LineTerminator.
CodeSet space() {
  return CodeSet{{{0x09, 0x0D}, {0x20, 0x20}, {0xA0, 0xA0}, {0x1680, 0x1680}, {0x2000, 0x200A}, {0x2028, 0x2029},
                  {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}, {0xFEFF, 0xFEFF}}};
}
CodeSet dot() { return CodeSet{{{0x0A, 0x0A}, {0x0D, 0x0D}, {0x2028, 0x2029}}}.complement(); }

struct Ast {
  enum Kind : uint8_t { Set, Concat, Alt, Repeat };
  Kind kind = Concat;
  CodeSet set;
  std::vector<int> kids;
  int min = 0, max = 0;  // Repeat; max -1: unbounded
};

std::vector<uint32_t> decode_utf8(std::string_view s) {
  std::vector<uint32_t> out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<uint8_t>(s[i]);
    const int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + static_cast<size_t>(n) > s.size()) throw RegexError("the pattern is not valid UTF-8");
    uint32_t cp = n == 1 ? c : c & (0x7Fu >> n);
    for (int k = 1; k < n; ++k) {
      const auto d = static_cast<uint8_t>(s[i + static_cast<size_t>(k)]);
      if ((d & 0xC0) != 0x80) throw RegexError("the pattern is not valid UTF-8");
      cp = (cp << 6) | (d & 0x3F);
    }
    out.push_back(cp);
    i += static_cast<size_t>(n);
  }
  return out;
}

// Recursive descent over the pattern's code points into an AST.
class Parser {
 public:
  explicit Parser(std::string_view pattern) : s_(decode_utf8(pattern)) {}

  // The whole pattern with search semantics: each top-level alternative gets "any string" on
  // each side it is not anchored.
  std::pair<std::vector<Ast>, int> run() {
    Ast any_star;
    any_star.kind = Ast::Repeat;
    any_star.min = 0;
    any_star.max = -1;
    any_star.kids = {add_set(writable())};
    const int any = add(std::move(any_star));
    Ast top;
    top.kind = Ast::Alt;
    for (;;) {
      bool anchored_start = false, anchored_end = false;
      const int alt = alternative(true, anchored_start, anchored_end);
      Ast seq;
      if (!anchored_start) seq.kids.push_back(any);
      seq.kids.push_back(alt);
      if (!anchored_end) seq.kids.push_back(any);
      top.kids.push_back(add(std::move(seq)));
      if (at_end()) break;
      if (peek() == ')') fail("unmatched ')'");
      ++i_;  // '|'
    }
    const int root = add(std::move(top));
    return {std::move(nodes_), root};
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw RegexError(fmt::format("{} (at character {})", what, i_)); }
  bool at_end() const { return i_ >= s_.size(); }
  uint32_t peek() const { return s_[i_]; }
  uint32_t next() {
    if (at_end()) fail("the pattern ends too early");
    return s_[i_++];
  }
  int add(Ast a) {
    nodes_.push_back(std::move(a));
    return static_cast<int>(nodes_.size() - 1);
  }
  int add_set(CodeSet set) {
    Ast a;
    a.kind = Ast::Set;
    a.set = std::move(set);
    return add(std::move(a));
  }

  int disjunction() {
    Ast alt;
    alt.kind = Ast::Alt;
    for (;;) {
      bool unused_start = false, unused_end = false;
      alt.kids.push_back(alternative(false, unused_start, unused_end));
      if (at_end() || peek() != '|') break;
      ++i_;
    }
    return add(std::move(alt));
  }

  int alternative(bool top, bool& anchored_start, bool& anchored_end) {
    Ast seq;
    if (top && !at_end() && peek() == '^') {
      ++i_;
      anchored_start = true;
    }
    while (!at_end() && peek() != '|' && peek() != ')') {
      if (peek() == '^') fail("'^' is supported only at the start of the pattern or of a top-level alternative");
      if (peek() == '$') {
        ++i_;
        if (top && (at_end() || peek() == '|')) {
          anchored_end = true;
          break;
        }
        fail("'$' is supported only at the end of the pattern or of a top-level alternative");
      }
      seq.kids.push_back(quantified(atom()));
    }
    return add(std::move(seq));
  }

  int atom() {
    const uint32_t c = next();
    switch (c) {
      case '.': return add_set(dot());
      case '(': {
        if (!at_end() && peek() == '?') {
          ++i_;
          const uint32_t k = next();
          if (k == '=' || k == '!') fail("lookahead is not supported");
          if (k == '<') {
            if (!at_end() && (peek() == '=' || peek() == '!')) fail("lookbehind is not supported");
            while (next() != '>') {}  // a named group: its name does not change the language
          } else if (k != ':') {
            fail("unknown group syntax '(?'");
          }
        }
        const int inner = disjunction();
        if (at_end() || next() != ')') fail("missing ')'");
        return inner;
      }
      case '[': return add_set(char_class());
      case '\\': return add_set(escape(false).first);
      case '*':
      case '+':
      case '?':
      case '{': fail("a quantifier with nothing to repeat");
      case '}':
      case ']': fail(fmt::format("a lone '{}' (write \\{} for the character)", static_cast<char>(c), static_cast<char>(c)));
      default: return add_set(CodeSet::of(c, c));
    }
  }

  int number() {
    if (at_end() || peek() < '0' || peek() > '9') return -1;
    int v = 0;
    while (!at_end() && peek() >= '0' && peek() <= '9') {
      v = std::min(v * 10 + static_cast<int>(peek() - '0'), kMaxRepeat + 1);
      ++i_;
    }
    return v;
  }

  int quantified(int atom_id) {
    if (at_end()) return atom_id;
    int lo = 0, hi = 0;
    const uint32_t c = peek();
    if (c == '*') lo = 0, hi = -1;
    else if (c == '+') lo = 1, hi = -1;
    else if (c == '?') lo = 0, hi = 1;
    else if (c != '{') return atom_id;
    ++i_;
    if (c == '{') {
      const char* bad = "'{' must start a quantifier {n}, {n,} or {n,m} (write \\{ for the character)";
      lo = hi = number();
      if (lo < 0) fail(bad);
      if (!at_end() && peek() == ',') {
        ++i_;
        hi = !at_end() && peek() == '}' ? -1 : number();
        if (hi == -1 && (at_end() || peek() != '}')) fail(bad);
      }
      if (at_end() || next() != '}') fail(bad);
      if (lo > kMaxRepeat || hi > kMaxRepeat) fail(fmt::format("repetition counts above {} are not supported", kMaxRepeat));
      if (hi != -1 && hi < lo) fail("a quantifier {n,m} with m < n");
    }
    if (!at_end() && peek() == '?') ++i_;  // lazy: the same language
    if (!at_end() && (peek() == '*' || peek() == '+' || peek() == '?' || peek() == '{'))
      fail("a quantifier with nothing to repeat");
    Ast rep;
    rep.kind = Ast::Repeat;
    rep.min = lo;
    rep.max = hi;
    rep.kids = {atom_id};
    return add(std::move(rep));
  }

  uint32_t hex(int n) {
    uint32_t v = 0;
    for (int k = 0; k < n; ++k) {
      const uint32_t c = next();
      const int d = c >= '0' && c <= '9' ? static_cast<int>(c - '0')
                    : c >= 'a' && c <= 'f' ? static_cast<int>(c - 'a' + 10)
                    : c >= 'A' && c <= 'F' ? static_cast<int>(c - 'A' + 10)
                                           : -1;
      if (d < 0) fail("a \\x or \\u escape needs hex digits");
      v = v * 16 + static_cast<uint32_t>(d);
    }
    return v;
  }

  // After a backslash: the set it stands for, and whether it is one character (a range bound).
  std::pair<CodeSet, bool> escape(bool in_class) {
    const uint32_t c = next();
    auto one = [](uint32_t cp) { return std::pair<CodeSet, bool>{CodeSet::of(cp, cp), true}; };
    switch (c) {
      case 'd': return {digits(), false};
      case 'D': return {digits().complement(), false};
      case 'w': return {word(), false};
      case 'W': return {word().complement(), false};
      case 's': return {space(), false};
      case 'S': return {space().complement(), false};
      case 'n': return one('\n');
      case 't': return one('\t');
      case 'r': return one('\r');
      case 'f': return one('\f');
      case 'v': return one('\v');
      case '0':
        if (!at_end() && peek() >= '0' && peek() <= '9') fail("octal escapes are not supported");
        return one(0);
      case 'b':
        if (in_class) return one('\b');
        fail("word boundaries (\\b) are not supported");
      case 'B': fail("word boundaries (\\B) are not supported");
      case 'p':
      case 'P': fail("Unicode property escapes (\\p{..}) are not supported");
      case 'k': fail("backreferences are not supported");
      case 'c': fail("control escapes (\\c) are not supported");
      case 'x': return one(hex(2));
      case 'u': {
        if (!at_end() && peek() == '{') fail("\\u{..} escapes are not supported");
        const uint32_t cp = hex(4);
        if (cp >= 0xD800 && cp <= 0xDFFF) fail("\\u escapes of surrogates are not supported");
        return one(cp);
      }
      default:
        if (c >= '1' && c <= '9') fail("backreferences are not supported");
        if (c < 0x80 && c > 0x20 && !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
          return one(c);  // escaped punctuation stands for itself
        fail("an unknown escape");
    }
  }

  // After '[': the class's set (negation applied).
  CodeSet char_class() {
    const bool negate = !at_end() && peek() == '^';
    if (negate) ++i_;
    CodeSet set;
    auto member = [&]() -> std::pair<CodeSet, bool> {
      const uint32_t c = next();
      if (c == '\\') return escape(true);
      return {CodeSet::of(c, c), true};
    };
    for (;;) {
      if (at_end()) fail("an unterminated character class");
      if (peek() == ']') {
        ++i_;
        break;
      }
      const auto [lo, lo_single] = member();
      if (i_ + 1 < s_.size() && peek() == '-' && s_[i_ + 1] != ']') {
        ++i_;
        const auto [hi, hi_single] = member();
        if (!lo_single || !hi_single) fail("a class escape such as \\d cannot bound a range");
        if (lo.r[0].first > hi.r[0].first) fail("a character range out of order");
        set.add(lo.r[0].first, hi.r[0].first);
      } else {
        set.add(lo);
      }
    }
    return negate ? set.complement() : set;
  }

  std::vector<uint32_t> s_;
  size_t i_ = 0;
  std::vector<Ast> nodes_;
};

// The byte-range sequences that encode code points lo..hi in UTF-8 (same length, split so each
// position's range is independent: the usual utf8-ranges construction).
using ByteSeq = std::vector<std::pair<uint8_t, uint8_t>>;
void utf8_sequences(uint32_t lo, uint32_t hi, std::vector<ByteSeq>& out) {
  for (uint32_t edge : {0x7Fu, 0x7FFu, 0xFFFFu}) {
    if (lo <= edge && hi > edge) {
      utf8_sequences(lo, edge, out);
      utf8_sequences(edge + 1, hi, out);
      return;
    }
  }
  if (hi < 0x80) {
    out.push_back({{static_cast<uint8_t>(lo), static_cast<uint8_t>(hi)}});
    return;
  }
  const int len = hi < 0x800 ? 2 : hi < 0x10000 ? 3 : 4;
  for (int i = 1; i < len; ++i) {
    const uint32_t m = (1u << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        utf8_sequences(lo, lo | m, out);
        utf8_sequences((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        utf8_sequences(lo, (hi & ~m) - 1, out);
        utf8_sequences(hi & ~m, hi, out);
        return;
      }
    }
  }
  auto encode = [len](uint32_t cp) {
    std::vector<uint8_t> b(static_cast<size_t>(len));
    for (int k = len - 1; k > 0; --k, cp >>= 6) b[static_cast<size_t>(k)] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
    const uint8_t lead = len == 2 ? 0xC0 : len == 3 ? 0xE0 : 0xF0;
    b[0] = static_cast<uint8_t>(lead | cp);
    return b;
  };
  const auto a = encode(lo), b = encode(hi);
  ByteSeq seq;
  for (size_t k = 0; k < a.size(); ++k) seq.push_back({a[k], b[k]});
  out.push_back(std::move(seq));
}

// Thompson NFA over bytes.
struct Nfa {
  struct Edge {
    uint8_t lo, hi;
    int32_t to;
  };
  std::vector<std::vector<Edge>> edges;
  std::vector<std::vector<int32_t>> eps;

  int32_t state() {
    if (edges.size() >= kMaxNfaStates) throw RegexError("the pattern is too large");
    edges.emplace_back();
    eps.emplace_back();
    return static_cast<int32_t>(edges.size() - 1);
  }
  void link(int32_t from, int32_t to) { eps[static_cast<size_t>(from)].push_back(to); }

  // Adds node `id`'s fragment starting at `from`; returns its end state.
  int32_t emit(const std::vector<Ast>& ast, int id, int32_t from) {
    const Ast& a = ast[static_cast<size_t>(id)];
    switch (a.kind) {
      case Ast::Set: {
        const int32_t end = state();
        std::vector<ByteSeq> seqs;
        for (const auto& [lo, hi] : a.set.intersect(writable()).r) utf8_sequences(lo, hi, seqs);
        // Sequences end in runs of "any continuation byte": they share one chain per run length
        // (tail[k]: k more continuation bytes to the end), which keeps the DFA of `.{0,n}` at
        // ~8 states per character instead of ~20.
        int32_t tail[4] = {end, -1, -1, -1};
        auto tail_of = [&](size_t k) {
          for (size_t m = 1; m <= k; ++m)
            if (tail[m] < 0) {
              tail[m] = state();
              edges[static_cast<size_t>(tail[m])].push_back({0x80, 0xBF, tail[m - 1]});
            }
          return tail[k];
        };
        for (const ByteSeq& seq : seqs) {
          size_t shared = 0;
          while (shared + 1 < seq.size() && seq[seq.size() - 1 - shared] == std::pair<uint8_t, uint8_t>{0x80, 0xBF}) ++shared;
          int32_t at = from;
          const size_t own = seq.size() - shared;
          for (size_t k = 0; k < own; ++k) {
            const int32_t to = k + 1 == own ? tail_of(shared) : state();
            edges[static_cast<size_t>(at)].push_back({seq[k].first, seq[k].second, to});
            at = to;
          }
        }
        return end;
      }
      case Ast::Concat: {
        int32_t at = from;
        for (int kid : a.kids) at = emit(ast, kid, at);
        return at;
      }
      case Ast::Alt: {
        const int32_t end = state();
        for (int kid : a.kids) {
          const int32_t s = state();
          link(from, s);
          link(emit(ast, kid, s), end);
        }
        return end;
      }
      case Ast::Repeat: {
        int32_t at = from;
        for (int k = 0; k < a.min; ++k) at = emit(ast, a.kids[0], at);
        if (a.max < 0) {
          const int32_t loop = state();
          link(at, loop);
          link(emit(ast, a.kids[0], loop), loop);
          return loop;
        }
        const int32_t end = state();
        link(at, end);
        for (int k = a.min; k < a.max; ++k) {
          at = emit(ast, a.kids[0], at);
          link(at, end);
        }
        return end;
      }
    }
    return from;
  }
};

std::vector<int32_t> closure(const Nfa& nfa, std::vector<int32_t> set) {
  std::vector<uint8_t> seen(nfa.edges.size(), 0);
  std::vector<int32_t> stack = set;
  for (int32_t s : set) seen[static_cast<size_t>(s)] = 1;
  while (!stack.empty()) {
    const int32_t s = stack.back();
    stack.pop_back();
    for (int32_t t : nfa.eps[static_cast<size_t>(s)])
      if (!seen[static_cast<size_t>(t)]) {
        seen[static_cast<size_t>(t)] = 1;
        set.push_back(t);
        stack.push_back(t);
      }
  }
  std::sort(set.begin(), set.end());
  return set;
}

// Subset construction, then only the states that can reach acceptance are kept.
ByteDfa determinize(const Nfa& nfa, int32_t start, int32_t accept, size_t max_states) {
  // Bytes that no edge tells apart share one class.
  std::vector<uint8_t> boundary(257, 0);
  boundary[0] = 1;
  for (const auto& es : nfa.edges)
    for (const auto& e : es) boundary[e.lo] = boundary[static_cast<size_t>(e.hi) + 1] = 1;
  std::vector<std::pair<int, int>> classes;
  for (int b = 0; b < 256;) {
    int e = b + 1;
    while (e < 256 && !boundary[static_cast<size_t>(e)]) ++e;
    classes.push_back({b, e - 1});
    b = e;
  }
  std::map<std::vector<int32_t>, int32_t> ids;
  std::vector<std::vector<int32_t>> sets;
  std::vector<int32_t> next;
  auto intern = [&](std::vector<int32_t> set) {
    auto [it, fresh] = ids.emplace(set, static_cast<int32_t>(sets.size()));
    if (fresh) {
      if (sets.size() >= max_states) throw RegexError(fmt::format("the pattern needs more than {} automaton states", max_states));
      sets.push_back(std::move(set));
    }
    return it->second;
  };
  intern(closure(nfa, {start}));
  for (size_t d = 0; d < sets.size(); ++d) {
    next.resize(sets.size() * 256, kDeadState);
    for (const auto& [lo, hi] : classes) {
      std::vector<int32_t> move;
      for (int32_t s : sets[d])
        for (const auto& e : nfa.edges[static_cast<size_t>(s)])
          if (e.lo <= lo && lo <= e.hi) move.push_back(e.to);
      if (move.empty()) continue;
      const int32_t to = intern(closure(nfa, std::move(move)));
      next.resize(sets.size() * 256, kDeadState);
      for (int b = lo; b <= hi; ++b) next[d * 256 + static_cast<size_t>(b)] = to;
    }
  }
  const size_t n = sets.size();
  std::vector<uint8_t> accepting(n, 0), live(n, 0);
  for (size_t d = 0; d < n; ++d) accepting[d] = live[d] = std::binary_search(sets[d].begin(), sets[d].end(), accept);
  {  // backward reachability of acceptance
    std::vector<std::vector<size_t>> from(n);
    for (size_t d = 0; d < n; ++d)
      for (size_t b = 0; b < 256; ++b) {
        const int32_t to = next[d * 256 + b];
        if (to != kDeadState && (from[static_cast<size_t>(to)].empty() || from[static_cast<size_t>(to)].back() != d))
          from[static_cast<size_t>(to)].push_back(d);
      }
    std::vector<size_t> stack;
    for (size_t d = 0; d < n; ++d)
      if (live[d]) stack.push_back(d);
    while (!stack.empty()) {
      const size_t d = stack.back();
      stack.pop_back();
      for (size_t p : from[d])
        if (!live[p]) {
          live[p] = 1;
          stack.push_back(p);
        }
    }
  }
  ByteDfa dfa;
  if (!live[0]) return dfa;
  // Renumber the live states reachable from the start through live states.
  std::vector<int32_t> renum(n, kDeadState);
  std::vector<size_t> order = {0};
  renum[0] = 0;
  for (size_t k = 0; k < order.size(); ++k)
    for (size_t b = 0; b < 256; ++b) {
      const int32_t to = next[order[k] * 256 + b];
      if (to != kDeadState && live[static_cast<size_t>(to)] && renum[static_cast<size_t>(to)] == kDeadState) {
        renum[static_cast<size_t>(to)] = static_cast<int32_t>(order.size());
        order.push_back(static_cast<size_t>(to));
      }
    }
  dfa.start = 0;
  dfa.next.assign(order.size() * 256, kDeadState);
  dfa.accepting.resize(order.size());
  for (size_t k = 0; k < order.size(); ++k) {
    dfa.accepting[k] = accepting[order[k]];
    for (size_t b = 0; b < 256; ++b) {
      const int32_t to = next[order[k] * 256 + b];
      if (to != kDeadState && live[static_cast<size_t>(to)]) dfa.next[k * 256 + b] = renum[static_cast<size_t>(to)];
    }
  }
  return dfa;
}

}  // namespace

ByteDfa compile_pattern(std::string_view pattern, size_t max_states) {
  auto [ast, root] = Parser(pattern).run();
  Nfa nfa;
  const int32_t start = nfa.state();
  const int32_t accept = nfa.emit(ast, root, start);
  return determinize(nfa, start, accept, max_states);
}

}  // namespace ilm::structured
