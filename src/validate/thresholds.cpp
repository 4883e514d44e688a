#include "validate/thresholds.h"

#include <cmath>
#include <fstream>
#include <optional>
#include <sstream>

#include <toml++/toml.h>

#include <fmt/format.h>

#include "common/error.h"

namespace ilm::validate {

namespace {

ThresholdDef scalar(std::string key, double v, std::string unit, std::string help) {
  return {std::move(key), {v}, false, std::move(unit), std::move(help)};
}
ThresholdDef lst(std::string key, std::vector<double> v, std::string unit, std::string help) {
  return {std::move(key), std::move(v), true, std::move(unit), std::move(help)};
}

// toml++ numbers and booleans as doubles (true / false = 1 / 0); nullopt for anything else.
std::optional<double> number_of(const toml::node& n) {
  if (const auto* b = n.as_boolean()) return b->get() ? 1.0 : 0.0;
  if (const auto* i = n.as_integer()) return static_cast<double>(i->get());
  if (const auto* f = n.as_floating_point()) return f->get();
  return std::nullopt;
}

const char* kind_of(const toml::node& n) {
  if (n.is_string()) return "string";
  if (n.is_array()) return "array";
  if (n.is_date() || n.is_time() || n.is_date_time()) return "date/time";
  return "value";
}

std::string where(const std::string& source, const toml::source_region& r) {
  return fmt::format("{}:{}", source, r.begin.line);
}

// Keys are the table path joined by '.', so `[precision]` + `max_rel_error`, the dotted key
// `precision.max_rel_error` and the quoted key "precision.max_rel_error" are the same setting.
void load_table(Thresholds& th, const toml::table& table, const std::string& prefix, const std::string& source) {
  for (const auto& [k, node] : table) {
    const std::string full = prefix.empty() ? std::string(k.str()) : fmt::format("{}.{}", prefix, k.str());
    const std::string at = where(source, node.source());
    if (const auto* sub = node.as_table()) {
      load_table(th, *sub, full, source);
      continue;
    }
    bool known = false;
    for (const auto& d : Thresholds::defs()) known = known || d.key == full;
    if (!known) throw Error(fmt::format("{}: unknown setting '{}' (see `internlm validate --print-config`)", at, full));
    std::vector<double> values;
    if (const auto* arr = node.as_array()) {
      for (const auto& item : *arr) {
        const auto v = number_of(item);
        if (!v || item.is_boolean())
          throw Error(fmt::format("{}: '{}': every item must be a number", where(source, item.source()), full));
        values.push_back(*v);
      }
    } else {
      const auto v = number_of(node);
      if (!v) throw Error(fmt::format("{}: '{}': expected a number or boolean, got a {}", at, full, kind_of(node)));
      values.push_back(*v);
    }
    for (double v : values)
      if (!std::isfinite(v)) throw Error(fmt::format("{}: '{}': {} is not a finite number", at, full, v));
    th.set(full, std::move(values), at);
  }
}

std::string fmt_value(const std::vector<double>& v, bool list) {
  auto one = [](double x) { return fmt::format("{}", x); };
  if (!list) return one(v.empty() ? 0 : v[0]);
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + one(v[i]);
  return s + "]";
}

}  // namespace

const std::vector<ThresholdDef>& Thresholds::defs() {
  static const std::vector<ThresholdDef> d = {
      // environment
      scalar("environment.min_free_disk_gb", 1.0, "GB", "free disk space required in the output folder's file system"),
      scalar("environment.memory_margin_gb", 0.5, "GB",
             "memory kept free beyond the weights (in the chosen format) and one context of KV cache"),
      // operators
      scalar("operators.matmul_rel_tol", 1e-3, "", "matmul: max|backend - ref| / max|ref| over the output"),
      scalar("operators.fast_matmul_rel_tol", 8e-3, "",
             "matmul under --precision fast (bf16 activations: 2^-9 relative per element)"),
      scalar("operators.attention_rel_tol", 1e-3, "", "attention: max|backend - ref| / max|ref|"),
      scalar("operators.rmsnorm_rel_tol", 1e-5, "", "rmsnorm: max|backend - ref| / max|ref|"),
      scalar("operators.rope_rel_tol", 1e-5, "", "rope: max|backend - ref| / max|ref|"),
      scalar("operators.silu_mul_rel_tol", 1e-5, "", "silu_mul: max|backend - ref| / max|ref|"),
      scalar("operators.add_rel_tol", 1e-6, "", "add: max|backend - ref| / max|ref|"),
      scalar("operators.embedding_rel_tol", 0.0, "", "embedding: max|backend - ref| / max|ref| (a row copy: exact)"),
      scalar("operators.quick_tokens", 8, "tokens", "--quick: tokens of the multi-token case (a 1-token case always runs)"),
      scalar("operators.full_tokens", 64, "tokens", "--full: tokens of the multi-token case"),
      scalar("operators.max_head_rows", 8192, "rows", "output-head matmul: rows tested (the vocabulary is sampled above this)"),
      scalar("operators.attention_past", 64, "tokens", "attention: cached positions before the new queries (--full: x8)"),
      // precision
      scalar("precision.max_rel_error", 1e-3, "", "logits: max over positions of max|backend - ref| / max|ref|"),
      scalar("precision.max_mean_kl", 1e-4, "nats", "mean KL(ref || backend) of the next-token distributions"),
      scalar("precision.fast_max_rel_error", 6e-3, "",
             "--precision fast: logits max rel error (half of what the official bf16 run scores vs float32)"),
      scalar("precision.fast_max_mean_kl", 1.2e-5, "nats",
             "--precision fast: mean KL(ref || backend) (half of the official bf16 run's, small preset)"),
      scalar("precision.min_top1_agreement", 0.99, "", "fraction of positions whose argmax agrees (near-ties counted as agreeing)"),
      scalar("precision.min_greedy_agreement", 1.0, "",
             "greedy tokens equal to ref's before an unexplained divergence, as a fraction of those generated"),
      scalar("precision.golden_max_rel_error", 5e-3, "", "--golden: max|backend - golden| / max|golden| per position"),
      scalar("precision.fast_golden_max_rel_error", 8e-3, "",
             "--golden under --precision fast: max|backend - golden| / max|golden| per position"),
      scalar("precision.golden_max_mean_kl", 1e-3, "nats", "--golden: mean KL(golden || backend)"),
      scalar("precision.golden_min_top1_agreement", 0.99, "", "--golden: argmax agreement (near-ties counted as agreeing)"),
      scalar("precision.quant_max_mean_kl_int8", 1e-3, "nats", "--quant int8: mean KL(unquantized ref || quantized backend)"),
      scalar("precision.quant_max_mean_kl_int4", 5e-2, "nats", "--quant int4: mean KL(unquantized ref || quantized backend)"),
      scalar("precision.quick_max_params", 1e9, "parameters",
             "--quick: above this the ref comparison is skipped (the f64 oracle takes minutes per prompt)"),
      scalar("precision.large_model_prompts", 2, "prompts",
             "--full on a model above quick_max_params: prompts compared against ref"),
      scalar("precision.large_model_prompt_tokens", 32, "tokens",
             "--full on a model above quick_max_params: prompt tokens compared per prompt"),
      scalar("precision.large_model_greedy_tokens", 8, "tokens",
             "--full on a model above quick_max_params: greedy tokens generated by both backends"),
      scalar("precision.quick_prompts", 3, "prompts", "--quick: prompts compared"),
      scalar("precision.full_prompts", 0, "prompts", "--full: prompts compared (0: all)"),
      scalar("precision.max_prompt_tokens", 48, "tokens", "prompt tokens compared per prompt (--full: x4)"),
      scalar("precision.quick_greedy_tokens", 16, "tokens", "--quick: greedy tokens generated by both backends"),
      scalar("precision.full_greedy_tokens", 32, "tokens", "--full: greedy tokens generated by both backends"),
      // inference
      scalar("inference.quick_max_tokens", 32, "tokens", "--quick: cap on each prompt's max_tokens"),
      scalar("inference.require_deterministic", 1, "", "1: two temperature-0 runs must give identical tokens"),
      scalar("inference.max_latency_s", 0, "s", "per-prompt latency limit (0: off)"),
      // api
      scalar("api.start_timeout_s", 300, "s", "time allowed for `internlm serve` to load and listen"),
      scalar("api.request_timeout_s", 120, "s", "time allowed per API request"),
      // performance (model_bench)
      scalar("performance.quick_pp_tokens", 128, "tokens", "--quick: prompt tokens of the prefill benchmark"),
      scalar("performance.full_pp_tokens", 512, "tokens", "--full: prompt tokens of the prefill benchmark"),
      scalar("performance.quick_tg_tokens", 16, "tokens", "--quick: generated tokens of the decode benchmark"),
      scalar("performance.full_tg_tokens", 128, "tokens", "--full: generated tokens of the decode benchmark"),
      scalar("performance.quick_reps", 1, "runs", "--quick: repetitions of each benchmark"),
      scalar("performance.full_reps", 3, "runs", "--full: repetitions of each benchmark"),
      scalar("performance.min_prefill_tokens_per_s", 0, "tok/s", "prefill throughput limit (0: off)"),
      scalar("performance.min_decode_tokens_per_s", 0, "tok/s", "decode throughput limit (0: off)"),
      scalar("performance.min_decode_roofline_ratio", 0, "",
             "decode bytes/s over the fastest read bandwidth measured around the run (0: off)"),
      scalar("performance.min_prefill_fma_ratio", 0, "", "prefill FLOP/s over the measured f32 FMA peak (0: off)"),
      // serving (bench-serve)
      lst("serving.concurrency", {1, 16}, "", "concurrency levels of bench-serve"),
      scalar("serving.quick_input_len", 64, "tokens", "--quick: prompt tokens per bench-serve request"),
      scalar("serving.quick_output_len", 32, "tokens", "--quick: max_tokens per bench-serve request"),
      scalar("serving.full_input_len", 256, "tokens", "--full: prompt tokens per bench-serve request"),
      scalar("serving.full_output_len", 128, "tokens", "--full: max_tokens per bench-serve request"),
      scalar("serving.num_prompts", 0, "requests", "requests per level (0: bench-serve's default, 2 x concurrency, >= 4)"),
      scalar("serving.max_failed_requests", 0, "requests", "failed requests allowed over all levels"),
      scalar("serving.max_ttft_p99_ms", 0, "ms", "TTFT P99 limit at every level (0: off)"),
      scalar("serving.max_tpot_p99_ms", 0, "ms", "TPOT P99 limit at every level (0: off)"),
      scalar("serving.max_itl_p99_ms", 0, "ms", "ITL P99 limit at every level (0: off)"),
      scalar("serving.max_e2el_p99_ms", 0, "ms", "end-to-end latency P99 limit at every level (0: off)"),
      scalar("serving.min_throughput_scaling", 0, "x",
             "output throughput at the highest concurrency over the lowest (0: off)"),
      scalar("serving.timeout_s", 600, "s", "time allowed for the whole bench-serve run (raised to twice the time predicted from the measured pp / tg rates when that is longer)"),
      // context sweep
      lst("sweep.quick_lengths", {512, 1024, 4096}, "tokens", "--quick: context lengths (capped by the model's context)"),
      lst("sweep.full_lengths", {1024, 4096, 16384, 32768}, "tokens", "--full: context lengths"),
      scalar("sweep.quick_budget_s", 60, "s", "--quick: time budget of the sweep (lengths predicted to overrun are skipped)"),
      scalar("sweep.full_budget_s", 900, "s", "--full: time budget of the sweep"),
      scalar("sweep.decode_tokens", 16, "tokens", "tokens decoded after each prefill"),
      scalar("sweep.min_decode_speed_ratio", 0, "",
             "decode speed at the longest length over the shortest (0: off)"),
  };
  return d;
}

Thresholds::Thresholds() {
  for (const auto& d : defs()) values_[d.key] = {d.value, "default"};
}

const ThresholdDef& Thresholds::def(const std::string& key) const {
  for (const auto& d : defs())
    if (d.key == key) return d;
  throw Error(fmt::format("unknown validate setting '{}'", key));
}

void Thresholds::set(const std::string& key, std::vector<double> value, const std::string& origin) {
  const ThresholdDef& d = def(key);
  if (!d.list && value.size() != 1)
    throw Error(fmt::format("{}: '{}' takes a single number", origin, key));
  if (d.list && value.empty()) throw Error(fmt::format("{}: '{}' needs at least one number", origin, key));
  for (double v : value)
    if (v < 0) throw Error(fmt::format("{}: '{}' must not be negative (got {})", origin, key, v));
  values_[key] = {std::move(value), origin};
}

void Thresholds::load_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("{}: cannot open config file", path.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  load_text(ss.str(), path.string());
}

void Thresholds::load_text(const std::string& text, const std::string& source) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    throw Error(fmt::format("{}:{}:{}: {}", source, e.source().begin.line, e.source().begin.column,
                            e.description()));
  }
  load_table(*this, root, "", source);
}

