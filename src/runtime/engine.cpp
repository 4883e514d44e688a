#include "runtime/engine.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include <fmt/format.h>

#include "common/error.h"
#include "model/rope.h"

namespace ilm {

// ---------------------------------------------------------------------------------------------
// RequestStream

bool RequestStream::next(EngineEvent& ev, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return false;
  ev = std::move(events_.front());
  events_.pop_front();
  return true;
}

void RequestStream::push(EngineEvent ev) {
  {
    std::lock_guard lock(mu_);
    events_.push_back(std::move(ev));
  }
  cv_.notify_all();
}

// ---------------------------------------------------------------------------------------------
// Engine internals

namespace {

using Clock = std::chrono::steady_clock;

// One request: its stream, parameters and how many of its choices are still open.
struct Group {
  std::shared_ptr<RequestStream> stream;
  RequestParams params;
  int open_choices = 0;
  bool forked = false;  // choices 1..n-1 exist
};

// One choice of a request. `tokens` is the prompt followed by the generated tokens; the cache
// holds KV for tokens[0, computed). The uncomputed tail is fed to the model (a prompt chunk or
// the one token sampled last), and when nothing is left uncomputed the logits are sampled.
struct Seq {
  std::shared_ptr<Group> group;
  int choice = 0;
  std::vector<TokenId> tokens;
  int64_t prompt_len = 0;
  int64_t rope_length = 0;  // see SequenceInput::rope_length
  std::optional<KvCache> cache;
  Sampler sampler;
  std::vector<float> logits;
  uint64_t chain = 0;         // prefix hash of the published blocks
  int64_t published = 0;      // blocks published so far
  uint64_t admitted_order = 0;
  std::optional<structured::GrammarState> match;  // grammar: the state after the generated text
  int64_t prompt_scored = 1;  // prompt_logprobs: tokens [1, prompt_scored) have had their event
  std::vector<float> prompt_logits;  // prompt_logprobs: the rows of the chunk being scored
  bool done = false;  // finished: leaves the running set after this step (its blocks go back
                      // to the pool; published ones stay reusable)

  Seq(std::shared_ptr<Group> g, int c, const SamplingParams& sp) : group(std::move(g)), choice(c), sampler(sp) {}
  int64_t computed() const { return cache ? cache->length() : 0; }
  int64_t tail() const { return static_cast<int64_t>(tokens.size()) - computed(); }
  int64_t generated() const { return static_cast<int64_t>(tokens.size()) - prompt_len; }
};

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

int64_t blocks_for(int64_t tokens, int64_t block_size) { return (tokens + block_size - 1) / block_size; }

}  // namespace

struct Engine::Impl {
  CausalLM& lm;
  EngineOptions opts;
  std::shared_ptr<KvBlockPool> pool;
  int64_t vocab;
  double standard_rope_base;

  std::mutex mu;  // guards incoming, stopping, draining, stats
  std::condition_variable cv, idle_cv;
  std::deque<std::unique_ptr<Seq>> incoming;
  bool stopping = false, draining = false, busy = false;
  EngineStats stats;

  // Engine-thread state.
  std::vector<std::unique_ptr<Seq>> running;
  std::deque<std::unique_ptr<Seq>> waiting;
  uint64_t admissions = 0;
  // Step costs in seconds (0 = not measured yet): a decode-only step, a prompt token in a
  // prefill-only step, and the extra cost of a prompt token added to a decode step (small
  // chunks next to decodes cost more per token than big ones, so this is measured apart).
  double ema_decode_step = 0, ema_prefill_token = 0, ema_mixed_token = 0;
  std::thread thread;

