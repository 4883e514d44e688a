// `internlm synth`: writes a synthetic InternLM2 checkpoint (random weights, real tokenizer) in
// the exact Hugging Face layout, streaming so that even the 7B shape needs little memory.
#include <CLI/CLI.hpp>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <unistd.h>

#include "cli/commands.h"
#include "common/error.h"
#include "synth/synth.h"

namespace ilm::cli {

namespace {

struct SynthArgs {
  std::string preset = "tiny";
  int64_t layers = 0;
  uint64_t seed = 0;
  std::string dtype = "bf16";
  std::string rope_scaling;
  int64_t max_position_embeddings = 0;
  bool tie_word_embeddings = false;
  uint64_t shard_mb = 0;
  double init_std = 0.02;
  std::string tokenizer;
  std::string out;
  bool force = false;
};

std::string human(double bytes) {
  if (bytes >= 1e9) return fmt::format("{:.2f} GB", bytes / 1e9);
  if (bytes >= 1e6) return fmt::format("{:.1f} MB", bytes / 1e6);
  if (bytes >= 1e3) return fmt::format("{:.1f} kB", bytes / 1e3);
  return fmt::format("{:.0f} B", bytes);
}

std::string human_count(double n) {
  if (n >= 1e9) return fmt::format("{:.2f}B", n / 1e9);
  if (n >= 1e6) return fmt::format("{:.1f}M", n / 1e6);
  return fmt::format("{:.0f}", n);
}

// Progress on stderr: redrawn in place (at most 10 times a second) on a terminal, a line
// every 5 seconds otherwise. Quiet for the first second, so small presets print nothing.
class Progress {
 public:
  Progress() : tty_(isatty(fileno(stderr)) != 0), start_(Clock::now()), last_(start_) {}

  void update(uint64_t done, uint64_t total) {
    const auto now = Clock::now();
    const double elapsed = seconds(start_, now);
    const bool final = done >= total;
    if (elapsed < 1.0 && !shown_) return;
    if (!final && seconds(last_, now) < (tty_ ? 0.1 : 5.0) && shown_) return;
    if (final && !tty_ && !shown_) return;  // finished within a second: the summary says it all
    last_ = now;
    const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0;
    const double pct = total ? 100.0 * static_cast<double>(done) / static_cast<double>(total) : 100.0;
    std::string eta;
    if (!final && rate > 0)
      eta = fmt::format(", ETA {:.0f} s", static_cast<double>(total - done) / rate);
    const std::string line = fmt::format("synth: {} / {} ({:.1f}%), {:.0f} MB/s{}", human(static_cast<double>(done)),
                                         human(static_cast<double>(total)), pct, rate / 1e6, eta);
    if (tty_)
      std::fprintf(stderr, "\r%-72s%s", line.c_str(), final ? "\n" : "");
    else
      std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
    shown_ = true;
    done_line_ = final;
  }

  // Ends a half-drawn line (after an error) so the next message starts cleanly.
  void close() {
    if (tty_ && shown_ && !done_line_) std::fprintf(stderr, "\n");
  }

  double elapsed() const { return seconds(start_, Clock::now()); }

