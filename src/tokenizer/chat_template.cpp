#include "tokenizer/chat_template.h"

namespace ilm {

std::string render_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                        const std::string& bos_text) {
  std::string s = bos_text;
  for (const ChatMessage& m : messages) {
    s += "<|im_start|>";
    s += m.role;
    s += '\n';
    s += m.content;
    s += "<|im_end|>\n";
  }
  if (add_generation_prompt) s += "<|im_start|>assistant\n";
  return s;
}

// The official path is jinja rendering, then encoding with add_special_tokens=false, so that
// the template's "<s>" text is the only BOS. Here the BOS id is placed directly and the rest of
// the rendering is encoded without special additions: the same ids (the leading "<s>" is
// always matched on its own, as no added token is longer and starts with it), and no way to get
// a double BOS. Special-token strings inside roles or contents are matched exactly as the
// official tokenizer matches them in the rendered text.
std::vector<TokenId> encode_chat(const Tokenizer& tok, const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt) {
  std::vector<TokenId> out{tok.bos_id()};
  const std::vector<TokenId> body = tok.encode(render_chat(messages, add_generation_prompt, ""), false);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

}  // namespace ilm
