#include "server/log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <array>
#include <memory>

namespace ilm::server::log {

namespace {

using nlohmann::json;

constexpr const char* kTextPattern = "%Y-%m-%d %H:%M:%S.%e %l %v";
constexpr const char* kJsonPattern = R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l",%v})";

struct State {
  std::shared_ptr<spdlog::logger> logger;
  Format format = Format::Text;
  State() : logger(std::make_shared<spdlog::logger>("internlm", std::make_shared<spdlog::sinks::stderr_sink_mt>())) {
    logger->set_pattern(kTextPattern);
    logger->set_level(spdlog::level::info);
    logger->flush_on(spdlog::level::trace);  // every line at once: logs are read while serving
  }
};

State& state() {
  static State s;
  return s;
}

spdlog::level::level_enum to_spdlog(Level l) {
  switch (l) {
    case Level::Trace: return spdlog::level::trace;
    case Level::Debug: return spdlog::level::debug;
    case Level::Info: return spdlog::level::info;
    case Level::Warning: return spdlog::level::warn;
    case Level::Error: return spdlog::level::err;
    case Level::Critical: return spdlog::level::critical;
    case Level::Off: break;
  }
  return spdlog::level::off;
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

bool bare(const std::string& s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f) return false;
  return true;
}

}  // namespace

std::optional<Level> parse_level(std::string_view name) {
  constexpr std::array<std::pair<std::string_view, Level>, 8> kNames = {{{"trace", Level::Trace},
                                                                         {"debug", Level::Debug},
                                                                         {"info", Level::Info},
                                                                         {"warning", Level::Warning},
                                                                         {"warn", Level::Warning},
                                                                         {"error", Level::Error},
                                                                         {"critical", Level::Critical},
                                                                         {"off", Level::Off}}};
  for (const auto& [n, l] : kNames)
    if (n == name) return l;
  return std::nullopt;
}

std::optional<Format> parse_format(std::string_view name) {
  if (name == "text") return Format::Text;
  if (name == "json") return Format::Json;
  return std::nullopt;
}

void configure(Level level, Format format) {
  State& s = state();
  s.format = format;
  s.logger->set_pattern(format == Format::Json ? kJsonPattern : kTextPattern);
  s.logger->set_level(to_spdlog(level));
}

bool enabled(Level level) { return level != Level::Off && state().logger->should_log(to_spdlog(level)); }

std::string render(Format format, std::string_view msg, const Fields& fields) {
  // Appended piece by piece (GCC 12 warns falsely about `literal + std::string`, -Wrestrict).
  std::string out;
  const std::string m = dump(json(std::string(msg)));  // valid UTF-8, control characters escaped
  if (format == Format::Json) {
    out.append("\"msg\":").append(m);
    for (const auto& [k, v] : fields) out.append(",").append(dump(json(k))).append(":").append(dump(v));
    return out;
  }
  out.append(m, 1, m.size() - 2);  // the message without quotes
  for (const auto& [k, v] : fields) {
    out.append(" ").append(k).append("=");
    const bool plain = v.is_string() && bare(v.get_ref<const std::string&>());
    out.append(plain ? v.get_ref<const std::string&>() : dump(v));
  }
  return out;
}

void write(Level level, std::string_view msg, const Fields& fields) {
  if (!enabled(level)) return;
  State& s = state();
  s.logger->log(to_spdlog(level), "{}", render(s.format, msg, fields));
}

}  // namespace ilm::server::log
