#pragma once
// The server's log: one line per event on stderr through spdlog, with a timestamp and a level,
// as text
//   2025-01-31 12:00:00.123 info model loaded name=tiny seconds=0.41
// or, with Format::Json, as one JSON object per line
//   {"time":"2025-01-31T12:00:00.123+00:00","level":"info","msg":"model loaded","name":"tiny","seconds":0.41}
// Events carry a message and named fields; the access log (server/access_log.h) is built on it.
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace ilm::server::log {

enum class Level { Trace, Debug, Info, Warning, Error, Critical, Off };
enum class Format { Text, Json };

// "trace", "debug", "info", "warning" (or "warn"), "error", "critical", "off".
std::optional<Level> parse_level(std::string_view name);
// "text", "json".
std::optional<Format> parse_format(std::string_view name);

// Sets the level below which events are dropped, and the line format (default: info, text).
void configure(Level level, Format format);
bool enabled(Level level);

using Fields = std::vector<std::pair<std::string, nlohmann::json>>;

void write(Level level, std::string_view msg, const Fields& fields = {});
inline void debug(std::string_view msg, const Fields& fields = {}) { write(Level::Debug, msg, fields); }
inline void info(std::string_view msg, const Fields& fields = {}) { write(Level::Info, msg, fields); }
inline void warn(std::string_view msg, const Fields& fields = {}) { write(Level::Warning, msg, fields); }
inline void error(std::string_view msg, const Fields& fields = {}) { write(Level::Error, msg, fields); }

// A line's body after its timestamp and level: text `msg k=v k2="v 2"` (strings with spaces,
// quotes, '=' or control characters quoted as JSON), or JSON members `"msg":...,"k":v`.
// Invalid UTF-8 becomes U+FFFD.
std::string render(Format format, std::string_view msg, const Fields& fields);

}  // namespace ilm::server::log
