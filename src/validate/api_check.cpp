// Stage 6, API: `internlm serve` on a free loopback port, each endpoint checked over HTTP —
// chat, completions, streaming (SSE to [DONE], same text as non-streaming at temperature 0),
// models, tokenize (same ids as this tokenizer), metrics, health, invalid requests (4xx with an
// OpenAI error object) — then SIGTERM and a clean exit. Every exchange is logged to
// api-exchanges.jsonl in the report folder.
#include <httplib.h>

#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "tokenizer/chat_template.h"
#include "validate/serve_process.h"
#include "validate/stages.h"

namespace ilm::validate {

std::string httplib_version() { return CPPHTTPLIB_VERSION; }

namespace {

using nlohmann::json;

struct Exchange {
  int status = 0;  // 0: no response
  std::string body, content_type, error;
  double seconds = 0;
};

class ApiClient {
 public:
  ApiClient(const std::string& host, int port, double timeout_s, const std::filesystem::path& log)
      : cli_(host, port), log_(log) {
    const auto secs = static_cast<time_t>(timeout_s);
    cli_.set_read_timeout(secs, 0);
    cli_.set_write_timeout(secs, 0);
    cli_.set_connection_timeout(10, 0);
  }
  Exchange get(const std::string& path) { return record("GET", path, "", cli_.Get(path.c_str())); }
  Exchange post(const std::string& path, const std::string& body) {
    return record("POST", path, body, cli_.Post(path.c_str(), body, "application/json"));
  }

 private:
  httplib::Client cli_;
  std::ofstream log_;
  double t0_ = now_seconds();

