#pragma once
// `internlm bench-serve`: turns an OpenAI-style server-sent-event stream into a RequestRecord
// (first content token, per-chunk arrival times, `usage`, finish reason, error events).
// No network here, so the timing rules are unit-tested on their own.
#include <functional>
#include <string>
#include <string_view>

#include "server/serve_bench_record.h"

namespace ilm::serve_bench {

// Splits a byte stream into SSE events; calls on_data with each event's data (several
// `data:` lines joined by '\n'). Accepts \n, \r\n and \r line ends; ignores comments,
// `event:`/`id:` fields and events without data.
class SseParser {
 public:
  using Handler = std::function<void(std::string_view data)>;
  void feed(std::string_view bytes, const Handler& on_data);
  void finish(const Handler& on_data);  // the last event when the stream ends without a blank line

 private:
  void line(std::string_view l, const Handler& on_data);
  std::string pending_;  // incomplete line
  std::string data_;     // data of the current event
  bool has_data_ = false;
  bool last_was_cr_ = false;
};

// Interprets the events of one /v1/completions (chat = false) or /v1/chat/completions stream.
// A "token" is a chunk whose first choice carries non-empty text (completions) or
// delta.content (chat): TTFT is the first one's arrival, ITL the gaps between them.
class StreamRecorder {
 public:
  StreamRecorder(RequestRecord& record, bool chat) : r_(record), chat_(chat) {}
  // One event's data, received at time t.
  void on_data(std::string_view data, double t);
  // The body ended at time t (transport errors are handled by the caller).
  void finish(double t);
  size_t tokens() const { return r_.token_times.size(); }
  bool failed() const { return !error_.empty(); }

 private:
  RequestRecord& r_;
  bool chat_;
  bool done_ = false;         // [DONE] seen
  double first_choice_ = -1;  // arrival of the first chunk with choices (TTFT fallback)
  int64_t chunks_with_choices_ = 0;
  std::string error_;
};

}  // namespace ilm::serve_bench
