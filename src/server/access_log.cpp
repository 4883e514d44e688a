#include "server/access_log.h"

#include <cctype>
#include <cmath>
#include <cstring>
#include <random>

#include <fmt/format.h>

#include "server/log.h"

namespace ilm::server {

std::string sanitize_request_id(std::string_view raw) {
  std::string out;
  for (char c : raw) {
    if (out.size() >= kMaxRequestIdBytes) break;
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x80 && (std::isalnum(u) || std::strchr("-_.:/+=@", c) != nullptr)) out += c;
  }
  return out;
}

std::string new_request_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{:016x}{:016x}", rng(), rng());
}

void log_access(const AccessRecord& r) {
  auto ms = [](double s) { return std::round(s * 1e4) / 10; };  // milliseconds, 0.1 ms steps
  log::Fields f = {{"request_id", r.request_id}, {"method", r.method}, {"path", r.path},
                   {"status", r.status},         {"client", r.client}};
  if (r.prompt_tokens >= 0) f.emplace_back("prompt_tokens", r.prompt_tokens);
  if (r.completion_tokens >= 0) f.emplace_back("completion_tokens", r.completion_tokens);
  if (r.ttft_seconds >= 0) f.emplace_back("ttft_ms", ms(r.ttft_seconds));
  f.emplace_back("total_ms", ms(r.total_seconds));
  log::info("request", f);
}

}  // namespace ilm::server
