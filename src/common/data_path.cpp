#include "common/data_path.h"

#include <cstdlib>
#include <string>
#include <system_error>

namespace ilm {

namespace fs = std::filesystem;

namespace {

const char* env_or_null(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : nullptr;
}

fs::path installed_data_dir() {
  const fs::path exe = executable_dir();
  if (exe.empty()) return {};
  return (exe / ".." / "share" / "internlm").lexically_normal();
}

fs::path source_data_dir() { return fs::path(INTERNLM_SOURCE_DIR) / "data"; }

}  // namespace

fs::path executable_dir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : exe.parent_path();
}

bool data_dir_is_installed() {
  if (env_or_null("INTERNLM_DATA_DIR")) return false;
  const fs::path inst = installed_data_dir();
  std::error_code ec;
  return !inst.empty() && fs::is_regular_file(inst / "prompts.jsonl", ec);
}

fs::path data_dir() {
  if (const char* env = env_or_null("INTERNLM_DATA_DIR")) return env;
  if (data_dir_is_installed()) return installed_data_dir();
  std::error_code ec;
  const fs::path src = source_data_dir();
  if (fs::is_directory(src, ec)) return src;
  const fs::path inst = installed_data_dir();
  return inst.empty() ? src : inst;
}

fs::path data_file(std::string_view name) { return data_dir() / fs::path(name); }

fs::path bundled_tokenizer_dir() {
  if (data_dir_is_installed()) return installed_data_dir() / "internlm2-tokenizer";
  return (fs::path(INTERNLM_SOURCE_DIR) / ".." / "shared" / "models" / "internlm2-tokenizer").lexically_normal();
}

fs::path default_model_dir() {
  if (const char* env = env_or_null("INTERNLM_DEFAULT_MODEL")) return env;
  if (!data_dir_is_installed()) return fs::path(INTERNLM_SOURCE_DIR) / "models" / "default-tiny";
  if (const char* cache = env_or_null("XDG_CACHE_HOME")) return fs::path(cache) / "internlm" / "default-tiny";
  if (const char* home = env_or_null("HOME")) return fs::path(home) / ".cache" / "internlm" / "default-tiny";
  return fs::temp_directory_path() / "internlm" / "default-tiny";
}

}  // namespace ilm
