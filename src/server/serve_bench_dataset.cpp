#include "server/serve_bench_dataset.h"

#include <algorithm>
#include <fstream>
#include <random>

#include <fmt/format.h>

#include "common/error.h"

namespace ilm::serve_bench {

std::vector<BenchRequest> random_token_requests(int count, int64_t input_len, int64_t output_len, uint64_t seed,
                                                int64_t id_lo, int64_t id_hi) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> dist(id_lo, id_hi);
  std::vector<BenchRequest> out;
  out.reserve(static_cast<size_t>(std::max(count, 0)));
  for (int i = 0; i < count; ++i) {
    BenchRequest r;
    r.input = nlohmann::json::array();
    for (int64_t k = 0; k < input_len; ++k) r.input.push_back(dist(rng));
    r.prompt_len = input_len;
    r.max_tokens = output_len;
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<BenchRequest> load_dataset(const std::filesystem::path& path, int64_t output_len) {
  std::ifstream in(path);
  if (!in) throw Error(fmt::format("--dataset {}: cannot open", path.string()));
  std::vector<BenchRequest> out;
  std::string line;
  int64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto where = [&] { return fmt::format("--dataset {}:{}", path.string(), lineno); };
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw Error(fmt::format("{}: not a JSON object", where()));
    BenchRequest r;
    r.max_tokens = output_len;
    if (j.contains("max_tokens")) {
      if (!j["max_tokens"].is_number_integer() || j["max_tokens"].get<int64_t>() <= 0)
        throw Error(fmt::format("{}: max_tokens must be a positive integer", where()));
      r.max_tokens = j["max_tokens"].get<int64_t>();
    }
    if (j.contains("messages")) {
      const auto& m = j["messages"];
      if (!m.is_array() || m.empty()) throw Error(fmt::format("{}: messages must be a non-empty array", where()));
      for (const auto& msg : m)
        if (!msg.is_object() || !msg.contains("role") || !msg.contains("content"))
          throw Error(fmt::format("{}: each message needs a role and a content", where()));
      r.chat = true;
      r.input = m;
    } else if (j.contains("prompt")) {
      const auto& p = j["prompt"];
      if (p.is_string()) {
        r.input = p;
      } else if (p.is_array() && !p.empty() && std::all_of(p.begin(), p.end(), [](const auto& v) {
                   return v.is_number_integer();
                 })) {
        r.input = p;
        r.prompt_len = static_cast<int64_t>(p.size());
      } else {
        throw Error(fmt::format("{}: prompt must be a string or an array of token ids", where()));
      }
    } else {
      throw Error(fmt::format("{}: needs \"prompt\" or \"messages\"", where()));
    }
    out.push_back(std::move(r));
  }
  if (out.empty()) throw Error(fmt::format("--dataset {}: no requests in the file", path.string()));
  return out;
}

std::vector<BenchRequest> load_sharegpt(const std::filesystem::path& path, int64_t output_len) {
  std::ifstream in(path);
  if (!in) throw Error(fmt::format("--dataset-path {}: cannot open", path.string()));
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_array())
    throw Error(fmt::format("--dataset-path {}: a ShareGPT file is a JSON array of {{\"conversations\": [...]}}",
                            path.string()));
  std::vector<BenchRequest> out;
  for (const auto& entry : j) {
    if (!entry.is_object() || !entry.contains("conversations") || !entry["conversations"].is_array()) continue;
    const auto& turns = entry["conversations"];
    if (turns.size() < 2 || !turns[0].is_object() || !turns[1].is_object()) continue;
    const auto prompt = turns[0].find("value"), reply = turns[1].find("value");
    if (prompt == turns[0].end() || reply == turns[1].end() || !prompt->is_string() || !reply->is_string()) continue;
    BenchRequest r;
    r.input = *prompt;
    r.max_tokens = output_len > 0 ? output_len : 0;
    r.reference_reply = reply->get<std::string>();
    out.push_back(std::move(r));
  }
  if (out.empty()) throw Error(fmt::format("--dataset-path {}: no conversation with two turns", path.string()));
  return out;
}

std::vector<BenchRequest> resolve_sharegpt(std::vector<BenchRequest> pool, size_t needed, uint64_t seed,
                                           const TokenCounter& count_tokens, int64_t fallback_output_len) {
  std::shuffle(pool.begin(), pool.end(), std::mt19937_64(seed));
  std::vector<BenchRequest> out;
  for (BenchRequest& r : pool) {
    if (out.size() >= needed) break;
    const std::optional<int64_t> prompt_len = count_tokens(r.input.get<std::string>());
    const bool fixed = r.max_tokens > 0;
    std::optional<int64_t> reply_len = fixed ? std::optional<int64_t>(r.max_tokens) : std::nullopt;
    if (!fixed && prompt_len) reply_len = count_tokens(r.reference_reply);
    if (prompt_len && reply_len) {
      if (*prompt_len < 4 || (!fixed && *reply_len < 4)) continue;
      if (*prompt_len > 1024 || (!fixed && *prompt_len + *reply_len > 2048)) continue;
    }
    r.prompt_len = prompt_len.value_or(0);
    r.max_tokens = reply_len.value_or(fallback_output_len);
    out.push_back(std::move(r));
  }
  if (out.empty()) throw Error("ShareGPT: no conversation is within vLLM's length limits");
  return out;
}

std::vector<BenchRequest> take_cycled(const std::vector<BenchRequest>& pool, int count, size_t offset) {
  std::vector<BenchRequest> out;
  if (pool.empty()) return out;
  for (int i = 0; i < count; ++i) out.push_back(pool[(offset + static_cast<size_t>(i)) % pool.size()]);
  return out;
}

const char* endpoint_of(const BenchRequest& r) { return r.chat ? "/v1/chat/completions" : "/v1/completions"; }

nlohmann::json request_body(const BenchRequest& r, const std::string& model) {
  nlohmann::json body = {{"model", model},
                         {"max_tokens", r.max_tokens},
                         {"temperature", 0},
                         {"stream", true},
                         {"stream_options", {{"include_usage", true}}}};
  body[r.chat ? "messages" : "prompt"] = r.input;
  for (const auto& [k, v] : r.extra.items()) body[k] = v;
  return body;
}

}  // namespace ilm::serve_bench
