#include "tokenizer/tool_prompt.h"

#include <fmt/format.h>

#include "common/error.h"

namespace ilm {

using nlohmann::ordered_json;

namespace {

void write_python_json(const ordered_json& v, std::string& out) {
  if (v.is_object()) {
    out += '{';
    bool first = true;
    for (const auto& [k, x] : v.items()) {
      if (!first) out += ", ";
      first = false;
      out += ordered_json(k).dump(-1, ' ', false);
      out += ": ";
      write_python_json(x, out);
    }
    out += '}';
  } else if (v.is_array()) {
    out += '[';
    for (size_t i = 0; i < v.size(); ++i) {
      if (i) out += ", ";
      write_python_json(v[i], out);
    }
    out += ']';
  } else {
    out += v.dump(-1, ' ', /*ensure_ascii=*/false);
  }
}

TokenId special_id(const Tokenizer& tok, std::string_view piece) {
  const auto id = tok.piece_to_id(piece);
  if (!id) throw Error(fmt::format("the tokenizer has no '{}' token: this model cannot call tools", piece));
  return *id;
}

// A function's parameters schema moved under the root's $defs as `name`: its own $defs /
// definitions move beside it (prefixed) and its references follow ("#" is the schema itself).
// `names`: v's keys are names (of properties, definitions), not keywords.
void rewrite_refs(ordered_json& v, const std::string& name, bool names = false) {
  if (v.is_array()) {
    for (auto& x : v) rewrite_refs(x, name);
    return;
  }
  if (!v.is_object()) return;
  for (auto& [k, x] : v.items()) {
    if (names) {
      rewrite_refs(x, name);
      continue;
    }
    if (k == "const" || k == "enum" || k == "default" || k == "examples") continue;  // data, not schemas
    if (k == "$ref" && x.is_string()) {
      const std::string ref = x.get<std::string>();
      for (const std::string_view head : {"#/$defs/", "#/definitions/"})
        if (ref.rfind(head, 0) == 0) x = "#/$defs/" + name + "." + ref.substr(head.size());
      if (ref == "#") x = "#/$defs/" + name;
    } else {
      rewrite_refs(x, name, k == "properties" || k == "$defs" || k == "definitions" || k == "patternProperties");
    }
  }
}

void hoist_parameters(ordered_json params, const std::string& name, ordered_json& defs) {
  for (const char* key : {"$defs", "definitions"}) {
    if (!params.is_object() || !params.contains(key) || !params[key].is_object()) continue;  // the compiler judges
    ordered_json inner = std::move(params[key]);
    params.erase(key);
    for (auto& [k, x] : inner.items()) {
      rewrite_refs(x, name);
      defs[name + "." + k] = std::move(x);
    }
  }
  rewrite_refs(params, name);
  defs[name] = std::move(params);
}

}  // namespace

std::string python_json(const ordered_json& v) {
  std::string out;
  write_python_json(v, out);
  return out;
}

ChatMessage tools_message(const ordered_json& functions) { return {kPluginSystemRole, python_json(functions)}; }

void insert_tools_message(std::vector<ChatMessage>& messages, ChatMessage tools) {
  const bool after_system = !messages.empty() && messages.front().role == "system";
  messages.insert(messages.begin() + (after_system ? 1 : 0), std::move(tools));
}

std::string render_tool_call(std::string_view name, const ordered_json& parameters) {
  ordered_json call;
  call["name"] = name;
  call["parameters"] = parameters;
  return "<|action_start|><|plugin|>\n" + python_json(call) + "<|action_end|>";
}

std::vector<TokenId> tool_call_prefix_ids(const Tokenizer& tok) {
  std::vector<TokenId> ids{special_id(tok, "<|action_start|>"), special_id(tok, "<|plugin|>")};
  // The newline as the tokenizer writes it after a special token (the prompt's form).
  const std::vector<TokenId> nl = tok.encode("<|plugin|>\n", false);
  if (nl.size() < 2 || nl.front() != ids[1]) throw Error("the tokenizer does not encode '<|plugin|>\\n' as expected");
  ids.insert(ids.end(), nl.begin() + 1, nl.end());
  return ids;
}

std::vector<TokenId> tool_call_suffix_ids(const Tokenizer& tok) { return {special_id(tok, "<|action_end|>")}; }

TokenId action_start_id(const Tokenizer& tok) { return tok.piece_to_id("<|action_start|>").value_or(-1); }

ordered_json tool_call_schema(const std::vector<const ordered_json*>& functions) {
  ordered_json alternatives = ordered_json::array();
  ordered_json defs = ordered_json::object();
  for (size_t i = 0; i < functions.size(); ++i) {
    const ordered_json& f = *functions[i];
    const std::string name = fmt::format("tool{}", i);
    hoist_parameters(f.contains("parameters") ? f["parameters"]
                                              : ordered_json{{"type", "object"},
                                                             {"properties", ordered_json::object()},
                                                             {"additionalProperties", false}},
                     name, defs);
    ordered_json props;
    props["name"] = {{"const", f["name"]}};
    props["parameters"] = {{"$ref", "#/$defs/" + name}};
    alternatives.push_back({{"type", "object"},
                            {"properties", std::move(props)},
                            {"required", {"name", "parameters"}},
                            {"additionalProperties", false}});
  }
  ordered_json root;
  if (alternatives.size() == 1) root = std::move(alternatives[0]);
  else root["anyOf"] = std::move(alternatives);
  root["$defs"] = std::move(defs);
  return root;
}

}  // namespace ilm
