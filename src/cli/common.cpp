#include "cli/common.h"

#include <CLI/CLI.hpp>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "common/data_path.h"
#include "common/error.h"
#include "backend/quant.h"
#include "model/kv_cache.h"
#include "synth/synth.h"

namespace ilm::cli {

namespace {
std::filesystem::path default_model_dir() {
  return ilm::default_model_dir();  // $INTERNLM_DEFAULT_MODEL, the user's cache (installed) or the source tree
}
}  // namespace

std::filesystem::path resolve_model_dir(const std::string& model) {
  if (!model.empty()) return model;
  const auto dir = default_model_dir();
  std::error_code ec;
  if (std::filesystem::exists(dir / "config.json", ec)) return dir;
  std::fprintf(stderr,
               "no --model given: creating the built-in default, a tiny synthetic checkpoint "
               "(random weights, real tokenizer), in %s\n",
               dir.string().c_str());
  SynthOptions opts;
  opts.preset = "tiny";
  opts.out = dir;
  opts.force = true;  // an interrupted earlier attempt may have left partial files
  write_synthetic_checkpoint(opts);
  return dir;
}

void ModelArgs::add_to(CLI::App& cmd) {
  cmd.add_option("--model,-m", model, "Checkpoint directory (default: built-in synthetic tiny model)");
  cmd.add_option("--backend", backend, "Backend: cpu (default, SIMD kernels) or ref (the f64 oracle)");
  cmd.add_option("--threads,-t", threads, "Threads (default: all)")->check(CLI::NonNegativeNumber);
  cmd.add_option("--quant", quant,
                 "Weight format of the matrices: none (as stored), int8, int4 (optionally :GROUP, default 32)");
  cmd.add_option("--precision", precision,
                 "fast (default: bf16 / int8 activations, at least twice as close to the official f32 model as "
                 "its bf16 run) or exact (f32 activations, ~1e-6; for validation)")
      ->check(CLI::IsMember({"fast", "exact"}));
}

void ModelArgs::add_tp_to(CLI::App& cmd) {
  cmd.add_option("--tp", tp,
                 "Tensor parallelism over N MPI ranks: mpirun -np N internlm ... --tp N (N divides the number of KV "
                 "heads; default 1)")
      ->check(CLI::PositiveNumber);
}

Precision ModelArgs::parsed_precision() const { return parse_precision(precision).value_or(Precision::Fast); }

LoadedModel ModelArgs::load(LoadProgress* progress) const {
  LoadOptions opts{backend, threads, parse_quant(quant), parsed_precision(), progress};
  opts.tp = tp;
  return LoadedModel::load(resolve_model_dir(model), opts);
}

void add_kv_cache_dtype_option(CLI::App& cmd, std::string& value, const std::string& what) {
  cmd.add_option("--kv-cache-dtype", value,
                 fmt::format("KV cache element type{} (default {}): f32 (exact), bf16 or f16 (half the memory of f32; "
                             "K/V rounded to 8 / 11 significant bits), int8 (about a quarter: one scale per head and "
                             "token, K/V off by up to 1/254 of the head's largest value)",
                             what.empty() ? "" : " " + what, value));
}

DType parse_kv_cache_dtype_arg(const std::string& value) {
  const auto t = parse_kv_cache_dtype(value);
  if (!t) throw Error(fmt::format("--kv-cache-dtype must be f32, bf16, f16 or int8, not '{}'", value));
  return *t;
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> items;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string::npos) comma = text.size();
    items.push_back(text.substr(pos, comma - pos));
    pos = comma + 1;
  }
  return items;
}

std::vector<TokenId> parse_ids(const std::string& text) {
  std::vector<TokenId> ids;
  for (std::string item : split_commas(text)) {
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    TokenId v = 0;
    auto [end, err] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || err != std::errc() || end != item.data() + item.size() || v < 0)
      throw Error(fmt::format("--ids: '{}' is not a non-negative integer token id", item));
    ids.push_back(v);
  }
  return ids;
}

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("{}: cannot open file", path.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace ilm::cli
