#include "server/serve_bench_vllm.h"

#include <cmath>

#include <fmt/format.h>

#include "server/serve_bench_report.h"

namespace ilm::serve_bench {

namespace {

// Python's str(float): "inf", "5.0", "0.5".
std::string python_float(double v) {
  if (!std::isfinite(v)) return "inf";
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

void add_summary(nlohmann::json& j, const std::string& name, const Summary& s) {
  j[fmt::format("mean_{}_ms", name)] = s.mean;
  j[fmt::format("median_{}_ms", name)] = s.median;
  j[fmt::format("std_{}_ms", name)] = s.stddev;
  j[fmt::format("p99_{}_ms", name)] = s.p99;
}

}  // namespace

nlohmann::json vllm_result_json(const VllmRunInfo& info, const LevelResult& level) {
  const LevelMetrics& m = level.metrics;
  nlohmann::json j = {{"date", info.date},
                      {"endpoint_type", info.backend},
                      {"backend", info.backend},
                      {"label", nullptr},
                      {"model_id", info.model_id},
                      {"tokenizer_id", info.model_id},
                      {"num_prompts", info.num_prompts},
                      {"request_rate", rate_json(m.request_rate)},
                      {"burstiness", 1.0},
                      {"max_concurrency", m.concurrency},
                      {"duration", m.duration_s},
                      {"completed", m.completed},
                      {"failed", m.failed},
                      {"total_input_tokens", m.total_input_tokens},
                      {"total_output_tokens", m.total_output_tokens},
                      {"request_throughput", m.request_throughput},
                      {"request_goodput", nullptr},
                      {"output_throughput", m.output_throughput},
                      {"total_token_throughput", m.total_token_throughput}};
  nlohmann::json input_lens = nlohmann::json::array(), output_lens = nlohmann::json::array(),
                 ttfts = nlohmann::json::array(), itls = nlohmann::json::array(),
                 texts = nlohmann::json::array(), errors = nlohmann::json::array();
  for (const RequestRecord& r : level.records) {
    input_lens.push_back(r.prompt_tokens);
    output_lens.push_back(r.ok ? r.output_tokens : 0);
    ttfts.push_back(r.ok && r.has_ttft ? r.ttft : 0.0);
    itls.push_back(r.ok ? r.itl() : std::vector<double>{});
    texts.push_back(r.ok ? r.generated_text : std::string());
    errors.push_back(r.ok ? std::string() : r.error);
  }
  j["input_lens"] = std::move(input_lens);
  j["output_lens"] = std::move(output_lens);
  j["ttfts"] = std::move(ttfts);
  j["itls"] = std::move(itls);
  j["generated_texts"] = std::move(texts);
  j["errors"] = std::move(errors);
  add_summary(j, "ttft", m.ttft_ms);
  add_summary(j, "tpot", m.tpot_ms);
  add_summary(j, "itl", m.itl_ms);
  add_summary(j, "e2el", m.e2el_ms);
  return j;
}

std::string vllm_result_filename(const VllmRunInfo& info, double request_rate, int concurrency) {
  std::string base = info.model_id;
  if (const auto slash = base.rfind('/'); slash != std::string::npos) base = base.substr(slash + 1);
  return fmt::format("{}-{}qps-concurrency{}-{}-{}.json", info.backend, python_float(request_rate), concurrency, base,
                     info.date);
}

}  // namespace ilm::serve_bench
