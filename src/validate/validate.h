#pragma once
// `internlm validate`: checks a deployment end to end — environment, checkpoint, operators,
// precision against the ref oracle (and optional golden logits), inference, the HTTP API,
// performance — and writes report.json, report.md and report.html with the raw logs.
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/loaded_model.h"
#include "common/precision.h"
#include "validate/report.h"
#include "validate/thresholds.h"

namespace ilm::validate {

struct Options {
  std::string model;  // as given ("" = the built-in default)
  std::filesystem::path model_dir;  // resolved
  std::string backend = "cpu";
  std::string quant = "none";
  Precision precision = Precision::Fast;  // --precision: the cpu backend's arithmetic
  std::string kv_dtype = "f32";  // KV cache element type of the servers validate starts
  int threads = 0;
  std::filesystem::path out_dir;
  std::filesystem::path golden_dir;  // empty: no golden comparison
  std::filesystem::path prompts_file;
  std::filesystem::path config_file;  // empty: defaults
  bool full = false;                  // --full (default --quick)
  std::vector<std::string> stages;    // empty: all
  std::filesystem::path self_exe;     // the internlm binary (for serve / bench-serve)
  std::string command_line;           // as typed, for the report
  LoadProgress* load_progress = nullptr;  // hears the model stage's load (common/progress.h)
};

// The threshold key for this run: "a.fast_b" in place of "a.b" under --precision fast on a
// backend that has a fast path, where such a key exists.
std::string fast_key(const Options& o, const std::string& key);

// Stage ids in order.
const std::vector<std::string>& stage_ids();

// Live progress on stderr: a header per stage, a line per finished check.
class Progress {
 public:
  explicit Progress(bool enabled = true) : enabled_(enabled) {}
  void stage(int index, int total, const std::string& title);
  void note(const std::string& text);  // work in progress inside a stage
  void check(const Check& c);
  void stage_done(const StageResult& s);

 private:
  bool enabled_;
};

// What the stages share.
struct Context {
  Options opts;
  Thresholds th;
  Progress* progress = nullptr;
  // Set by the model stage when the checkpoint loads on the chosen backend.
  std::unique_ptr<LoadedModel> model;
  std::string model_error;      // why it did not load
  std::string fault;            // INTERNLM_FAULT_INJECT in effect ("" = none)
  nlohmann::json checkpoint;    // params, bytes per format, context limit ...
  bool quick() const { return !opts.full; }
  std::string mode() const { return opts.full ? "full" : "quick"; }
  void note(const std::string& s) const {
    if (progress) progress->note(s);
  }
};

// Runs the stages, writes the reports into opts.out_dir and prints the pass/fail table.
// Returns the process exit code: 0 when no check failed, 1 otherwise.
int run_validate(Options opts);

// The report JSON (built by run_validate) rendered as Markdown / self-contained HTML.
std::string render_markdown(const nlohmann::json& report);
std::string render_html(const nlohmann::json& report);
// The final pass/fail table printed on the terminal.
std::string render_table(const nlohmann::json& report);

}  // namespace ilm::validate