  Impl(CausalLM& m, const EngineOptions& o) : lm(m), opts(o), vocab(m.config().vocab_size) {
    const int64_t limit = lm.context_limit();
    if (opts.max_model_len <= 0 || opts.max_model_len > limit) opts.max_model_len = limit;
    if (opts.max_seqs < 1) throw Error("max_seqs must be >= 1");
    if (opts.block_size < 1 || opts.block_size > 4096) throw Error("block_size must be in [1, 4096]");
    if (opts.max_prefill_chunk < 1) throw Error("max_prefill_chunk must be >= 1");
    if (!(opts.itl_budget >= 1.0)) throw Error("itl_budget must be >= 1");
    if (opts.idle_tick && !(opts.idle_tick_seconds > 0)) throw Error("idle_tick_seconds must be > 0");
    const uint64_t block_bytes = lm.kv_bytes_per_token(opts.kv_dtype) * static_cast<uint64_t>(opts.block_size);
    int64_t blocks;
    if (opts.kv_cache_gb > 0) {
      blocks = static_cast<int64_t>(opts.kv_cache_gb * double(1ull << 30) / double(block_bytes));
    } else {
      const int64_t want = opts.max_seqs * blocks_for(opts.max_model_len, opts.block_size);
      blocks = std::min<int64_t>(want, static_cast<int64_t>((4ull << 30) / block_bytes));
      opts.kv_cache_gb = double(blocks) * double(block_bytes) / double(1ull << 30);
    }
    if (blocks < 1) throw Error(fmt::format("kv_cache_gb {} holds no KV block", opts.kv_cache_gb));
    pool = lm.new_kv_pool(opts.block_size, blocks, opts.kv_dtype);
    standard_rope_base = rope_base(lm.config(), 0);
    stats.kv_blocks_total = blocks;
    stats.block_size = opts.block_size;
    stats.max_model_len = opts.max_model_len;
    thread = std::thread([this] { loop(); });
  }

  ~Impl() {
    {
      std::lock_guard lock(mu);
      stopping = true;
    }
    cv.notify_all();
    thread.join();
    auto fail = [](Seq& s) {
      EngineEvent ev;
      ev.kind = EngineEvent::Kind::Error;
      ev.error = "the engine stopped";
      s.group->stream->push(std::move(ev));
    };
    for (auto& s : incoming) fail(*s);
    for (auto& s : waiting)
      if (s->choice == 0) fail(*s);
    for (auto& s : running)
      if (s->choice == 0) fail(*s);
  }

  // The sequence still owes prompt-token events (see RequestParams::prompt_logprobs).
  static bool scores_prompt(const Seq& s) {
    return s.choice == 0 && s.group->params.prompt_logprobs >= 0 && s.prompt_scored < s.prompt_len;
  }

  bool rope_is_standard(int64_t length) const { return rope_base(lm.config(), length) == standard_rope_base; }

  // ----- events

  void finish(Seq& s, const std::string& reason, bool stop_token = false) {
    EngineEvent ev;
    ev.kind = EngineEvent::Kind::Finish;
    ev.choice = s.choice;
    ev.finish_reason = reason;
    ev.stop_token = stop_token;
    ev.completion_tokens = s.generated();
    s.group->stream->push(std::move(ev));
    --s.group->open_choices;
  }

  void fail_group(Group& g, const std::string& what) {
    EngineEvent ev;
    ev.kind = EngineEvent::Kind::Error;
    ev.error = what;
    g.stream->push(std::move(ev));
    g.open_choices = 0;
    g.stream->cancel();  // the rest of its sequences are reaped as cancelled, silently
  }

  // ----- the loop

  void loop() {
    for (;;) {
      {
        std::unique_lock lock(mu);
        for (;;) {
          while (!incoming.empty()) {
            waiting.push_back(std::move(incoming.front()));
            incoming.pop_front();
          }
          if (stopping) return;
          if (!running.empty() || !waiting.empty()) break;
          busy = false;
          publish_stats_locked();
          idle_cv.notify_all();
          if (!opts.idle_tick) {
            cv.wait(lock);
          } else if (cv.wait_for(lock, std::chrono::duration<double>(opts.idle_tick_seconds)) ==
                         std::cv_status::timeout &&
                     incoming.empty() && !stopping) {
            lock.unlock();
            idle_tick();
            lock.lock();
          }
        }
        busy = true;
      }
      reap_cancelled();
      admit();
      if (!running.empty()) step();
      std::lock_guard lock(mu);
      publish_stats_locked();
    }
  }

