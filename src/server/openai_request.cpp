#include "server/openai_request.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "common/error.h"
#include "tokenizer/tool_prompt.h"

namespace ilm::server {

using nlohmann::json;

namespace {

// The field's value, or nullptr when it is absent or null (clients send null for "not set").
const json* field(const json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

double as_number(const json& v, const std::string& name) {
  if (!v.is_number()) throw bad_request(fmt::format("'{}' must be a number", name), name);
  return v.get<double>();
}

// An integer; a float with an integral value (16.0) is accepted, as JSON does not tell them apart.
int64_t as_int(const json& v, const std::string& name) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      throw bad_request(fmt::format("'{}' is too large", name), name);
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e18) return static_cast<int64_t>(d);
  }
  throw bad_request(fmt::format("'{}' must be an integer", name), name);
}

int64_t as_int_in(const json& v, const std::string& name, int64_t lo, int64_t hi) {
  const int64_t x = as_int(v, name);
  if (x < lo || x > hi)
    throw bad_request(fmt::format("'{}' must be between {} and {}, got {}", name, lo, hi, x), name);
  return x;
}

bool as_bool(const json& v, const std::string& name) {
  if (!v.is_boolean()) throw bad_request(fmt::format("'{}' must be a boolean", name), name);
  return v.get<bool>();
}

const std::string& as_string(const json& v, const std::string& name) {
  if (!v.is_string()) throw bad_request(fmt::format("'{}' must be a string", name), name);
  return v.get_ref<const std::string&>();
}

TokenId as_token_id(const json& v, const std::string& name, const Tokenizer& tok) {
  if (!v.is_number_integer())
    throw bad_request(fmt::format("'{}' must be a list of integer token ids", name), name);
  const int64_t id = as_int(v, name);
  if (id < 0 || id >= tok.vocab_size())
    throw bad_request(fmt::format("'{}': token id {} is out of range [0, {})", name, id, tok.vocab_size()), name);
  return static_cast<TokenId>(id);
}

std::vector<TokenId> as_token_ids(const json& v, const std::string& name, const Tokenizer& tok) {
  if (!v.is_array()) throw bad_request(fmt::format("'{}' must be a list of token ids", name), name);
  std::vector<TokenId> ids;
  ids.reserve(v.size());
  for (const auto& x : v) ids.push_back(as_token_id(x, name, tok));
  return ids;
}

// A prompt that certainly has more tokens than the context is refused before it is encoded in
// full (Tokenizer::count_beyond).
void refuse_if_beyond(const Tokenizer& tok, std::string_view text, int64_t max_model_len, const char* what,
                      const char* param) {
  // Up to 8 bytes a token, the caller's full encode is bounded work anyway (and the context
  // check after it exact): counting first would only encode such prompts twice.
  constexpr int64_t kBytesPerTokenBound = 8;
  if (max_model_len <= 0 || static_cast<int64_t>(text.size()) <= kBytesPerTokenBound * max_model_len) return;
  std::optional<int64_t> n;
  try {
    n = tok.count_beyond(text, max_model_len);
  } catch (const Error& e) {
    throw bad_request(e.what(), param);
  }
  if (n)
    throw bad_request(fmt::format("This model's maximum context length is {} tokens. However, your {} resulted in "
                                  "more than {} tokens, which leaves no room for a completion.",
                                  max_model_len, what, *n),
                      param);
}

// The ids of a chat prompt: the built-in template (encode_chat) or `tmpl` (--chat-template),
// whose rendering errors (raise_exception, ...) are the request's fault. Either way exactly one
// BOS id comes first and the rest is encoded without special additions.
std::vector<TokenId> chat_prompt(const Tokenizer& tok, const JinjaTemplate* tmpl, const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt, int64_t max_model_len) {
  if (!tmpl) {
    refuse_if_beyond(tok, render_chat(messages, add_generation_prompt, ""), max_model_len, "messages", "messages");
    return encode_chat(tok, messages, add_generation_prompt);
  }
  std::string body;
  try {
    body = render_chat_body(tok, *tmpl, messages, add_generation_prompt);
  } catch (const TemplateError& e) {
    throw bad_request(e.what(), "messages");
  }
  refuse_if_beyond(tok, body, max_model_len, "messages", "messages");
  std::vector<TokenId> ids{tok.bos_id()};
  try {
    const std::vector<TokenId> rest = tok.encode(body, false);
    ids.insert(ids.end(), rest.begin(), rest.end());
  } catch (const Error& e) {
    throw bad_request(e.what(), "messages");
  }
  return ids;
}

