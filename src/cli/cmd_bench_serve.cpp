// `internlm bench-serve`: a serving benchmark client for any OpenAI-compatible server (ours or
// another), measuring what `vllm bench serve` reports — TTFT, TPOT, ITL and end-to-end latency
// (mean, median, P90, P99), request / output-token / total-token throughput — per concurrency
// level, and `--scenario` runs the three serving targets with a PASS/FAIL line each.
// The pieces live in src/server/serve_bench_*.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/error.h"
#include "common/utc_time.h"
#include "server/serve_bench_client.h"
#include "server/serve_bench_dataset.h"
#include "server/serve_bench_progress.h"
#include "server/serve_bench_report.h"
#include "server/serve_bench_run.h"
#include "server/serve_bench_scenarios.h"
#include "server/serve_bench_vllm.h"

namespace ilm::cli {

namespace {

namespace sb = ilm::serve_bench;

struct BenchServeArgs {
  std::string url, model, api_key, concurrency = "1", request_rate = "inf", dataset, json_out, scenario;
  std::string response_format, json_schema;  // structured output: sent with every request
  std::string dataset_name = "random", dataset_path, result_filename, result_dir;  // vLLM's names
  bool ignore_eos = false, save_result = false;
  int num_prompts = 0, warmup = 1;
  int64_t input_len = 256, output_len = 128, sharegpt_output_len = 0;
  uint64_t seed = 0;
  CLI::Option *seed_opt = nullptr, *output_len_opt = nullptr, *dataset_name_opt = nullptr;
  double timeout_s = 600, progress_interval_s = 5;
  bool no_progress = false;
  sb::ScenarioOptions scen;
};

std::vector<int> parse_concurrency(const std::string& text) {
  std::vector<int> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || v <= 0)
      throw Error(fmt::format("--concurrency {}: expected positive integers separated by commas", text));
    out.push_back(v);
  }
  if (out.empty()) throw Error("--concurrency: empty list");
  return out;
}

double parse_rate(const std::string& text) {
  if (text == "inf" || text == "infinity") return std::numeric_limits<double>::infinity();
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !(v > 0)) throw Error(fmt::format("--request-rate {}: expected a positive number or inf", text));
  return v;
}

void write_json(const std::string& path, const nlohmann::json& j) {
  std::ofstream out(path);
  if (!out) throw Error(fmt::format("--json {}: cannot open for writing", path));
  out << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  if (!out) throw Error(fmt::format("--json {}: write failed", path));
}

// --response-format json_object, or --json-schema FILE (a JSON Schema; the body's keys go out
// sorted, so properties are generated in name order): the response_format every request
// sends; null when neither is given.
nlohmann::json response_format_of(const BenchServeArgs& a) {
  if (!a.json_schema.empty()) {
    if (!a.response_format.empty()) throw Error("give --response-format or --json-schema, not both");
    std::ifstream in(a.json_schema);
    if (!in) throw Error(fmt::format("--json-schema {}: cannot read the file", a.json_schema));
    const auto schema = nlohmann::json::parse(in, nullptr, false);
    if (schema.is_discarded()) throw Error(fmt::format("--json-schema {}: not valid JSON", a.json_schema));
    return {{"type", "json_schema"}, {"json_schema", {{"name", "bench"}, {"schema", schema}}}};
  }
  if (a.response_format.empty() || a.response_format == "text") return nullptr;
  if (a.response_format != "json_object") throw Error("--response-format: expected text or json_object");
  return {{"type", "json_object"}};
}

