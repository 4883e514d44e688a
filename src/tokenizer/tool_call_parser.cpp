#include "tokenizer/tool_call_parser.h"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace ilm {

namespace {

bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

// Bytes at the end of `s` that are a proper prefix of `marker` (they may still become it).
size_t held_tail(std::string_view s, std::string_view marker) {
  for (size_t n = std::min(s.size(), marker.size() - 1); n > 0; --n)
    if (s.substr(s.size() - n) == marker.substr(0, n)) return n;
  return 0;
}

// A cursor over the head of a call, `{"name": "<name>", "parameters": `: each step either
// matches, needs more text, or fails for good (then the call is parsed whole at its end).
enum class Head { Ok, Need, Fail };

struct Cursor {
  std::string_view s;
  size_t i = 0;
  void ws() {
    while (i < s.size() && is_ws(s[i])) ++i;
  }
  Head lit(std::string_view t) {
    ws();
    const size_t n = std::min(t.size(), s.size() - i);
    if (s.substr(i, n) != t.substr(0, n)) return Head::Fail;
    if (n < t.size()) return Head::Need;
    i += n;
    return Head::Ok;
  }
  // A JSON string literal, decoded into `out`.
  Head str(std::string& out) {
    ws();
    if (i == s.size()) return Head::Need;
    if (s[i] != '"') return Head::Fail;
    for (size_t j = i + 1; j < s.size(); ++j) {
      if (s[j] == '\\') {
        ++j;
        continue;
      }
      if (s[j] == '"') {
        const auto v = nlohmann::json::parse(s.substr(i, j + 1 - i), nullptr, false);
        if (!v.is_string()) return Head::Fail;
        out = v.get<std::string>();
        i = j + 1;
        return Head::Ok;
      }
    }
    return Head::Need;
  }
};

}  // namespace

void ToolCallParser::push(std::string_view text, std::vector<ToolCallEvent>& out) {
  buf_ += text;
  step(out, false);
}

void ToolCallParser::finish(std::vector<ToolCallEvent>& out) { step(out, true); }

void ToolCallParser::step(std::vector<ToolCallEvent>& out, bool final) {
  auto emit = [&](ToolCallEvent::Kind k, std::string_view t) {
    if (k != ToolCallEvent::Kind::End && k != ToolCallEvent::Kind::Begin && t.empty()) return;
    if (k == ToolCallEvent::Kind::Text && !out.empty() && out.back().kind == k) out.back().text += t;
    else out.push_back({k, std::string(t)});
  };
  for (;;) {
    switch (state_) {
      case State::Skip:
        buf_.clear();
        return;
      case State::Content: {
        // The earliest marker; at one position the call opener wins over its first half.
        size_t p = std::string::npos, len = 0;
        for (const std::string_view m : kMarkers) {
          const size_t q = buf_.find(m);
          if (q < p || (q == p && m.size() > len)) p = q, len = m.size();
        }
        const bool open = p != std::string::npos && std::string_view(buf_).substr(p, len) == kOpen;
        if (p != std::string::npos && !open && !final) {
          // "<|action_start|>" at the very end may still become the opener.
          const std::string_view rest = std::string_view(buf_).substr(p);
          if (rest.size() < kOpen.size() && kOpen.substr(0, rest.size()) == rest) p = std::string::npos;
        }
        if (p == std::string::npos) {
          size_t keep = 0;
          if (!final)
            for (const std::string_view m : kMarkers) keep = std::max(keep, held_tail(buf_, m));
          emit(ToolCallEvent::Kind::Text, std::string_view(buf_).substr(0, buf_.size() - keep));
          buf_.erase(0, buf_.size() - keep);
          return;
        }
        emit(ToolCallEvent::Kind::Text, std::string_view(buf_).substr(0, p));
        buf_.erase(0, p + len);
        if (open) {
          call_.clear();
          state_ = max_calls_ > 0 && calls_ >= max_calls_ ? State::Skip : State::Head;
        }
        break;
      }
      case State::Head: {
        const size_t from = call_.size() >= kClose.size() ? call_.size() - kClose.size() + 1 : 0;
        call_ += buf_;
        buf_.clear();
        // The head is read only up to a close marker: what follows one is never part of it.
        if (parse_head(std::min(call_.find(kClose), call_.size()), out)) break;  // now in Args
        if (const size_t p = call_.find(kClose, from); p != std::string::npos) {
          buf_ = call_.substr(p + kClose.size());
          close_call(std::string_view(call_).substr(0, p), out);
          state_ = State::Content;
          break;
        }
        if (final) {
          close_call(call_, out);
          state_ = State::Content;
        }
        return;
      }
      case State::Args: {
        if (!started_) {  // whitespace before the value is not part of it
          size_t k = 0;
          while (k < buf_.size() && is_ws(buf_[k])) ++k;
          buf_.erase(0, k);
        }
        const size_t close = buf_.find(kClose);
        const size_t avail =
            close != std::string::npos ? close : buf_.size() - (final ? 0 : held_tail(buf_, kClose));
        const size_t end = scan_args(std::string_view(buf_).substr(0, avail));
        if (end != std::string::npos) {
          emit(ToolCallEvent::Kind::Args, std::string_view(buf_).substr(0, end));
          buf_.erase(0, end);
          state_ = State::Tail;
          break;
        }
        emit(ToolCallEvent::Kind::Args, std::string_view(buf_).substr(0, avail));
        buf_.erase(0, avail);
        if (close != std::string::npos || final) {  // the value never ended: the call ends anyway
          if (close != std::string::npos) buf_.erase(0, kClose.size());
          emit(ToolCallEvent::Kind::End, {});
          state_ = State::Content;
          if (close != std::string::npos) break;
        }
        return;
      }
      case State::Tail: {  // after the arguments: the object's "}" and the close marker
        const size_t close = buf_.find(kClose);
        if (close == std::string::npos && !final) {
          buf_.erase(0, buf_.size() - held_tail(buf_, kClose));
          return;
        }
        buf_.erase(0, close == std::string::npos ? buf_.size() : close + kClose.size());
        emit(ToolCallEvent::Kind::End, {});
        state_ = State::Content;
        break;
      }
    }
  }
}