std::vector<TokenId> encode_text(const Tokenizer& tok, const std::string& text, bool add_special,
                                 int64_t max_model_len) {
  refuse_if_beyond(tok, text, max_model_len, "prompt", "prompt");
  try {
    return tok.encode(text, add_special);
  } catch (const Error& e) {
    throw bad_request(e.what(), "prompt");
  }
}

// OpenAI's logit_bias: {"<token id>": bias in [-100, 100], ...}; an id twice is ambiguous.
std::vector<std::pair<TokenId, float>> parse_logit_bias(const json& v, const Tokenizer& tok) {
  if (!v.is_object()) throw bad_request("'logit_bias' must be an object mapping token ids to biases", "logit_bias");
  std::vector<std::pair<TokenId, float>> out;
  for (const auto& [key, value] : v.items()) {
    int64_t id = -1;
    const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), id);
    if (ec != std::errc() || end != key.data() + key.size() || key.empty() || id < 0 || id >= tok.vocab_size())
      throw bad_request(fmt::format("'logit_bias': key '{}' is not a token id in [0, {})", key, tok.vocab_size()),
                        "logit_bias");
    const double b = as_number(value, "logit_bias");
    if (!(b >= -100.0 && b <= 100.0))
      throw bad_request(fmt::format("'logit_bias': the bias of token {} must be in [-100, 100], got {}", id, b),
                        "logit_bias");
    out.emplace_back(static_cast<TokenId>(id), static_cast<float>(b));
  }
  std::sort(out.begin(), out.end());  // by id: duplicates meet (and any size stays O(n log n))
  for (size_t i = 1; i < out.size(); ++i)
    if (out[i].first == out[i - 1].first)
      throw bad_request(fmt::format("'logit_bias': token {} is given twice", out[i].first), "logit_bias");
  return out;
}

void reject_unsupported(const json& body) {
  // vLLM's and the legacy OpenAI fields that would change the output: refused, never dropped.
  for (const char* name : {"guided_json", "guided_regex", "guided_choice", "guided_grammar", "guided_decoding_backend",
                           "structured_outputs", "functions", "function_call", "prompt_logprobs"})
    if (const json* v = field(body, name); v && !v->is_null())
      throw bad_request(fmt::format("'{}' is not supported", name), name);
  if (const json* v = field(body, "suffix"); v && !(v->is_string() && v->get_ref<const std::string&>().empty()))
    throw bad_request("'suffix' is not supported", "suffix");
}

// response_format: text (nothing to do), json_object (any JSON object) or json_schema
// ({"name", "schema", "strict"}: a schema the matcher enforces exactly, else 400 naming the
// keyword).
// Whether arrays / objects nest deeper than `limit`, found without recursion: the parser
// takes 100,000 levels in stride, but copying or dumping them recursively would not.
template <class Json>
bool nests_deeper_than(const Json& v, int limit) {
  std::vector<std::pair<const Json*, int>> stack{{&v, 1}};
  while (!stack.empty()) {
    const auto [j, depth] = stack.back();
    stack.pop_back();
    if (!j->is_structured()) continue;
    if (depth > limit) return true;
    for (const auto& child : *j) stack.emplace_back(&child, depth + 1);
  }
  return false;
}

