#include "server/http_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <functional>
#include <mutex>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "common/error.h"
#include "server/access_log.h"
#include "server/allocator_policy.h"
#include "server/api_keys.h"
#include "server/connection_gate.h"
#include "server/cors.h"
#include "server/generation.h"
#include "server/metrics.h"
#include "server/openai_request.h"
#include "server/openai_response.h"
#include "server/peer_socket.h"
#include "structured/grammar_cache.h"

namespace ilm::server {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status();
  if (e.status() == 429) res.set_header("Retry-After", "1");
  // An unread rest of a too-large body would be parsed as the next request: the client must not reuse it.
  if (e.status() == 413) res.set_header("Connection", "close");
  res.set_content(dump_json(error_json(e)), "application/json");
}

// The connection gate's counters in Prometheus text (its own answers never reach the workers,
// so internlm_http_requests_total does not count them).
std::string gate_metrics(const GateCounters& c) {
  std::string out;
  auto one = [&](const char* name, const char* help, const char* type, int64_t v) {
    out += fmt::format("# HELP {0} {1}\n# TYPE {0} {2}\n{0} {3}\n", name, help, type, v);
  };
  one("internlm_http_connections_open", "Client connections open now.", "gauge", c.open);
  one("internlm_http_connections_accepted_total", "Client connections accepted.", "counter", c.accepted);
  one("internlm_http_connections_evicted_total",
      "Connections closed to make room at the per-client or total cap.", "counter", c.evicted);
  one("internlm_http_connections_timed_out_total",
      "Connections closed at a head, body-rate or idle deadline.", "counter", c.timed_out);
  one("internlm_http_requests_refused_total",
      "Requests the gate answered itself (400/413/431/501/505) or refused at accept.", "counter", c.refused);
  return out;
}

// a followed by the ids of b it lacks.
std::vector<TokenId> with(std::vector<TokenId> a, const std::vector<TokenId>& b) {
  for (TokenId id : b)
    if (std::find(a.begin(), a.end(), id) == a.end()) a.push_back(id);
  return a;
}

uint64_t random_seed() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng();
}

// cpp-httplib 0.11.4 listens with a backlog of 5, compiled into Debian's shared library: a
// burst of connections beyond it gets its SYNs dropped (retried a second later) or fails.
// Calling listen() again on the bound socket raises the backlog.
class Listener : public httplib::Server {
 public:
  bool raise_backlog() { return ::listen(svr_sock_, SOMAXCONN) == 0; }
};

// The request a worker thread is handling, from its pre-routing handler to its logger (httplib
// runs both, the route and a stream's content provider on the same thread).
struct CurrentRequest {
  bool active = false;
  AccessRecord rec;
  Clock::time_point start;
};
thread_local CurrentRequest current;

constexpr size_t kMaxLoggedPath = 256;

void send_loading(httplib::Response& res, bool status_body) {
  res.status = 503;
  res.set_header("Retry-After", "5");
  if (status_body)
    res.set_content(dump_json({{"status", "loading"}}), "application/json");
  else
    send_error(res, ApiError(503, "the model is still loading; retry shortly", {}, "model_loading"));
}

// The request outcome for /metrics: the first choice's finish reason; the mean per-token time
// of the choices that had one.
RequestOutcome outcome(const GenerationResult& r, double e2e) {
  RequestOutcome o;
  o.prompt_tokens = r.prompt_tokens;
  o.completion_tokens = r.completion_tokens;
  o.time_to_first_token = r.time_to_first_token;
  o.e2e_seconds = e2e;
  double sum = 0;
  int k = 0;
  for (const auto& c : r.choices)
    if (c.time_per_output_token >= 0) {
      sum += c.time_per_output_token;
      ++k;
    }
  if (k > 0) o.time_per_output_token = sum / k;
  o.finish_reason = r.client_gone ? "abort" : r.choices.empty() ? "stop" : r.choices.front().finish_reason;
  return o;
}

}  // namespace

