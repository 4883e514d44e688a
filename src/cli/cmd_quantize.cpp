// `internlm quantize`: write an int8 / int4 copy of a checkpoint that loads without
// re-quantizing.
#include <CLI/CLI.hpp>
#include <chrono>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "common/progress.h"
#include "runtime/quantize_checkpoint.h"

namespace ilm::cli {

void add_quantize_command(CLI::App& app) {
  struct Args {
    std::string model, out, quant;
    double shard_mb = 0;
    bool force = false;
    int threads = 0;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("quantize", "Write an int8 / int4 copy of a checkpoint (loads in seconds)");
  cmd->add_option("--model,-m", a->model, "Checkpoint directory (default: built-in synthetic tiny model)");
  cmd->add_option("--quant", a->quant, "int8 or int4, optionally :GROUP (default 32)")->required();
  cmd->add_option("--out,-o", a->out, "Output directory")->required();
  cmd->add_option("--shard-mb", a->shard_mb, "Shard size in MB (10^6 bytes; default 5000)")->check(CLI::PositiveNumber);
  cmd->add_flag("--force", a->force, "Replace weight files in a non-empty output directory");
  cmd->add_option("--threads,-t", a->threads, "Threads (default: all)")->check(CLI::NonNegativeNumber);
  cmd->callback([a] {
    QuantizeOptions o;
    o.model = resolve_model_dir(a->model);
    o.out = a->out;
    o.quant = parse_quant(a->quant);
    o.shard_bytes = static_cast<uint64_t>(a->shard_mb * 1e6);
    o.force = a->force;
    o.threads = a->threads;
    const auto t0 = std::chrono::steady_clock::now();
    const auto progress = make_load_progress("quantize");  // shards mapped, bytes quantized
    o.progress = progress.get();
    const auto s = quantize_checkpoint(o);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print("quantize: wrote {} ({}): {} matrices quantized, {} tensors copied, {:.2f} GB -> {:.2f} GB in {} "
               "file(s), {:.1f} s\n",
               o.out.string(), quant_name(o.quant), s.quantized_tensors, s.copied_tensors,
               static_cast<double>(s.input_bytes) / 1e9, static_cast<double>(s.output_bytes) / 1e9, s.files, dt);
  });
}

}  // namespace ilm::cli