std::shared_ptr<structured::Grammar> parse_response_format(const json& v, const ParseContext& ctx) {
  if (v.is_null()) return nullptr;
  if (nests_deeper_than(v, 256))
    throw bad_request("'response_format' nests deeper than 256 levels", "response_format");
  const json* type = v.is_object() ? field(v, "type") : nullptr;
  if (!type || !type->is_string())
    throw bad_request("'response_format' must be an object with a 'type'", "response_format");
  const std::string& t = type->get_ref<const std::string&>();
  if (t == "text") return nullptr;
  if (t != "json_object" && t != "json_schema")
    throw bad_request(fmt::format("response_format type '{}' is not one of text, json_object, json_schema", t),
                      "response_format");
  if (!ctx.grammars) throw bad_request("structured output is not available here", "response_format");
  try {
    if (t == "json_object") return ctx.grammars->for_json_object();
    const json* js = field(v, "json_schema");
    if (!js || !js->is_object())
      throw bad_request("response_format json_schema needs a 'json_schema' object", "response_format.json_schema");
    if (const json* name = field(*js, "name"); name && !name->is_string())
      throw bad_request("'response_format.json_schema.name' must be a string", "response_format.json_schema.name");
    const json* schema = field(*js, "schema");
    if (!schema) throw bad_request("'response_format.json_schema.schema' is required", "response_format.json_schema.schema");
    // Again with the key order kept: properties are generated in the schema's order.
    // (Without the raw body, as in unit tests, the keys come sorted.)
    const std::string fallback = ctx.raw_body.empty() ? json{{"response_format", v}}.dump() : std::string();
    const auto ordered = nlohmann::ordered_json::parse(ctx.raw_body.empty() ? std::string_view(fallback) : ctx.raw_body);
    return ctx.grammars->for_schema(ordered.at("response_format").at("json_schema").at("schema"));
  } catch (const structured::SchemaError& e) {
    throw bad_request(fmt::format("response_format schema at '{}': {}", e.where().empty() ? "/" : e.where(), e.what()),
                      "response_format.json_schema.schema");
  }
}

