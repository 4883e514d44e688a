#pragma once
// InternLM2's function-calling protocol on the prompt side, as InternLM's chat format
// documentation (chat/chat_format.md) defines it and vLLM's / LMDeploy's InternLM2 templates
// render it (docs/TOOL_CALLS.md lists where those disagree and what is followed here):
//   <|im_start|>system name=<|plugin|>\n[{"name": ..., "description": ..., "parameters": ...}]<|im_end|>\n
//     (right after the first system turn, or first when there is none)
//   <|im_start|>assistant\n{content}<|action_start|><|plugin|>\n{"name": ..., "parameters": ...}<|action_end|><|im_end|>\n
//   <|im_start|>environment name=<|plugin|>\n{tool result}<|im_end|>\n
// JSON is written as Python's json.dumps(..., ensure_ascii=False) writes it (", " and ": "
// separators, keys in the client's order), which is what those templates produce.
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace ilm {

inline constexpr const char* kPluginSystemRole = "system name=<|plugin|>";
inline constexpr const char* kToolResultRole = "environment name=<|plugin|>";

// Python's json.dumps(v, ensure_ascii=False).
std::string python_json(const nlohmann::ordered_json& v);

// The system turn that lists the functions ({"name", "description"?, "parameters"?} each).
ChatMessage tools_message(const nlohmann::ordered_json& functions);
// Puts the tools turn after the first message when that is a system turn, else first.
void insert_tools_message(std::vector<ChatMessage>& messages, ChatMessage tools);

// The text of one call in an assistant turn.
std::string render_tool_call(std::string_view name, const nlohmann::ordered_json& parameters);

// The ids a constrained call is framed by: before its JSON `<|action_start|><|plugin|>\n`,
// after it `<|action_end|>`. Throws ilm::Error when the vocabulary lacks the markers.
std::vector<TokenId> tool_call_prefix_ids(const Tokenizer& tok);
std::vector<TokenId> tool_call_suffix_ids(const Tokenizer& tok);
// The id of <|action_start|> (tool_choice "none" bans it); -1 when the vocabulary lacks it.
TokenId action_start_id(const Tokenizer& tok);

// The JSON Schema of a call to one of `functions` (tool_choice "required" or a named
// function): {"name": <one of the names>, "parameters": <that function's schema>}, the name
// first so that it streams first. A function without parameters takes an empty object.
nlohmann::ordered_json tool_call_schema(const std::vector<const nlohmann::ordered_json*>& functions);

}  // namespace ilm
