#pragma once
// Every flag of every subcommand from the environment and from a TOML flags file, as the tools
// users deploy with do it (vLLM's --config, INTERNLM_* like VLLM_*).
//
//   --max-model-len 4096            the command line wins,
//   INTERNLM_MAX_MODEL_LEN=4096     then the environment (INTERNLM_ + the first long name,
//                                   upper case, '-' -> '_'),
//   --config flags.toml             then the file: `max-model-len = 4096` (or max_model_len)
//                                   applies to the subcommand being run when it has that flag;
//                                   under `[serve]` it applies to `serve` only.
#include <string>

namespace CLI {
class App;
}

namespace ilm::cli {

// Call once every subcommand is registered: gives each option of the subcommand being run its
// environment variable and installs the root --config option.
void add_env_and_config(CLI::App& app);

// "max-model-len" -> "INTERNLM_MAX_MODEL_LEN"
std::string env_name_of(const std::string& long_name);

}  // namespace ilm::cli
