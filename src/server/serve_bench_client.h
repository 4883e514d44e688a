#pragma once
// `internlm bench-serve`: the HTTP side. One streamed OpenAI request per call, timed per
// content chunk, plus the small JSON calls the benchmark needs (/v1/models, /tokenize, /metrics).
#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/serve_bench_record.h"

namespace ilm::serve_bench {

// "http://host:port[/prefix][/v1]" -> scheme://host:port and the path prefix (without a
// trailing /v1, which the endpoints add). A URL without a scheme is http.
struct ServerUrl {
  std::string origin;  // "http://127.0.0.1:8080"
  std::string prefix;  // "" or "/some/prefix"
  std::string str() const { return origin + prefix; }
};
ServerUrl parse_server_url(const std::string& url);

struct StreamHooks {
  // Called from the request's thread each time new content chunks arrived (time, chunks so far).
  std::function<void(double t, size_t tokens)> on_token;
  // When set and true, the request is abandoned at its next chunk (connection closed).
  const std::atomic<bool>* cancel = nullptr;
};

class ApiClient {
 public:
  ApiClient(ServerUrl url, std::string api_key, double timeout_s);

  // POSTs `body` (which must ask for `stream: true`) to `path` ("/v1/completions" or
  // "/v1/chat/completions") and records the stream. Never throws for server or network
  // failures: they are in the record (ok = false, error = "HTTP 400: <body>" / transport error).
  RequestRecord stream(const std::string& path, const nlohmann::json& body, bool chat, int64_t prompt_tokens,
                       int64_t max_tokens, const StreamHooks& hooks = {}) const;

  // GET /v1/models -> the ids; throws ilm::Error with the status and body on failure.
  std::vector<std::string> models() const;
  // POST /tokenize {"model", "prompt"} -> "count"; nullopt when the server has no such endpoint.
  std::optional<int64_t> count_tokens(const std::string& model, const std::string& text) const;
  // GET /metrics (Prometheus text); nullopt when unavailable.
  std::optional<std::string> metrics() const;

  const ServerUrl& url() const { return url_; }

 private:
  ServerUrl url_;
  std::string api_key_;
  double timeout_s_;
};

}  // namespace ilm::serve_bench