// The fields both endpoints share.
void parse_common(const json& body, const ParseContext& ctx, GenerationRequest& r) {
  if (!body.is_object()) throw bad_request("the request body must be a JSON object");
  if (const json* v = field(body, "model")) {
    r.model = as_string(*v, "model");
    if (r.model != ctx.model_name)
      throw ApiError(404, fmt::format("The model '{}' does not exist; this server serves '{}'", r.model, ctx.model_name),
                     "model", "model_not_found");
  }
  reject_unsupported(body);

  SamplingParams& s = r.sampling;
  s = ctx.defaults;
  if (const json* v = field(body, "temperature")) s.temperature = static_cast<float>(as_number(*v, "temperature"));
  if (const json* v = field(body, "top_p")) s.top_p = static_cast<float>(as_number(*v, "top_p"));
  if (const json* v = field(body, "top_k")) {
    const int64_t k = as_int_in(*v, "top_k", -1, std::numeric_limits<int32_t>::max());
    s.top_k = k < 0 ? 0 : static_cast<int32_t>(k);  // -1 means off (vLLM's convention)
  }
  if (const json* v = field(body, "min_p")) s.min_p = static_cast<float>(as_number(*v, "min_p"));
  if (const json* v = field(body, "repetition_penalty"))
    s.repetition_penalty = static_cast<float>(as_number(*v, "repetition_penalty"));
  if (const json* v = field(body, "presence_penalty"))
    s.presence_penalty = static_cast<float>(as_number(*v, "presence_penalty"));
  if (const json* v = field(body, "frequency_penalty"))
    s.frequency_penalty = static_cast<float>(as_number(*v, "frequency_penalty"));
  if (const json* v = field(body, "seed")) {
    // OpenAI seeds are signed 64-bit; the sampler takes the same bits unsigned.
    if (v->is_number_unsigned()) s.seed = v->get<uint64_t>();
    else s.seed = static_cast<uint64_t>(as_int(*v, "seed"));
    r.seed_given = true;
  }
  if (const json* v = field(body, "logit_bias"); v && !v->is_null()) s.logit_bias = parse_logit_bias(*v, *ctx.tokenizer);
  if (const json* v = field(body, "min_tokens"))
    s.min_tokens = static_cast<int32_t>(as_int_in(*v, "min_tokens", 0, std::numeric_limits<int32_t>::max()));
  if (const json* v = field(body, "ignore_eos")) r.ignore_eos = as_bool(*v, "ignore_eos");
  if (const json* v = field(body, "response_format")) r.grammar = parse_response_format(*v, ctx);
  if (const json* v = field(body, "stop_token_ids"); v && !v->is_null()) {
    r.stop_token_ids = as_token_ids(*v, "stop_token_ids", *ctx.tokenizer);
    if (r.stop_token_ids.size() > kMaxStopTokenIds)
      throw bad_request(fmt::format("'stop_token_ids' may hold at most {} ids", kMaxStopTokenIds), "stop_token_ids");
  }
  try {
    s.validate();
  } catch (const Error& e) {
    throw bad_request(e.what());
  }

  if (const json* v = field(body, "n")) r.n = static_cast<int>(as_int_in(*v, "n", 1, ctx.max_n));

  if (const json* v = field(body, "stop")) {
    auto add = [&](const json& x) {
      const std::string& str = as_string(x, "stop");
      if (str.size() > kMaxStopBytes)
        throw bad_request(fmt::format("a stop string may be at most {} bytes long", kMaxStopBytes), "stop");
      if (!str.empty()) r.stop.push_back(str);  // an empty stop string would end every reply at once
    };
    if (v->is_array()) {
      if (v->size() > kMaxStop)
        throw bad_request(fmt::format("'stop' may hold at most {} strings, got {}", kMaxStop, v->size()), "stop");
      for (const auto& x : *v) add(x);
    } else {
      add(*v);
    }
  }

  if (const json* v = field(body, "stream")) r.stream = as_bool(*v, "stream");
  if (const json* v = field(body, "stream_options"); v && r.stream) {
    if (!v->is_object()) throw bad_request("'stream_options' must be an object", "stream_options");
    if (const json* u = field(*v, "include_usage")) r.include_usage = as_bool(*u, "stream_options.include_usage");
  }
  if (const json* v = field(body, "skip_special_tokens")) r.skip_special_tokens = as_bool(*v, "skip_special_tokens");
  if (const json* v = field(body, "best_of"); v && as_int(*v, "best_of") != 1 && as_int(*v, "best_of") != r.n)
    throw bad_request("'best_of' other than n is not supported", "best_of");
}

void parse_max_tokens(const json& body, const char* name, GenerationRequest& r) {
  if (const json* v = field(body, name))
    r.max_tokens = as_int_in(*v, name, 1, std::numeric_limits<int64_t>::max());
}

std::string message_content(const json& content, const std::string& where) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array())
    throw bad_request(fmt::format("'{}' must be a string or an array of text parts", where), where);
  std::string text;
  bool first = true;
  for (const auto& part : content) {
    if (!part.is_object()) throw bad_request(fmt::format("'{}' parts must be objects", where), where);
    const json* type = field(part, "type");
    if (!type || as_string(*type, where + ".type") != "text")
      throw bad_request(fmt::format("'{}': only parts of type \"text\" are supported", where), where);
    const json* t = field(part, "text");
    if (!t) throw bad_request(fmt::format("'{}': a text part needs 'text'", where), where);
    if (!first) text += '\n';  // vLLM joins text parts with newlines
    text += as_string(*t, where + ".text");
    first = false;
  }
  return text;
}

