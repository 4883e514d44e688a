#include "server/serve_bench_client.h"

#include <httplib.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include <fmt/format.h>

#include "common/error.h"
#include "server/serve_bench_sse.h"

namespace ilm::serve_bench {

namespace {

constexpr size_t kMaxErrorBody = 2000;  // bytes of an error response kept in the record

std::string trimmed_body(std::string body) {
  while (!body.empty() && (body.back() == '\n' || body.back() == '\r' || body.back() == ' ')) body.pop_back();
  if (body.size() > kMaxErrorBody) body = fmt::format("{}...", body.substr(0, kMaxErrorBody));
  return body;
}

}  // namespace

ServerUrl parse_server_url(const std::string& url) {
  std::string rest = url;
  std::string scheme = "http";
  if (const size_t p = rest.find("://"); p != std::string::npos) {
    scheme = rest.substr(0, p);
    rest = rest.substr(p + 3);
  }
  if (scheme != "http" && scheme != "https") throw Error(fmt::format("--url {}: only http and https are supported", url));
  const size_t slash = rest.find('/');
  std::string host = rest.substr(0, slash);
  std::string path = slash == std::string::npos ? std::string() : rest.substr(slash);
  if (host.empty()) throw Error(fmt::format("--url {}: no host", url));
  while (!path.empty() && path.back() == '/') path.pop_back();
  if (path.size() >= 3 && path.compare(path.size() - 3, 3, "/v1") == 0) path.resize(path.size() - 3);
  return {fmt::format("{}://{}", scheme, host), path};
}

ApiClient::ApiClient(ServerUrl url, std::string api_key, double timeout_s)
    : url_(std::move(url)), api_key_(std::move(api_key)), timeout_s_(timeout_s) {}

namespace {

std::unique_ptr<httplib::Client> make_client(const ServerUrl& url, const std::string& api_key, double timeout_s) {
  auto cli = std::make_unique<httplib::Client>(url.origin);
  const auto whole = static_cast<time_t>(timeout_s);
  const auto usec = static_cast<time_t>(std::llround((timeout_s - static_cast<double>(whole)) * 1e6));
  cli->set_connection_timeout(10, 0);
  cli->set_read_timeout(whole, usec);  // the longest silence between two reads, e.g. a long prefill
  cli->set_write_timeout(whole, usec);
  cli->set_keep_alive(false);
  if (!api_key.empty()) cli->set_bearer_token_auth(api_key);
  return cli;
}

std::string describe(httplib::Error e) { return fmt::format("request failed: {}", httplib::to_string(e)); }

}  // namespace

RequestRecord ApiClient::stream(const std::string& path, const nlohmann::json& body, bool chat, int64_t prompt_tokens,
                                int64_t max_tokens, const StreamHooks& hooks) const {
  RequestRecord r;
  r.prompt_tokens = prompt_tokens;
  r.max_tokens = max_tokens;
  auto cli = make_client(url_, api_key_, timeout_s_);

  httplib::Request req;
  req.method = "POST";
  req.path = url_.prefix + path;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.set_header("Accept", "text/event-stream");
  req.set_header("Accept-Encoding", "identity");  // a compressed stream would arrive in bursts

  int status = 0;
  std::string error_body;
  SseParser parser;
  StreamRecorder recorder(r, chat);
  bool cancelled = false;
  req.response_handler = [&](const httplib::Response& res) {
    status = res.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    const double t = now_s();
    if (hooks.cancel && hooks.cancel->load()) {
      cancelled = true;
      return false;
    }
    if (status != 200) {
      if (error_body.size() < kMaxErrorBody) error_body.append(data, std::min(n, kMaxErrorBody));
      return true;
    }
    const size_t before = recorder.tokens();
    parser.feed(std::string_view(data, n), [&](std::string_view d) { recorder.on_data(d, t); });
    if (hooks.on_token && recorder.tokens() != before) hooks.on_token(t, recorder.tokens());
    return true;
  };

  httplib::Response res;
  httplib::Error error = httplib::Error::Success;
  r.start = now_s();
  const bool sent = cli->send(req, res, error);
  const double t_end = now_s();
  r.http_status = status;
  if (cancelled) {
    r.end = t_end;
    r.cancelled = true;
    r.error = "cancelled by the benchmark";
    return r;
  }
  if (!sent && status == 0) {
    r.end = t_end;
    r.error = describe(error);
    return r;
  }
  if (status != 200) {
    r.end = t_end;
    r.error = fmt::format("HTTP {}: {}", status, trimmed_body(error_body.empty() ? res.body : error_body));
    return r;
  }
  parser.finish([&](std::string_view d) { recorder.on_data(d, t_end); });
  recorder.finish(t_end);
  if (!sent) {  // the stream broke after a 200
    r.ok = false;
    r.error = fmt::format("{} (after HTTP 200, {} content chunks)", describe(error), r.token_times.size());
  }
  return r;
}

std::vector<std::string> ApiClient::models() const {
  auto cli = make_client(url_, api_key_, timeout_s_);
  const std::string path = url_.prefix + "/v1/models";
  httplib::Result res = cli->Get(path);
  if (!res) throw Error(fmt::format("GET {}{}: {}", url_.origin, path, describe(res.error())));
  if (res->status != 200)
    throw Error(fmt::format("GET {}{}: HTTP {}: {}", url_.origin, path, res->status, trimmed_body(res->body)));
  nlohmann::json j = nlohmann::json::parse(res->body, nullptr, false);
  std::vector<std::string> ids;
  if (j.is_object() && j.contains("data") && j["data"].is_array())
    for (const auto& m : j["data"])
      if (m.is_object() && m.contains("id") && m["id"].is_string()) ids.push_back(m["id"].get<std::string>());
  if (ids.empty()) throw Error(fmt::format("GET {}{}: no model ids in {}", url_.origin, path, trimmed_body(res->body)));
  return ids;
}

std::optional<int64_t> ApiClient::count_tokens(const std::string& model, const std::string& text) const {
  auto cli = make_client(url_, api_key_, timeout_s_);
  const std::string path = url_.prefix + "/tokenize";
  const nlohmann::json body = {{"model", model}, {"prompt", text}};
  httplib::Result res = cli->Post(path, body.dump(), "application/json");
  if (!res || res->status == 404 || res->status == 405) return std::nullopt;
  if (res->status != 200)
    throw Error(fmt::format("POST {}{}: HTTP {}: {}", url_.origin, path, res->status, trimmed_body(res->body)));
  nlohmann::json j = nlohmann::json::parse(res->body, nullptr, false);
  if (j.is_object() && j.contains("count") && j["count"].is_number_integer()) return j["count"].get<int64_t>();
  if (j.is_object() && j.contains("tokens") && j["tokens"].is_array()) return static_cast<int64_t>(j["tokens"].size());
  throw Error(fmt::format("POST {}{}: no token count in {}", url_.origin, path, trimmed_body(res->body)));
}

std::optional<std::string> ApiClient::metrics() const {
  auto cli = make_client(url_, api_key_, std::min(timeout_s_, 10.0));
  httplib::Result res = cli->Get(url_.prefix + "/metrics");
  if (!res || res->status != 200) return std::nullopt;
  return res->body;
}

}  // namespace ilm::serve_bench
