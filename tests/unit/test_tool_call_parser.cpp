// The tool-call parser on scripted replies, split at every position (one and two cuts): the
// events must not depend on how the text was cut into pieces.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tokenizer/tool_call_parser.h"

namespace ilm {
namespace {

struct Parsed {
  std::string content;
  struct Call {
    std::string name, args;
    bool ended = false;
  };
  std::vector<Call> calls;
  bool operator==(const Parsed& o) const {
    if (content != o.content || calls.size() != o.calls.size()) return false;
    for (size_t i = 0; i < calls.size(); ++i)
      if (calls[i].name != o.calls[i].name || calls[i].args != o.calls[i].args || calls[i].ended != o.calls[i].ended)
        return false;
    return true;
  }
};

// Folds events, checking their order (Begin, Args*, End per call; Text only outside calls).
Parsed fold(const std::vector<ToolCallEvent>& evs) {
  Parsed p;
  bool open = false;
  for (const auto& e : evs) {
    switch (e.kind) {
      case ToolCallEvent::Kind::Text:
        EXPECT_FALSE(open) << "text inside a call";
        p.content += e.text;
        break;
      case ToolCallEvent::Kind::Begin:
        EXPECT_FALSE(open);
        open = true;
        p.calls.push_back({e.text, "", false});
        break;
      case ToolCallEvent::Kind::Args:
        EXPECT_TRUE(open);
        if (!p.calls.empty()) p.calls.back().args += e.text;
        break;
      case ToolCallEvent::Kind::End:
        EXPECT_TRUE(open);
        open = false;
        if (!p.calls.empty()) p.calls.back().ended = true;
        break;
    }
  }
  EXPECT_FALSE(open) << "a call left open after finish";
  return p;
}

Parsed run(const std::vector<std::string>& pieces, int max_calls = 0) {
  ToolCallParser parser(max_calls);
  std::vector<ToolCallEvent> evs;
  for (const auto& s : pieces) parser.push(s, evs);
  parser.finish(evs);
  return fold(evs);
}

// Every way to cut `text` once or twice gives the same result as one piece.
void expect_split_invariant(const std::string& text, const Parsed& want, int max_calls = 0) {
  ASSERT_TRUE(run({text}, max_calls) == want) << text;
  for (size_t i = 0; i <= text.size(); ++i) {
    ASSERT_TRUE(run({text.substr(0, i), text.substr(i)}, max_calls) == want) << "cut at " << i << ": " << text;
    for (size_t j = i; j <= text.size(); j += 3)
      ASSERT_TRUE(run({text.substr(0, i), text.substr(i, j - i), text.substr(j)}, max_calls) == want)
          << "cuts at " << i << ", " << j << ": " << text;
  }
  // Byte by byte.
  std::vector<std::string> bytes;
  for (char c : text) bytes.emplace_back(1, c);
  ASSERT_TRUE(run(bytes, max_calls) == want) << "bytewise: " << text;
}

TEST(ToolCallParser, PlainTextPassesThrough) {
  expect_split_invariant("Hello <|action world <| done", {"Hello <|action world <| done", {}});
}

TEST(ToolCallParser, OneCallStreamsItsArguments) {
  const std::string text =
      "Let me check.<|action_start|><|plugin|>\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", "
      "\"days\": [1, 2]}}<|action_end|>";
  expect_split_invariant(text, {"Let me check.", {{"get_weather", "{\"city\": \"Paris\", \"days\": [1, 2]}", true}}});
}

TEST(ToolCallParser, ArgumentsWithBracesAndQuotesInStrings) {
  const std::string text =
      "<|action_start|><|plugin|>\n{\"name\": \"f\\\"x\", \"arguments\": {\"q\": \"a } ] \\\" {\", \"n\": -1.5e3}}"
      "<|action_end|>\n";
  expect_split_invariant(text, {"\n", {{"f\"x", "{\"q\": \"a } ] \\\" {\", \"n\": -1.5e3}", true}}});
}

TEST(ToolCallParser, KeysInAnotherOrderAreParsedWhole) {
  const std::string text =
      "<|action_start|><|plugin|>{\"parameters\": {\"a\": 1}, \"name\": \"g\"}<|action_end|>";
  expect_split_invariant(text, {"", {{"g", "{\"a\":1}", true}}});
}

TEST(ToolCallParser, TwoCallsAndTheLimit) {
  const std::string text =
      "<|action_start|><|plugin|>\n{\"name\": \"a\", \"parameters\": {}}<|action_end|>"
      "<|action_start|><|plugin|>\n{\"name\": \"b\", \"parameters\": {\"x\": true}}<|action_end|>";
  expect_split_invariant(text, {"", {{"a", "{}", true}, {"b", "{\"x\": true}", true}}});
  expect_split_invariant(text, {"", {{"a", "{}", true}}}, /*max_calls=*/1);
}

TEST(ToolCallParser, UnclosedCallEndsWithTheReply) {
  // max_tokens cut the call, or the model ended without <|action_end|>.
  expect_split_invariant("<|action_start|><|plugin|>\n{\"name\": \"a\", \"parameters\": {\"x\": [1, 2",
                         {"", {{"a", "{\"x\": [1, 2", true}}});
  expect_split_invariant("<|action_start|><|plugin|>\n{\"name\": \"a\", \"parameters\": {\"x\": 1}}",
                         {"", {{"a", "{\"x\": 1}", true}}});
}

TEST(ToolCallParser, BrokenCallGoesBackToContent) {
  expect_split_invariant("ok <|action_start|><|plugin|>\nnot json at all<|action_end|> bye",
                         {"ok \nnot json at all bye", {}});
  expect_split_invariant("<|action_start|><|plugin|>{\"nome\": 1}", {"{\"nome\": 1}", {}});
}

TEST(ToolCallParser, CloseMarkerEndsTheHead) {
  // A close marker inside the name ends the call there, however the text was cut.
  expect_split_invariant("<|action_start|><|plugin|>{\"name\": \"a<|action_end|>b\", \"parameters\": 1}",
                         {"{\"name\": \"ab\", \"parameters\": 1}", {}});
}

TEST(ToolCallParser, ANewOpenerRestartsTheCall) {
  expect_split_invariant(
      "<|action_start|><|plugin|>\n<|action_start|><|plugin|>\n{\"name\": \"f\", \"parameters\": {}}<|action_end|>",
      {"\n", {{"f", "{}", true}}});
  expect_split_invariant("<|action_start|><|plugin|>\nbroken <|interpreter|> x", {"\nbroken  x", {}});
}

TEST(ToolCallParser, LongHeadsAreParsedWhole) {
  // (Too long for every cut: whole, byte by byte, and cuts every 997 bytes.)
  const std::string text = "<|action_start|><|plugin|>{" + std::string(5000, ' ') +
                           "\"name\": \"f\", \"parameters\": {\"a\": 1}}<|action_end|>";
  const Parsed want{"", {{"f", "{\"a\":1}", true}}};
  EXPECT_TRUE(run({text}) == want);
  std::vector<std::string> bytes, chunks;
  for (char c : text) bytes.emplace_back(1, c);
  for (size_t i = 0; i < text.size(); i += 997) chunks.push_back(text.substr(i, 997));
  EXPECT_TRUE(run(bytes) == want);
  EXPECT_TRUE(run(chunks) == want);
}

TEST(ToolCallParser, AConstrainedCallCutShortIsDropped) {
  ToolCallParser parser(1, /*constrained=*/true);
  std::vector<ToolCallEvent> evs;
  parser.push("<|action_start|><|plugin|>\n{\"na", evs);
  parser.finish(evs);
  EXPECT_TRUE(evs.empty());
}

TEST(ToolCallParser, InterpreterBlocksStayContent) {
  expect_split_invariant("a<|action_start|><|interpreter|>\nprint(1)<|action_end|>b", {"a\nprint(1)b", {}});
  expect_split_invariant("<|action_start|>x<|plugin|>y<|action_end|>", {"xy", {}});
}

TEST(ToolCallParser, ScalarAndStringArguments) {
  expect_split_invariant("<|action_start|><|plugin|>{\"name\": \"a\", \"parameters\": 42 }<|action_end|>",
                         {"", {{"a", "42", true}}});
  expect_split_invariant("<|action_start|><|plugin|>{\"name\": \"a\", \"parameters\": \"{\\\"x\\\":1}\"}<|action_end|>",
                         {"", {{"a", "{\"x\":1}", true}}});
}

}  // namespace
}  // namespace ilm
