#pragma once
// HTTP/1.1 request framing, as the connection gate needs it before a request may reach a worker:
// the head (request line and header fields, RFC 9112 §2-§5, RFC 9110 §5.5) checked against size
// and field-count caps, and a chunked body (RFC 9112 §7.1) scanned for its end. Pure functions of
// the bytes received so far: no sockets, so they are unit-tested and fuzzed on their own.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ilm::server {

struct HeadLimits {
  size_t max_bytes = 64u << 10;  // request line + fields + the blank line
  int max_fields = 100;
};

struct RequestHead {
  std::string method, target;
  int minor_version = 1;  // HTTP/1.<minor>
  std::vector<std::pair<std::string, std::string>> fields;  // names lower-cased, values trimmed
  bool keep_alive = true;         // the client allows the connection to be reused
  bool chunked = false;           // Transfer-Encoding: chunked
  uint64_t content_length = 0;    // without chunked: the body's length
  bool expect_continue = false;   // Expect: 100-continue
  size_t head_bytes = 0;          // bytes of the head, blank line included
  const std::string* field(std::string_view lower_name) const;
};

struct HeadParse {
  enum class Status { Incomplete, Complete, Error } status = Status::Incomplete;
  RequestHead head;
  int error_status = 0;  // 400, 431, 501, 505
  std::string error;
};

// Parses the head at the start of `buf`. Incomplete while no blank line has come and the cap
// is not passed; an error as soon as what has come cannot be a valid head within the caps.
HeadParse parse_request_head(std::string_view buf, const HeadLimits& limits);

// Finds the end of a chunked body fed piece by piece. Chunk extensions are skipped, trailer
// fields allowed (bounded); anything else malformed, a chunk not followed by CRLF included, is
// an error. Sizes are checked against `max_body` before any data is awaited.
class ChunkedScanner {
 public:
  explicit ChunkedScanner(uint64_t max_body) : max_body_(max_body) {}
  enum class Result { NeedMore, Done, Error, TooLarge };
  // Consumes from `data`; `used` is how many bytes belong to the body (all of them unless Done).
  Result feed(std::string_view data, size_t& used);
  uint64_t body_bytes() const { return total_; }
  const std::string& error() const { return error_; }

 private:
  enum class State { Size, SizeLine, SizeLF, Data, DataCR, DataLF, TrailerStart, TrailerLine, TrailerLF, FinalLF };
  Result fail(std::string msg);
  State state_ = State::Size;
  uint64_t max_body_, total_ = 0, remaining_ = 0;
  int size_digits_ = 0;
  size_t line_bytes_ = 0, trailer_bytes_ = 0;
  std::string error_;
};

}  // namespace ilm::server
