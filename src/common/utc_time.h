#pragma once
// Wall-clock time as reports print it.
#include <string>

namespace ilm {

// Now, in UTC, ISO 8601 to the second: "2026-11-26T01:02:03Z".
std::string utc_timestamp();

}  // namespace ilm
