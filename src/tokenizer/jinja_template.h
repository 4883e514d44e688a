#pragma once
// A strict Jinja subset for chat templates (`internlm serve --chat-template FILE`, vLLM's flag):
// enough for the InternLM2 family's tokenizer_config.json template and its usual variants,
// rendered as Hugging Face's apply_chat_template renders them (jinja2 with trim_blocks and
// lstrip_blocks; one trailing newline of the template dropped; \r\n read as \n).
//
// Supported:
//   text; {{ expr }}; {# comment #}; whitespace control {%- -%} {{- -}} {#- -#}
//   {% for NAME in messages %} ... {% endfor %}  with loop.first, loop.last, loop.index0, loop.index
//   {% if expr %} {% elif expr %} {% else %} {% endif %}
//   {% set NAME = expr %}  (not inside a for loop)
//   expressions: 'string' / "string" literals (escapes \n \t \r \\ \' \"), integer literals,
//     true/false, NAME, ( ), +, ==, !=, and, or, not, the `trim` filter (x | trim),
//     raise_exception('message') (rendering fails with that message),
//     message['role'], message['content'] (or message.role / message.content) of the loop variable
//   variables: messages (only as the for loop's sequence), bos_token, eos_token,
//     add_generation_prompt, and those set with {% set %}
// Anything else (other statements, filters, tests, operators, slices, methods, other message
// keys, `loop` outside a loop, ...) is refused when the template is parsed, with an error
// naming the construct and its line and column: never a silently different prompt.
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace ilm {

// A template failing while it renders (raise_exception, adding a string to a number, ...): the
// request's fault, as in Hugging Face's TemplateError.
class TemplateError : public Error {
 public:
  using Error::Error;
};

class JinjaTemplate {
 public:
  // Parses `source`; throws ilm::Error "NAME: ... at line L, column C" for anything outside the
  // subset. `name` prefixes error messages (the file, usually).
  static JinjaTemplate parse(std::string_view source, const std::string& name = "chat template");
  // A file holding either the template text itself or a JSON object with a "chat_template"
  // string (tokenizer_config.json). Throws ilm::Error naming the file.
  static JinjaTemplate load_file(const std::filesystem::path& path);

  JinjaTemplate(JinjaTemplate&&) noexcept;
  JinjaTemplate& operator=(JinjaTemplate&&) noexcept;
  ~JinjaTemplate();

  // Throws TemplateError.
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                     const std::string& bos_token = "<s>", const std::string& eos_token = "</s>") const;

  struct Impl;

 private:
  explicit JinjaTemplate(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The rendering with its leading BOS text(s) taken off: what is encoded (add_special=false)
// after the one BOS id.
std::string render_chat_body(const Tokenizer& tok, const JinjaTemplate& tmpl,
                             const std::vector<ChatMessage>& messages, bool add_generation_prompt);

// The ids of a conversation rendered with `tmpl`, as encode_chat gives them for the built-in
// template: exactly one BOS id first (whether or not the template writes bos_token), then the
// rest of the rendering encoded without special additions. Throws TemplateError.
std::vector<TokenId> encode_chat(const Tokenizer& tok, const JinjaTemplate& tmpl,
                                 const std::vector<ChatMessage>& messages, bool add_generation_prompt = true);

}  // namespace ilm