  void idle_tick() {
    try {
      opts.idle_tick();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: engine idle tick: %s\n", e.what());
    }
  }

  void publish_stats_locked() {
    stats.running = static_cast<int>(running.size());
    stats.waiting = static_cast<int>(waiting.size() + incoming.size());
    stats.kv_blocks_used = pool->used_blocks();
    stats.kv_blocks_cached = pool->cached_blocks();
  }

  void reap_cancelled() {
    auto gone = [&](std::unique_ptr<Seq>& s) {
      if (!s->group->stream->cancelled()) return false;
      if (s->group->open_choices > 0) {
        finish(*s, "cancelled");
        // Choices not forked yet end with their leader.
        if (s->choice == 0 && !s->group->forked)
          for (int c = 1; c < s->group->params.n; ++c) {
            s->choice = c;
            finish(*s, "cancelled");
          }
      }
      return true;
    };
    std::erase_if(running, gone);
    std::erase_if(waiting, gone);
  }

  // Moves waiting sequences into the running set, first come first served, while slots and KV
  // blocks allow. A sequence adopts the published blocks that match its prompt's prefix.
  void admit() {
    while (!waiting.empty()) {
      Seq& s = *waiting.front();
      const int slots = (s.choice == 0 && !s.group->forked) ? s.group->params.n : 1;
      if (static_cast<int>(running.size()) + slots > opts.max_seqs) return;
      if (!s.cache) {
        s.cache.emplace(pool, opts.max_model_len);
        s.rope_length = static_cast<int64_t>(s.tokens.size());
        s.chain = 0;
        s.published = 0;
        if (opts.prefix_cache && rope_is_standard(s.rope_length) && !scores_prompt(s)) adopt_prefix(s);
      }
      // Blocks for the rest of the prompt, one more per extra choice (their partial block)
      // and one to start decoding: admit only what can run without preempting at once.
      const int64_t need = blocks_for(static_cast<int64_t>(s.tokens.size()) + 1, opts.block_size) -
                           static_cast<int64_t>(s.cache->blocks().size()) + (slots - 1);
      if (need > pool->available_blocks() && !running.empty()) {
        s.cache.reset();  // give back the adopted blocks while it waits
        return;
      }
      if (s.choice == 0) s.group->stream->cached_tokens_.store(s.computed());
      {
        std::lock_guard lock(mu);
        stats.cached_prompt_tokens += static_cast<uint64_t>(s.computed());
      }
      s.admitted_order = ++admissions;
      running.push_back(std::move(waiting.front()));
      waiting.pop_front();
    }
  }

  void adopt_prefix(Seq& s) {
    const int64_t bs = opts.block_size;
    // Leave at least one token to compute: its logits start the generation.
    const int64_t max_blocks = (static_cast<int64_t>(s.tokens.size()) - 1) / bs;
    std::vector<int32_t> blocks;
    uint64_t parent = 0;
    for (int64_t b = 0; b < max_blocks; ++b) {
      std::span<const TokenId> toks(s.tokens.data() + b * bs, static_cast<size_t>(bs));
      auto hit = pool->lookup(parent, toks);
      if (!hit) break;
      blocks.push_back(*hit);
      parent = KvBlockPool::chain_hash(parent, toks);
    }
    s.cache->adopt_prefix(blocks);
    s.chain = parent;
    s.published = static_cast<int64_t>(blocks.size());
  }

  // Frees a running sequence's KV and puts it back at the front of the queue; it recomputes
  // its prompt and generated tokens when readmitted (the prefix cache usually has them).
  void preempt(size_t index) {
    std::unique_ptr<Seq> s = std::move(running[index]);
    running.erase(running.begin() + static_cast<std::ptrdiff_t>(index));
    s->cache.reset();
    waiting.push_front(std::move(s));
    std::lock_guard lock(mu);
    ++stats.preemptions;
  }

