#pragma once
// One HTTP generation request on the engine's side: a request stream per prompt, n choices
// each, turned into per-choice text (TextStream), logprobs and token counts. A choice that
// hits a stop string is finished here; once every choice of a prompt is finished that way,
// its engine request is cancelled so its sequences stop at once (the engine's later
// Finish("cancelled") events are ignored for choices already finished).
//
// Token accounting (usage.completion_tokens), per choice: every token the engine reported
// for it up to the end of the returned text: all Token events, plus the stop id when the
// engine finished with "stop" (the engine counts it against max_tokens too), or up to and
// including the token that completed a stop string (tokens the engine produced before the
// cancel took effect are not counted). A choice therefore never counts more than max_tokens.
//
// With tools, each choice's text goes through a ToolCallParser: calls become tool_calls (and
// finish_reason "tool_calls" when the reply ended by itself), the rest stays content.
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/engine.h"
#include "server/openai_request.h"

namespace ilm::server {

// The engine side of one prompt. RequestStream in production; tests feed scripted events.
class EventSource {
 public:
  virtual ~EventSource() = default;
  virtual bool next(EngineEvent& ev, std::chrono::milliseconds timeout) = 0;
  virtual void cancel() = 0;
  virtual int64_t cached_tokens() const = 0;
};

std::unique_ptr<EventSource> wrap(std::shared_ptr<RequestStream> stream);

struct LogprobAlt {
  std::string token;  // the token's bytes made valid UTF-8 (a lone byte-fallback byte: U+FFFD)
  std::string bytes;  // the token's raw bytes
  float logprob = 0;
};

struct LogprobEntry : LogprobAlt {
  size_t text_offset = 0;  // code points of the choice's decoded text before this token
  std::vector<LogprobAlt> top;
  bool unconditioned = false;  // an echoed prompt's first token: no logprob (JSON null)
};

// A function call read out of a chat reply (GenerationRequest::tool_calls).
struct ToolCall {
  std::string id;  // "call_..."
  std::string name;
  std::string arguments;  // the JSON text the model wrote
};

// A piece of a call as streaming sends it: the first carries the id and name, the rest
// fragments of the arguments.
struct ToolCallDelta {
  int index = 0;  // the call's position in the choice
  std::string id, name;  // set on the call's first delta only
  std::string arguments;
};

// What one engine event adds to one choice (streaming sends one chunk per delta).
struct ChoiceDelta {
  int index = 0;
  std::string text;
  std::vector<ToolCallDelta> tool_calls;
  std::vector<LogprobEntry> logprobs;
  std::string finish_reason;  // set on the choice's last delta
};

struct ChoiceResult {
  int index = 0;
  std::string text;  // with tool calls: the content outside them
  std::vector<ToolCall> tool_calls;
  std::vector<LogprobEntry> logprobs;
  std::string finish_reason;
  int64_t completion_tokens = 0;
  // Seconds between its first and last token per token after the first (-1: fewer than two).
  double time_per_output_token = -1;
};

struct GenerationResult {
  std::vector<ChoiceResult> choices;  // by index
  int64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
  double time_to_first_token = -1;  // seconds from the start of run(); -1: no token came
  std::string error;                // the engine reported an error (the request is over)
  bool client_gone = false;         // stopped because the client went away
};

class Generation {
 public:
  Generation(const Tokenizer& tok, const GenerationRequest& req,
             std::vector<std::unique_ptr<EventSource>> sources);
  // Cancels every engine request (a no-op for finished ones), so an abandoned response never
  // leaves sequences running.
  ~Generation();
  Generation(const Generation&) = delete;
  Generation& operator=(const Generation&) = delete;

  // Runs until every choice is finished, the engine reports an error, or the client goes
  // away. `on_delta` (may be empty) receives each choice's new text / logprobs as they come;
  // returning false means the client is gone. `client_gone` (may be empty) is polled while
  // waiting for events. On every early return, each engine request is cancelled.
  GenerationResult run(const std::function<bool(ChoiceDelta&&)>& on_delta,
                       const std::function<bool()>& client_gone,
                       std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now());

 private:
  struct Choice;
  // An echoed prompt (completions `echo`): its text, and with logprobs one entry per token
  // (the first unconditioned, the rest filled by the engine's PromptToken events).
  struct Echo {
    std::string text;
    size_t chars = 0;
    std::vector<LogprobEntry> entries;
    size_t scored = 1;  // entries [1, scored) have their logprobs
  };
  Echo make_echo(const std::vector<TokenId>& prompt) const;
  bool handle(size_t source, EngineEvent& ev, GenerationResult& result,
              const std::function<bool(ChoiceDelta&&)>& on_delta);
  LogprobEntry logprob_entry(const EngineEvent& ev, size_t offset) const;
  void parse_tool_calls(Choice& c, ChoiceDelta& delta);

  const Tokenizer& tok_;
  const GenerationRequest& req_;
  std::vector<std::unique_ptr<EventSource>> sources_;
  std::vector<Choice> choices_;  // source s, choice c at s * n + c
  std::vector<int> open_;        // per source: choices not finished yet
  std::vector<Echo> echoes_;     // per source, when the request echoes its prompts
  std::chrono::steady_clock::time_point start_;
};

}  // namespace ilm::server
