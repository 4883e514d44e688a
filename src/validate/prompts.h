#pragma once
// The fixed prompt set of the precision and inference stages (data/prompts.jsonl): one JSON
// object per line,
//   {"id": "zh_intro", "category": "Chinese introduction",
//    "messages": [{"role": "user", "content": "..."}],     (chat template applied)
//    "max_tokens": 64, "stop": ["\n\n"]}
// or "prompt": "..." instead of "messages" for a raw completion (BOS added per the tokenizer).
#include <filesystem>
#include <string>
#include <vector>

#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace ilm::validate {

struct PromptSpec {
  std::string id, category;
  bool chat = true;
  std::vector<ChatMessage> messages;  // chat
  std::string prompt;                 // raw completion
  int64_t max_tokens = 64;
  std::vector<std::string> stop;
};

// Throws ilm::Error naming the file and line for malformed lines, missing or duplicate ids.
std::vector<PromptSpec> load_prompts(const std::filesystem::path& file);
std::vector<PromptSpec> parse_prompts(const std::string& text, const std::string& source);
// The prompt's token ids (chat: the template with the assistant turn opened).
std::vector<TokenId> prompt_ids(const PromptSpec& p, const Tokenizer& tok);

}  // namespace ilm::validate