  // Prompt tokens a step may add next to the running decodes: all the chunk it can take when
  // nothing decodes; else as many as keep the step within itl_budget decode steps.
  int64_t prefill_budget(bool decoding) const {
    if (!decoding) return opts.max_prefill_chunk;
    const double per_token = ema_mixed_token > 0 ? ema_mixed_token : ema_prefill_token;
    if (ema_decode_step <= 0 || per_token <= 0) return std::min<int64_t>(16, opts.max_prefill_chunk);
    const double n = (opts.itl_budget - 1.0) * ema_decode_step / per_token;
    return std::clamp<int64_t>(static_cast<int64_t>(n), 1, opts.max_prefill_chunk);
  }

  // ----- a step: the scheduler's plan (plain data), its execution, its results

  // What one step runs: which sequences, how many of their tokens (their KV blocks are
  // reserved by schedule(); a tensor-parallel leader sends the block tables and copies with
  // the forward call, runtime/tensor_parallel.h).
  struct StepPlan {
    struct Work {
      Seq* seq;
      int64_t n;
    };
    std::vector<Work> work;
    int64_t prefill_tokens = 0, decode_tokens = 0;
  };

  void step() {
    StepPlan plan = schedule();
    if (!plan.work.empty()) {
      std::vector<SequenceInput> batch = inputs(plan);
      if (execute(plan, batch)) complete(plan, batch);
    }
    reap_cancelled();
  }

  // Decides the step: every decoding sequence, then prompt chunks within the prefill budget, in
  // admission order; makes room in the KV pool by preempting the most recently admitted
  // sequences, and ends the requests that cannot fit at all.
  StepPlan schedule() {
    // Sequences with one token to feed are decoding; longer tails are prompts (or recomputes).
    bool decoding = false;
    for (auto& s : running) decoding |= s->tail() == 1 && s->computed() > 0;
    int64_t budget = prefill_budget(decoding);

    StepPlan plan;
    std::sort(running.begin(), running.end(),
              [](const auto& a, const auto& b) { return a->admitted_order < b->admitted_order; });
    for (size_t i = 0; i < running.size();) {
      Seq& s = *running[i];
      const bool is_decode = s.tail() == 1 && s.computed() > 0;
      int64_t n = is_decode ? 1 : std::min(s.tail(), budget);
      if (!is_decode && scores_prompt(s)) n = std::min(n, kPromptScoreChunk);
      if (n <= 0) {
        ++i;
        continue;
      }
      // Make room in the KV pool by preempting the most recently admitted sequences (they sit
      // after this one: running is in admission order), this one last.
      bool preempted_self = false;
      for (;;) {
        try {
          s.cache->reserve_more(n);
          break;
        } catch (const KvPoolExhausted&) {
          if (running.size() == 1) {
            fail_group(*s.group, fmt::format("the KV cache ({} blocks of {} tokens) cannot hold this "
                                             "sequence of {} tokens",
                                             pool->max_blocks(), opts.block_size, s.tokens.size()));
            n = 0;
            break;
          }
          const size_t victim = running.size() - 1;
          preempt(victim);
          if (victim == i) {
            preempted_self = true;
            break;
          }
        } catch (const Error& e) {
          fail_group(*s.group, e.what());
          n = 0;
          break;
        }
      }
      if (preempted_self) break;  // it was the last one
      ++i;
      if (n == 0) continue;
      if (!is_decode) budget -= n;
      (is_decode ? plan.decode_tokens : plan.prefill_tokens) += n;
      plan.work.push_back({&s, n});
    }
    return plan;
  }

  // The forward pass's inputs for a plan: each sequence's new tokens, its cache, where its
  // logits go (none for a prompt chunk that does not complete the prompt).
  std::vector<SequenceInput> inputs(const StepPlan& plan) {
    std::vector<SequenceInput> batch;
    for (const StepPlan::Work& w : plan.work) {
      Seq& s = *w.seq;
      SequenceInput in;
      in.ids = std::span<const TokenId>(s.tokens.data() + s.computed(), static_cast<size_t>(w.n));
      in.cache = &*s.cache;
      const bool completes = w.n == s.tail();
      in.no_logits = !completes;
      if (scores_prompt(s)) {
        s.prompt_logits.resize(static_cast<size_t>(w.n * vocab));
        in.logits = s.prompt_logits;
        in.all_logits = true;
        in.no_logits = false;
      } else if (completes) {
        s.logits.resize(static_cast<size_t>(vocab));
        in.logits = s.logits;
      }
      in.rope_length = s.rope_length;
      batch.push_back(in);
    }
    return batch;
  }

