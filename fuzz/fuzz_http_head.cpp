// The connection gate's request framing on arbitrary bytes: a head is complete, incomplete or
// refused with a 4xx/5xx status and a message; a complete head's length lies inside the input;
// the chunked scanner gives the same verdict fed whole or a byte at a time.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_common.h"
#include "server/http_head.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ilm::server;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  HeadLimits limits;
  limits.max_bytes = 4096;
  limits.max_fields = 20;
  const HeadParse h = parse_request_head(in, limits);
  if (h.status == HeadParse::Status::Complete && (h.head.head_bytes > size || h.head.head_bytes > limits.max_bytes))
    ilm::fuzz::violated("a complete head is longer than the input or the cap");
  if (h.status == HeadParse::Status::Error && (h.error_status < 400 || h.error.empty()))
    ilm::fuzz::violated("a refused head without a status or message");

  ChunkedScanner whole(1 << 16), bytewise(1 << 16);
  size_t used_whole = 0;
  const auto r_whole = whole.feed(in, used_whole);
  auto r_byte = ChunkedScanner::Result::NeedMore;
  size_t used_byte = 0;
  for (size_t i = 0; i < size && r_byte == ChunkedScanner::Result::NeedMore; ++i) {
    size_t u = 0;
    r_byte = bytewise.feed(in.substr(i, 1), u);
    used_byte = i + u;
  }
  if (r_byte == ChunkedScanner::Result::NeedMore) used_byte = size;
  if (r_whole != r_byte || (r_whole == ChunkedScanner::Result::Done && used_whole != used_byte))
    ilm::fuzz::violated("the chunked scanner depends on how the body is split");
  return 0;
}