// An assistant message's tool_calls as the model writes them. The arguments (a JSON text) are
// parsed and written again in the prompt's JSON style (as LMDeploy does), keys in their order.
std::string render_calls(const json& calls, const std::string& where) {
  if (!calls.is_array()) throw bad_request(fmt::format("'{}' must be an array", where), where);
  std::string text;
  for (size_t j = 0; j < calls.size(); ++j) {
    const std::string at = fmt::format("{}[{}]", where, j);
    const json& c = calls[j];
    const json* fn = c.is_object() ? field(c, "function") : nullptr;
    if (!fn || !fn->is_object())
      throw bad_request(fmt::format("'{}' must be an object with a 'function'", at), at);
    if (const json* type = field(c, "type"); type && as_string(*type, at + ".type") != "function")
      throw bad_request(fmt::format("'{}.type' must be \"function\"", at), at + ".type");
    const json* name = field(*fn, "name");
    if (!name) throw bad_request(fmt::format("'{}.function.name' is required", at), at + ".function.name");
    nlohmann::ordered_json args = nlohmann::ordered_json::object();
    if (const json* a = field(*fn, "arguments")) {
      args = nlohmann::ordered_json::parse(as_string(*a, at + ".function.arguments"), nullptr, false);
      if (args.is_discarded())
        throw bad_request(fmt::format("'{}.function.arguments' is not valid JSON", at), at + ".function.arguments");
      if (nests_deeper_than(args, 256))  // it is written again recursively
        throw bad_request(fmt::format("'{}.function.arguments' nests deeper than 256 levels", at),
                          at + ".function.arguments");
    }
    text += render_tool_call(as_string(*name, at + ".function.name"), args);
  }
  return text;
}

