#pragma once
// Request ids and the access log of `internlm serve`: one line per HTTP request (at info level,
// off with --disable-log-requests) with its id, method, path, status, client address, token
// counts, time to first token and total time. Request bodies are never logged.
#include <cstdint>
#include <string>
#include <string_view>

namespace ilm::server {

inline constexpr size_t kMaxRequestIdBytes = 128;

// A client's X-Request-Id made safe to echo and log: letters, digits and "-_.:/+=@" kept, other
// bytes dropped, at most kMaxRequestIdBytes. Empty when nothing is left (the caller makes one).
std::string sanitize_request_id(std::string_view raw);
// A fresh id: 32 random hex digits.
std::string new_request_id();

struct AccessRecord {
  std::string request_id, method, path, client;
  int status = 0;
  int64_t prompt_tokens = -1, completion_tokens = -1;  // -1: not a generation request
  double ttft_seconds = -1;                            // -1: no token came
  double total_seconds = 0;
};

// Writes the record's line to the server log (server/log.h).
void log_access(const AccessRecord& r);

}  // namespace ilm::server
