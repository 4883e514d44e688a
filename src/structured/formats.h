#pragma once
// JSON Schema string formats that the matcher enforces, each as an anchored pattern for the
// regex DFA (regex.h). Stricter than RFC 3339 where that keeps it simple: upper-case "T" and
// "Z" only, no leap second (:60).
#include <optional>
#include <string_view>

namespace ilm::structured {

// The pattern for `format` (date, date-time, time, uuid); nullopt for any other format.
std::optional<std::string_view> format_pattern(std::string_view format);

}  // namespace ilm::structured
