#pragma once
// Helpers shared by the subcommands.
#include <filesystem>
#include <string>
#include <vector>

#include "runtime/sampler.h"

namespace ilm::cli {

// The checkpoint to use: `model` if given, else the built-in default — a tiny synthetic
// checkpoint (random weights, real tokenizer) generated on first use under
// $INTERNLM_DEFAULT_MODEL or <source dir>/models/default-tiny.
std::filesystem::path resolve_model_dir(const std::string& model);

// "1,333,352" -> ids; throws ilm::Error on anything else.
std::vector<TokenId> parse_ids(const std::string& text);

// Reads a whole file (for --prompt-file); throws ilm::Error naming it.
std::string read_text_file(const std::filesystem::path& path);

}  // namespace ilm::cli
