// internlm: the command-line entry point. Subcommands live in cmd_*.cpp.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "common/error.h"

int main(int argc, char** argv) {
  CLI::App app{"internlm.cpp: inference engine for the InternLM2 / InternLM2.5 model family"};
  app.set_version_flag("--version", std::string("internlm.cpp ") + INTERNLM_VERSION);
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
