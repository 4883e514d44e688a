// internlm: the command-line entry point. Subcommands live in cmd_*.cpp.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include <fmt/format.h>

#include "backend/cpu/kernels.h"
#include "build_info.h"
#include "cli/commands.h"
#include "cli/env_config.h"
#include "common/data_path.h"
#include "common/error.h"

namespace {

// `internlm --version`: version, commit and build type, the CPU kernel sets compiled in and the
// ones this CPU runs (as `internlm ops` reports them), and where the data files are read from.
std::string version_text() {
  std::string isas;
  for (auto isa : ilm::cpu::compiled_isas()) {
    if (!isas.empty()) isas += ' ';
    isas += isa;
  }
  const char* forced = std::getenv("INTERNLM_CPU_KERNELS");
  return fmt::format(
      "internlm.cpp {}\n"
      "commit:      {}\n"
      "build type:  {}\n"
      "kernel sets: {} (compiled)\n"
      "this cpu:    {} with --precision fast (default), {} with --precision exact{}\n"
      "data dir:    {}",
      INTERNLM_VERSION, INTERNLM_GIT_COMMIT, INTERNLM_BUILD_TYPE, isas,
      ilm::cpu::best_kernels(ilm::Precision::Fast).isa, ilm::cpu::best_kernels(ilm::Precision::Exact).isa,
      forced != nullptr && *forced != '\0' ? fmt::format(" (INTERNLM_CPU_KERNELS={} overrides both)", forced) : "",
      ilm::data_dir().string());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"internlm.cpp: inference engine for the InternLM2 / InternLM2.5 model family"};
  app.set_version_flag("--version", version_text, "Print the version, commit, build type and CPU kernel sets");
  app.require_subcommand(1);
  ilm::cli::add_inspect_command(app);
  ilm::cli::add_run_command(app);
  ilm::cli::add_logits_command(app);
  ilm::cli::add_synth_command(app);
  ilm::cli::add_tokenize_command(app);
  ilm::cli::add_ops_command(app);
  ilm::cli::add_bench_command(app);
  ilm::cli::add_quantize_command(app);
  ilm::cli::add_serve_command(app);
  ilm::cli::add_bench_serve_command(app);
  ilm::cli::add_validate_command(app);
  ilm::cli::add_env_and_config(app);  // after every subcommand: their flags get INTERNLM_* and --config
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const ilm::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
