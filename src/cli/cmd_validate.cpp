// `internlm validate`: checks a deployment end to end and writes report.json / .md / .html
// (src/validate/). Exits 1 when a check fails.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <ctime>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "common/data_path.h"
#include "common/error.h"
#include "common/progress.h"
#include "model/kv_cache.h"
#include "validate/thresholds.h"
#include "validate/validate.h"

namespace ilm::cli {

namespace {

struct ValidateArgs {
  ModelArgs model;
  std::string out, golden, config, prompts, stages, kv_dtype = "f32";
  bool quick = false, full = false, print_config = false;
};

std::string own_command_line() {
  const std::string all = read_text_file("/proc/self/cmdline");
  std::string out;
  std::string arg;
  for (char c : all) {
    if (c == '\0') {
      bool plain = !arg.empty() && arg.find_first_of(" \t\n'\"\\$`*?;&|<>()") == std::string::npos;
      if (!out.empty()) out += ' ';
      out += plain ? arg : fmt::format("'{}'", arg);
      arg.clear();
    } else {
      arg += c;
    }
  }
  return out;
}

std::string default_out(const std::filesystem::path& model_dir) {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
  auto name = model_dir.lexically_normal().filename().string();
  if (name.empty()) name = model_dir.lexically_normal().parent_path().filename().string();
  return fmt::format("reports/{}-{}", name.empty() ? "model" : name, stamp);
}

void run(const ValidateArgs& a) {
  if (a.print_config) {
    std::fputs(validate::Thresholds::defaults_toml().c_str(), stdout);
    return;
  }
  if (a.quick && a.full) throw Error("give at most one of --quick and --full");
  validate::Options o;
  o.model = a.model.model;
  o.model_dir = resolve_model_dir(a.model.model);
  o.backend = a.model.backend;
  o.quant = a.model.quant;
  o.precision = a.model.parsed_precision();
  parse_quant(o.quant);  // a bad --quant is a usage error, before any work
  parse_kv_cache_dtype_arg(a.kv_dtype);  // a bad value is a usage error, before any work
  o.kv_dtype = a.kv_dtype;
  o.threads = a.model.threads;
  o.full = a.full;
  o.out_dir = a.out.empty() ? default_out(o.model_dir) : a.out;
  o.golden_dir = a.golden;
  o.config_file = a.config;
  if (!a.golden.empty() && !std::filesystem::is_directory(a.golden))
    throw Error(fmt::format("--golden {}: not a directory", a.golden));
  o.prompts_file = a.prompts.empty() ? data_file("prompts.jsonl")
                                     : std::filesystem::path(a.prompts);
  if (!a.stages.empty())
    for (std::string& s : split_commas(a.stages))
      if (!s.empty()) o.stages.push_back(std::move(s));
  std::error_code ec;
  o.self_exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) throw Error(fmt::format("cannot find the internlm executable (/proc/self/exe: {})", ec.message()));
  o.command_line = own_command_line();
  if (!a.config.empty()) {
    validate::Thresholds check;  // a bad config file is a usage error, before any work
    check.load_file(a.config);
  }
  const auto progress = make_load_progress("validate");  // the model stage's load
  o.load_progress = progress.get();
  const int rc = validate::run_validate(o);
  if (rc != 0) throw CLI::RuntimeError(rc);
}

}  // namespace

void add_validate_command(CLI::App& app) {
  auto a = std::make_shared<ValidateArgs>();
  CLI::App* cmd = app.add_subcommand(
      "validate", "Check a deployment end to end (environment, model, operators, precision, inference, API, "
                  "performance) and write report.json/.md/.html");
  a->model.add_to(*cmd);
  cmd->add_option("--out,-o", a->out, "Report folder (default: reports/<model>-<date>-<time>)");
  cmd->add_option("--golden", a->golden,
                  "Folder of reference logits (FILE + FILE.json as `internlm logits` / tools/hf_reference.py write)");
  cmd->add_flag("--quick", a->quick, "Bounded run (the default): few prompts, short benchmarks, small sweep");
  cmd->add_flag("--full", a->full, "Every prompt, longer benchmarks, the full context sweep");
  cmd->add_option("--config", a->config, "Thresholds and budgets (TOML; see --print-config)");
  cmd->add_option("--prompts", a->prompts, "Prompt set (default: prompts.jsonl of the data directory: share/internlm when installed, else data/)");
  add_kv_cache_dtype_option(*cmd, a->kv_dtype, "of the servers started by the api and performance stages");
  cmd->add_option("--stages", a->stages,
                  "Comma-separated stages to run (operators, precision, inference, api, performance; "
                  "environment and model always run)");
  cmd->add_flag("--print-config", a->print_config, "Print every setting with its default (a validate.toml) and exit");
  cmd->callback([a] { run(*a); });
}

}  // namespace ilm::cli