 private:
  using Clock = std::chrono::steady_clock;
  static double seconds(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  }
  bool tty_;
  Clock::time_point start_, last_;
  bool shown_ = false, done_line_ = false;
};

// CLI11's stock range validators print the whole double range; these say what is wanted.
CLI::Validator positive_integer() {
  return CLI::Validator(
      [](std::string& v) -> std::string {
        long long x = 0;
        const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
        if (ec != std::errc() || end != v.data() + v.size() || x <= 0)
          return "must be a positive integer, got '" + v + "'";
        return {};
      },
      "");
}

CLI::Validator non_negative_number() {
  return CLI::Validator(
      [](std::string& v) -> std::string {
        double x = 0;
        const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
        if (ec != std::errc() || end != v.data() + v.size() || !std::isfinite(x) || x < 0)
          return "must be a finite number >= 0, got '" + v + "'";
        return {};
      },
      "");
}

void run_synth(const SynthArgs& a) {
  SynthOptions o;
  o.preset = a.preset;
  if (a.layers < 0) throw Error(fmt::format("--layers must be positive, got {}", a.layers));
  o.layers = a.layers;
  o.seed = a.seed;
  if (a.dtype == "bf16" || a.dtype == "bfloat16")
    o.dtype = DType::BF16;
  else if (a.dtype == "f32" || a.dtype == "float32")
    o.dtype = DType::F32;
  else
    throw Error(fmt::format("--dtype: unknown dtype '{}' (use bf16 or f32)", a.dtype));
  o.rope_scaling = a.rope_scaling;
  if (a.max_position_embeddings < 0)
    throw Error(fmt::format("--max-position-embeddings must be positive, got {}", a.max_position_embeddings));
  o.max_position_embeddings = a.max_position_embeddings;
  o.tie_word_embeddings = a.tie_word_embeddings;
  // "MB" as in HF's max_shard_size="5GB": 10^6 bytes.
  if (a.shard_mb > UINT64_MAX / 1'000'000) throw Error("--shard-mb is too large");
  o.shard_bytes = a.shard_mb * 1'000'000;
  o.init_std = a.init_std;
  o.tokenizer_dir = a.tokenizer;
  o.out = a.out;
  o.force = a.force;

  Progress progress;
  SynthSummary s;
  try {
    s = write_synthetic_checkpoint(o, [&](uint64_t done, uint64_t total) { progress.update(done, total); });
  } catch (...) {
    progress.close();
    throw;
  }
  const double secs = progress.elapsed();
  std::printf("synth: wrote %s: preset %s, %s params (%llu), %s in %llu weight file%s + %zu other files, %.1f s (%.0f MB/s)\n",
              a.out.c_str(), a.preset.c_str(), human_count(static_cast<double>(s.params)).c_str(),
              static_cast<unsigned long long>(s.params), human(static_cast<double>(s.bytes_written)).c_str(),
              static_cast<unsigned long long>(s.weight_files), s.weight_files == 1 ? "" : "s",
              s.files.size() - static_cast<size_t>(s.weight_files), secs,
              secs > 0 ? static_cast<double>(s.bytes_written) / secs / 1e6 : 0.0);
}

}  // namespace

void add_synth_command(CLI::App& app) {
  auto args = std::make_shared<SynthArgs>();
  CLI::App* cmd = app.add_subcommand(
      "synth",
      "Write a synthetic InternLM2 checkpoint (random weights, real tokenizer) in the Hugging Face layout");
  cmd->add_option("--preset", args->preset, "Model shape: tiny, small, 1_8b (InternLM2-1.8B), 7b (internlm2_5-7b-chat)")
      ->capture_default_str();
  cmd->add_option("--layers", args->layers, "Number of decoder layers (default: the preset's)")
      ->check(positive_integer());
  cmd->add_option("--seed", args->seed, "Random seed; the same seed gives byte-identical weights")
      ->capture_default_str();
  cmd->add_option("--dtype", args->dtype, "Weight dtype: bf16 or f32")->capture_default_str();
  cmd->add_option("--rope-scaling", args->rope_scaling,
                  "none, dynamic:F or linear:F (default: dynamic:2.0, as InternLM2.5)");
  cmd->add_option("--max-position-embeddings", args->max_position_embeddings, "Default: 32768")
      ->check(positive_integer());
  cmd->add_flag("--tie-word-embeddings", args->tie_word_embeddings,
                "Share the output head with the embeddings (no output.weight)");
  cmd->add_option("--shard-mb", args->shard_mb,
                  "Maximum shard size in MB of 10^6 bytes (default 5000, HF's \"5GB\")")
      ->check(positive_integer());
  cmd->add_option("--init-std", args->init_std, "Standard deviation of the matrix weights")
      ->capture_default_str()
      ->check(non_negative_number());
  cmd->add_option("--tokenizer", args->tokenizer,
                  "Directory with tokenizer.model (default: $INTERNLM_TOKENIZER_DIR or shared/models/internlm2-tokenizer)");
  cmd->add_option("--out", args->out, "Output directory")->required();
  cmd->add_flag("--force", args->force, "Write into an existing non-empty directory (stale weight files are removed)");
  cmd->callback([args] { run_synth(*args); });
}

}  // namespace ilm::cli
