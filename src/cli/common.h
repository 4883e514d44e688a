#pragma once
// Helpers shared by the subcommands.
#include <filesystem>
#include <string>
#include <vector>

#include "runtime/loaded_model.h"
#include "runtime/sampler.h"

namespace CLI {
class App;
}

namespace ilm::cli {

// The checkpoint to use: `model` if given, else the built-in default — a tiny synthetic
// checkpoint (random weights, real tokenizer) generated on first use under
// $INTERNLM_DEFAULT_MODEL or <source dir>/models/default-tiny.
std::filesystem::path resolve_model_dir(const std::string& model);

// The options every model-running subcommand shares (--model, --backend, --threads, --quant),
// and the load they describe.
struct ModelArgs {
  std::string model, backend = "cpu", quant = "none", precision = "fast";
  int threads = 0;
  int tp = 1;  // --tp N: this process is one of the N ranks of an MPI job (tensor parallelism)
  void add_to(CLI::App& cmd);
  // --tp (run, logits, bench, serve): the subcommands that can run as the ranks of an MPI job.
  void add_tp_to(CLI::App& cmd);
  // `progress` (may be null): load progress (shards mapped, bytes paged in, tensors repacked).
  LoadedModel load(LoadProgress* progress = nullptr) const;
  Precision parsed_precision() const;
};

// --kv-cache-dtype, as serve, validate, run, logits and bench take it: adds the option (its
// help text says which value is the default) and parses a value, throwing ilm::Error on
// anything but f32, bf16, f16 or int8.
void add_kv_cache_dtype_option(CLI::App& cmd, std::string& value, const std::string& what);
DType parse_kv_cache_dtype_arg(const std::string& value);

// "1,333,352" -> ids; throws ilm::Error on anything else.
// "a,b,,c" -> {"a", "b", "", "c"}: the items of a comma-separated option, empty ones kept
// (each parser says what an empty item means).
std::vector<std::string> split_commas(const std::string& text);
std::vector<TokenId> parse_ids(const std::string& text);

// Reads a whole file (for --prompt-file); throws ilm::Error naming it.
std::string read_text_file(const std::filesystem::path& path);

}  // namespace ilm::cli
