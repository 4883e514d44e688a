// `internlm serve`: the OpenAI-compatible HTTP server over the serving engine.
#include <CLI/CLI.hpp>
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "common/error.h"
#include "common/progress.h"
#include "runtime/engine.h"
#include "runtime/tensor_parallel.h"
#include "server/allocator_policy.h"
#include "server/api_keys.h"
#include "server/http_server.h"
#include "server/log.h"
#include "tokenizer/jinja_template.h"

namespace ilm::cli {

namespace {

namespace log = server::log;

// The name `--model demo` (or `internlm serve demo`) gives the built-in synthetic checkpoint.
constexpr const char* kDemoModel = "demo";

struct ServeArgs {
  ModelArgs model;
  std::string positional_model;  // `internlm serve DIR`, as `vllm serve MODEL`
  server::ServerOptions http;
  EngineOptions engine;
  std::string served_model_name;
  double max_body_mb = 8;
  int64_t max_request_bytes = 0;  // 0: --max-body-mb decides
  bool no_prefix_cache = false, enable_prefix_caching = true;
  std::string kv_dtype = "bf16";
  std::string api_key_file;
  std::string log_level = "info", log_format = "text", uvicorn_log_level;
  bool disable_log_requests = false;
  std::string chat_template;  // --chat-template: a file, or (as vLLM) the template text itself
};

// The checkpoint directory from the positional argument or --model; "demo" is the built-in
// synthetic model. No model at all is refused: random weights must be asked for.
std::filesystem::path model_dir(const ServeArgs& a) {
  if (!a.positional_model.empty() && !a.model.model.empty() && a.positional_model != a.model.model)
    throw Error(fmt::format("two models given: '{}' and --model '{}'", a.positional_model, a.model.model));
  const std::string m = a.positional_model.empty() ? a.model.model : a.positional_model;
  if (m.empty())
    throw Error(
        "no model given: run `internlm serve DIR` (or --model DIR) with a checkpoint directory, e.g. one "
        "downloaded with `huggingface-cli download internlm/internlm2_5-7b-chat --local-dir DIR`; "
        "`internlm serve --model demo` serves the built-in demo model (a tiny synthetic checkpoint: real "
        "tokenizer, random weights, so its replies are gibberish)");
  if (m == kDemoModel) return resolve_model_dir("");
  return m;
}

// --api-key (repeatable), --api-key-file and INTERNLM_API_KEY together.
std::vector<std::string> api_keys(const ServeArgs& a) {
  std::vector<std::string> keys = a.http.api_keys;
  if (!a.api_key_file.empty())
    for (auto& k : server::read_api_key_file(a.api_key_file)) keys.push_back(std::move(k));
  if (const char* env = std::getenv("INTERNLM_API_KEY"); env && *env) keys.emplace_back(env);
  std::sort(keys.begin(), keys.end());  // the same key from two sources counts once
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

// --chat-template: a file (the template's text, or JSON with a "chat_template" string as
// tokenizer_config.json), or, as vLLM accepts, the template itself when no such file exists.
std::shared_ptr<const JinjaTemplate> load_chat_template(const std::string& arg) {
  std::error_code ec;
  if (std::filesystem::is_regular_file(arg, ec)) {
    auto t = std::make_shared<const JinjaTemplate>(JinjaTemplate::load_file(arg));
    log::info("chat template loaded", {{"file", arg}});
    return t;
  }
  if (arg.find_first_of("{}\n") != std::string::npos) {
    auto t = std::make_shared<const JinjaTemplate>(JinjaTemplate::parse(arg, "--chat-template"));
    log::info("chat template loaded", {{"file", "(the --chat-template text)"}});
    return t;
  }
  throw Error(fmt::format("--chat-template: no such file '{}'", arg));
}

void configure_logging(const ServeArgs& a) {
  const auto level = log::parse_level(a.log_level);
  if (!level) throw Error(fmt::format("--log-level must be trace, debug, info, warning, error, critical or off, not '{}'", a.log_level));
  const auto format = log::parse_format(a.log_format);
  if (!format) throw Error(fmt::format("--log-format must be text or json, not '{}'", a.log_format));
  log::configure(*level, *format);
}

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
  configure_logging(a);
  // SIGINT/SIGTERM are taken by one thread with sigwait (no work in a signal handler); they are
  // blocked before any thread starts so that every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client that hangs up must not kill the server
  server::set_allocator_policy();

  // Everything that can be refused is checked before the port opens and the (slow) model load.
  a.engine.kv_dtype = parse_kv_cache_dtype_arg(a.kv_dtype);
  a.engine.prefix_cache = a.enable_prefix_caching && !a.no_prefix_cache;
  if (a.max_body_mb <= 0) throw Error("--max-body-mb must be positive");
  a.http.max_body_bytes = a.max_request_bytes > 0 ? static_cast<size_t>(a.max_request_bytes)
                                                  : static_cast<size_t>(a.max_body_mb * 1024 * 1024);
  if (a.http.http_threads <= 0) a.http.http_threads = std::max(64, 4 * a.engine.max_seqs);
  a.http.api_keys = api_keys(a);
  if (!a.chat_template.empty()) a.http.chat_template = load_chat_template(a.chat_template);
  a.http.log_requests = !a.disable_log_requests;
  a.model.model = model_dir(a).string();
  a.http.model_name = a.served_model_name.empty() ? default_model_name(a.model.model) : a.served_model_name;

  // Loads the model (the progress on stderr, or as info lines of the log).
  auto load = [&] {
    const auto t0 = std::chrono::steady_clock::now();
    log::info("loading the model", {{"dir", a.model.model}, {"backend", a.model.backend}, {"quant", a.model.quant}});
    std::unique_ptr<LoadProgress> progress;
    if (log::enabled(log::Level::Info)) {
      const ProgressSink to_log = [](const std::string& line) { log::info(line); };
      if (a.log_format == "json")
        progress = std::make_unique<PlainProgress>("loading", to_log);
      else
        progress = make_load_progress("loading", to_log);
    }
    LoadedModel loaded = a.model.load(progress.get());
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log::info("model loaded", {{"seconds", std::round(load_s * 100) / 100}});
    return loaded;
  };

  // --tp N: every rank loads its shard first; the other ranks then only follow rank 0's steps
  // (no port, no engine: their SIGINT / SIGTERM stay blocked, rank 0's shutdown ends them).
  std::optional<LoadedModel> m;
  if (a.model.tp > 1) {
    m.emplace(load());
    if (m->follower()) {
      log::info("tensor parallel: following rank 0", {{"rank", m->comm->rank()}, {"ranks", m->comm->size()}});
      follow(*m->lm, *m->comm);
      log::info("stopped");
      return;
    }
  }

  // The port opens first (--tp: after the load): /health says 503 "loading" until the model is
  // ready.
  server::HttpServer http(a.http);
  const int port = http.bind();
  log::info(m ? "port open" : "port open, loading the model", {{"url", fmt::format("http://{}:{}", a.http.host, port)}});
  std::thread server_thread([&] { http.serve(); });

  std::atomic<bool> done{false};
  std::thread shutdown_thread;
  std::thread signal_thread([&] {
    const timespec tick{0, 200'000'000};
    int received = 0;
    while (!done) {
      const int sig = sigtimedwait(&signals, nullptr, &tick);
      if (sig < 0) continue;
      const char* name = sig == SIGINT ? "SIGINT" : "SIGTERM";
      if (!http.ready()) {
        log::warn("signal while loading: exiting", {{"signal", name}});
        std::_Exit(0);
      }
      if (++received == 1) {
        log::warn("finishing in-flight requests, then exiting (again to force)", {{"signal", name}});
        shutdown_thread = std::thread([&] { http.shutdown(); });
      } else {
        log::warn("second signal: exiting now", {{"signal", name}});
        std::_Exit(1);
      }
    }
  });
  // On a failed load the server threads must be stopped before the error propagates.
  auto stop_threads = [&] {
    done = true;
    signal_thread.join();
    if (!shutdown_thread.joinable()) http.shutdown();
    server_thread.join();
    if (shutdown_thread.joinable()) shutdown_thread.join();
  };

  std::optional<Engine> engine;  // after m: destroyed first (rank 0's TpLeader outlives it)
  try {
    if (!m) m.emplace(load());
    a.engine.sample_vocab = m->tokenizer->vocab_size();
    if (auto* leader = dynamic_cast<TpLeader*>(m->lm.get())) {
      a.engine.idle_tick = [leader] { leader->heartbeat(); };
      a.engine.idle_tick_seconds = TpLeader::heartbeat_seconds();
    }
    engine.emplace(*m->lm, a.engine);
    http.attach(*engine, *m->tokenizer, m->stop_ids(), default_sampling(m->generation));
  } catch (...) {
    stop_threads();
    throw;
  }

  const auto& o = engine->options();
  const EngineStats st = engine->stats();
  if (a.engine.max_model_len > o.max_model_len)  // the engine caps it at the model's context limit
    log::warn("--max-model-len is beyond the model's context limit (max_position_embeddings x the rope scaling "
              "factor); capped",
              {{"requested", a.engine.max_model_len}, {"max_model_len", o.max_model_len}});
  log::info("ready", {{"model", a.http.model_name},
                      {"dir", m->dir.string()},
                      {"max_seqs", o.max_seqs},
                      {"max_model_len", o.max_model_len},
                      {"kv_cache_gib", std::round(o.kv_cache_gb * 100) / 100},
                      {"kv_cache_dtype", a.kv_dtype},
                      {"kv_bytes_per_token", m->lm->kv_bytes_per_token(o.kv_dtype)},
                      // Tokens of context the pool holds across all sequences at once.
                      {"max_concurrent_context_tokens", st.kv_blocks_total * o.block_size},
                      {"block_size", o.block_size},
                      {"prefix_cache", o.prefix_cache},
                      {"api_keys", a.http.api_keys.size()},
                      {"tp", m->comm->size()}});
  std::printf("listening on http://%s:%d\n", a.http.host.c_str(), port);
  std::fflush(stdout);
  server_thread.join();
  done = true;
  signal_thread.join();
  if (shutdown_thread.joinable()) shutdown_thread.join();
  log::info("stopped");
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto args = std::make_shared<ServeArgs>();
  args->http.http_threads = 0;  // 0: chosen from max_seqs
  CLI::App* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server (chat/completions, streaming, metrics)");
  args->model.add_to(*cmd);
  args->model.add_tp_to(*cmd);
  cmd->add_option("model", args->positional_model,
                  "Checkpoint directory, as in `vllm serve MODEL` (or --model DIR; 'demo': the built-in "
                  "tiny synthetic model)");
  auto& h = args->http;
  auto& e = args->engine;
  cmd->add_option("--host", h.host, "Address to listen on (default 127.0.0.1: this machine only)");
  cmd->add_option("--port", h.port, "Port (0: any free port; the chosen one is printed)")->check(CLI::Range(0, 65535));
  cmd->add_option("--api-key", h.api_keys,
                  "Require 'Authorization: Bearer KEY' (all routes but /health, /metrics); repeat for several "
                  "keys (also INTERNLM_API_KEY)")
      ->take_all()->allow_extra_args(false);
  cmd->add_option("--api-key-file", args->api_key_file, "File of accepted API keys, one per line ('#' comments)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--allowed-origins", h.allowed_origins,
                  "CORS: origins whose browsers may call the API ('*': any; repeat or comma-separate; default none)")
      ->allow_extra_args(false);
  cmd->add_option("--sse-keepalive-seconds", h.sse_keepalive_seconds,
                  "A stream with nothing to send writes an SSE comment ': keep-alive' this often (0: never)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--log-level", args->log_level, "trace, debug, info (default), warning, error, critical or off");
  cmd->add_option("--log-format", args->log_format, "Log lines on stderr as text (default) or json (one object per line)");
  cmd->add_flag("--disable-log-requests", args->disable_log_requests, "No access log line per request (as vLLM's flag)");
  cmd->add_option("--uvicorn-log-level", args->uvicorn_log_level, "Accepted for vLLM compatibility; ignored (see --log-level)");
  cmd->add_option("--chat-template", args->chat_template,
                  "Chat template FILE (template text, or JSON with \"chat_template\" as tokenizer_config.json; "
                  "a Jinja subset, see README) instead of the built-in InternLM2 one");
  cmd->add_option("--served-model-name", args->served_model_name, "Model name in the API (default: the checkpoint dir's name)");
  cmd->add_option("--max-seqs,--max-num-seqs", e.max_seqs, "Sequences decoding at once (n > 1 counts each choice)")->check(CLI::PositiveNumber);
  cmd->add_option("--max-model-len", e.max_model_len, "Prompt + completion tokens per sequence (0: the model's)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--kv-cache-gb", e.kv_cache_gb, "KV cache pool in GiB (0: enough for max-seqs full sequences, at most 4)")->check(CLI::NonNegativeNumber);
  add_kv_cache_dtype_option(*cmd, args->kv_dtype, "");
  cmd->add_option("--block-size", e.block_size, "Tokens per KV block (prefix-reuse granularity)")->check(CLI::PositiveNumber);
  cmd->add_option("--max-waiting", e.max_waiting, "Queued requests beyond this get 429")->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-prefill-chunk,--max-num-batched-tokens", e.max_prefill_chunk, "Prompt tokens per step when nothing decodes")->check(CLI::PositiveNumber);
  cmd->add_option("--itl-budget", e.itl_budget, "A prefilling step costs at most ~this many decode steps")->check(CLI::PositiveNumber);
  cmd->add_flag("--no-prefix-cache", args->no_prefix_cache, "Do not reuse the KV of shared prompt prefixes");
  cmd->add_flag("--enable-prefix-caching,!--no-enable-prefix-caching", args->enable_prefix_caching,
                "vLLM's names: reuse the KV of shared prompt prefixes (default on)");
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
