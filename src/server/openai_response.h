#pragma once
// JSON bodies of the OpenAI API: completions, chat completions, their streaming chunks,
// usage, model list and errors. Everything is serialized with dump_json, which replaces any
// invalid UTF-8 (none should reach it) instead of throwing, so a reply is always valid JSON.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "server/api_error.h"
#include "server/generation.h"

namespace ilm::server {

// What every body of one request shares.
struct ResponseMeta {
  std::string id;  // "chatcmpl-..." / "cmpl-..."
  int64_t created = 0;
  std::string model;
  Endpoint endpoint = Endpoint::Chat;
  bool logprobs = false;  // the request asked for logprobs
};

std::string dump_json(const nlohmann::json& j);
// One Server-Sent Event: "data: <json>\n\n".
std::string sse_event(const nlohmann::json& j);
inline constexpr const char* kSseDone = "data: [DONE]\n\n";

// A random id with the endpoint's prefix.
std::string make_response_id(Endpoint endpoint);

nlohmann::json error_json(const ApiError& e);
nlohmann::json usage_json(const GenerationResult& r);

// The whole (non-streaming) response.
nlohmann::json response_json(const ResponseMeta& m, const GenerationResult& r);

// Streaming: the first chunk of a chat choice ({"role": "assistant"}), a delta, and the final
// usage chunk (choices: []). `usage_null`: include "usage": null (stream_options.include_usage).
nlohmann::json role_chunk(const ResponseMeta& m, int index, bool usage_null);
nlohmann::json delta_chunk(const ResponseMeta& m, const ChoiceDelta& d, bool usage_null);
nlohmann::json usage_chunk(const ResponseMeta& m, const GenerationResult& r);

}  // namespace ilm::server
