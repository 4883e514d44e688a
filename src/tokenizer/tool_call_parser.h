#pragma once
// InternLM2's function calls read out of a reply as it streams. The model writes a call as
//   <|action_start|><|plugin|>\n{"name": "f", "parameters": {...}}<|action_end|>
// (the markers are special tokens; the caller decodes them as text, whatever
// skip_special_tokens says, so the parser also finds markers written as plain text pieces).
// Text is parsed as it comes, so a marker or the JSON may be split anywhere: text that could
// still become a marker is held back until the next piece decides it.
//
// Events come in order: Text (content outside any call), then per call Begin (the function's
// name), Args (fragments of the arguments' JSON text, exactly as the model wrote it; their
// concatenation is the call's `arguments`) and End. A call whose JSON starts with "name" and
// then "parameters" (or "arguments") streams its arguments as they are written; one in
// another key order, or whose head is not within its first kHeadCap bytes, is reported whole
// when it closes; arguments written as a JSON string are decoded (whole) to its text. A call without a name (broken JSON) is
// given back as Text (without the markers), so nothing the model wrote is lost. The action
// markers themselves (also <|interpreter|> blocks') never appear in Text.
#include <string>
#include <string_view>
#include <vector>

namespace ilm {

struct ToolCallEvent {
  enum class Kind { Text, Begin, Args, End };
  Kind kind = Kind::Text;
  std::string text;  // Text: content; Begin: the name; Args: a fragment
};

class ToolCallParser {
 public:
  static constexpr std::string_view kOpen = "<|action_start|><|plugin|>";
  static constexpr std::string_view kClose = "<|action_end|>";
  // Never part of the content: the markers of calls and of code-interpreter blocks.
  static constexpr std::string_view kMarkers[] = {kOpen, "<|action_start|>", kClose, "<|plugin|>", "<|interpreter|>"};

  // `max_calls`: calls after this many are dropped (parallel_tool_calls false: 1; 0: no limit).
  // `constrained`: the reply was forced to be a call (tool_choice "required" / a named
  // function), so a call that is not one (cut by max_tokens) is dropped, not given back as text.
  explicit ToolCallParser(int max_calls = 0, bool constrained = false)
      : max_calls_(max_calls), constrained_(constrained) {}

  // Appends the events `text` completes.
  void push(std::string_view text, std::vector<ToolCallEvent>& out);
  // The reply ended: releases held-back text and closes an open call.
  void finish(std::vector<ToolCallEvent>& out);

  int calls() const { return calls_; }

 private:
  enum class State { Content, Head, Args, Tail, Skip };
  void step(std::vector<ToolCallEvent>& out, bool final);
  void close_call(std::string_view body, std::vector<ToolCallEvent>& out);
  bool parse_head(size_t limit, std::vector<ToolCallEvent>& out);
  static std::string strip_markers(std::string_view text);
  void text_out(std::string_view t, bool final, std::vector<ToolCallEvent>& out);

  static constexpr size_t kHeadCap = 4096;  // a call's head is looked for in its first bytes only
  size_t scan_args(std::string_view s);

  int max_calls_ = 0, calls_ = 0;
  bool constrained_ = false;
  State state_ = State::Content;
  std::string buf_;   // text not yet consumed
  std::string text_held_;  // content that may still become a marker
  std::string call_;  // Head: the call's text so far; Args: a string value being read
  size_t scanned_ = 0;  // Head: call_ bytes already searched for markers
  bool head_given_up_ = false;
  // Args: a small JSON scanner over the arguments value, to know where it ends.
  int depth_ = 0;
  bool in_string_ = false, escape_ = false, started_ = false, scalar_ = false, string_args_ = false;
};

}  // namespace ilm