struct HttpServer::Impl {
  // What attach() provides: the model side of the server.
  struct Model {
    Model(Engine& e, const Tokenizer& t, std::vector<TokenId> s) : engine(e), tok(t), stop_ids(std::move(s)), grammars(t) {}
    Engine& engine;
    const Tokenizer& tok;
    std::vector<TokenId> stop_ids;
    structured::GrammarCache grammars;
    ParseContext ctx;
  };

  ServerOptions opts;
  ApiKeys keys;
  CorsPolicy cors;
  std::unique_ptr<Model> model;
  std::atomic<Model*> ready{nullptr};  // set once the model is attached
  Listener http;  // the workers, on a loopback port
  ConnectionGate gate;
  int upstream_port = 0;
  Metrics metrics;
  int64_t created = static_cast<int64_t>(std::time(nullptr));

  // Generation requests whose response is not finished yet (shutdown waits for them).
  std::mutex mu;
  std::condition_variable cv;
  int active = 0;
  std::atomic<bool> draining{false};
  std::atomic<bool> served{false};  // serve() has returned

  // Held by a generation request until its response is written (or abandoned).
  struct Active {
    Impl* impl;
    explicit Active(Impl* i) : impl(i) {
      std::lock_guard lock(impl->mu);
      ++impl->active;
    }
    ~Active() {
      std::lock_guard lock(impl->mu);
      if (--impl->active == 0) impl->cv.notify_all();
    }
    Active(const Active&) = delete;
    Active& operator=(const Active&) = delete;
  };

  // A streaming response in flight: the request and its Generation live until httplib has
  // written the last chunk (or given up on the client).
  struct StreamCall {
    explicit StreamCall(Impl* impl) : active(impl) {}
    Active active;
    GenerationRequest req;
    ResponseMeta meta;
    std::unique_ptr<Generation> gen;
    Clock::time_point start;
  };

  explicit Impl(ServerOptions o)
      : opts(std::move(o)), keys(opts.api_keys), cors(opts.allowed_origins), gate(gate_limits(opts), gate_error_body),
        metrics(opts.model_name) {
    routes();
  }

  void attach(Engine& e, const Tokenizer& t, std::vector<TokenId> stops, SamplingParams defaults) {
    if (model) throw Error("the server already has its model");
    auto m = std::make_unique<Model>(e, t, std::move(stops));
    ParseContext& ctx = m->ctx;
    ctx.tokenizer = &m->tok;
    ctx.grammars = &m->grammars;
    ctx.model_name = opts.model_name;
    ctx.defaults = defaults;
    ctx.max_n = std::max(1, e.options().max_seqs);
    ctx.max_model_len = e.options().max_model_len;
    ctx.max_tokens_default = opts.max_tokens_default;
    ctx.chat_template = opts.chat_template.get();
    metrics.set_max_model_len(e.options().max_model_len);
    model = std::move(m);
    ready.store(model.get());
  }

  // The attached model; routes reach it only once ready (the pre-routing handler answers 503 before).
  Model& M() const { return *ready.load(); }

  static GateLimits gate_limits(const ServerOptions& o) {
    GateLimits l;
    l.head.max_bytes = o.max_head_bytes;
    l.head.max_fields = o.max_header_fields;
    l.max_body_bytes = o.max_body_bytes;
    l.head_timeout_s = o.head_timeout_seconds;
    l.idle_timeout_s = o.keep_alive_seconds;
    l.body_min_rate = o.body_min_bytes_per_second;
    l.max_connections = o.max_connections;
    l.max_connections_per_client = o.max_connections_per_client;
    return l;
  }
  static std::string gate_error_body(int status, const std::string& message, const std::string& code) {
    return dump_json(error_json(ApiError(status, message, {}, code)));
  }

  void check_auth(const httplib::Request& req) const {
    if (!keys.required()) return;
    const std::string h = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (h.size() <= prefix.size() || h.compare(0, prefix.size(), prefix) != 0 || !keys.accepts(h.substr(prefix.size())))
      throw ApiError(401, h.empty() ? "Missing API key: send 'Authorization: Bearer <key>'" : "Incorrect API key provided",
                     {}, "invalid_api_key");
  }

