#pragma once
// The InternLM2 chat format (tokenizer_config.json's chat_template):
//   <s>{for m in messages}<|im_start|>{role}\n{content}<|im_end|>\n{endfor}
//   {if add_generation_prompt}<|im_start|>assistant\n{endif}
// Rendered to ids directly (BOS once; role/content encoded as text without BOS) so that the
// "render then encode with add_special_tokens" double-BOS pitfall cannot happen.
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace ilm {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" (others pass through as the template does)
  std::string content;
};

// The rendered prompt text, exactly as the jinja template produces it.
std::string render_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                        const std::string& bos_text = "<s>");

// Ids equal to tokenizer.encode(render_chat(...), add_special=false): BOS, then for each
// message the <|im_start|> id, the role and content text, <|im_end|>, "\n". Special-token
// strings typed inside content are matched as special tokens, exactly as the official
// tokenizer does with the rendered text.
std::vector<TokenId> encode_chat(const Tokenizer& tok, const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt = true);

}  // namespace ilm
