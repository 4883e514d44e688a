#include "server/openai_response.h"

#include <random>

#include <fmt/format.h>

namespace ilm::server {

using nlohmann::json;

namespace {

json bytes_json(const std::string& b) {
  json a = json::array();
  for (char c : b) a.push_back(static_cast<int>(static_cast<unsigned char>(c)));
  return a;
}

json chat_alt(const LogprobAlt& a) {
  return {{"token", a.token}, {"logprob", a.logprob}, {"bytes", bytes_json(a.bytes)}};
}

// Chat: {"content": [{token, logprob, bytes, top_logprobs: [...]}]}.
json chat_logprobs(const std::vector<LogprobEntry>& entries) {
  json content = json::array();
  for (const auto& e : entries) {
    json item = chat_alt(e);
    json top = json::array();
    for (const auto& t : e.top) top.push_back(chat_alt(t));
    item["top_logprobs"] = std::move(top);
    content.push_back(std::move(item));
  }
  return {{"content", std::move(content)}};
}

// Completions (legacy): parallel arrays, alternatives as {token: logprob}.
json completion_logprobs(const std::vector<LogprobEntry>& entries) {
  json tokens = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
  for (const auto& e : entries) {
    tokens.push_back(e.token);
    offsets.push_back(e.text_offset);
    if (e.unconditioned) {  // an echoed prompt's first token has no logprob
      lps.push_back(nullptr);
      tops.push_back(nullptr);
      continue;
    }
    lps.push_back(e.logprob);
    json top = json::object();
    for (const auto& t : e.top)
      if (!top.contains(t.token)) top[t.token] = t.logprob;  // several ids may print alike
    tops.push_back(std::move(top));
  }
  return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

json logprobs_json(const ResponseMeta& m, const std::vector<LogprobEntry>& entries) {
  if (!m.logprobs) return nullptr;
  return m.endpoint == Endpoint::Chat ? chat_logprobs(entries) : completion_logprobs(entries);
}

json finish_json(const std::string& reason) { return reason.empty() ? json(nullptr) : json(reason); }

json envelope(const ResponseMeta& m, const char* object) {
  return {{"id", m.id}, {"object", object}, {"created", m.created}, {"model", m.model}};
}

const char* chunk_object(const ResponseMeta& m) {
  return m.endpoint == Endpoint::Chat ? "chat.completion.chunk" : "text_completion";
}

}  // namespace

std::string dump_json(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse_event(const json& j) { return fmt::format("data: {}\n\n", dump_json(j)); }

std::string make_response_id(Endpoint endpoint) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{}-{:016x}{:08x}", endpoint == Endpoint::Chat ? "chatcmpl" : "cmpl", rng(),
                     static_cast<uint32_t>(rng()));
}

json error_json(const ApiError& e) {
  auto opt = [](const std::string& s) { return s.empty() ? json(nullptr) : json(s); };
  return {{"error",
           {{"message", e.what()}, {"type", e.type()}, {"param", opt(e.param())}, {"code", opt(e.code())}}}};
}

json usage_json(const GenerationResult& r) {
  return {{"prompt_tokens", r.prompt_tokens},
          {"completion_tokens", r.completion_tokens},
          {"total_tokens", r.prompt_tokens + r.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", r.cached_tokens}}}};
}

json response_json(const ResponseMeta& m, const GenerationResult& r) {
  const bool chat = m.endpoint == Endpoint::Chat;
  json j = envelope(m, chat ? "chat.completion" : "text_completion");
  json choices = json::array();
  for (const auto& c : r.choices) {
    json choice = {{"index", c.index}};
    if (chat) {
      choice["message"] = {{"role", "assistant"}, {"content", c.text}};
      if (!c.tool_calls.empty()) {
        // As OpenAI: no content besides the calls is null, not "".
        if (c.text.empty()) choice["message"]["content"] = nullptr;
        json calls = json::array();
        for (const auto& t : c.tool_calls)
          calls.push_back({{"id", t.id}, {"type", "function"}, {"function", {{"name", t.name}, {"arguments", t.arguments}}}});
        choice["message"]["tool_calls"] = std::move(calls);
      }
    } else {
      choice["text"] = c.text;
    }
    choice["logprobs"] = logprobs_json(m, c.logprobs);
    choice["finish_reason"] = finish_json(c.finish_reason);
    choices.push_back(std::move(choice));
  }
  j["choices"] = std::move(choices);
  j["usage"] = usage_json(r);
  return j;
}

json role_chunk(const ResponseMeta& m, int index, bool usage_null) {
  json j = envelope(m, chunk_object(m));
  j["choices"] = json::array({{{"index", index},
                               {"delta", {{"role", "assistant"}, {"content", ""}}},
                               {"logprobs", nullptr},
                               {"finish_reason", nullptr}}});
  if (usage_null) j["usage"] = nullptr;
  return j;
}

json delta_chunk(const ResponseMeta& m, const ChoiceDelta& d, bool usage_null) {
  json j = envelope(m, chunk_object(m));
  json choice = {{"index", d.index}};
  if (m.endpoint == Endpoint::Chat) {
    // The last chunk of a choice carries an empty delta when it brings no text, as OpenAI's.
    json delta = json::object();
    if (!d.text.empty() || (d.tool_calls.empty() && d.finish_reason.empty())) delta["content"] = d.text;
    if (!d.tool_calls.empty()) {
      // A call's first delta names it (arguments ""), the rest carry argument fragments.
      json calls = json::array();
      for (const auto& t : d.tool_calls) {
        json call = {{"index", t.index}};
        if (!t.id.empty()) {
          call["id"] = t.id;
          call["type"] = "function";
          call["function"] = {{"name", t.name}, {"arguments", t.arguments}};
        } else {
          call["function"] = {{"arguments", t.arguments}};
        }
        calls.push_back(std::move(call));
      }
      delta["tool_calls"] = std::move(calls);
    }
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = d.text;
  }
  choice["logprobs"] = logprobs_json(m, d.logprobs);
  choice["finish_reason"] = finish_json(d.finish_reason);
  j["choices"] = json::array({std::move(choice)});
  if (usage_null) j["usage"] = nullptr;
  return j;
}

json usage_chunk(const ResponseMeta& m, const GenerationResult& r) {
  json j = envelope(m, chunk_object(m));
  j["choices"] = json::array();
  j["usage"] = usage_json(r);
  return j;
}

}  // namespace ilm::server