// The requests a run draws from: none (random token ids), a JSONL file (--dataset, or
// --dataset-name custom --dataset-path), or a ShareGPT file sampled as vLLM does.
std::vector<sb::BenchRequest> dataset_pool(const BenchServeArgs& a, const sb::ApiClient& api, const std::string& model,
                                           size_t needed) {
  std::string name = a.dataset_name, path = a.dataset_path;
  if (!a.dataset.empty()) {
    if (!path.empty()) throw Error("give --dataset or --dataset-path, not both");
    path = a.dataset;
    if (a.dataset_name_opt->count() == 0) name = "custom";
  }
  if (name == "random") {
    if (!path.empty()) throw Error("--dataset-name random takes no --dataset-path (use custom or sharegpt)");
    return {};
  }
  if (path.empty()) throw Error(fmt::format("--dataset-name {} needs --dataset-path FILE", name));
  if (name == "custom") return sb::load_dataset(path, a.output_len);
  // vLLM: --output-len (or --sharegpt-output-len) fixes the length, else the reference reply's.
  const int64_t fixed = a.sharegpt_output_len > 0 ? a.sharegpt_output_len : a.output_len_opt->count() ? a.output_len : 0;
  const sb::TokenCounter count = [&](const std::string& text) { return api.count_tokens(model, text); };
  return sb::resolve_sharegpt(sb::load_sharegpt(path, fixed), needed, a.seed, count, a.output_len);
}

// --save-result: vLLM's result file for one level, named --result-filename (with
// "-concurrencyC" before ".json" when several levels run) or vLLM's default name, in --result-dir.
void save_vllm_result(const BenchServeArgs& a, const sb::VllmRunInfo& info, const sb::LevelResult& level,
                      size_t levels, double rate) {
  std::string name = sb::vllm_result_filename(info, rate, level.metrics.concurrency);
  if (!a.result_filename.empty()) {
    name = a.result_filename;
    if (levels > 1) {
      const auto dot = name.rfind(".json");
      const std::string tag = fmt::format("-concurrency{}", level.metrics.concurrency);
      name = dot == std::string::npos ? name + tag : name.substr(0, dot) + tag + name.substr(dot);
    }
  }
  std::filesystem::path path = name;
  if (!a.result_dir.empty()) {
    std::filesystem::create_directories(a.result_dir);
    path = std::filesystem::path(a.result_dir) / name;
  }
  write_json(path.string(), sb::vllm_result_json(info, level));
  fmt::print(stderr, "bench-serve: wrote {}\n", path.string());
}

