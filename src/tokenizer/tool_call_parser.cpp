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

// Where the tail of `s` that later text could still turn into a marker begins: the earliest
// position from which `s` is a run of marker beginnings ("<|ac<|pl": "ugin|>" completes the
// second, whose removal joins the first to what follows). `s` holds no whole marker.
size_t joinable_tail(std::string_view s) {
  constexpr std::string_view kOpen = ToolCallParser::kOpen;
  const size_t n = s.size();
  std::vector<char> runs(n + 1, 0);  // runs[p]: s[p, n) is such a run (empty counts)
  runs[n] = 1;
  size_t start = n;
  for (size_t p = n; p-- > 0;) {
    if (s[p] != '<') continue;  // every marker begins with '<'
    for (size_t len = 1; len <= std::min(n - p, kOpen.size()) && !runs[p]; ++len) {  // no marker is longer
      if (!runs[p + len]) continue;
      for (const std::string_view m : ToolCallParser::kMarkers)
        if (len < m.size() && m.substr(0, len) == s.substr(p, len)) {
          runs[p] = 1;
          break;
        }
    }
    if (runs[p]) start = p;
  }
  return start;
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

// `text` without any marker (removing one may join two halves of another: repeated until none).
std::string ToolCallParser::strip_markers(std::string_view text) {
  std::string s(text);
  for (bool again = true; again;) {
    again = false;
    for (const std::string_view m : kMarkers)
      for (size_t p; (p = s.find(m)) != std::string::npos; again = true) s.erase(p, m.size());
  }
  return s;
}

void ToolCallParser::push(std::string_view text, std::vector<ToolCallEvent>& out) {
  buf_ += text;
  step(out, false);
}

void ToolCallParser::finish(std::vector<ToolCallEvent>& out) {
  step(out, true);
  text_out({}, true, out);
}

// All content goes out through here: markers removed (also those that removing another one,
// or text given back by a broken call, puts together), a tail that may still become one held.
void ToolCallParser::text_out(std::string_view t, bool final, std::vector<ToolCallEvent>& out) {
  text_held_ = strip_markers(text_held_ + std::string(t));
  const size_t keep = final ? 0 : text_held_.size() - joinable_tail(text_held_);
  if (text_held_.size() > keep) {
    const std::string_view t_out = std::string_view(text_held_).substr(0, text_held_.size() - keep);
    if (!out.empty() && out.back().kind == ToolCallEvent::Kind::Text) out.back().text += t_out;
    else out.push_back({ToolCallEvent::Kind::Text, std::string(t_out)});
    text_held_.erase(0, text_held_.size() - keep);
  }
}

void ToolCallParser::step(std::vector<ToolCallEvent>& out, bool final) {
  // Call events (content goes out through text_out); an empty argument fragment is none.
  auto emit = [&](ToolCallEvent::Kind k, std::string_view t) {
    if (k == ToolCallEvent::Kind::Args && t.empty()) return;
    out.push_back({k, std::string(t)});
  };
  for (;;) {
    switch (state_) {
      case State::Skip:
        buf_.clear();
        return;
      case State::Content: {
        const size_t p = buf_.find(kOpen);
        if (p == std::string::npos) {
          const size_t keep = final ? 0 : held_tail(buf_, kOpen);
          text_out(std::string_view(buf_).substr(0, buf_.size() - keep), false, out);
          buf_.erase(0, buf_.size() - keep);
          return;
        }
        text_out(std::string_view(buf_).substr(0, p), false, out);
        buf_.erase(0, p + kOpen.size());
        call_.clear();
        scanned_ = 0;
        head_given_up_ = false;
        state_ = max_calls_ > 0 && calls_ >= max_calls_ ? State::Skip : State::Head;
        break;
      }
      case State::Head: {
        const size_t from = scanned_;
        call_ += buf_;
        buf_.clear();
        const size_t close = call_.find(kClose, from), open = call_.find(kOpen, from);
        scanned_ = call_.size() >= kOpen.size() ? call_.size() - kOpen.size() + 1 : 0;
        // The head is read only up to a close marker or a new opener (never part of it), and
        // only in its first kHeadCap bytes, so the work per piece stays bounded.
        if (!head_given_up_) {
          const size_t limit = std::min({close, open, call_.size()});
          if (parse_head(std::min(limit, kHeadCap), out)) break;  // now in Args
          if (limit >= kHeadCap) head_given_up_ = true;  // parsed whole when it closes
        }
        if (open < close) {  // a new opener: the broken start goes back to the content
          text_out(std::string_view(call_).substr(0, open), false, out);
          call_.erase(0, open + kOpen.size());
          scanned_ = 0;
          head_given_up_ = false;
          break;
        }
        if (close != std::string::npos) {
          buf_ = call_.substr(close + kClose.size());
          close_call(std::string_view(call_).substr(0, close), out);
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
        // A string value (arguments as a JSON text in a string) is decoded whole at its end.
        auto args_out = [&](std::string_view t, bool value_ended) {
          if (!string_args_) return emit(ToolCallEvent::Kind::Args, t);
          call_ += t;
          if (!value_ended) return;
          const auto v = nlohmann::json::parse(call_, nullptr, false);
          emit(ToolCallEvent::Kind::Args, v.is_string() ? v.get<std::string>() : call_);
          call_.clear();
        };
        if (end != std::string::npos) {
          args_out(std::string_view(buf_).substr(0, end), true);
          buf_.erase(0, end);
          state_ = State::Tail;
          break;
        }
        const bool ends = close != std::string::npos || final;
        args_out(std::string_view(buf_).substr(0, avail), ends);
        buf_.erase(0, avail);
        if (ends) {  // the value never ended: the call ends anyway
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
  in_string_ = escape_ = started_ = scalar_ = string_args_ = false;
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
        in_string_ = scalar_ = string_args_ = true;
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
    if (!constrained_) text_out(body, false, out);
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