  // Runs the plan's forward pass (on every rank under --tp: lm is then a TpLeader) and times
  // it for the scheduler's cost model. False when it failed: those requests are ended.
  bool execute(const StepPlan& plan, std::span<SequenceInput> batch) {
    const auto t0 = Clock::now();
    try {
      lm.forward_batch(batch);
      for (const SequenceInput& in : batch)
        if (!in.no_logits) require_finite_logits(in.logits);
    } catch (const std::exception& e) {
      // A failed step leaves these caches in an unknown state: end their requests.
      for (const StepPlan::Work& w : plan.work)
        fail_group(*w.seq->group, fmt::format("forward pass failed: {}", e.what()));
      return false;
    }
    const double dt = seconds_since(t0);
    auto ema = [](double& e, double v) { e = e <= 0 ? v : 0.8 * e + 0.2 * v; };
    if (plan.prefill_tokens == 0) ema(ema_decode_step, dt);
    if (plan.decode_tokens == 0) ema(ema_prefill_token, dt / static_cast<double>(plan.prefill_tokens));
    if (plan.decode_tokens > 0 && plan.prefill_tokens > 0 && ema_decode_step > 0)
      ema(ema_mixed_token, std::max(dt - ema_decode_step, 0.0) / static_cast<double>(plan.prefill_tokens));
    std::lock_guard lock(mu);
    ++stats.steps;
    stats.forward_seconds += dt;
    return true;
  }

  // The step's results: prompt-token events, blocks published for reuse, sampling and events;
  // finished sequences leave the running set.
  void complete(const StepPlan& plan, std::span<const SequenceInput> batch) {
    for (size_t i = 0; i < plan.work.size(); ++i) {
      Seq& s = *plan.work[i].seq;
      try {
        if (batch[i].all_logits) score_prompt(s, plan.work[i].n);
        publish_blocks(s);
        if (s.tail() == 0) after_logits(s);
      } catch (const std::exception& e) {  // one request's sampling failed: end it, keep serving
        fail_group(*s.group, fmt::format("sampling failed: {}", e.what()));
      }
    }
    std::erase_if(running, [](const auto& s) { return s->group->open_choices == 0 || s->done; });
  }

  // Publishes the sequence's newly filled blocks for reuse (only while its RoPE base is the
  // standard one: KV made under a dynamic-NTK base belongs to that sequence alone).
  void publish_blocks(Seq& s) {
    if (!opts.prefix_cache || !rope_is_standard(std::max(s.computed(), s.rope_length))) return;
    const int64_t bs = opts.block_size;
    const int64_t full = s.computed() / bs;
    for (; s.published < full; ++s.published) {
      std::span<const TokenId> toks(s.tokens.data() + s.published * bs, static_cast<size_t>(bs));
      pool->publish(s.cache->blocks()[static_cast<size_t>(s.published)], s.chain, toks);
      s.chain = KvBlockPool::chain_hash(s.chain, toks);
    }
  }

