// The tool-call parser on arbitrary replies: fed whole or in arbitrary pieces it yields the same
// content and calls, its events are well formed, and no action marker reaches the content.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.h"
#include "tokenizer/tool_call_parser.h"

namespace {

struct Folded {
  std::string content;
  std::vector<std::string> calls;  // name + '\0' + arguments
  bool operator==(const Folded&) const = default;
};

Folded fold(const std::vector<ilm::ToolCallEvent>& evs) {
  using K = ilm::ToolCallEvent::Kind;
  Folded f;
  bool open = false;
  for (const auto& e : evs) {
    switch (e.kind) {
      case K::Text:
        if (open) ilm::fuzz::violated("text inside a call");
        f.content += e.text;
        break;
      case K::Begin:
        if (open) ilm::fuzz::violated("a call began inside a call");
        open = true;
        f.calls.push_back(e.text + '\0');
        break;
      case K::Args:
        if (!open) ilm::fuzz::violated("arguments outside a call");
        f.calls.back() += e.text;
        break;
      case K::End:
        if (!open) ilm::fuzz::violated("an end outside a call");
        open = false;
        break;
    }
  }
  if (open) ilm::fuzz::violated("a call left open after finish");
  return f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const int max_calls = data[0] % 3;
  const size_t step = 1 + data[1] % 9;
  const std::string_view all(reinterpret_cast<const char*>(data + 2), size - 2);
  std::vector<ilm::ToolCallEvent> whole, pieces;
  {
    ilm::ToolCallParser p(max_calls);
    p.push(all, whole);
    p.finish(whole);
  }
  {
    ilm::ToolCallParser p(max_calls);
    for (size_t i = 0; i < all.size(); i += step) p.push(all.substr(i, step), pieces);
    p.finish(pieces);
  }
  const Folded a = fold(whole), b = fold(pieces);
  if (!(a == b)) ilm::fuzz::violated("tool-call events depend on how the reply is split");
  for (const std::string_view m : ilm::ToolCallParser::kMarkers)
    if (a.content.find(m) != std::string::npos) ilm::fuzz::violated("an action marker reached the content");
  if (max_calls > 0 && a.calls.size() > static_cast<size_t>(max_calls)) ilm::fuzz::violated("more calls than allowed");
  return 0;
}