void bench_serve(BenchServeArgs& a) {
  const std::vector<int> levels = parse_concurrency(a.concurrency);
  const double rate = parse_rate(a.request_rate);
  if (a.scenario != "" && a.scenario != "throughput" && a.scenario != "prefix" && a.scenario != "chunked-prefill" &&
      a.scenario != "all")
    throw Error(fmt::format("--scenario {}: expected throughput, prefix, chunked-prefill or all", a.scenario));
  if (a.save_result && !a.scenario.empty()) throw Error("--save-result writes the concurrency levels' results, not --scenario's");
  // --seed defaults to 0 as in vLLM; the scenarios' verdicts need prompts no earlier run has left
  // in the prefix cache, so without --seed they draw it from the clock.
  if (a.seed_opt->count() == 0 && !a.scenario.empty())
    a.seed = static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());

  const sb::ApiClient api(sb::parse_server_url(a.url), a.api_key, a.timeout_s);
  if (a.model.empty()) a.model = api.models().front();
  size_t needed = static_cast<size_t>(a.warmup);
  for (const int c : levels) needed += static_cast<size_t>(a.num_prompts > 0 ? a.num_prompts : std::max(4, 2 * c));
  const std::vector<sb::BenchRequest> pool = dataset_pool(a, api, a.model, needed);
  fmt::print(stderr, "bench-serve: {} model {} seed {}\n", api.url().str(), a.model, a.seed);

  sb::Progress progress(stderr, isatty(fileno(stderr)) != 0, a.progress_interval_s, !a.no_progress);
  size_t offset = 0;  // dataset lines used so far: no line is sent twice while the file lasts
  const nlohmann::json format = response_format_of(a);
  auto next_requests = [&](int n, uint64_t seed) {
    auto reqs = pool.empty() ? sb::random_token_requests(n, a.input_len, a.output_len, seed)
                             : sb::take_cycled(pool, n, offset);
    if (!pool.empty()) offset += static_cast<size_t>(n);
    for (auto& r : reqs) {
      if (!format.is_null()) r.extra["response_format"] = format;
      if (a.ignore_eos) r.extra["ignore_eos"] = true;
    }
    return reqs;
  };
  if (a.warmup > 0) sb::run_warmup(api, a.model, next_requests(a.warmup, a.seed ^ 0x5741524dULL), progress);

  nlohmann::json settings = {{"url", a.url},
                             {"model", a.model},
                             {"concurrency", levels},
                             {"num_prompts", a.num_prompts},
                             {"input_len", a.input_len},
                             {"output_len", a.output_len},
                             {"request_rate", sb::rate_json(rate)},
                             {"dataset", a.dataset.empty() ? a.dataset_path : a.dataset},
                             {"dataset_name", a.dataset.empty() || a.dataset_name_opt->count() ? a.dataset_name : "custom"},
                             {"ignore_eos", a.ignore_eos},
                             {"warmup", a.warmup},
                             {"seed", a.seed},
                             {"timeout_s", a.timeout_s},
                             {"scenario", a.scenario},
                             {"response_format", format}};
  nlohmann::json out = {{"tool", "internlm bench-serve"},
                        {"version", INTERNLM_VERSION},
                        {"date", utc_timestamp()},
                        {"server", {{"url", api.url().str()}, {"model", a.model}}},
                        {"settings", settings},
                        {"levels", nlohmann::json::array()}};

  if (a.scenario.empty()) {
    std::vector<sb::LevelMetrics> metrics;
    const std::string stamp = local_timestamp("%Y%m%d-%H%M%S");
    for (size_t i = 0; i < levels.size(); ++i) {
      const int c = levels[i];
      const int n = a.num_prompts > 0 ? a.num_prompts : std::max(4, 2 * c);
      sb::LevelOptions lo;
      lo.concurrency = c;
      lo.request_rate = rate;
      lo.seed = a.seed + i;
      const sb::LevelResult r = sb::run_level(api, a.model, next_requests(n, a.seed + 1000 * (i + 1)), lo, progress,
                                              fmt::format("concurrency {}", c));
      fmt::print("{}", sb::format_level(r.metrics));
      std::fflush(stdout);
      metrics.push_back(r.metrics);
      out["levels"].push_back(sb::level_json(r));
      if (a.save_result) save_vllm_result(a, {"openai", a.model, stamp, n}, r, levels.size(), rate);
    }
    if (metrics.size() > 1) fmt::print("\n{}", sb::format_level_table(metrics));
  } else {
    sb::ScenarioOptions so = a.scen;
    so.seed = a.seed;
    so.input_len = a.input_len;
    so.output_len = a.output_len;
    so.num_prompts = a.num_prompts;
    so.timeout_s = a.timeout_s;
    out["settings"]["prefix_len"] = so.prefix_len;
    out["settings"]["prefix_decode_tokens"] = so.prefix_decode_tokens;
    out["settings"]["long_prompt_len"] = so.long_prompt_len;
    out["settings"]["stream_tokens"] = so.stream_tokens;
    const sb::Log log = [](const std::string& s) {
      fmt::print("{}\n", s);
      std::fflush(stdout);
    };
    const bool all = a.scenario == "all";
    std::vector<sb::ScenarioResult> results;
    if (all || a.scenario == "throughput") results.push_back(sb::run_throughput_scenario(api, a.model, so, progress, log));
    if (all || a.scenario == "prefix") results.push_back(sb::run_prefix_scenario(api, a.model, so, log));
    if (all || a.scenario == "chunked-prefill") results.push_back(sb::run_chunked_prefill_scenario(api, a.model, so, log));
    out["scenarios"] = nlohmann::json::array();
    fmt::print("\n");
    for (const sb::ScenarioResult& r : results) {
      fmt::print("{}\n", sb::verdict_line(r));
      out["scenarios"].push_back({{"name", r.name},
                                  {"pass", r.pass},
                                  {"ratio", r.ratio},
                                  {"target", r.target},
                                  {"op", r.op},
                                  {"what", r.what},
                                  {"note", r.note},
                                  {"details", r.details}});
    }
  }
  if (!a.json_out.empty()) {
    write_json(a.json_out, out);
    fmt::print(stderr, "bench-serve: wrote {}\n", a.json_out);
  }
}

}  // namespace

