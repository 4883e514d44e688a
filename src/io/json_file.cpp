#include "io/json_file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <system_error>

#include <fmt/format.h>

#include "common/error.h"
#include "io/mapped_file.h"

namespace ilm {

namespace {

// nlohmann's messages start with "[json.exception.parse_error.101] "; the rest (with line and
// column) is what a user needs.
std::string_view strip_json_prefix(std::string_view what) {
  if (!what.empty() && what.front() == '[') {
    const size_t close = what.find("] ");
    if (close != std::string_view::npos) what.remove_prefix(close + 2);
  }
  return what;
}

}  // namespace

nlohmann::json read_json_file(const std::filesystem::path& path) {
  const MappedFile file = MappedFile::open(path);  // rejects missing files and directories
  const char* begin = reinterpret_cast<const char*>(file.data());
  const char* end = begin + file.size();
  if (file.size() == 0) throw Error(fmt::format("{}: invalid JSON: the file is empty", path.string()));
  try {
    return nlohmann::json::parse(begin, end);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: invalid JSON: {}", path.string(), strip_json_prefix(e.what())));
  }
}

void write_json_file(const std::filesystem::path& path, const nlohmann::json& j) {
  std::string text;
  try {
    text = j.dump(2);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: cannot serialise JSON: {}", path.string(), strip_json_prefix(e.what())));
  }
  text += '\n';

  // Write beside the target and rename, so a failure never leaves a half-written file.
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr)
    throw Error(fmt::format("{}: cannot create: {}", tmp.string(), std::strerror(errno)));
  const bool wrote = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  const int write_errno = errno;
  const bool closed = std::fclose(f) == 0;
  if (!wrote || !closed) {
    const int err = !wrote ? write_errno : errno;
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    throw Error(fmt::format("{}: write failed: {}", path.string(), std::strerror(err)));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::error_code ec2;
    std::filesystem::remove(tmp, ec2);
    throw Error(fmt::format("{}: cannot rename into place: {}", path.string(), ec.message()));
  }
}

}  // namespace ilm
