#pragma once
// Parsing and validation of OpenAI request bodies (/v1/chat/completions, /v1/completions,
// /tokenize, /detokenize) into plain structs. Everything a client can get wrong is reported
// here as an ApiError (400 naming the field), before anything reaches the engine. Unknown
// fields are ignored, as OpenAI-compatible servers do; a known field of the wrong type is 400.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/sampler.h"
#include "structured/grammar_cache.h"
#include "server/api_error.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/jinja_template.h"
#include "tokenizer/tokenizer.h"

namespace ilm::server {

enum class Endpoint { Chat, Completions };

// What a generation request asks for, with prompts already tokenized.
struct GenerationRequest {
  Endpoint endpoint = Endpoint::Chat;
  std::string model;                          // as sent; empty if absent
  std::vector<std::vector<TokenId>> prompts;  // chat: exactly one; completions: one per prompt
  std::optional<int64_t> max_tokens;          // absent: resolve_max_tokens decides
  SamplingParams sampling;
  bool seed_given = false;                    // else the server draws a seed
  std::vector<std::string> stop;              // non-empty strings, at most kMaxStop of kMaxStopBytes
  int n = 1;                                  // choices per prompt
  bool stream = false, include_usage = false;
  int logprobs = -1;  // -1: off; else how many alternatives per token (0..kMaxLogprobs)
  bool skip_special_tokens = true;  // special tokens are left out of the text (as HF decode)
  bool ignore_eos = false;          // vLLM: the model's end-of-sequence ids do not end the reply
  bool echo = false;                // completions: the prompt's text (and logprobs) come first
  std::shared_ptr<structured::Grammar> grammar;  // response_format json_object / json_schema
  std::vector<TokenId> stop_token_ids;  // vLLM: more ids that end the reply (not in the text)
  // Chat with tools (tool_choice not "none"): function calls are parsed out of the reply
  // (tokenizer/tool_call_parser.h); `max_tool_calls` 1 when parallel_tool_calls is false.
  bool tool_calls = false;
  int max_tool_calls = 0;
  int64_t default_max_tokens = 0;   // > 0: bound on the default max_tokens (non-streaming chat)
};

// What the parser needs to know about the model and server.
struct ParseContext {
  const Tokenizer* tokenizer = nullptr;
  std::string model_name;   // the served name: a request naming another model is a 404
  SamplingParams defaults;  // sampling values used for fields the request leaves out
  int max_n = 16;           // most choices per prompt
  // > 0: a prompt certainly longer than this many tokens is refused before it is fully
  // encoded (a 7 MB prompt would otherwise cost all its tokens' memory only to be refused).
  int64_t max_model_len = 0;
  // > 0: a non-streaming chat request without max_tokens generates at most this many (the rest
  // of a long context could tie a slot up for minutes with nothing sent).
  int64_t max_tokens_default = 0;
  // Structured output: compiled grammars (response_format); null: refused with 400. The raw
  // body is parsed again with its key order kept (a schema's properties come in its order).
  structured::GrammarCache* grammars = nullptr;
  std::string_view raw_body;
  // `serve --chat-template FILE`: chat prompts rendered with it (still exactly one BOS id
  // first); null: the built-in InternLM2 template (encode_chat).
  const JinjaTemplate* chat_template = nullptr;
};

inline constexpr size_t kMaxStop = 16;
inline constexpr size_t kMaxStopBytes = 512;  // per stop string: bounds the holdback scan per token
inline constexpr int kMaxLogprobs = 20;
inline constexpr size_t kMaxPrompts = 64;
inline constexpr size_t kMaxStopTokenIds = 64;

// The body as a JSON object; invalid UTF-8, invalid JSON or a non-object is a 400.
nlohmann::json parse_body(std::string_view body);

GenerationRequest parse_chat_request(const nlohmann::json& body, const ParseContext& ctx);
GenerationRequest parse_completion_request(const nlohmann::json& body, const ParseContext& ctx);

// The chat messages of a body (also used by /tokenize): roles system (or developer), user,
// assistant (with `tool_calls`, rendered in InternLM2's call format), tool (a function's
// result); content a string or an array of {"type": "text", "text": ...} parts (joined with
// "\n"); at least one message.
std::vector<ChatMessage> parse_messages(const nlohmann::json& body);

inline constexpr size_t kMaxTools = 128;

// max_tokens for one prompt of `prompt_len` tokens: the requested value, or by default the
// rest of the context (chat, as OpenAI; at most req.default_max_tokens when set) or min(16,
// rest) (completions, as OpenAI), and no more
// than fits in `kv_tokens` (the KV pool's capacity for this request; 0: unknown) so that a
// request without max_tokens is not refused on a model whose context exceeds the pool. A
// prompt that leaves no room, or prompt + max_tokens beyond max_model_len, is a 400 naming
// the numbers.
int64_t resolve_max_tokens(const GenerationRequest& req, int64_t prompt_len, int64_t max_model_len,
                           int64_t kv_tokens = 0);

// /tokenize: {"prompt": str, "add_special_tokens": bool} or {"messages": [...],
// "add_generation_prompt": bool} -> ids (messages rendered with `chat_template` when not null).
std::vector<TokenId> parse_tokenize_request(const nlohmann::json& body, const Tokenizer& tok, int64_t max_model_len = 0,
                                            const JinjaTemplate* chat_template = nullptr);

// /detokenize: {"tokens": [ids], "skip_special_tokens": bool (default false)}.
struct DetokenizeRequest {
  std::vector<TokenId> tokens;
  bool skip_special_tokens = false;
};
DetokenizeRequest parse_detokenize_request(const nlohmann::json& body, const Tokenizer& tok);

}  // namespace ilm::server