  Exchange record(const char* method, const std::string& path, const std::string& req, httplib::Result res) {
    Exchange e;
    e.seconds = now_seconds() - t0_;
    if (res) {
      e.status = res->status;
      e.body = res->body;
      e.content_type = res->get_header_value("Content-Type");
    } else {
      e.error = httplib::to_string(res.error());
    }
    json line = {{"method", method}, {"path", path}, {"request", req}, {"status", e.status},
                 {"content_type", e.content_type}, {"response", e.body.substr(0, 4000)}, {"error", e.error}};
    log_ << line.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
    t0_ = now_seconds();
    return e;
  }
};

std::string brief(const std::string& s, size_t n = 160) {
  std::string t = s.size() > n ? fmt::format("{}...", s.substr(0, n)) : s;
  for (auto& ch : t)
    if (ch == '\n' || ch == '\r') ch = ' ';
  return t;
}

std::string what(const Exchange& e) {
  if (e.status == 0) return fmt::format("no response ({})", e.error);
  return fmt::format("HTTP {}: {}", e.status, brief(e.body));
}

bool is_error_object(const std::string& body) {
  try {
    const json j = json::parse(body);
    return j.contains("error") && j["error"].is_object() && j["error"].contains("message") &&
           j["error"]["message"].is_string();
  } catch (const json::exception&) {
    return false;
  }
}

}  // namespace

void stage_api(Context& ctx, StageResult& r) {
  const Options& o = ctx.opts;
  if (!ctx.model) {
    r.skip(fmt::format("the model did not load ({})", ctx.model_error));
    return;
  }
  ServeProcess serve;
  try {
    ctx.note("starting internlm serve on a free loopback port");
    serve = start_serve(ctx, "serve-api", {"--max-seqs", "4"});
  } catch (const Error& e) {
    r.expect(false, "api.start", "Server starts", e.what());
    return;
  }
  const std::string src = fmt::format("{} ; HTTP requests from validate (cpp-httplib), logged in api-exchanges.jsonl",
                                      shell_join(serve.argv));
  r.data["command"] = shell_join(serve.argv);
  r.data["url"] = serve.url();
  r.data["startup_seconds"] = serve.startup_seconds;
  auto emit = [&](std::string id, std::string name, bool ok, std::string detail, Status bad = Status::Fail) {
    Check c;
    c.id = fmt::format("api.{}", id);
    c.name = std::move(name);
    c.status = ok ? Status::Pass : bad;
    c.detail = std::move(detail);
    c.source = src;
    r.add(c);
  };
  emit("start", "Server starts", true,
       fmt::format("listening on {} after {:.2f} s", serve.url(), serve.startup_seconds));

  ApiClient api(serve.host, serve.port, ctx.th.get("api.request_timeout_s"), o.out_dir / "api-exchanges.jsonl");
  LoadedModel& m = *ctx.model;
  std::string model_name;

  {
    const Exchange e = api.get("/health");
    emit("health", "GET /health", e.status == 200, what(e));
  }
  {
    const Exchange e = api.get("/v1/models");
    bool ok = e.status == 200;
    try {
      const json j = json::parse(e.body);
      model_name = j.at("data").at(0).at("id").get<std::string>();
      ok = ok && !model_name.empty() && j.value("object", "") == "list";
    } catch (const std::exception&) {
      ok = false;
    }
    emit("models", "GET /v1/models", ok, ok ? fmt::format("HTTP 200, model id '{}'", model_name) : what(e));
  }

  const std::string user = "你好，请介绍一下你自己";
  const int max_tokens = 8;
  std::string chat_text;
  {
    const json req = {{"model", model_name}, {"messages", {{{"role", "user"}, {"content", user}}}},
                      {"max_tokens", max_tokens}, {"temperature", 0}};
    const Exchange e = api.post("/v1/chat/completions", req.dump());
    bool ok = e.status == 200;
    std::string detail = what(e);
    try {
      const json j = json::parse(e.body);
      const auto& ch = j.at("choices").at(0);
      chat_text = ch.at("message").at("content").get<std::string>();
      const auto ct = j.at("usage").at("completion_tokens").get<int64_t>();
      const auto pt = j.at("usage").at("prompt_tokens").get<int64_t>();
      const auto fr = ch.at("finish_reason").get<std::string>();
      const auto local = encode_chat(*m.tokenizer, {{"user", user}}, true);
      ok = ok && j.value("object", "") == "chat.completion" && ct >= 1 && ct <= max_tokens &&
           (fr == "stop" || fr == "length") && pt == static_cast<int64_t>(local.size());
      detail = fmt::format("HTTP {}, {} prompt tokens (local template: {}), {} completion tokens, finish {}", e.status, pt,
                           local.size(), ct, fr);
    } catch (const std::exception& ex) {
      ok = false;
      detail += fmt::format(" ({})", ex.what());
    }
    emit("chat", "POST /v1/chat/completions", ok, detail);
  }
  {
    const json req = {{"model", model_name}, {"messages", {{{"role", "user"}, {"content", user}}}},
                      {"max_tokens", max_tokens}, {"temperature", 0}, {"stream", true},
                      {"stream_options", {{"include_usage", true}}}};
    const Exchange e = api.post("/v1/chat/completions", req.dump());
    bool done = false, usage = false, ok = e.status == 200 && e.content_type.find("text/event-stream") != std::string::npos;
    std::string text, problem;
    int chunks = 0;
    size_t pos = 0;
    while (pos < e.body.size()) {
      size_t nl = e.body.find('\n', pos);
      if (nl == std::string::npos) nl = e.body.size();
      std::string line = e.body.substr(pos, nl - pos);
      pos = nl + 1;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.rfind("data: ", 0) != 0) continue;
      const std::string data = line.substr(6);
      if (data == "[DONE]") {
        done = true;
        continue;
      }
      try {
        const json j = json::parse(data);
        ++chunks;
        if (j.contains("usage") && j["usage"].is_object()) usage = true;
        if (j.contains("choices") && !j["choices"].empty() && j["choices"][0].contains("delta") &&
            j["choices"][0]["delta"].contains("content") && j["choices"][0]["delta"]["content"].is_string())
          text += j["choices"][0]["delta"]["content"].get<std::string>();
      } catch (const json::exception& ex) {
        problem = fmt::format("unparsable chunk {:?}: {}", brief(data, 60), ex.what());
      }
    }
    const bool same = text == chat_text;
    ok = ok && done && usage && problem.empty() && same;
    emit("stream", "Streaming chat (SSE)", ok,
         ok ? fmt::format("{} chunks, usage chunk, ends with [DONE]; text equals the non-streaming reply", chunks)
            : fmt::format("{}; content-type '{}', [DONE] {}, usage {}, text {}{}", e.status ? fmt::format("HTTP {}", e.status) : what(e),
                          e.content_type, done, usage,
                          same ? "same as non-streaming" : fmt::format("{:?} differs from non-streaming {:?}", text, chat_text),
                          problem.empty() ? std::string() : fmt::format("; {}", problem)));
  }
  {
    const std::string prompt = "The capital of France is";
    const json req = {{"model", model_name}, {"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}};
    const Exchange e = api.post("/v1/completions", req.dump());
    bool ok = e.status == 200;
    std::string detail = what(e);
    try {
      const json j = json::parse(e.body);
      const std::string text = j.at("choices").at(0).at("text").get<std::string>();
      const auto ct = j.at("usage").at("completion_tokens").get<int64_t>();
      ok = ok && j.value("object", "") == "text_completion" && ct >= 1 && ct <= max_tokens;
      detail = fmt::format("HTTP {}, {} completion tokens, text {:?}", e.status, ct, brief(text, 60));
    } catch (const std::exception& ex) {
      ok = false;
      detail += fmt::format(" ({})", ex.what());
    }
    emit("completions", "POST /v1/completions", ok, detail);
  }
  {
    const std::string text = tokenizer_samples().front();
    const Exchange e = api.post("/tokenize", json{{"prompt", text}}.dump());
    bool ok = e.status == 200;
    std::string detail = what(e);
    try {
      const json j = json::parse(e.body);
      const auto ids = j.at("tokens").get<std::vector<TokenId>>();
      const auto local = m.tokenizer->encode(text, true);
      ok = ok && ids == local && j.at("count").get<size_t>() == ids.size();
      detail = fmt::format("HTTP {}, {} tokens, {} the local tokenizer's", e.status, ids.size(),
                           ids == local ? "equal to" : "DIFFERENT from");
    } catch (const std::exception& ex) {
      ok = false;
      detail += fmt::format(" ({})", ex.what());
    }
    emit("tokenize", "POST /tokenize", ok, detail);
  }
  {
    const Exchange e = api.get("/metrics");
    const bool ok = e.status == 200 && e.body.find("# TYPE") != std::string::npos &&
                    e.body.find("internlm_http_requests_total") != std::string::npos;
    emit("metrics", "GET /metrics (Prometheus)", ok,
         ok ? fmt::format("HTTP 200, {} bytes of Prometheus text with request counters", e.body.size()) : what(e));
    r.data["metrics_excerpt"] = e.body.substr(0, 2000);
  }
  {
    const Exchange bad_json = api.post("/v1/chat/completions", "{not json");
    const Exchange no_msgs = api.post("/v1/chat/completions", json{{"model", model_name}, {"max_tokens", 4}}.dump());
    const Exchange too_long = api.post(
        "/v1/completions", json{{"model", model_name}, {"prompt", "hi"}, {"max_tokens", 1LL << 40}}.dump());
    const Exchange unknown = api.get("/v1/no-such-endpoint");
    auto is4xx = [](const Exchange& e) { return e.status >= 400 && e.status < 500 && is_error_object(e.body); };
    const bool ok = is4xx(bad_json) && is4xx(no_msgs) && is4xx(too_long) && unknown.status == 404;
    emit("invalid", "Invalid requests -> 4xx JSON error", ok,
         fmt::format("invalid JSON -> {}, no messages -> {}, max_tokens beyond the context -> {}, unknown path -> {}{}",
                     bad_json.status, no_msgs.status, too_long.status, unknown.status,
                     ok ? " (OpenAI error objects)" : fmt::format("; e.g. {}", what(bad_json))));
  }

  ctx.note("stopping the server (SIGTERM)");
  const int st = serve.proc->stop(30);
  emit("shutdown", "Graceful shutdown (SIGTERM)", st == 0,
       st == 0 ? "exited 0 after SIGTERM"
               : fmt::format("exit status {} after SIGTERM; last lines of serve-api.log:\n{}", st,
                             tail_lines(serve.stderr_log, 5)));
}

}  // namespace ilm::validate