  // The chunk of n tokens just computed (ending at computed()) gave one logits row per token:
  // row t predicts the token after it. Emits the prompt tokens not scored before (a preempted
  // sequence recomputes, but sends nothing twice) and, when the chunk ends the prompt, leaves
  // its last row as the logits to sample from.
  void score_prompt(Seq& s, int64_t n) {
    const int64_t first = s.computed() - n;
    const int k = s.group->params.prompt_logprobs;
    for (int64_t t = 0; t < n; ++t) {
      const int64_t next = first + t + 1;
      std::span<const float> row(s.prompt_logits.data() + t * vocab, static_cast<size_t>(vocab));
      if (next < s.prompt_scored || next >= s.prompt_len) continue;
      EngineEvent ev;
      ev.kind = EngineEvent::Kind::PromptToken;
      ev.token = s.tokens[static_cast<size_t>(next)];
      ev.logprob = token_logprob(row, ev.token);
      if (k > 0) ev.top = top_logprobs(row, k);
      s.group->stream->push(std::move(ev));
      s.prompt_scored = next + 1;
    }
    if (s.tail() == 0) {
      const float* last = s.prompt_logits.data() + (n - 1) * vocab;
      s.logits.assign(last, last + vocab);
    }
    if (!scores_prompt(s)) std::vector<float>().swap(s.prompt_logits);
  }

  // The sequence's logits are fresh: fork the other choices (first time), then sample.
  void after_logits(Seq& s) {
    Group& g = *s.group;
    if (s.choice == 0 && !g.forked) {
      g.forked = true;
      for (int c = 1; c < g.params.n; ++c) {
        SamplingParams sp = g.params.sampling;
        sp.seed += static_cast<uint64_t>(c);
        auto child = std::make_unique<Seq>(s.group, c, sp);
        child->tokens = s.tokens;
        child->prompt_len = s.prompt_len;
        child->rope_length = s.rope_length;
        child->chain = s.chain;
        child->published = s.published;
        child->logits = s.logits;
        child->match = s.match;
        child->admitted_order = ++admissions;
        try {
          child->cache.emplace(s.cache->fork());
        } catch (const KvPoolExhausted&) {
          child->cache.reset();  // no block for its copy: it recomputes from the queue
          waiting.push_front(std::move(child));
          continue;
        }
        sample(*child);
        if (!child->done) running.push_back(std::move(child));
      }
    }
    sample(s);
  }

