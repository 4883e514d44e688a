// The OpenAI request parsers on arbitrary bodies: every client mistake is an ApiError (or an
// ilm::Error the server turns into a 400); nothing else escapes.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/error.h"
#include "fuzz_common.h"
#include "server/api_error.h"
#include "server/openai_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ilm::server;
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  ParseContext ctx;
  ctx.tokenizer = &ilm::fuzz::tokenizer();
  ctx.model_name = "tiny";
  ctx.max_model_len = 4096;
  ctx.max_tokens_default = 64;
  nlohmann::json j;
  try {
    j = parse_body(body);
  } catch (const ApiError&) {
    return 0;
  }
  auto attempt = [&](auto&& fn) {
    try {
      fn();
    } catch (const ApiError&) {
    } catch (const ilm::Error&) {
    }
  };
  attempt([&] {
    const GenerationRequest r = parse_chat_request(j, ctx);
    for (const auto& p : r.prompts) (void)resolve_max_tokens(r, static_cast<int64_t>(p.size()), 4096, 1024);
  });
  attempt([&] {
    const GenerationRequest r = parse_completion_request(j, ctx);
    for (const auto& p : r.prompts) (void)resolve_max_tokens(r, static_cast<int64_t>(p.size()), 4096);
  });
  attempt([&] { (void)parse_tokenize_request(j, *ctx.tokenizer, 4096); });
  attempt([&] { (void)parse_detokenize_request(j, *ctx.tokenizer); });
  return 0;
}
