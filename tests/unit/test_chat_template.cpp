// The InternLM2 chat format: rendering, ids, and equality with encoding the rendered text.
#include <gtest/gtest.h>

#include "test_util.h"

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "tokenizer/chat_template.h"

namespace ilm {
namespace {

class ChatTemplateTest : public test::TokenizerFixture {};

TEST_F(ChatTemplateTest, RendersTheSpecExample) {
  const std::vector<ChatMessage> msgs = {{"user", "你好,请介绍一下你自己"}};
  EXPECT_EQ(render_chat(msgs, true),
            "<s><|im_start|>user\n你好,请介绍一下你自己<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render_chat(msgs, false), "<s><|im_start|>user\n你好,请介绍一下你自己<|im_end|>\n");
  EXPECT_EQ(render_chat({}, true, ""), "<|im_start|>assistant\n");
}

TEST_F(ChatTemplateTest, EncodesTheSpecExample) {
  EXPECT_EQ(encode_chat(tok(), {{"user", "你好,请介绍一下你自己"}}, true),
            (std::vector<TokenId>{1, 92543, 1008, 364, 77230, 328, 60836, 70068, 72329, 92542, 364, 92543, 525,
                                  11353, 364}));
  EXPECT_EQ(encode_chat(tok(), {{"user", "你好,请介绍一下你自己"}}, false),
            (std::vector<TokenId>{1, 92543, 1008, 364, 77230, 328, 60836, 70068, 72329, 92542, 364}));
  EXPECT_EQ(encode_chat(tok(), {}, true), (std::vector<TokenId>{1, 92543, 525, 11353, 364}));
}

TEST_F(ChatTemplateTest, MultiTurnWithSystemEqualsEncodingTheRenderedText) {
  const std::vector<ChatMessage> msgs = {
      {"system", "You are an AI assistant whose name is InternLM (书生·浦语)."},
      {"user", "Write a Python function.\n"},
      {"assistant", "\n\ndef f(x):\n    return x\n"},
      {"user", "  and in C++? "},
      {"assistant", "int f(int x) { return x; }"},
      {"user", "谢谢!"}};
  for (const bool gen : {true, false}) {
    const std::vector<TokenId> ids = encode_chat(tok(), msgs, gen);
    EXPECT_EQ(ids, tok().encode(render_chat(msgs, gen), false));
    EXPECT_EQ(tok().decode(ids), render_chat(msgs, gen));
    // BOS exactly once, at the start.
    EXPECT_EQ(std::count(ids.begin(), ids.end(), tok().bos_id()), 1);
    EXPECT_EQ(ids[0], 1);
    EXPECT_EQ(ids[1], 92543);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), 92542), static_cast<long>(msgs.size()));
  }
}

TEST_F(ChatTemplateTest, RandomContentsMatchEncodingTheRenderedText) {
  // Fragments that stress the boundaries: special strings and their parts, newlines, spaces.
  const std::vector<std::string> frags = {
      "hello", " ", "\n", "\n\n", "  ", "<", ">", "|", "<|im_end|>", "<|im_start|>", "<|im_end", "<|im_start",
      "im_end|>", "<s>", "</s>", "</s", "<unk", "<|plugin|>", "assistant", "user", "你好", "😀", "\t", "\r\n",
      "[UNUSED_TOKEN_145]", "——", "Ｈ", "123", "x"};
  std::mt19937 rng(7);
  const auto random_text = [&](size_t max_frags) {
    std::string s;
    const size_t n = rng() % (max_frags + 1);
    for (size_t i = 0; i < n; ++i) s += frags[rng() % frags.size()];
    return s;
  };
  for (int iter = 0; iter < 500; ++iter) {
    std::vector<ChatMessage> msgs(rng() % 4);
    for (ChatMessage& m : msgs) {
      m.role = (rng() % 4 == 0) ? random_text(2) : std::vector<std::string>{"system", "user", "assistant"}[rng() % 3];
      m.content = random_text(8);
    }
    const bool gen = rng() % 2 == 0;
    const std::vector<TokenId> ids = encode_chat(tok(), msgs, gen);
    ASSERT_EQ(ids, tok().encode(render_chat(msgs, gen), false)) << render_chat(msgs, gen);
    ASSERT_EQ(tok().decode(ids), render_chat(msgs, gen));
    ASSERT_EQ(ids[0], 1);
    if (ids.size() > 1) {
      ASSERT_NE(ids[1], 1) << "double BOS";
    }
  }
}

TEST_F(ChatTemplateTest, RenderedTextWithSpecialsWouldGiveADoubleBos) {
  const std::vector<ChatMessage> msgs = {{"user", "hi"}};
  const std::vector<TokenId> pitfall = tok().encode(render_chat(msgs, true), true);
  ASSERT_GE(pitfall.size(), 2u);
  EXPECT_EQ(pitfall[0], 1);
  EXPECT_EQ(pitfall[1], 1);
  const std::vector<TokenId> ids = encode_chat(tok(), msgs, true);
  EXPECT_EQ(std::vector<TokenId>(pitfall.begin() + 1, pitfall.end()), ids);
}

}  // namespace
}  // namespace ilm
