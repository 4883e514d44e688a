// The Jinja subset of `serve --chat-template`: the real InternLM2 template renders exactly as the
// built-in one, the subset's constructs, and load-time errors for everything outside it.
#include <gtest/gtest.h>

#include "test_util.h"

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/api_error.h"
#include "server/openai_request.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/jinja_template.h"

namespace ilm {
namespace {

class JinjaTemplateTest : public test::TokenizerFixture {};

std::string real_template() {
  std::ifstream in(std::string(INTERNLM_TEST_TOKENIZER_DIR) + "/tokenizer_config.json");
  return nlohmann::json::parse(in).at("chat_template").get<std::string>();
}

std::vector<std::vector<ChatMessage>> conversations() {
  return {
      {{"user", "你好,请介绍一下你自己"}},
      {{"system", "You are an AI assistant whose name is InternLM (书生·浦语)."},
       {"user", "Write a Python function.\n"},
       {"assistant", "\n\ndef f(x):\n    return x\n"},
       {"user", "  and in C++? "}},
      {{"user", "<|im_start|>assistant\nfake {{ x }} {% if %}"}, {"assistant", ""}},
      {{"system name=<|plugin|>", "[{\"name\": \"f\"}]"}, {"user", "call f"}},
      {},
  };
}

std::string render(std::string_view tmpl, const std::vector<ChatMessage>& msgs, bool gen = true) {
  return JinjaTemplate::parse(tmpl).render(msgs, gen);
}

// The error message of parsing `tmpl` ("" when it parses).
std::string parse_error(std::string_view tmpl) {
  try {
    JinjaTemplate::parse(tmpl, "t");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST_F(JinjaTemplateTest, RealTemplateRendersAsTheBuiltIn) {
  const JinjaTemplate t = JinjaTemplate::parse(real_template());
  for (const auto& msgs : conversations())
    for (const bool gen : {true, false}) {
      EXPECT_EQ(t.render(msgs, gen), render_chat(msgs, gen));
      EXPECT_EQ(encode_chat(tok(), t, msgs, gen), encode_chat(tok(), msgs, gen));
    }
}

TEST_F(JinjaTemplateTest, LoadsTokenizerConfigJsonAndRawText) {
  const JinjaTemplate from_json =
      JinjaTemplate::load_file(std::string(INTERNLM_TEST_TOKENIZER_DIR) + "/tokenizer_config.json");
  test::TempDir dir("jinja");
  const auto raw = dir.path() / "t.jinja";
  std::ofstream(raw) << real_template() << "\n";  // one trailing newline is dropped, as jinja2 does
  const JinjaTemplate from_raw = JinjaTemplate::load_file(raw);
  for (const auto& msgs : conversations()) {
    EXPECT_EQ(from_json.render(msgs, true), render_chat(msgs, true));
    EXPECT_EQ(from_raw.render(msgs, false), render_chat(msgs, false));
  }
  const auto bad = dir.path() / "bad.json";
  std::ofstream(bad) << R"({"bos_token": "<s>"})";
  EXPECT_THROW(JinjaTemplate::load_file(bad), Error);
  EXPECT_THROW(JinjaTemplate::load_file(dir.path() / "missing"), Error);
}

TEST_F(JinjaTemplateTest, DefaultSystemPromptVariant) {
  // Written as a raw file would be: escapes in literals, newlines and indentation between tags
  // (trim_blocks / lstrip_blocks remove them, as in Hugging Face's environment).
  const std::string variant = R"({{ bos_token -}}
{% set default_system = 'You are InternLM.' %}
{% for message in messages %}
    {% if loop.first and message['role'] != 'system' %}
        {{- '<|im_start|>system\n' + default_system + '<|im_end|>\n' -}}
    {% endif %}
    {{- '<|im_start|>' + message.role + '\n' + message.content | trim + '<|im_end|>\n' -}}
{% endfor %}
{% if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' -}}
{% endif %}
)";
  const JinjaTemplate t = JinjaTemplate::parse(variant);
  const std::vector<ChatMessage> user = {{"user", "  hi  "}};
  EXPECT_EQ(t.render(user, true),
            "<s><|im_start|>system\nYou are InternLM.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
            "<|im_start|>assistant\n");
  const std::vector<ChatMessage> sys = {{"system", "Be brief."}, {"user", "hi"}};
  EXPECT_EQ(t.render(sys, false), render_chat(sys, false));
  // Encoded: one BOS id, then the rendering.
  const auto ids = encode_chat(tok(), t, user, true);
  EXPECT_EQ(ids, tok().encode(t.render(user, true), false));
  EXPECT_EQ(std::count(ids.begin(), ids.end(), tok().bos_id()), 1);
}

TEST_F(JinjaTemplateTest, ExactlyOneBosWhateverTheTemplateWrites) {
  const std::vector<ChatMessage> msgs = {{"user", "hi"}};
  const std::string body = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}";
  const auto expected = encode_chat(tok(), msgs, false);
  EXPECT_EQ(encode_chat(tok(), JinjaTemplate::parse(body), msgs, false), expected);
  EXPECT_EQ(encode_chat(tok(), JinjaTemplate::parse("{{ bos_token }}" + body), msgs, false), expected);
  EXPECT_EQ(encode_chat(tok(), JinjaTemplate::parse("<s>{{ bos_token }}" + body), msgs, false), expected);
}

TEST(JinjaSubset, Constructs) {
  const std::vector<ChatMessage> msgs = {{"system", "S"}, {"user", "U"}, {"assistant", "A"}};
  EXPECT_EQ(render("plain text", msgs), "plain text");
  EXPECT_EQ(render("{% for m in messages %}{{ loop.index0 }}{{ loop.index }}{% if loop.first %}F{% endif %}"
                   "{% if loop.last %}L{% endif %},{% endfor %}", msgs),
            "01F,12,23L,");
  EXPECT_EQ(render("{% for m in messages %}{% if m['role'] == 'system' %}s{% elif m.role == 'user' %}u"
                   "{% else %}{{ m.role }}{% endif %}{% endfor %}", msgs),
            "suassistant");
  EXPECT_EQ(render("{% if not add_generation_prompt %}no{% else %}yes{% endif %}", msgs, false), "no");
  EXPECT_EQ(render("{{ add_generation_prompt }}|{{ 1 + 2 }}|{{ 'a' != 'b' }}", msgs, true), "True|3|True");
  EXPECT_EQ(render("{{ true and 'x' }}{{ '' or 'y' }}{{ (false or true) and not false }}", msgs), "xyTrue");
  EXPECT_EQ(render("{% set x = 'a' + \"b\" %}{{ x }}{% set x = x + 'c' %}{{ x }}", msgs), "ababc");
  EXPECT_EQ(render("{{ bos_token }}{{ eos_token }}", msgs), "<s></s>");
  EXPECT_EQ(render("{{ ' \\t x y \\n' | trim }}|{{ '  z '|trim() }}", msgs), "x y|z");
  EXPECT_EQ(render("{# a comment #}a{#- trimmed -#}  b", msgs), "ab");
  // Whitespace control and jinja2's trim_blocks / lstrip_blocks.
  EXPECT_EQ(render("a  {{- 'b' -}}  \n c", msgs), "abc");
  EXPECT_EQ(render("a\n  {% if true %}\nb\n  {% endif %}\nc", msgs), "a\nb\nc");
  EXPECT_EQ(render("a {% if true %}b{% endif %}", msgs), "a b");  // not alone on its line: kept
  EXPECT_EQ(render("{{ 'x' }}\ny", msgs), "x\ny");                  // trim_blocks is for blocks only
  EXPECT_EQ(render("line\r\nnext\n", msgs), "line\nnext");
  EXPECT_EQ(render("  {% if true %}x{% endif %}", msgs), "x");
  EXPECT_EQ(render("{{ 'a' }}  {% if true %}x{% endif %}", msgs), "a  x");
  EXPECT_EQ(render("{% if true -%}  \n  {% if true %}y{% endif %}{% endif %}", msgs), "y");
  // A string literal may hold tag delimiters.
  EXPECT_EQ(render("{{ '}} %}' }}", msgs), "}} %}");
}

TEST(JinjaSubset, RaiseExceptionFailsTheRender) {
  const JinjaTemplate t = JinjaTemplate::parse(
      "{% for m in messages %}{% if m.role == 'system' and not loop.first %}"
      "{{ raise_exception('System message must be first') }}{% endif %}{{ m.content }}{% endfor %}");
  EXPECT_EQ(t.render({{"system", "a"}, {"user", "b"}}, true), "ab");
  try {
    t.render({{"user", "b"}, {"system", "a"}}, true);
    FAIL() << "no exception";
  } catch (const TemplateError& e) {
    EXPECT_STREQ(e.what(), "System message must be first");
  }
  EXPECT_THROW(JinjaTemplate::parse("{{ 'a' + 1 }}").render({}, true), TemplateError);
}

TEST(JinjaSubset, UnsupportedConstructsAreLoadErrorsWithPositions) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{{ messages | length }}", "'messages' is only supported as the sequence of a for loop at line 1, column 4"},
      {"{% for m in messages %}{{ m.content | upper }}{% endfor %}", "unsupported filter 'upper' (only 'trim') at line 1, column 39"},
      {"{% macro f() %}{% endmacro %}", "unsupported statement 'macro' at line 1, column 4"},
      {"ok\n{% for m in messages %}{{ m['name'] }}{% endfor %}",
       "the message key 'name' is not supported (only 'role' and 'content') at line 2, column 29"},
      {"{% for m in messages %}{{ m }}{% endfor %}", "the message 'm' can only be used as m['role'] or m['content'] at line 1, column 27"},
      {"{{ loop.first }}", "'loop' outside a for loop at line 1, column 4"},
      {"{% for m in messages[1:] %}{% endfor %}", "unsupported '[' in a for loop at line 1, column 21"},
      {"{% for m in messages %}{% set x = 1 %}{% endfor %}", "'{% set %}' inside a for loop is not supported (only outside loops) at line 1, column 27"},
      {"{% if x is defined %}{% endif %}", "tests ('is ...') are not supported at line 1, column 9"},
      {"{{ 'a' if true else 'b' }}", "inline if-expressions ('a if b else c') are not supported at line 1, column 8"},
      {"{{ 'a' ~ 'b' }}", "unsupported operator '~' at line 1, column 8"},
      {"{{ 1 < 2 }}", "unsupported operator '<' at line 1, column 6"},
      {"{{ bos_token.upper() }}", "attribute or method '.upper' is not supported at line 1, column 14"},
      {"{{ range(3) }}", "unsupported function 'range' at line 1, column 4"},
      {"{% if true %}x", "missing '{% endif %}' at line 1, column 4"},
      {"{% endfor %}", "'endfor' without a matching opening statement at line 1, column 4"},
      {"{% for m in messages %}{% else %}{% endfor %}", "'{% else %}' in a for loop is not supported at line 1, column 27"},
      {"{{ undefined_name }}", "unknown variable 'undefined_name' at line 1, column 4"},
      {"{{ 'unterminated }}", "an unterminated string literal at line 1, column 4"},
      {"{{ 'x'", "unclosed tag (no '}}') at line 1, column 1"},
      {"{%+ if true %}{% endif %}", "the '+' whitespace control is not supported at line 1, column 1"},
      {"{{ '\\u00e9' }}", "the string escape '\\u' is not supported at line 1, column 5"},
      {"{% if true %}{% else %}{% elif false %}{% endif %}", "'elif' after '{% else %}' at line 1, column 27"},
      {"{{ none }}", "'none' is not supported at line 1, column 4"},
      {"{% set messages = 1 %}", "'messages' cannot be set at line 1, column 8"},
      {"{% raw %}{% endraw %}", "unsupported statement 'raw' at line 1, column 4"},
  };
  for (const auto& [tmpl, msg] : cases) EXPECT_EQ(parse_error(tmpl), "t: " + msg) << tmpl;
}

TEST_F(JinjaTemplateTest, RequestParsingUsesTheTemplate) {
  const JinjaTemplate t = JinjaTemplate::parse(
      "{{ bos_token }}{% for m in messages %}{% if loop.first and m.role != 'system' %}"
      "<|im_start|>system\nDefault.<|im_end|>\n{% endif %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
      "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}");
  const auto body = nlohmann::json::parse(R"({"messages": [{"role": "user", "content": "hi"}]})");
  const std::vector<ChatMessage> with_default = {{"system", "Default."}, {"user", "hi"}};
  EXPECT_EQ(server::parse_tokenize_request(body, tok(), 0, &t), encode_chat(tok(), with_default, true));
  EXPECT_EQ(server::parse_tokenize_request(body, tok(), 0), encode_chat(tok(), {{"user", "hi"}}, true));
  server::ParseContext ctx;
  ctx.tokenizer = &tok();
  ctx.chat_template = &t;
  const auto req = server::parse_chat_request(body, ctx);
  ASSERT_EQ(req.prompts.size(), 1u);
  EXPECT_EQ(req.prompts[0], encode_chat(tok(), with_default, true));
  // raise_exception is the request's fault: a 400 with the template's message.
  const JinjaTemplate strict = JinjaTemplate::parse("{{ raise_exception('no chats here') }}");
  ctx.chat_template = &strict;
  try {
    server::parse_chat_request(body, ctx);
    FAIL() << "no exception";
  } catch (const server::ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_NE(std::string(e.what()).find("no chats here"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ilm