double Thresholds::get(const std::string& key) const {
  const ThresholdDef& d = def(key);
  if (d.list) throw Error(fmt::format("validate setting '{}' is a list", key));
  return values_.at(key).value.at(0);
}

const std::vector<double>& Thresholds::list(const std::string& key) const {
  def(key);
  return values_.at(key).value;
}

nlohmann::json Thresholds::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& d : defs()) {
    const Entry& e = values_.at(d.key);
    nlohmann::json v = d.list ? nlohmann::json(e.value) : nlohmann::json(e.value.at(0));
    nlohmann::json dv = d.list ? nlohmann::json(d.value) : nlohmann::json(d.value.at(0));
    j[d.key] = {{"value", v}, {"default", dv}, {"origin", e.origin}, {"unit", d.unit}, {"help", d.help}};
  }
  return j;
}

std::string Thresholds::defaults_toml() {
  std::string out = "# internlm validate settings (every key with its default; see docs/VALIDATION.md)\n";
  std::string section;
  for (const auto& d : defs()) {
    const auto dot = d.key.find('.');
    const std::string sec = d.key.substr(0, dot), name = d.key.substr(dot + 1);
    if (sec != section) {
      out += fmt::format("\n[{}]\n", sec);
      section = sec;
    }
    out += fmt::format("{} = {}  # {}{}\n", name, fmt_value(d.value, d.list), d.help,
                       d.unit.empty() ? "" : fmt::format(" [{}]", d.unit));
  }
  return out;
}

}  // namespace ilm::validate