  void sample(Seq& s) {
    const RequestParams& p = s.group->params;
    std::span<float> logits(s.logits);
    if (opts.sample_vocab > 0 && opts.sample_vocab < vocab)
      std::fill(logits.begin() + opts.sample_vocab, logits.end(), -INFINITY);
    std::vector<float> raw;
    if (p.top_logprobs >= 0) raw.assign(logits.begin(), logits.end());
    std::span<const TokenId> prompt(s.tokens.data(), static_cast<size_t>(s.prompt_len));
    std::span<const TokenId> gen(s.tokens.data() + s.prompt_len, static_cast<size_t>(s.generated()));
    std::shared_ptr<const structured::TokenBits> allowed;
    sampling::TokenMask mask;
    const auto g0 = Clock::now();
    if (p.grammar) {
      bool hit = false;
      structured::GrammarStep step = p.grammar->next(*s.match, &hit);
      allowed = std::move(step.allowed);
      {
        std::lock_guard lock(mu);
        ++(hit ? stats.grammar_mask_hits : stats.grammar_mask_misses);
      }
      const bool any = std::any_of(allowed->begin(), allowed->end(), [](uint64_t w) { return w != 0; });
      mask = {allowed.get(), p.stop_ids, step.end_allowed, !any};
      if (!any && !(mask.end_allowed && !p.stop_ids.empty())) {
        // Never emit a token outside the grammar. Complete (and no end id, under ignore_eos):
        // the reply ends here. Not complete: a dead end the schema checks should have ruled out.
        if (!mask.end_allowed) throw Error("structured output reached a state with no allowed token");
        finish(s, "stop");
        s.done = true;
        return;
      }
    }
    const TokenId next = s.sampler.sample(logits, prompt, gen, p.grammar ? &mask : nullptr);
    if (p.grammar) {
      if (std::find(p.stop_ids.begin(), p.stop_ids.end(), next) == p.stop_ids.end())
        p.grammar->advance(*s.match, next);
      std::lock_guard lock(mu);
      stats.grammar_seconds += seconds_since(g0);  // the mask, the masked sampling, the matcher step
    }
    s.tokens.push_back(next);
    {
      std::lock_guard lock(mu);
      ++stats.generated_tokens;
    }
    if (std::find(p.stop_ids.begin(), p.stop_ids.end(), next) != p.stop_ids.end()) {
      finish(s, "stop", /*stop_token=*/true);
      s.done = true;
      return;
    }
    EngineEvent ev;
    ev.kind = EngineEvent::Kind::Token;
    ev.choice = s.choice;
    ev.token = next;
    if (p.top_logprobs >= 0) {
      ev.logprob = token_logprob(raw, next);
      if (p.top_logprobs > 0) ev.top = top_logprobs(raw, p.top_logprobs);
    }
    s.group->stream->push(std::move(ev));
    if (s.generated() >= p.max_tokens || static_cast<int64_t>(s.tokens.size()) >= opts.max_model_len) {
      finish(s, "length");
      s.done = true;
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Engine

Engine::Engine(CausalLM& lm, const EngineOptions& opts) : impl_(std::make_unique<Impl>(lm, opts)) {}
Engine::~Engine() = default;

const EngineOptions& Engine::options() const { return impl_->opts; }

std::shared_ptr<RequestStream> Engine::submit(RequestParams params) {
  Impl& im = *impl_;
  const int64_t P = static_cast<int64_t>(params.prompt.size());
  if (P == 0) throw Error("the prompt is empty");
  check_token_ids(params.prompt, im.vocab);
  if (params.n < 1 || params.n > im.opts.max_seqs)
    throw Error(fmt::format("n must be between 1 and {} (the server's max-seqs)", im.opts.max_seqs));
  if (params.max_tokens < 1) throw Error("max_tokens must be at least 1");
  if (params.top_logprobs > 20) throw Error("top_logprobs must be at most 20");
  if (params.prompt_logprobs > 20) throw Error("prompt_logprobs must be at most 20");
  params.sampling.end_ids = params.stop_ids;  // what min_tokens holds back: the ids that end a reply
  params.sampling.validate();
  const int64_t limit = im.opts.max_model_len;
  if (params.max_tokens > limit - P)  // not P + max_tokens > limit: that sum can overflow
    throw Error(fmt::format("this model's maximum context length is {} tokens, but more were requested "
                            "({} in the prompt, {} for the completion)",
                            limit, P, params.max_tokens));
  const int64_t blocks = blocks_for(P + params.max_tokens, im.opts.block_size) + params.n - 1;
  if (blocks > im.pool->max_blocks())
    throw Error(fmt::format("the request needs {} KV blocks of {} tokens but the KV cache has only {}",
                            blocks, im.opts.block_size, im.pool->max_blocks()));

  auto stream = std::make_shared<RequestStream>();
  stream->prompt_tokens_ = P;
  auto group = std::make_shared<Group>();
  group->stream = stream;
  group->open_choices = params.n;
  auto seq = std::make_unique<Seq>(group, 0, params.sampling);
  if (params.grammar) seq->match = params.grammar->start();
  seq->tokens = params.prompt;
  seq->prompt_len = P;
  group->params = std::move(params);
  {
    std::lock_guard lock(im.mu);
    if (im.draining || im.stopping) throw QueueFull("the server is shutting down");
    if (im.stats.waiting + static_cast<int>(im.incoming.size()) >= im.opts.max_waiting)
      throw QueueFull(fmt::format("too many requests waiting ({}); retry later", im.opts.max_waiting));
    im.incoming.push_back(std::move(seq));
    im.stats.prompt_tokens += static_cast<uint64_t>(P);
  }
  im.cv.notify_all();
  return stream;
}

EngineStats Engine::stats() const {
  std::lock_guard lock(impl_->mu);
  EngineStats s = impl_->stats;
  s.waiting = std::max<int>(s.waiting, static_cast<int>(impl_->incoming.size()));
  return s;
}

void Engine::drain() {
  Impl& im = *impl_;
  std::unique_lock lock(im.mu);
  im.draining = true;
  im.idle_cv.wait(lock, [&] { return !im.busy && im.incoming.empty(); });
}

}  // namespace ilm
