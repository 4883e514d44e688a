// The bench-serve SSE decoder on arbitrary streams: fed whole or in arbitrary pieces it yields
// the same events, and the recorder takes any event data without failing.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.h"
#include "server/serve_bench_sse.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using ilm::serve_bench::SseParser;
  if (size == 0) return 0;
  const std::string_view all(reinterpret_cast<const char*>(data + 1), size - 1);
  const size_t step = 1 + data[0] % 7;
  std::vector<std::string> whole, pieces;
  {
    SseParser p;
    auto on = [&](std::string_view d) { whole.emplace_back(d); };
    p.feed(all, on);
    p.finish(on);
  }
  {
    SseParser p;
    auto on = [&](std::string_view d) { pieces.emplace_back(d); };
    for (size_t i = 0; i < all.size(); i += step) p.feed(all.substr(i, step), on);
    p.finish(on);
  }
  if (whole != pieces) ilm::fuzz::violated("SSE events depend on how the stream is split");
  for (const bool chat : {false, true}) {
    ilm::serve_bench::RequestRecord record;
    ilm::serve_bench::StreamRecorder rec(record, chat);
    double t = 0;
    for (const auto& d : whole) rec.on_data(d, t += 0.01);
    rec.finish(t + 0.01);
  }
  return 0;
}
