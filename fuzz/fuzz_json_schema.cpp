// Structured output on arbitrary input: the first line is a JSON Schema, the rest a candidate
// reply. Compiling gives a schema or a SchemaError; a reply the matcher accepts is valid JSON;
// from the state after any live prefix, a walk through live bytes (steered by the input) that
// reaches an end gives valid JSON too (no dead ends, no false ends).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fuzz_common.h"
#include "structured/json_matcher.h"
#include "structured/json_schema.h"

using namespace ilm::structured;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nl = input.find('\n');
  const std::string_view schema_text = input.substr(0, nl);
  const std::string_view text = nl == std::string_view::npos ? std::string_view() : input.substr(nl + 1);
  const auto j = nlohmann::ordered_json::parse(schema_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  Schema s;
  try {
    s = compile_schema(j);
  } catch (const SchemaError&) {
    return 0;
  }
  if (matches(s, text) && nlohmann::json::parse(text, nullptr, false).is_discarded())
    ilm::fuzz::violated("the matcher accepted invalid JSON");
  MatchState st = initial_state(s);
  std::string out;
  for (char c : text) {
    MatchState next = advance(s, st, static_cast<uint8_t>(c));
    if (next.dead()) break;
    st = std::move(next);
    out.push_back(c);
  }
  // Complete it: the first live byte from a rotating start, steered by the input's bytes.
  size_t steer = 0;
  for (int step = 0; step < 256; ++step) {
    if (can_end(s, st) && (step > 64 || (size > 0 && data[steer++ % size] % 3 == 0))) {
      if (nlohmann::json::parse(out, nullptr, false).is_discarded()) ilm::fuzz::violated("an end state is not valid JSON");
      return 0;
    }
    const int start = size > 0 ? data[steer++ % size] : 0;
    bool moved = false;
    for (int k = 0; k < 256 && !moved; ++k) {
      const auto b = static_cast<uint8_t>((start + k) % 256);
      MatchState next = advance(s, st, b);
      if (next.dead()) continue;
      st = std::move(next);
      out.push_back(static_cast<char>(b));
      moved = true;
    }
    if (!moved) {
      if (!can_end(s, st)) ilm::fuzz::violated("a live state has no live byte and cannot end");
      if (nlohmann::json::parse(out, nullptr, false).is_discarded()) ilm::fuzz::violated("an end state is not valid JSON");
      return 0;
    }
  }
  return 0;
}
