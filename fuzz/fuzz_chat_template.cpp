// The chat template on arbitrary messages (NUL-separated role / content pairs): encode_chat
// equals BOS + encode(render_chat(...)) without special tokens, as the official tokenizer does
// with the rendered text.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "fuzz_common.h"
#include "tokenizer/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ilm::Tokenizer& tok = ilm::fuzz::tokenizer();
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> parts;
  while (!in.empty() && parts.size() < 16) {
    const size_t z = in.find('\0');
    parts.push_back(in.substr(0, z));
    in = z == std::string_view::npos ? std::string_view() : in.substr(z + 1);
  }
  std::vector<ilm::ChatMessage> messages;
  for (size_t i = 0; i + 1 < parts.size(); i += 2) messages.push_back({std::string(parts[i]), std::string(parts[i + 1])});
  const bool gen = size % 2 == 0;
  try {
    const std::vector<ilm::TokenId> ids = ilm::encode_chat(tok, messages, gen);
    std::vector<ilm::TokenId> want{tok.bos_id()};
    const auto body = tok.encode(ilm::render_chat(messages, gen, ""), false);
    want.insert(want.end(), body.begin(), body.end());
    if (ids != want) ilm::fuzz::violated("encode_chat differs from encoding the rendered template");
  } catch (const ilm::Error&) {  // invalid UTF-8 in a role or content
  }
  return 0;
}