  // Runs a route body: its ApiError (or any other failure) becomes an OpenAI error object.
  void guarded(const httplib::Request& req, httplib::Response& res, bool auth, const std::function<void()>& body) {
    try {
      if (auth) check_auth(req);
      body();
    } catch (const ApiError& e) {
      send_error(res, e);
    } catch (const Error& e) {
      send_error(res, bad_request(e.what()));
    } catch (const std::exception& e) {
      send_error(res, ApiError(500, fmt::format("internal error: {}", e.what())));
    }
  }

  // Reads the body with the size limit for both Content-Length and chunked uploads
  // (httplib 0.11.4 checks the limit only for the former).
  std::string read_body(httplib::Response& res, const httplib::ContentReader& reader) const {
    std::string body;
    bool too_large = false;
    const bool ok = reader([&](const char* data, size_t len) {
      if (body.size() + len > opts.max_body_bytes) {
        too_large = true;
        return false;
      }
      body.append(data, len);
      return true;
    });
    if (too_large || res.status == 413)
      throw ApiError(413, fmt::format("the request body exceeds {} bytes", opts.max_body_bytes), {},
                     "request_too_large");
    if (!ok) throw bad_request("could not read the request body");
    return body;
  }

  void post(const std::string& path, std::function<void(const httplib::Request&, httplib::Response&, const std::string&)> fn) {
    http.Post(path, [this, fn](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
      // The body is read before the key is checked: a body left unread would be parsed as the
      // connection's next request.
      guarded(req, res, /*auth=*/false, [&] {
        // Only JSON is read (httplib would hand a multipart body to a reader nobody set).
        const std::string type = req.get_header_value("Content-Type");
        std::string lower_type = type.substr(0, 10);
        for (char& c : lower_type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (lower_type == "multipart/")
          throw ApiError(415, fmt::format("unsupported Content-Type '{}': send the request as application/json", type),
                         {}, "unsupported_media_type");
        // Declared first, so it runs last: after the body and everything made from it are
        // freed, also when the request is refused by an exception.
        struct TrimOnExit {
          size_t bytes = 0;
          ~TrimOnExit() { trim_after_large_request(bytes); }
        } trim;
        const std::string body = read_body(res, reader);
        trim.bytes = body.size();
        check_auth(req);
        fn(req, res, body);
      });
    });
  }

  // Starts the access record of the request this worker thread handles.
  static void begin(const httplib::Request& req) {
    current = CurrentRequest{};
    current.active = true;
    current.start = Clock::now();
    AccessRecord& r = current.rec;
    r.request_id = sanitize_request_id(req.get_header_value("X-Request-Id"));
    if (r.request_id.empty()) r.request_id = new_request_id();
    r.method = req.method.substr(0, 16);
    r.path = req.path.substr(0, kMaxLoggedPath);
    // The connection gate names the client; a request straight to the loopback port has none.
    r.client = req.has_header("X-Internlm-Peer") ? req.get_header_value("X-Internlm-Peer") : req.remote_addr;
  }

  // The headers a browser asks to send, echoed when they are plain field names (the official
  // clients send their own x-stainless-* fields); else the fixed list.
  static std::string allow_headers(const std::string& requested) {
    if (requested.empty() || requested.size() > 1024) return CorsPolicy::kAllowHeaders;
    for (unsigned char c : requested)
      if (!(std::isalnum(c) || c == '-' || c == '_' || c == ',' || c == ' ')) return CorsPolicy::kAllowHeaders;
    return requested;
  }

  // Runs before routing: the request id, CORS headers, preflights, and the loading state.
  // True: answered here.
  bool front(const httplib::Request& req, httplib::Response& res) {
    begin(req);
    res.set_header("X-Request-Id", current.rec.request_id);
    if (cors.enabled()) {
      res.set_header("Vary", "Origin");
      const std::string allow = cors.allow_origin(req.get_header_value("Origin"));
      if (!allow.empty()) {
        res.set_header("Access-Control-Allow-Origin", allow);
        res.set_header("Access-Control-Expose-Headers", CorsPolicy::kExposeHeaders);
      }
    }
    if (req.method == "OPTIONS") {  // a preflight: before authentication, as browsers send no key
      res.status = 204;
      res.set_header("Access-Control-Allow-Methods", CorsPolicy::kAllowMethods);
      res.set_header("Access-Control-Allow-Headers", allow_headers(req.get_header_value("Access-Control-Request-Headers")));
      res.set_header("Access-Control-Max-Age", CorsPolicy::kMaxAge);
      return true;
    }
    if (!ready.load()) {
      send_loading(res, req.path == "/health" || req.path == "/metrics");
      return true;
    }
    return false;
  }

  void routes() {
    post("/v1/chat/completions",
         [this](const auto& req, auto& res, const std::string& body) { generate(req, res, body, Endpoint::Chat); });
    post("/v1/completions",
         [this](const auto& req, auto& res, const std::string& body) { generate(req, res, body, Endpoint::Completions); });
    post("/tokenize", [this](const auto&, auto& res, const std::string& body) {
      const json j = parse_body(body);
      check_model(j);
      const int64_t max_len = M().engine.options().max_model_len;
      const auto ids = parse_tokenize_request(j, M().tok, max_len, M().ctx.chat_template);
      res.set_content(dump_json({{"tokens", ids}, {"count", ids.size()}, {"max_model_len", max_len}}),
                      "application/json");
    });
    post("/detokenize", [this](const auto&, auto& res, const std::string& body) {
      const json j = parse_body(body);
      check_model(j);
      const auto d = parse_detokenize_request(j, M().tok);
      res.set_content(dump_json({{"prompt", M().tok.decode(d.tokens, d.skip_special_tokens)}}), "application/json");
    });
    http.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
      guarded(req, res, true, [&] {
        res.set_content(dump_json({{"object", "list"}, {"data", json::array({model_card()})}}), "application/json");
      });
    });
    http.Get(R"(/v1/models/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      guarded(req, res, true, [&] {
        if (req.matches[1] != opts.model_name)
          throw ApiError(404, fmt::format("The model '{}' does not exist", req.matches[1].str()), "model",
                         "model_not_found");
        res.set_content(dump_json(model_card()), "application/json");
      });
    });
    http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      res.status = draining ? 503 : 200;
      res.set_content(dump_json({{"status", draining ? "draining" : "ok"}}), "application/json");
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      const Engine& e = M().engine;
      res.set_content(metrics.render(e.stats(), e.options().prefix_cache) + gate_metrics(gate.counters()),
                      "text/plain; version=0.0.4; charset=utf-8");
    });

    // Anything httplib answers by itself (unknown path, bad request line) gets a JSON error too.
    http.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty() || res.content_provider_) return httplib::Server::HandlerResponse::Unhandled;
      const std::string msg = res.status == 404 ? fmt::format("Unknown path: {} {}", req.method, req.path)
                                                : fmt::format("HTTP error {}", res.status);
      send_error(res, ApiError(res.status, msg, {}, res.status == 404 ? "not_found" : ""));
      return httplib::Server::HandlerResponse::Handled;
    }));
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      return front(req, res) ? httplib::Server::HandlerResponse::Handled : httplib::Server::HandlerResponse::Unhandled;
    });
    http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      metrics.count_request(req.path, res.status);
      if (!current.active) begin(req);  // a request httplib refused before routing
      current.active = false;
      if (!opts.log_requests) return;
      AccessRecord& r = current.rec;
      r.status = res.status;
      r.total_seconds = seconds_since(current.start);
      log_access(r);
    });
    // Second line of defence: the gate enforces the body cap before a worker sees a request,
    // but the workers' loopback port is reachable from this machine. (Keep-alive is the gate's
    // business: every relayed request asks its worker to close.)
    http.set_payload_max_length(opts.max_body_bytes);
    const size_t threads = static_cast<size_t>(std::max(1, opts.http_threads));
    http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  }

  json model_card() const {
    return {{"id", opts.model_name},
            {"object", "model"},
            {"created", created},
            {"owned_by", "internlm.cpp"},
            {"max_model_len", M().engine.options().max_model_len}};
  }

  void check_model(const json& j) const {
    auto it = j.find("model");
    if (it == j.end() || it->is_null()) return;
    if (!it->is_string()) throw bad_request("'model' must be a string", "model");
    if (it->get_ref<const std::string&>() != opts.model_name)
      throw ApiError(404, fmt::format("The model '{}' does not exist", it->get<std::string>()), "model",
                     "model_not_found");
  }

  // Submits one engine request per prompt; on any refusal, cancels those already submitted.
  std::vector<std::unique_ptr<EventSource>> submit(const GenerationRequest& g) {
    Engine& engine = M().engine;
    const std::vector<TokenId>& stop_ids = M().stop_ids;
    const int64_t max_len = engine.options().max_model_len;
    // What one request can hold in the KV pool (the engine reserves a block per extra choice).
    const EngineStats st = engine.stats();
    const int64_t kv_tokens = std::max<int64_t>(0, st.kv_blocks_total - (g.n - 1)) * st.block_size;
    std::vector<int64_t> max_tokens;
    for (const auto& p : g.prompts)
      max_tokens.push_back(resolve_max_tokens(g, static_cast<int64_t>(p.size()), max_len, kv_tokens));
    std::vector<std::unique_ptr<EventSource>> sources;
    auto refuse = [&](const ApiError& e) {
      for (auto& s : sources) s->cancel();
      throw e;
    };
    for (int64_t m : max_tokens)
      if (g.sampling.min_tokens > m)
        throw bad_request(fmt::format("min_tokens ({}) must not exceed max_tokens ({})", g.sampling.min_tokens, m),
                          "min_tokens");
    for (size_t k = 0; k < g.prompts.size(); ++k) {
      RequestParams p;
      p.prompt = g.prompts[k];
      p.max_tokens = max_tokens[k];
      p.sampling = g.sampling;
      p.sampling.seed += static_cast<uint64_t>(k) * static_cast<uint64_t>(g.n);  // the engine adds the choice
      p.stop_ids = g.ignore_eos ? g.stop_token_ids : with(stop_ids, g.stop_token_ids);
      p.n = g.n;
      p.top_logprobs = g.logprobs;
      p.grammar = g.grammar;
      if (g.echo && g.logprobs >= 0) p.prompt_logprobs = g.logprobs;  // the echoed prompt's scores
      try {
        sources.push_back(wrap(engine.submit(std::move(p))));
      } catch (const QueueFull& e) {
        if (draining) refuse(ApiError(503, "the server is shutting down", {}, "shutting_down"));
        refuse(ApiError(429, fmt::format("The server is busy ({}); retry shortly", e.what()), {}, "queue_full",
                        "rate_limit_error"));
      } catch (const Error& e) {
        refuse(bad_request(e.what()));
      }
    }
    return sources;
  }

  // Metrics and the access log's token counts (the latter on the worker thread running the request).
  void record(const GenerationResult& r, Clock::time_point start) {
    metrics.record(outcome(r, seconds_since(start)));
    current.rec.prompt_tokens = r.prompt_tokens;
    current.rec.completion_tokens = r.completion_tokens;
    current.rec.ttft_seconds = r.time_to_first_token;
  }

  void generate(const httplib::Request& req, httplib::Response& res, const std::string& body, Endpoint ep) {
    const auto start = Clock::now();
    auto call = std::make_shared<StreamCall>(this);
    call->start = start;
    const json j = parse_body(body);
    ParseContext c = M().ctx;
    c.raw_body = body;
    call->req = ep == Endpoint::Chat ? parse_chat_request(j, c) : parse_completion_request(j, c);
    if (draining) throw ApiError(503, "the server is shutting down", {}, "shutting_down");
    GenerationRequest& g = call->req;
    if (!g.seed_given) g.sampling.seed = random_seed();
    // The response id carries the request id (as vLLM's does), so a log line finds its response.
    const std::string id = current.rec.request_id.empty() ? make_response_id(ep)
                           : fmt::format("{}-{}", ep == Endpoint::Chat ? "chatcmpl" : "cmpl", current.rec.request_id);
    call->meta = {id, static_cast<int64_t>(std::time(nullptr)), opts.model_name, ep, g.logprobs >= 0};
    call->gen = std::make_unique<Generation>(M().tok, g, submit(g));

    if (!g.stream) {
      const PeerWatch peer(req.local_addr, req.local_port, req.remote_addr, req.remote_port);
      const GenerationResult r = call->gen->run({}, [&] { return peer.closed(); }, start);
      if (r.client_gone) {
        record(r, start);
        res.status = 499;  // nobody is left to read it (nginx's "client closed request")
        return;
      }
      if (!r.error.empty()) throw ApiError(500, r.error);
      record(r, start);
      res.set_content(dump_json(response_json(call->meta, r)), "application/json");
      return;
    }

    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");  // proxies must not buffer the stream
    res.set_chunked_content_provider("text/event-stream", [this, call](size_t, httplib::DataSink& sink) {
      return stream(*call, sink);
    });
  }

  // Writes the whole event stream of one request; false (the connection is given up) when the
  // client went away, after the engine request was cancelled.
  bool stream(StreamCall& call, httplib::DataSink& sink) {
    const ResponseMeta& meta = call.meta;
    const bool usage = call.req.include_usage;
    auto last_write = Clock::now();
    auto write = [&](const std::string& s) {
      last_write = Clock::now();
      return sink.write(s.data(), s.size());
    };
    // Polled while no event comes: a comment line (ignored by SSE clients) after each quiet
    // interval keeps idle-timeout proxies from cutting a stream queued behind long prompts.
    const double keepalive = opts.sse_keepalive_seconds;
    auto gone = [&] {
      if (keepalive > 0 && seconds_since(last_write) >= keepalive && !write(": keep-alive\n\n")) return true;
      return !sink.is_writable();
    };
    if (meta.endpoint == Endpoint::Chat) {
      const int choices = static_cast<int>(call.req.prompts.size()) * call.req.n;
      for (int i = 0; i < choices; ++i)
        if (!write(sse_event(role_chunk(meta, i, usage)))) return false;  // ~Generation cancels
    }
    const GenerationResult r = call.gen->run(
        [&](ChoiceDelta&& d) { return write(sse_event(delta_chunk(meta, d, usage))); }, gone, call.start);
    if (r.client_gone) {
      record(r, call.start);
      return false;
    }
    if (!r.error.empty()) {
      write(sse_event(error_json(ApiError(500, r.error))));
    } else {
      record(r, call.start);
      if (usage) write(sse_event(usage_chunk(meta, r)));
    }
    write(kSseDone);
    sink.done();
    return true;
  }
};

