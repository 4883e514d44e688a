#pragma once
// The OpenAI-compatible HTTP front end of one Engine: routes, API key, request parsing,
// streaming (Server-Sent Events), client disconnects, metrics and graceful shutdown. Clients
// talk to a ConnectionGate (an event loop that admits only complete requests within their caps
// and deadlines); cpp-httplib's worker threads, on a loopback port behind it, handle them.
//
//   POST /v1/chat/completions, /v1/completions   generation (stream or whole)
//   GET  /v1/models, /v1/models/{name}           the served model
//   POST /tokenize, /detokenize                  the tokenizer, for clients that count tokens
//   GET  /health                                 200 while serving, 503 while loading or draining
//   GET  /metrics                                Prometheus text (vLLM's names; server/metrics.h)
//
// The port opens before the model is loaded (attach() makes it ready): meanwhile every route
// answers 503 (/health and /metrics with {"status": "loading"}). With API keys set, every route
// except /health and /metrics needs "Authorization: Bearer KEY" with one of them. Every response
// carries X-Request-Id (the client's, sanitized, or a new one) and, for an allowed Origin, CORS
// headers; OPTIONS preflights are answered before authentication. Each request gets one access
// log line (server/access_log.h). A stream waiting for tokens sends an SSE comment
// (": keep-alive") every sse_keepalive_seconds, so idle-timeout proxies do not cut it.
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "runtime/engine.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace ilm {
class JinjaTemplate;
}

namespace ilm::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                   // 0: any free port (bind() returns it)
  std::vector<std::string> api_keys;  // empty: no authentication
  std::vector<std::string> allowed_origins;  // CORS (server/cors.h); empty: none
  double sse_keepalive_seconds = 15;  // <= 0: no keep-alive comments
  bool log_requests = true;           // the access log
  std::string model_name;            // the name clients must use (or omit)
  size_t max_body_bytes = 8u << 20;  // larger request bodies get 413
  int http_threads = 64;             // complete requests handled at once (more wait for a worker)
  int keep_alive_seconds = 5;        // an idle keep-alive connection is closed after this
  int64_t max_tokens_default = 4096; // a non-streaming chat request without max_tokens: at most this many
  std::shared_ptr<const JinjaTemplate> chat_template;  // --chat-template; null: the built-in template
  // The connection gate's limits (server/connection_gate.h): head size and fields (431),
  // head deadline and minimum body rate (408), open connections in all and per client address.
  size_t max_head_bytes = 64u << 10;
  int max_header_fields = 100;
  double head_timeout_seconds = 10;
  double body_min_bytes_per_second = 64 << 10;
  int max_connections = 4096;
  int max_connections_per_client = 1024;
};

class HttpServer {
 public:
  // Answers 503 "loading" until attach().
  explicit HttpServer(ServerOptions opts);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Makes the server ready, once, from any thread (serve() may be running): `stop_ids` end every
  // reply; `defaults` are the sampling values for fields a request omits.
  void attach(Engine& engine, const Tokenizer& tok, std::vector<TokenId> stop_ids, SamplingParams defaults);
  bool ready() const;

  // Binds the listening socket; returns the port (the chosen one for port 0). Throws ilm::Error.
  int bind();
  // Serves until shutdown() (blocks the calling thread).
  void serve();
  // Graceful stop, from any thread while serve() runs or is about to (attached or not): new generation requests
  // get 503, queued and running ones finish (Engine::drain) and their responses are written,
  // then serve() returns; shutdown() returns after it.
  void shutdown();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ilm::server