// OpenAI's function names: 1 to 64 of a-z, A-Z, 0-9, _ and -.
bool valid_function_name(const std::string& n) {
  return !n.empty() && n.size() <= 64 && std::all_of(n.begin(), n.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

// tools / tool_choice / parallel_tool_calls of a chat request: the functions go into the
// prompt; "auto" parses calls out of the reply, "required" or a named function also constrains
// the reply to one call (a grammar over the call's JSON between the action markers), "none"
// bans the action marker.
void parse_tools(const json& body, const ParseContext& ctx, GenerationRequest& r, std::vector<ChatMessage>& messages) {
  const json* tools = field(body, "tools");
  const json* choice = field(body, "tool_choice");
  if (tools && !tools->is_array()) throw bad_request("'tools' must be an array", "tools");
  const bool have_tools = tools && !tools->empty();
  std::string mode = have_tools ? "auto" : "none";
  std::string named;
  if (choice) {
    if (choice->is_string()) {
      mode = choice->get<std::string>();
      if (mode != "none" && mode != "auto" && mode != "required")
        throw bad_request(fmt::format("'tool_choice' must be none, auto, required or a function, got '{}'", mode),
                          "tool_choice");
    } else {
      const json* fn = choice->is_object() ? field(*choice, "function") : nullptr;
      const json* type = choice->is_object() ? field(*choice, "type") : nullptr;
      const json* name = fn && fn->is_object() ? field(*fn, "name") : nullptr;
      if (!type || !type->is_string() || type->get<std::string>() != "function" || !name)
        throw bad_request("'tool_choice' must be a string or {\"type\": \"function\", \"function\": {\"name\": ...}}",
                          "tool_choice");
      mode = "function";
      named = as_string(*name, "tool_choice.function.name");
    }
    if (mode != "none" && !have_tools)
      throw bad_request(fmt::format("'tool_choice' {} needs 'tools'", mode == "function" ? "naming a function" : mode),
                        "tool_choice");
  }
  if (const json* v = field(body, "parallel_tool_calls"); v && !as_bool(*v, "parallel_tool_calls")) r.max_tool_calls = 1;
  if (!have_tools) return;
  if (tools->size() > kMaxTools)
    throw bad_request(fmt::format("at most {} tools per request, got {}", kMaxTools, tools->size()), "tools");
  if (nests_deeper_than(*tools, 256)) throw bad_request("'tools' nests deeper than 256 levels", "tools");

  // Again with the key order kept: the prompt lists the functions as the client wrote them.
  const std::string fallback = ctx.raw_body.empty() ? json{{"tools", *tools}}.dump() : std::string();
  const auto ordered_body = nlohmann::ordered_json::parse(ctx.raw_body.empty() ? std::string_view(fallback) : ctx.raw_body);
  const nlohmann::ordered_json& otools = ordered_body.at("tools");
  nlohmann::ordered_json functions = nlohmann::ordered_json::array();
  std::vector<std::string> names;
  for (size_t i = 0; i < otools.size(); ++i) {
    const std::string at = fmt::format("tools[{}]", i);
    const auto& t = otools[i];
    if (!t.is_object() || !t.contains("type") || t["type"] != "function" || !t.contains("function") ||
        !t["function"].is_object())
      throw bad_request(fmt::format("'{}' must be {{\"type\": \"function\", \"function\": {{...}}}}", at), at);
    const auto& f = t["function"];
    if (!f.contains("name") || !f["name"].is_string() || !valid_function_name(f["name"].get<std::string>()))
      throw bad_request(fmt::format("'{}.function.name' must be 1 to 64 letters, digits, '_' or '-'", at),
                        at + ".function.name");
    const std::string name = f["name"].get<std::string>();
    if (std::find(names.begin(), names.end(), name) != names.end())
      throw bad_request(fmt::format("'{}': the function '{}' is given twice", at, name), at + ".function.name");
    names.push_back(name);
    nlohmann::ordered_json fn;
    fn["name"] = name;
    if (f.contains("description") && !f["description"].is_null()) {
      if (!f["description"].is_string())
        throw bad_request(fmt::format("'{}.function.description' must be a string", at), at + ".function.description");
      fn["description"] = f["description"];
    }
    if (f.contains("parameters") && !f["parameters"].is_null()) {
      if (!f["parameters"].is_object())
        throw bad_request(fmt::format("'{}.function.parameters' must be a JSON Schema object", at),
                          at + ".function.parameters");
      fn["parameters"] = f["parameters"];
    }
    functions.push_back(std::move(fn));
  }
  insert_tools_message(messages, tools_message(functions));

  if (mode == "none") {
    if (const TokenId id = action_start_id(*ctx.tokenizer); id >= 0) r.sampling.banned.push_back(id);
    return;
  }
  r.tool_calls = true;
  if (mode == "auto") return;
  // required / a named function: the reply is one call, whatever the weights.
  if (r.grammar) throw bad_request("'response_format' and a required tool call exclude each other", "tool_choice");
  if (!ctx.grammars) throw bad_request("constrained tool calls are not available here", "tool_choice");
  std::vector<const nlohmann::ordered_json*> allowed;
  for (size_t i = 0; i < functions.size(); ++i)
    if (mode == "required" || names[i] == named) allowed.push_back(&functions[i]);
  if (allowed.empty())
    throw bad_request(fmt::format("'tool_choice' names the function '{}', which is not in 'tools'", named),
                      "tool_choice.function.name");
  try {
    const auto prefix = tool_call_prefix_ids(*ctx.tokenizer), suffix = tool_call_suffix_ids(*ctx.tokenizer);
    // An id that ends the reply cannot also be a marker the call must write.
    for (const TokenId id : r.stop_token_ids)
      if (std::find(prefix.begin(), prefix.end(), id) != prefix.end() ||
          std::find(suffix.begin(), suffix.end(), id) != suffix.end())
        throw bad_request(fmt::format("'stop_token_ids' holds {}, which a required tool call must write", id),
                          "stop_token_ids");
    r.grammar = ctx.grammars->for_framed_schema(tool_call_schema(allowed), prefix, suffix);
  } catch (const structured::SchemaError& e) {
    throw bad_request(fmt::format("a tool's parameters schema at '{}': {}", e.where().empty() ? "/" : e.where(), e.what()),
                      "tools");
  } catch (const Error& e) {
    throw bad_request(e.what(), "tools");
  }
  r.max_tool_calls = 1;
}

}  // namespace

json parse_body(std::string_view body) {
  if (!is_valid_utf8(body)) throw bad_request("the request body is not valid UTF-8");
  // nlohmann's parser takes a NUL byte for the end of the input, so "{...}\0garbage" would
  // pass; a raw NUL is never valid JSON (inside strings it must be escaped).
  if (const size_t nul = body.find('\0'); nul != std::string_view::npos)
    throw bad_request(fmt::format("the request body is not valid JSON (a NUL byte at offset {})", nul));
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw bad_request("the request body is not valid JSON");
  if (!j.is_object()) throw bad_request("the request body must be a JSON object");
  return j;
}

std::vector<ChatMessage> parse_messages(const json& body) {
  const json* msgs = field(body, "messages");
  if (!msgs) throw bad_request("'messages' is required", "messages");
  if (!msgs->is_array()) throw bad_request("'messages' must be an array", "messages");
  if (msgs->empty()) throw bad_request("'messages' must not be empty", "messages");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < msgs->size(); ++i) {
    const json& m = (*msgs)[i];
    const std::string where = fmt::format("messages[{}]", i);
    if (!m.is_object()) throw bad_request(fmt::format("'{}' must be an object", where), where);
    const json* role = field(m, "role");
    if (!role) throw bad_request(fmt::format("'{}.role' is required", where), where + ".role");
    std::string r = as_string(*role, where + ".role");
    if (r == "developer") r = "system";  // newer clients send system prompts as "developer"
    if (r != "system" && r != "user" && r != "assistant" && r != "tool")
      throw bad_request(fmt::format("'{}.role' must be system, user, assistant or tool, got '{}'", where, r),
                        where + ".role");
    const json* content = field(m, "content");
    const json* calls = r == "assistant" ? field(m, "tool_calls") : nullptr;
    if (!content && r != "assistant")
      throw bad_request(fmt::format("'{}.content' is required", where), where + ".content");
    if (r == "tool") {
      if (const json* id = field(m, "tool_call_id")) as_string(*id, where + ".tool_call_id");  // not rendered
      r = kToolResultRole;
    }
    std::string text = content ? message_content(*content, where + ".content") : std::string();
    if (calls) text += render_calls(*calls, where + ".tool_calls");
    out.push_back({r, std::move(text)});
  }
  return out;
}

