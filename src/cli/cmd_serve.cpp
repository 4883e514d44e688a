// `internlm serve`: the OpenAI-compatible HTTP server over the serving engine.
#include <CLI/CLI.hpp>
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdio>
#include <ctime>
#include <thread>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "common/error.h"
#include "runtime/engine.h"
#include "server/allocator_policy.h"
#include "server/http_server.h"

namespace ilm::cli {

namespace {

struct ServeArgs {
  ModelArgs model;
  server::ServerOptions http;
  EngineOptions engine;
  std::string served_model_name;
  double max_body_mb = 8;
  int64_t max_request_bytes = 0;  // 0: --max-body-mb decides
  bool no_prefix_cache = false;
  std::string kv_dtype = "f32";
};

// Defaults for sampling fields a request leaves out: OpenAI's (temperature 1, no top-k/top-p),
// overridden by the values generation_config.json sets, as vLLM does.
SamplingParams default_sampling(const GenerationConfig& gen) {
  SamplingParams s;
  s.temperature = static_cast<float>(gen.temperature.value_or(1.0));
  if (gen.top_p) s.top_p = static_cast<float>(*gen.top_p);
  if (gen.top_k) s.top_k = static_cast<int32_t>(std::clamp<int64_t>(*gen.top_k, 0, INT32_MAX));
  if (gen.repetition_penalty) s.repetition_penalty = static_cast<float>(*gen.repetition_penalty);
  return s;
}

std::string default_model_name(const std::filesystem::path& dir) {
  auto p = dir.lexically_normal();
  if (p.filename().empty()) p = p.parent_path();  // "dir/" -> "dir"
  return p.filename().string();
}

void serve(ServeArgs a) {
  // SIGINT/SIGTERM are taken by one thread with sigwait (no work in a signal handler); they are
  // blocked before any thread starts so that every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client that hangs up must not kill the server
  server::set_allocator_policy();

  const auto kv_dtype = parse_kv_cache_dtype(a.kv_dtype);  // before the (slow) model load
  if (!kv_dtype) throw Error(fmt::format("--kv-cache-dtype must be f32, bf16, f16 or int8, not '{}'", a.kv_dtype));
  a.engine.kv_dtype = *kv_dtype;
  LoadedModel m = a.model.load();
  a.engine.prefix_cache = !a.no_prefix_cache;
  a.engine.sample_vocab = m.tokenizer->vocab_size();
  Engine engine(*m.lm, a.engine);

  a.http.model_name = a.served_model_name.empty() ? default_model_name(m.dir) : a.served_model_name;
  if (a.max_body_mb <= 0) throw Error("--max-body-mb must be positive");
  a.http.max_body_bytes = a.max_request_bytes > 0 ? static_cast<size_t>(a.max_request_bytes)
                                                  : static_cast<size_t>(a.max_body_mb * 1024 * 1024);
  if (a.http.http_threads <= 0) a.http.http_threads = std::max(64, 4 * engine.options().max_seqs);
  server::HttpServer http(engine, *m.tokenizer, m.stop_ids(), default_sampling(m.generation), a.http);
  const int port = http.bind();

  std::atomic<bool> done{false};
  std::thread shutdown_thread;
  std::thread signal_thread([&] {
    const timespec tick{0, 200'000'000};
    int received = 0;
    while (!done) {
      const int sig = sigtimedwait(&signals, nullptr, &tick);
      if (sig < 0) continue;
      if (++received == 1) {
        std::fprintf(stderr, "serve: %s: finishing in-flight requests, then exiting (again to force)\n",
                     sig == SIGINT ? "SIGINT" : "SIGTERM");
        shutdown_thread = std::thread([&] { http.shutdown(); });
      } else {
        std::fprintf(stderr, "serve: second signal: exiting now\n");
        std::_Exit(1);
      }
    }
  });

  const auto& o = engine.options();
  std::fprintf(stderr, "serve: model '%s' from %s, max_seqs %d, max_model_len %lld, KV cache %.2f GiB %s in blocks of %lld tokens\n",
               a.http.model_name.c_str(), m.dir.string().c_str(), o.max_seqs, static_cast<long long>(o.max_model_len),
               o.kv_cache_gb, a.kv_dtype.c_str(), static_cast<long long>(o.block_size));
  std::printf("listening on http://%s:%d\n", a.http.host.c_str(), port);
  std::fflush(stdout);
  http.serve();
  done = true;
  signal_thread.join();
  if (shutdown_thread.joinable()) shutdown_thread.join();
  std::fprintf(stderr, "serve: stopped\n");
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto args = std::make_shared<ServeArgs>();
  args->http.http_threads = 0;  // 0: chosen from max_seqs
  CLI::App* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server (chat/completions, streaming, metrics)");
  args->model.add_to(*cmd);
  auto& h = args->http;
  auto& e = args->engine;
  cmd->add_option("--host", h.host, "Address to listen on (default 127.0.0.1: this machine only)");
  cmd->add_option("--port", h.port, "Port (0: any free port; the chosen one is printed)")->check(CLI::Range(0, 65535));
  cmd->add_option("--api-key", h.api_key, "Require 'Authorization: Bearer KEY' (all routes but /health, /metrics)");
  cmd->add_option("--served-model-name", args->served_model_name, "Model name in the API (default: the checkpoint dir's name)");
  cmd->add_option("--max-seqs", e.max_seqs, "Sequences decoding at once (n > 1 counts each choice)")->check(CLI::PositiveNumber);
  cmd->add_option("--max-model-len", e.max_model_len, "Prompt + completion tokens per sequence (0: the model's)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--kv-cache-gb", e.kv_cache_gb, "KV cache pool in GiB (0: enough for max-seqs full sequences, at most 4)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--kv-cache-dtype", args->kv_dtype,
                  "KV cache element type: f32 (default, exact), bf16 or f16 (half the memory; K/V rounded to "
                  "8 / 11 significant bits), int8 (about a quarter: one scale per head and token, K/V off by up "
                  "to 1/254 of the head's largest value)");
  cmd->add_option("--block-size", e.block_size, "Tokens per KV block (prefix-reuse granularity)")->check(CLI::PositiveNumber);
  cmd->add_option("--max-waiting", e.max_waiting, "Queued requests beyond this get 429")->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-prefill-chunk", e.max_prefill_chunk, "Prompt tokens per step when nothing decodes")->check(CLI::PositiveNumber);
  cmd->add_option("--itl-budget", e.itl_budget, "A prefilling step costs at most ~this many decode steps")->check(CLI::PositiveNumber);
  cmd->add_flag("--no-prefix-cache", args->no_prefix_cache, "Do not reuse the KV of shared prompt prefixes");
  cmd->add_option("--max-body-mb", args->max_body_mb, "Largest request body in MiB (413 beyond)");
  cmd->add_option("--max-tokens-default", h.max_tokens_default, "max_tokens of a non-streaming chat request that leaves it out or null (at most the rest of the context)")->check(CLI::PositiveNumber);
  cmd->add_option("--max-request-bytes", args->max_request_bytes, "Largest request body in bytes (413 beyond; overrides --max-body-mb, default 8 MiB)")->check(CLI::PositiveNumber);
  cmd->add_option("--http-threads", h.http_threads, "Complete requests handled at once (default: max(64, 4 x max-seqs))")->check(CLI::NonNegativeNumber);
  // The connection gate (server/connection_gate.h): what slow, idle or oversized clients may cost.
  cmd->add_option("--max-head-bytes", h.max_head_bytes, "Largest request head (request line + header fields; 431 beyond)")->check(CLI::Range(1024, 16 << 20));
  cmd->add_option("--max-header-fields", h.max_header_fields, "Most header fields in a request (431 beyond)")->check(CLI::Range(1, 10000));
  cmd->add_option("--head-timeout", h.head_timeout_seconds, "Seconds a request head may take to arrive (408, then closed)")->check(CLI::PositiveNumber);
  cmd->add_option("--body-min-rate", h.body_min_bytes_per_second, "Bytes/s a request body must keep up after a 10 s grace (408 below)")->check(CLI::PositiveNumber);
  cmd->add_option("--keep-alive-timeout", h.keep_alive_seconds, "Seconds an idle keep-alive connection stays open")->check(CLI::PositiveNumber);
  cmd->add_option("--max-connections", h.max_connections, "Open client connections in all (the oldest idle one makes room)")->check(CLI::PositiveNumber);
  cmd->add_option("--max-connections-per-client", h.max_connections_per_client, "Open connections per client address (its oldest idle one makes room)")->check(CLI::PositiveNumber);
  cmd->callback([args] { serve(*args); });
}

}  // namespace ilm::cli
