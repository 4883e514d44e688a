#pragma once
// Where internlm finds the files it reads at run time besides a checkpoint: the prompt set and
// report schema (data/ in the source tree) and the InternLM2 tokenizer of the built-in default
// model. An installed binary (cmake --install, the .deb, the Docker image) finds them next to
// itself, so it runs from any directory without the source tree; a binary in a build tree
// falls back to the source tree it was configured from.
#include <filesystem>
#include <string_view>

namespace ilm {

// The data directory: $INTERNLM_DATA_DIR when set; else <directory of /proc/self/exe>/../share/internlm
// when it holds prompts.jsonl (an installed binary); else <source dir>/data (a build-tree
// binary) when that exists; else the installed location (so errors name where it should be).
std::filesystem::path data_dir();
// data_dir() / name, e.g. data_file("prompts.jsonl").
std::filesystem::path data_file(std::string_view name);
// True when data_dir() is an installed share/internlm rather than the source tree's data/.
bool data_dir_is_installed();
// The directory of the running executable (/proc/self/exe), empty when it cannot be read.
std::filesystem::path executable_dir();

// The InternLM2 tokenizer shipped with internlm (used by `synth` and the built-in default
// model): <data dir>/internlm2-tokenizer when installed, else
// <source dir>/../shared/models/internlm2-tokenizer. May not exist; callers check.
std::filesystem::path bundled_tokenizer_dir();

// Where the built-in default model lives (created on first use): $INTERNLM_DEFAULT_MODEL when
// set; an installed binary: $XDG_CACHE_HOME/internlm/default-tiny (~/.cache/internlm/...), as
// the install prefix may not be writable; a build-tree binary: <source dir>/models/default-tiny.
std::filesystem::path default_model_dir();

}  // namespace ilm
