#include "common/utc_time.h"

#include <ctime>

namespace ilm {

namespace {

std::string format_now(bool utc, const char* format) {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  if (utc) gmtime_r(&t, &tm);
  else localtime_r(&t, &tm);
  char buf[64];
  return std::strftime(buf, sizeof buf, format, &tm) ? buf : "";
}

}  // namespace

std::string utc_timestamp() { return format_now(true, "%Y-%m-%dT%H:%M:%SZ"); }

std::string local_timestamp(const char* format) { return format_now(false, format); }

}  // namespace ilm