void add_bench_serve_command(CLI::App& app) {
  auto a = std::make_shared<BenchServeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "bench-serve", "Benchmark an OpenAI-compatible server: TTFT/TPOT/ITL/E2EL and throughput per concurrency level");
  cmd->add_option("--url,--base-url", a->url, "Server URL, e.g. http://127.0.0.1:8080")->required();
  cmd->add_option("--model", a->model, "Model name to request (default: the first id of GET /v1/models)");
  cmd->add_option("--api-key", a->api_key, "Sent as 'Authorization: Bearer KEY'");
  cmd->add_option("--concurrency,--max-concurrency", a->concurrency,
                  "Requests in flight at most; several levels comma-separated (e.g. 1,4,16)")
      ->capture_default_str();
  cmd->add_option("--num-prompts", a->num_prompts, "Requests per level (default: 2 x concurrency, at least 4)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--input-len,--random-input-len", a->input_len, "Prompt length in tokens (random token ids)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  a->output_len_opt = cmd->add_option("--output-len,--random-output-len", a->output_len,
                                      "max_tokens of each request (sharegpt: fixes it for every request)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--request-rate", a->request_rate, "Poisson arrivals in requests/s, or inf (all at once)")
      ->capture_default_str();
  cmd->add_option("--dataset", a->dataset,
                  "JSONL of {\"prompt\": ...} or {\"messages\": [...]} (chat), optional \"max_tokens\"");
  a->dataset_name_opt = cmd->add_option("--dataset-name", a->dataset_name,
                                        "random (token ids), custom (the JSONL of --dataset) or sharegpt (a ShareGPT JSON)")
                            ->check(CLI::IsMember({"random", "custom", "sharegpt"}))
                            ->capture_default_str();
  cmd->add_option("--dataset-path", a->dataset_path, "The custom or sharegpt file");
  cmd->add_option("--sharegpt-output-len", a->sharegpt_output_len,
                  "sharegpt: max_tokens of every request (default: the recorded reply's length)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--ignore-eos", a->ignore_eos, "Send ignore_eos: true (vLLM's extension): every reply runs to max_tokens");
  cmd->add_flag("--save-result", a->save_result,
                "Also write each level's results with vllm bench serve's JSON keys (--result-filename, --result-dir)");
  cmd->add_option("--result-filename", a->result_filename,
                  "--save-result file (default: vLLM's openai-{rate}qps-concurrency{c}-{model}-{date}.json)");
  cmd->add_option("--result-dir", a->result_dir, "Folder of the --save-result files (default: the current one)");
  cmd->add_option("--json", a->json_out, "Write settings, per-level results and every request's record here");
  cmd->add_option("--warmup", a->warmup, "Requests sent before measuring")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  a->seed_opt = cmd->add_option("--seed", a->seed,
                                "Seed of the prompts and arrivals (default 0, as vLLM; --scenario: from the clock)");
  cmd->add_option("--timeout", a->timeout_s, "Seconds a request may stay silent before it fails")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--response-format", a->response_format, "text (default) or json_object: sent with every request");
  cmd->add_option("--json-schema", a->json_schema,
                  "A JSON Schema file: every request asks for output that validates against it (response_format json_schema)");
  cmd->add_flag("--no-progress", a->no_progress, "No progress display");
  cmd->add_option("--progress-interval", a->progress_interval_s, "Seconds between progress lines when not a terminal")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--scenario", a->scenario, "Run a target scenario: throughput, prefix, chunked-prefill or all");
  cmd->add_option("--prefix-len", a->scen.prefix_len, "prefix: system prompt tokens")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--prefix-decode-tokens", a->scen.prefix_decode_tokens,
                  "prefix: max_tokens of the first request, which decodes while the third arrives")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--long-prompt-len", a->scen.long_prompt_len, "chunked-prefill: the long prompt's tokens")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--stream-tokens", a->scen.stream_tokens,
                  "chunked-prefill: max_tokens of the four streams (cancelled once measured)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->callback([a] { bench_serve(*a); });
}

}  // namespace ilm::cli
