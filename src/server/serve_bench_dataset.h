#pragma once
// `internlm bench-serve`: the requests a level sends — random token-id prompts, or the lines of
// a JSONL dataset — and the OpenAI request body for each.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ilm::serve_bench {

struct BenchRequest {
  bool chat = false;        // /v1/chat/completions with `messages`, else /v1/completions with `prompt`
  nlohmann::json input;     // prompt: array of token ids or a string; chat: the messages array
  int64_t prompt_len = 0;   // tokens when known on the client side (token-id prompts), else 0
  int64_t max_tokens = 0;
  nlohmann::json extra = nlohmann::json::object();  // more body fields (e.g. response_format)
  std::string reference_reply;  // ShareGPT: the recorded answer, whose length sets max_tokens
};

// Token ids drawn uniformly from [id_lo, id_hi] (a range of ordinary vocabulary pieces, far from
// the special tokens) with a generator seeded by `seed`.
std::vector<BenchRequest> random_token_requests(int count, int64_t input_len, int64_t output_len, uint64_t seed,
                                                int64_t id_lo = 1000, int64_t id_hi = 60000);

// A JSONL file: each line {"prompt": "..."} or {"messages": [...]}, optional "max_tokens"
// (default `output_len`). Blank lines are skipped; errors name the file and line.
std::vector<BenchRequest> load_dataset(const std::filesystem::path& path, int64_t output_len);

// A ShareGPT file (what `vllm bench serve --dataset-name sharegpt` reads): a JSON array of
// {"conversations": [{"from": "human", "value": ...}, {"from": "gpt", "value": ...}, ...]}.
// Each entry with at least two turns gives a completion request: the first turn is the prompt,
// the second the reference reply. max_tokens is `output_len` when positive, else 0 (see
// resolve_sharegpt).
std::vector<BenchRequest> load_sharegpt(const std::filesystem::path& path, int64_t output_len);

// As vLLM samples ShareGPT: shuffles `pool` with `seed`, counts tokens with `count_tokens` (the
// server's /tokenize; nullopt when it has none), drops the pairs vLLM drops (prompt or reply
// under 4 tokens, prompt over 1024, both over 2048; a fixed max_tokens skips the reply checks)
// and keeps the first `needed`. max_tokens 0 becomes the reply's token count, or
// `fallback_output_len` when the server cannot count.
using TokenCounter = std::function<std::optional<int64_t>(const std::string&)>;
std::vector<BenchRequest> resolve_sharegpt(std::vector<BenchRequest> pool, size_t needed, uint64_t seed,
                                           const TokenCounter& count_tokens, int64_t fallback_output_len);

// `count` requests taken from `pool` in order, wrapping around, starting at `offset`.
std::vector<BenchRequest> take_cycled(const std::vector<BenchRequest>& pool, int count, size_t offset);

const char* endpoint_of(const BenchRequest& r);  // "/v1/completions" or "/v1/chat/completions"

// The streamed request: greedy (temperature 0), max_tokens, usage in the last chunk.
nlohmann::json request_body(const BenchRequest& r, const std::string& model);

}  // namespace ilm::serve_bench
