// `internlm inspect`: what a checkpoint is — architecture, shapes, dtypes, parameters, memory.
// Loading the architecture on the cpu backend (pointers only, nothing is read) checks that
// every tensor the config implies is present with the right shape.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "common/error.h"
#include "model/registry.h"
#include "runtime/loaded_model.h"
#include "tokenizer/tokenizer.h"

namespace ilm::cli {

namespace {

struct InspectArgs {
  std::string model;
  bool json = false;
  bool strict = false;
};

std::string rope_scaling_str(const RopeScaling& r) {
  switch (r.type) {
    case RopeScaling::Type::Dynamic: return fmt::format("dynamic, factor {}", r.factor);
    case RopeScaling::Type::Linear: return fmt::format("linear, factor {}", r.factor);
    default: return "none";
  }
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  return fmt::format("{:.2f} {}", b, units[u]);
}

nlohmann::json describe(const std::filesystem::path& dir) {
  CheckpointInfo info = CheckpointInfo::load(dir);
  const ModelConfig& c = info.config;
  // The cpu backend takes every weight in place (pointers into the mapping), so this checks
  // names, shapes and dtypes without reading or converting any weight.
  auto backend = make_backend("cpu", 1);
  auto lm = create_model(c, *info.store, *backend);

  nlohmann::json j;
  j["model_dir"] = dir.string();
  j["architecture"] = c.architecture;
  j["model_type"] = c.model_type;
  j["stored_quantization"] = quant_name(c.stored_quant);
  j["config"] = {{"hidden_size", c.hidden_size},
                 {"num_hidden_layers", c.num_layers},
                 {"num_attention_heads", c.num_heads},
                 {"num_key_value_heads", c.num_kv_heads},
                 {"head_dim", c.head_dim},
                 {"kv_group_size", c.kv_group_size()},
                 {"intermediate_size", c.intermediate_size},
                 {"vocab_size", c.vocab_size},
                 {"max_position_embeddings", c.max_position_embeddings},
                 {"rope_theta", c.rope_theta},
                 {"rope_scaling", rope_scaling_str(c.rope_scaling)},
                 {"rms_norm_eps", c.rms_norm_eps},
                 {"bias", c.bias},
                 {"tie_word_embeddings", c.tie_word_embeddings},
                 {"torch_dtype", c.torch_dtype},
                 {"context_limit", lm->context_limit()}};

  nlohmann::json files = nlohmann::json::array();
  for (const auto& f : info.store->files())
    files.push_back({{"file", f->path().filename().string()}, {"bytes", f->mapping().size()},
                     {"tensors", f->tensors().size()}});
  j["files"] = files;
  j["sharded"] = info.store->sharded();

  std::map<std::string, std::pair<uint64_t, uint64_t>> by_dtype;  // count, bytes
  uint64_t params = 0;
  const auto names = info.store->names();
  for (const auto& n : names) {
    TensorRef t = info.store->get(n);
    auto& d = by_dtype[std::string(dtype_name(t.dtype))];
    d.first += 1;
    d.second += t.nbytes;
    params += t.numel();
  }
  nlohmann::json dtypes = nlohmann::json::object();
  for (const auto& [k, v] : by_dtype) dtypes[k] = {{"tensors", v.first}, {"bytes", v.second}};
  j["dtypes"] = dtypes;
  j["tensors"] = names.size();
  j["parameters"] = params;

  const auto used_list = lm->weight_names();
  std::set<std::string> used(used_list.begin(), used_list.end());
  nlohmann::json unused = nlohmann::json::array();
  for (const auto& n : names)
    if (!used.count(n)) unused.push_back(n);
  j["unused_tensors"] = unused;

  // Weight memory per format (int8 / int4: group-wise, one f16 scale per 32 weights).
  const double p = static_cast<double>(params);
  j["weight_bytes"] = {{"as_stored", info.store->total_bytes()},
                       {"f32", p * 4},
                       {"bf16", p * 2},
                       {"int8_g32", p * quant_bytes_per_weight(parse_quant("int8"))},
                       {"int4_g32", p * quant_bytes_per_weight(parse_quant("int4"))}};
  const double kv_per_token_bf16 = 2.0 * c.num_layers * c.num_kv_heads * c.head_dim * 2;
  j["kv_cache"] = {{"bytes_per_token_bf16", kv_per_token_bf16},
                   {"bytes_per_token_f32", kv_per_token_bf16 * 2},
                   {"bytes_at_context_limit_bf16", kv_per_token_bf16 * static_cast<double>(lm->context_limit())}};
  j["generation"] = {{"eos_token_ids", info.generation.eos_token_ids}};
  if (info.generation.do_sample) j["generation"]["do_sample"] = *info.generation.do_sample;
  if (info.generation.temperature) j["generation"]["temperature"] = *info.generation.temperature;
  if (info.generation.top_p) j["generation"]["top_p"] = *info.generation.top_p;
  if (info.generation.top_k) j["generation"]["top_k"] = *info.generation.top_k;

  std::error_code ec;
  if (std::filesystem::exists(dir / "tokenizer.model", ec)) {
    Tokenizer tok = Tokenizer::load(dir);
    nlohmann::json added = nlohmann::json::object();
    for (const auto& a : tok.added_tokens()) added[a.content] = a.id;
    j["tokenizer"] = {{"vocab_size", tok.vocab_size()}, {"bos_id", tok.bos_id()},
                      {"eos_id", tok.eos_id()},         {"add_bos_token", tok.add_bos()},
                      {"added_tokens", added}};
  } else {
    j["tokenizer"] = nullptr;
  }
  // What would stop a command from running on this folder, though the weights check out.
  nlohmann::json warnings = nlohmann::json::array();
  if (j["tokenizer"].is_null())
    warnings.push_back("no tokenizer.model: run, serve, logits and validate cannot use this folder");
  if (!unused.empty())
    warnings.push_back(fmt::format("{} tensors are not used by {}: {}", unused.size(), j["architecture"].get<std::string>(),
                                   unused.dump()));
  j["warnings"] = warnings;
  return j;
}

void print_text(const nlohmann::json& j) {
  const auto& c = j["config"];
  fmt::print("model        {}\n", j["model_dir"].get<std::string>());
  fmt::print("architecture {} (model_type {})\n", j["architecture"].get<std::string>(),
             j["model_type"].get<std::string>());
  fmt::print("shape        hidden {}, layers {}, heads {} (kv heads {}, group {}, head dim {}), "
             "intermediate {}, vocab {}\n",
             c["hidden_size"].get<int64_t>(), c["num_hidden_layers"].get<int64_t>(),
             c["num_attention_heads"].get<int64_t>(), c["num_key_value_heads"].get<int64_t>(),
             c["kv_group_size"].get<int64_t>(), c["head_dim"].get<int64_t>(),
             c["intermediate_size"].get<int64_t>(), c["vocab_size"].get<int64_t>());
  fmt::print("rope         theta {}, scaling {}, max_position_embeddings {}, context limit {}\n",
             c["rope_theta"].get<double>(), c["rope_scaling"].get<std::string>(),
             c["max_position_embeddings"].get<int64_t>(), c["context_limit"].get<int64_t>());
  fmt::print("other        rms_norm_eps {}, bias {}, tie_word_embeddings {}, torch_dtype {}\n",
             c["rms_norm_eps"].get<double>(), c["bias"].get<bool>(),
             c["tie_word_embeddings"].get<bool>(), c["torch_dtype"].get<std::string>());
  if (j["stored_quantization"] != "none")
    fmt::print("quantization {} (stored by `internlm quantize`; 'parameters' below counts stored elements)\n",
               j["stored_quantization"].get<std::string>());
  fmt::print("files        {} ({})\n", j["files"].size(), j["sharded"].get<bool>() ? "sharded, with index" : "single file");
  for (const auto& f : j["files"])
    fmt::print("             {}  {}  {} tensors\n", f["file"].get<std::string>(),
               human_bytes(f["bytes"].get<double>()), f["tensors"].get<int64_t>());
  fmt::print("tensors      {}", j["tensors"].get<int64_t>());
  for (const auto& [k, v] : j["dtypes"].items())
    fmt::print("; {}: {} ({})", k, v["tensors"].get<int64_t>(), human_bytes(v["bytes"].get<double>()));
  fmt::print("\n");
  const double params = j["parameters"].get<double>();
  fmt::print("parameters   {} ({:.3f} B)\n", j["parameters"].get<uint64_t>(), params / 1e9);
  const auto& wb = j["weight_bytes"];
  fmt::print("weights      as stored {}; bf16 {}; f32 {}; int8 {}; int4 {}\n",
             human_bytes(wb["as_stored"].get<double>()), human_bytes(wb["bf16"].get<double>()),
             human_bytes(wb["f32"].get<double>()), human_bytes(wb["int8_g32"].get<double>()),
             human_bytes(wb["int4_g32"].get<double>()));
  const auto& kv = j["kv_cache"];
  fmt::print("kv cache     {} per token as this engine stores it (f32), {} at the context limit; "
             "{} per token in bf16\n",
             human_bytes(kv["bytes_per_token_f32"].get<double>()),
             human_bytes(kv["bytes_at_context_limit_bf16"].get<double>() * 2),
             human_bytes(kv["bytes_per_token_bf16"].get<double>()));
  fmt::print("generation   eos ids {}\n", j["generation"]["eos_token_ids"].dump());
  if (j["tokenizer"].is_null()) {
    fmt::print("tokenizer    (no tokenizer.model)\n");
  } else {
    const auto& t = j["tokenizer"];
    fmt::print("tokenizer    {} tokens, bos {}, eos {}, add_bos_token {}, added {}\n",
               t["vocab_size"].get<int64_t>(), t["bos_id"].get<int64_t>(), t["eos_id"].get<int64_t>(),
               t["add_bos_token"].get<bool>(), t["added_tokens"].dump());
  }
  for (const auto& w : j["warnings"]) fmt::print("warning      {}\n", w.get<std::string>());
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto args = std::make_shared<InspectArgs>();
  CLI::App* cmd = app.add_subcommand("inspect", "Describe a checkpoint and check its tensors against its config");
  cmd->add_option("--model,-m", args->model, "Checkpoint directory (default: built-in synthetic tiny model)");
  cmd->add_flag("--json", args->json, "Print JSON");
  cmd->add_flag("--strict", args->strict, "Exit with status 1 when there is any warning (e.g. no tokenizer.model)");
  cmd->callback([args] {
    const auto j = describe(resolve_model_dir(args->model));
    if (args->json)
      fmt::print("{}\n", j.dump(2));
    else
      print_text(j);
    if (args->strict && !j["warnings"].empty()) throw Error("inspect --strict: the checkpoint has warnings (above)");
  });
}

}  // namespace ilm::cli