GenerationRequest parse_chat_request(const json& body, const ParseContext& ctx) {
  GenerationRequest r;
  r.endpoint = Endpoint::Chat;
  if (const json* v = field(body, "echo"); v && as_bool(*v, "echo"))
    throw bad_request("'echo' is a /v1/completions field", "echo");
  parse_common(body, ctx, r);
  parse_max_tokens(body, "max_tokens", r);
  parse_max_tokens(body, "max_completion_tokens", r);  // the newer name wins
  bool want_logprobs = false;
  if (const json* v = field(body, "logprobs")) want_logprobs = as_bool(*v, "logprobs");
  if (const json* v = field(body, "top_logprobs")) {
    const int k = static_cast<int>(as_int_in(*v, "top_logprobs", 0, kMaxLogprobs));
    if (!want_logprobs) throw bad_request("'top_logprobs' needs 'logprobs': true", "top_logprobs");
    r.logprobs = k;
  } else if (want_logprobs) {
    r.logprobs = 0;
  }
  auto messages = parse_messages(body);
  parse_tools(body, ctx, r, messages);
  r.prompts.push_back(chat_prompt(*ctx.tokenizer, ctx.chat_template, messages, /*add_generation_prompt=*/true,
                                  ctx.max_model_len));
  if (!r.stream) r.default_max_tokens = ctx.max_tokens_default;
  return r;
}