// The head `{"name": "...", "parameters": ` complete: Begin, and on to Args. False while more
// text is needed or when the call does not start that way (it is then parsed whole).
bool ToolCallParser::parse_head(size_t limit, std::vector<ToolCallEvent>& out) {
  Cursor c{std::string_view(call_).substr(0, limit)};
  std::string name;
  Head h = c.lit("{");
  if (h == Head::Ok) h = c.lit("\"name\"");
  if (h == Head::Ok) h = c.lit(":");
  if (h == Head::Ok) h = c.str(name);
  if (h == Head::Ok) h = c.lit(",");
  if (h == Head::Ok) {
    Cursor p = c;
    h = p.lit("\"parameters\"");
    if (h == Head::Fail) {
      p = c;
      h = p.lit("\"arguments\"");
    }
    c = p;
  }
  if (h == Head::Ok) h = c.lit(":");
  if (h != Head::Ok) return false;
  ++calls_;
  out.push_back({ToolCallEvent::Kind::Begin, name});
  buf_ = call_.substr(c.i);
  call_.clear();
  depth_ = 0;
  in_string_ = escape_ = started_ = scalar_ = false;
  state_ = State::Args;
  return true;
}

// Scans the arguments value: the offset just past its end in `s`, or npos (not ended yet).
size_t ToolCallParser::scan_args(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    const char ch = s[i];
    if (!started_) {
      started_ = true;
      if (ch == '{' || ch == '[') {
        depth_ = 1;
      } else if (ch == '"') {
        in_string_ = scalar_ = true;
      } else {
        scalar_ = true;  // a number or literal: ends at a delimiter
      }
      continue;
    }
    if (in_string_) {
      if (escape_) escape_ = false;
      else if (ch == '\\') escape_ = true;
      else if (ch == '"') {
        in_string_ = false;
        if (scalar_ && depth_ == 0) return i + 1;
      }
      continue;
    }
    if (scalar_) {
      if (is_ws(ch) || ch == ',' || ch == '}' || ch == ']') return i;
      continue;
    }
    if (ch == '"') in_string_ = true;
    else if (ch == '{' || ch == '[') ++depth_;
    else if ((ch == '}' || ch == ']') && --depth_ == 0) return i + 1;
  }
  return std::string::npos;
}

// A call parsed whole (its keys in another order, or its head never completed): a call when
// it is a JSON object with a string "name", else its text goes back to the content.
void ToolCallParser::close_call(std::string_view body, std::vector<ToolCallEvent>& out) {
  const auto j = nlohmann::json::parse(body, nullptr, false);
  const auto name = j.is_object() ? j.find("name") : j.end();
  if (!j.is_object() || name == j.end() || !name->is_string()) {
    if (!body.empty()) {
      if (!out.empty() && out.back().kind == ToolCallEvent::Kind::Text) out.back().text += body;
      else out.push_back({ToolCallEvent::Kind::Text, std::string(body)});
    }
    return;
  }
  ++calls_;
  out.push_back({ToolCallEvent::Kind::Begin, name->get<std::string>()});
  auto args = j.find("parameters");
  if (args == j.end()) args = j.find("arguments");
  std::string text = "{}";
  if (args != j.end()) text = args->is_string() ? args->get<std::string>() : args->dump();
  out.push_back({ToolCallEvent::Kind::Args, text});
  out.push_back({ToolCallEvent::Kind::End, {}});
}

}  // namespace ilm
