#pragma once
// The serving engine: many concurrent requests over one model, token-level. One engine thread
// runs an iteration-level scheduler: at every step, requests join and leave the running batch;
// the decode tokens of all running sequences and a budgeted chunk of waiting prompts run as one
// batched forward (each weight read once per step); KV memory lives in a shared paged pool
// with prefix reuse. Text (detokenization, stop strings) is the caller's business: the engine
// emits token ids, and a caller cancels a request once its text says it is done.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "structured/token_mask.h"

#include "model/causal_lm.h"
#include "runtime/sampler.h"

namespace ilm {

struct EngineOptions {
  int max_seqs = 16;           // sequences decoding at once (n > 1 counts each choice)
  int64_t max_model_len = 0;   // prompt + completion tokens per sequence; 0: the model's limit
  double kv_cache_gb = 0;      // KV pool size; 0: enough for max_seqs full-length sequences,
                               // capped at 4 GiB
  int64_t block_size = 16;     // tokens per KV block (also the prefix-reuse granularity)
  DType kv_dtype = DType::F32; // KV element type: F32, BF16 / F16 for half the memory, or I8
                               // (int8 + a scale per head) for about a quarter
  int max_waiting = 256;       // requests queued beyond that are refused (QueueFull)
  int64_t max_prefill_chunk = 512;  // prompt tokens per step when nothing is decoding
  double itl_budget = 2.5;     // a step that also prefills costs at most about this many times a
                               // decode-only step (chunked prefill keeps streams flowing)
  bool prefix_cache = true;
  int64_t sample_vocab = 0;    // > 0: only ids below this are sampled (tokenizer size)
  // Called on the engine thread about every idle_tick_seconds while nothing runs or waits
  // (serve --tp: rank 0's TpLeader::heartbeat, so the other ranks, waiting for the next step,
  // know it is alive). Empty: the idle engine just sleeps.
  std::function<void()> idle_tick;
  double idle_tick_seconds = 1.0;
};

struct RequestParams {
  std::vector<TokenId> prompt;
  int64_t max_tokens = 16;     // per choice; the stop token counts
  SamplingParams sampling;     // choice i uses seed + i
  std::vector<TokenId> stop_ids;
  int n = 1;                   // choices, sampled from one shared prefill
  int top_logprobs = -1;       // -1: no logprobs; 0..20: the chosen token's logprob and this
                               // many most likely alternatives
  // Structured output: each sampled token must keep this grammar's match alive, and the stop
  // ids are allowed only once the text is a complete value (then they are the only choice).
  std::shared_ptr<structured::Grammar> grammar;
  int prompt_logprobs = -1;    // -1: off; 0..20: a PromptToken event for each prompt token
                               // after the first (its logprob given the tokens before it) with
                               // this many alternatives; the prompt is then computed in full
                               // (no prefix-cache reuse), in chunks of kPromptScoreChunk
};

// Prompt tokens scored per step: their logits rows are kept (chunk x vocab floats).
inline constexpr int64_t kPromptScoreChunk = 32;

struct EngineEvent {
  enum class Kind { Token, Finish, Error, PromptToken };
  Kind kind = Kind::Token;
  int choice = 0;
  TokenId token = 0;                 // Token: the sampled id (a stop id is reported as Finish);
                                     // PromptToken: the prompt token scored (choice 0, in order)
  float logprob = 0;                 // Token, PromptToken: log-softmax of the raw logits at `token`
  std::vector<TokenLogprob> top;     // Token: when top_logprobs > 0; PromptToken: prompt_logprobs
  std::string finish_reason;         // Finish: "stop" (stop id), "length", "cancelled"
  bool stop_token = false;           // Finish "stop": a stop id was sampled (it counts as a token)
  int64_t completion_tokens = 0;     // Finish: tokens sampled for this choice, a stop id included
  std::string error;                 // Error: what went wrong (the request is over)
};

// A request in flight: events arrive in order; each choice ends with one Finish event (or the
// whole request with one Error event).
class RequestStream {
 public:
  // Waits up to `timeout` for the next event; false if none came.
  bool next(EngineEvent& ev, std::chrono::milliseconds timeout);
  // Asks the engine to stop this request; it frees its KV blocks at the next step and sends
  // Finish("cancelled") for choices still running. Safe to call more than once.
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

  int64_t prompt_tokens() const { return prompt_tokens_; }
  // Prompt tokens whose KV came from the prefix cache (known after the first token).
  int64_t cached_tokens() const { return cached_tokens_.load(); }

 private:
  friend class Engine;
  void push(EngineEvent ev);
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<EngineEvent> events_;
  std::atomic<bool> cancelled_{false};
  std::atomic<int64_t> cached_tokens_{0};
  int64_t prompt_tokens_ = 0;
};

// Thrown by submit() when the waiting queue is full or the engine is draining.
class QueueFull : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct EngineStats {
  int running = 0, waiting = 0;
  int64_t kv_blocks_total = 0, kv_blocks_used = 0;  // used: held by a sequence
  int64_t kv_blocks_cached = 0;                     // free, but holding a reusable prefix
  int64_t block_size = 0;
  uint64_t prompt_tokens = 0, cached_prompt_tokens = 0, generated_tokens = 0;
  uint64_t steps = 0, preemptions = 0;
  int64_t max_model_len = 0;
  // Where the engine thread's time goes: batched forwards, and structured output's masks and
  // matcher steps (their ratio is the cost of constrained decoding, measured in the same run).
  double forward_seconds = 0, grammar_seconds = 0;
  uint64_t grammar_mask_hits = 0, grammar_mask_misses = 0;
};

class Engine {
 public:
  Engine(CausalLM& lm, const EngineOptions& opts);
  ~Engine();  // finishes nothing: pending requests get an Error event, then the thread stops
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request. Throws ilm::Error for one that can never run (empty prompt, prompt +
  // max_tokens beyond max_model_len or beyond the whole KV pool, n < 1, bad sampling values)
  // and QueueFull when the queue is full or the engine is draining.
  std::shared_ptr<RequestStream> submit(RequestParams params);

  EngineStats stats() const;
  const EngineOptions& options() const;  // with the defaults resolved
  // Stops taking requests and waits until every queued and running one has finished.
  void drain();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ilm
