#include "structured/formats.h"

namespace ilm::structured {
namespace {

// RFC 3339 full-date with the day valid for its month: 29 February only in leap years (a year
// divisible by 4 but not by 100 unless by 400; the two-digit tail decides "by 4", "00" tails
// defer to the century). Year 0000 is left out (many validators' calendars start at year 1).
#define ILM_DATE                                                                                  \
  "(?:(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)" \
  "|02-(?:0[1-9]|1[0-9]|2[0-8]))"                                                                 \
  "|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)-02-29)"
// RFC 3339 full-time: partial-time and a required offset (seconds 00-59).
#define ILM_TIME                                                                                  \
  "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]+)?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"

constexpr std::string_view kDate = "^" ILM_DATE "$";
constexpr std::string_view kTime = "^" ILM_TIME "$";
constexpr std::string_view kDateTime = "^" ILM_DATE "T" ILM_TIME "$";
constexpr std::string_view kUuid =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

#undef ILM_DATE
#undef ILM_TIME

}  // namespace

std::optional<std::string_view> format_pattern(std::string_view format) {
  if (format == "date") return kDate;
  if (format == "time") return kTime;
  if (format == "date-time") return kDateTime;
  if (format == "uuid") return kUuid;
  return std::nullopt;
}

}  // namespace ilm::structured
