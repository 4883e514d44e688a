#pragma once
// Each subcommand lives in its own cmd_*.cpp and registers itself on the root app.
// A subcommand's callback throws ilm::Error for user errors; main() prints it and exits 1.
namespace CLI {
class App;
}

namespace ilm::cli {

void add_inspect_command(CLI::App& app);
void add_run_command(CLI::App& app);
void add_logits_command(CLI::App& app);
void add_synth_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_ops_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_quantize_command(CLI::App& app);
void add_serve_command(CLI::App& app);
void add_bench_serve_command(CLI::App& app);
void add_validate_command(CLI::App& app);

}  // namespace ilm::cli
