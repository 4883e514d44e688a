#pragma once
// Wall-clock time as reports print it.
#include <string>

namespace ilm {

// Now, in UTC, ISO 8601 to the second: "2026-11-26T01:02:03Z".
std::string utc_timestamp();
// Now, in local time, as `strftime` writes `format` (e.g. vLLM's result names: "%Y%m%d-%H%M%S").
std::string local_timestamp(const char* format);

}  // namespace ilm
