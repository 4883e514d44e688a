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

constexpr size_t kBriefChars = 60;

void render_brief(const nlohmann::json& v, std::string& out, int depth) {
  if (out.size() > kBriefChars) return;
  if (v.is_structured() && depth >= 4) {
    out += v.is_array() ? "[...]" : "{...}";
    return;
  }
  if (v.is_array()) {
    out += '[';
    bool first = true;
    for (const auto& e : v) {
      if (out.size() > kBriefChars) break;
      if (!first) out += ", ";
      first = false;
      render_brief(e, out, depth + 1);
    }
    out += ']';
  } else if (v.is_object()) {
    out += '{';
    bool first = true;
    for (const auto& [k, e] : v.items()) {
      if (out.size() > kBriefChars) break;
      if (!first) out += ", ";
      first = false;
      out += nlohmann::json(k).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      out += ": ";
      render_brief(e, out, depth + 1);
    }
    out += '}';
  } else {
    out += v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
}

}  // namespace

std::string json_brief(const nlohmann::json& v) {
  std::string s;
  try {
    render_brief(v, s, 0);
  } catch (...) {
    return "<unprintable value>";
  }
  if (s.size() > kBriefChars) {
    s.resize(kBriefChars - 3);
    // Do not cut a UTF-8 sequence in half.
    while (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xc0) == 0x80) s.pop_back();
    if (!s.empty() && (static_cast<unsigned char>(s.back()) & 0x80) != 0) s.pop_back();
    s += "...";
  }
  return s;
}

nlohmann::json read_json_file(const std::filesystem::path& path) {
  const MappedFile file = MappedFile::open(path);  // rejects missing files and directories
  const char* begin = reinterpret_cast<const char*>(file.data());
  const char* end = begin + file.size();
  if (file.size() == 0) throw Error(fmt::format("{}: invalid JSON: the file is empty", path.string()));
  // nlohmann's lexer takes a NUL byte for the end of input and would ignore what follows it;
  // valid JSON never holds a raw NUL, so refuse it.
  if (const void* nul = std::memchr(begin, 0, file.size()); nul != nullptr)
    throw Error(fmt::format("{}: invalid JSON: NUL byte at offset {}", path.string(),
                            static_cast<const char*>(nul) - begin));
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
