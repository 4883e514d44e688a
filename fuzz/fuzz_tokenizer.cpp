// The tokenizer with its added tokens on arbitrary text and ids: encode either throws ilm::Error
// (invalid UTF-8) or gives in-vocabulary ids that decode back to the text; a stream of
// arbitrary ids decodes incrementally to exactly what decode gives at once; count_beyond is a
// true lower bound.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ilm::Tokenizer& tok = ilm::fuzz::tokenizer();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const std::vector<ilm::TokenId> ids = tok.encode(text, false);
    for (const ilm::TokenId id : ids)
      if (id < 0 || id >= tok.vocab_size()) ilm::fuzz::violated("encode gave an id outside the vocabulary");
    const auto limit = static_cast<int64_t>(size / 3);
    if (const auto n = tok.count_beyond(text, limit); n && (*n <= limit || *n > static_cast<int64_t>(ids.size())))
      ilm::fuzz::violated("count_beyond is not a lower bound above the limit");
  } catch (const ilm::Error&) {
  }
  // The same bytes as token ids (two bytes each).
  std::vector<ilm::TokenId> ids;
  for (size_t i = 0; i + 1 < size; i += 2)
    ids.push_back(static_cast<ilm::TokenId>((data[i] | (data[i + 1] << 8)) % tok.vocab_size()));
  for (const bool skip : {false, true}) {
    ilm::StreamDecoder dec(tok, skip);
    std::string streamed;
    for (const ilm::TokenId id : ids) streamed += dec.push(id);
    streamed += dec.flush();
    if (streamed != tok.decode(ids, skip)) ilm::fuzz::violated("streamed decoding differs from decode");
  }
  return 0;
}