GenerationRequest parse_completion_request(const json& body, const ParseContext& ctx) {
  GenerationRequest r;
  r.endpoint = Endpoint::Completions;
  for (const char* name : {"tools", "tool_choice", "parallel_tool_calls"})
    if (field(body, name)) throw bad_request(fmt::format("'{}' is a /v1/chat/completions field", name), name);
  parse_common(body, ctx, r);
  parse_max_tokens(body, "max_tokens", r);
  if (const json* v = field(body, "logprobs")) r.logprobs = static_cast<int>(as_int_in(*v, "logprobs", 0, kMaxLogprobs));
  if (const json* v = field(body, "echo")) r.echo = as_bool(*v, "echo");

  const json* p = field(body, "prompt");
  if (!p) throw bad_request("'prompt' is required", "prompt");
  const Tokenizer& tok = *ctx.tokenizer;
  if (p->is_string()) {
    r.prompts.push_back(encode_text(tok, p->get<std::string>(), true, ctx.max_model_len));
  } else if (p->is_array()) {
    if (p->empty()) throw bad_request("'prompt' must not be empty", "prompt");
    const json& first = p->front();
    if (first.is_number()) {
      r.prompts.push_back(as_token_ids(*p, "prompt", tok));  // one prompt as token ids
    } else {
      if (p->size() > kMaxPrompts)
        throw bad_request(fmt::format("at most {} prompts per request, got {}", kMaxPrompts, p->size()), "prompt");
      for (const auto& item : *p) {
        if (item.is_string() && first.is_string()) r.prompts.push_back(encode_text(tok, item.get<std::string>(), true, ctx.max_model_len));
        else if (item.is_array() && first.is_array()) r.prompts.push_back(as_token_ids(item, "prompt", tok));
        else throw bad_request("'prompt' must be a string, a list of token ids, or a list of either", "prompt");
      }
    }
  } else {
    throw bad_request("'prompt' must be a string, a list of token ids, or a list of either", "prompt");
  }
  for (const auto& ids : r.prompts)
    if (ids.empty()) throw bad_request("a prompt must hold at least one token", "prompt");
  return r;
}

int64_t resolve_max_tokens(const GenerationRequest& req, int64_t prompt_len, int64_t max_model_len,
                           int64_t kv_tokens) {
  const char* what = req.endpoint == Endpoint::Chat ? "messages" : "prompt";
  const char* param = req.endpoint == Endpoint::Chat ? "messages" : "prompt";
  if (prompt_len >= max_model_len)
    throw bad_request(fmt::format("This model's maximum context length is {} tokens. However, your {} "
                                  "resulted in {} tokens, which leaves no room for a completion.",
                                  max_model_len, what, prompt_len),
                      param);
  const int64_t room = max_model_len - prompt_len;
  if (!req.max_tokens) {
    int64_t n = req.endpoint == Endpoint::Chat ? room : std::min<int64_t>(16, room);
    if (req.default_max_tokens > 0) n = std::min(n, req.default_max_tokens);
    if (kv_tokens > prompt_len) n = std::min(n, kv_tokens - prompt_len);
    return n;
  }
  if (*req.max_tokens > room) {
    // The total is not formed when it would overflow (max_tokens near 2^63).
    const bool fits = *req.max_tokens <= INT64_MAX - prompt_len;
    throw bad_request(fmt::format("This model's maximum context length is {} tokens. However, you requested "
                                  "{} tokens ({} in the {}, {} in the completion). Please reduce the length "
                                  "of the {} or completion.",
                                  max_model_len,
                                  fits ? fmt::format("{}", prompt_len + *req.max_tokens) : std::string("more than 2^63"),
                                  prompt_len, what, *req.max_tokens, what),
                      "max_tokens");
  }
  return *req.max_tokens;
}

std::vector<TokenId> parse_tokenize_request(const json& body, const Tokenizer& tok, int64_t max_model_len,
                                            const JinjaTemplate* chat_template) {
  if (field(body, "messages")) {
    bool gen = true;
    if (const json* v = field(body, "add_generation_prompt")) gen = as_bool(*v, "add_generation_prompt");
    const auto messages = parse_messages(body);
    return chat_prompt(tok, chat_template, messages, gen, max_model_len);
  }
  const json* p = field(body, "prompt");
  if (!p) throw bad_request("give 'prompt' (a string) or 'messages'", "prompt");
  bool add_special = true;
  if (const json* v = field(body, "add_special_tokens")) add_special = as_bool(*v, "add_special_tokens");
  return encode_text(tok, as_string(*p, "prompt"), add_special, max_model_len);
}

DetokenizeRequest parse_detokenize_request(const json& body, const Tokenizer& tok) {
  DetokenizeRequest r;
  const json* t = field(body, "tokens");
  if (!t) throw bad_request("'tokens' is required", "tokens");
  r.tokens = as_token_ids(*t, "tokens", tok);
  if (const json* v = field(body, "skip_special_tokens")) r.skip_special_tokens = as_bool(*v, "skip_special_tokens");
  return r;
}

}  // namespace ilm::server