HttpServer::HttpServer(ServerOptions opts) : impl_(std::make_unique<Impl>(std::move(opts))) {}

void HttpServer::attach(Engine& engine, const Tokenizer& tok, std::vector<TokenId> stop_ids, SamplingParams defaults) {
  impl_->attach(engine, tok, std::move(stop_ids), defaults);
}

bool HttpServer::ready() const { return impl_->ready.load() != nullptr; }

HttpServer::~HttpServer() = default;

int HttpServer::bind() {
  Impl& s = *impl_;
  s.upstream_port = s.http.bind_to_any_port("127.0.0.1");
  if (s.upstream_port < 0 || !s.http.raise_backlog()) throw Error("cannot listen on a loopback port for the HTTP workers");
  return s.gate.listen(s.opts.host, s.opts.port);
}

void HttpServer::serve() {
  Impl& s = *impl_;
  if (!s.draining) {
    std::atomic<bool> workers_done{false};
    std::thread workers([&] {
      s.http.listen_after_bind();
      workers_done = true;
    });
    s.gate.run(s.upstream_port);  // until shutdown() stops it, after the last response went out
    while (!workers_done && !s.http.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (s.http.is_running()) s.http.stop();
    workers.join();
  }
  s.served = true;
}

void HttpServer::shutdown() {
  Impl& s = *impl_;
  s.draining = true;
  if (Impl::Model* m = s.ready.load()) m->engine.drain();  // every queued and running request finishes
  {
    // ... and its response is written to the end (the last events follow the engine's Finish).
    std::unique_lock lock(s.mu);
    s.cv.wait_for(lock, std::chrono::seconds(30), [&] { return s.active == 0; });
  }
  // The gate hands out what the workers wrote, closes every connection and returns from run();
  // serve() then stops the workers. A signal before serve() started finds run() returning at once.
  s.gate.stop(10);
  while (!s.served) std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

}  // namespace ilm::server
