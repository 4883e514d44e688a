// UTF-8 validation, the U+FFFD replacement rule, and StreamDecoder == Tokenizer::decode.
#include <gtest/gtest.h>

#include "test_util.h"

#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "tokenizer/tokenizer.h"

namespace ilm {
namespace {

const std::string kFFFD = "\xEF\xBF\xBD";

std::string bytes(std::initializer_list<int> v) {
  std::string s;
  for (const int b : v) s.push_back(static_cast<char>(b));
  return s;
}

TEST(Utf8Validation, AcceptsWellFormedAndRejectsTheRest) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("ascii"));
  EXPECT_TRUE(is_valid_utf8(std::string("nul\0", 4)));
  EXPECT_TRUE(is_valid_utf8("中文 😀 ﾟ"));
  EXPECT_TRUE(is_valid_utf8(bytes({0xC2, 0x80})));                // U+0080
  EXPECT_TRUE(is_valid_utf8(bytes({0xDF, 0xBF})));                // U+07FF
  EXPECT_TRUE(is_valid_utf8(bytes({0xE0, 0xA0, 0x80})));          // U+0800
  EXPECT_TRUE(is_valid_utf8(bytes({0xED, 0x9F, 0xBF})));          // U+D7FF
  EXPECT_TRUE(is_valid_utf8(bytes({0xEE, 0x80, 0x80})));          // U+E000
  EXPECT_TRUE(is_valid_utf8(bytes({0xEF, 0xBF, 0xBF})));          // U+FFFF
  EXPECT_TRUE(is_valid_utf8(bytes({0xF0, 0x90, 0x80, 0x80})));    // U+10000
  EXPECT_TRUE(is_valid_utf8(bytes({0xF4, 0x8F, 0xBF, 0xBF})));    // U+10FFFF
  EXPECT_FALSE(is_valid_utf8(bytes({0x80})));                     // lone continuation
  EXPECT_FALSE(is_valid_utf8(bytes({0xC0, 0x80})));               // overlong NUL
  EXPECT_FALSE(is_valid_utf8(bytes({0xC1, 0xBF})));               // overlong
  EXPECT_FALSE(is_valid_utf8(bytes({0xE0, 0x9F, 0xBF})));         // overlong
  EXPECT_FALSE(is_valid_utf8(bytes({0xED, 0xA0, 0x80})));         // surrogate U+D800
  EXPECT_FALSE(is_valid_utf8(bytes({0xF0, 0x8F, 0xBF, 0xBF})));   // overlong
  EXPECT_FALSE(is_valid_utf8(bytes({0xF4, 0x90, 0x80, 0x80})));   // > U+10FFFF
  EXPECT_FALSE(is_valid_utf8(bytes({0xF5, 0x80, 0x80, 0x80})));
  EXPECT_FALSE(is_valid_utf8(bytes({0xFE})));
  EXPECT_FALSE(is_valid_utf8(bytes({0xE4, 0xB8})));               // truncated
  EXPECT_FALSE(is_valid_utf8(bytes({'a', 0xE4, 'b'})));
}

TEST(Utf8Replacement, FollowsTheMaximalSubpartPractice) {
  // Unicode 15 section 3.9, Table 3-8: 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64.
  EXPECT_EQ(take_valid_utf8(bytes({0x61, 0xF1, 0x80, 0x80, 0xE1, 0x80, 0xC2, 0x62, 0x80, 0x63, 0x80, 0xBF, 0x64}),
                            nullptr),
            "a" + kFFFD + kFFFD + kFFFD + "b" + kFFFD + "c" + kFFFD + kFFFD + "d");
  // Each byte that cannot start or continue a sequence is one U+FFFD (these values were checked
  // against Python's bytes.decode("utf-8", errors="replace")).
  EXPECT_EQ(take_valid_utf8(bytes({0xC0, 0x80}), nullptr), kFFFD + kFFFD);
  EXPECT_EQ(take_valid_utf8(bytes({0xED, 0xA0, 0x80}), nullptr), kFFFD + kFFFD + kFFFD);
  EXPECT_EQ(take_valid_utf8(bytes({0xF0, 0x80}), nullptr), kFFFD + kFFFD);
  EXPECT_EQ(take_valid_utf8(bytes({0xF0, 0x9F, 0x98, 'x'}), nullptr), kFFFD + "x");
  EXPECT_EQ(take_valid_utf8(bytes({0xE4, 0xB8, 0xE4, 0xB8, 0xAD}), nullptr), kFFFD + "中");
  EXPECT_EQ(take_valid_utf8(bytes({0xFF, 'a', 0xFE}), nullptr), kFFFD + "a" + kFFFD);
  EXPECT_EQ(take_valid_utf8("plain 中文", nullptr), "plain 中文");
}

TEST(Utf8Replacement, HoldsBackOnlyAnUnfinishedCharacter) {
  std::string rest = "junk";
  EXPECT_EQ(take_valid_utf8(bytes({'a', 0xE4, 0xB8}), &rest), "a");
  EXPECT_EQ(rest, bytes({0xE4, 0xB8}));
  EXPECT_EQ(take_valid_utf8(bytes({'a', 0xF0, 0x9F, 0x98}), &rest), "a");
  EXPECT_EQ(rest, bytes({0xF0, 0x9F, 0x98}));
  // Not a possible prefix: replaced at once, nothing held.
  EXPECT_EQ(take_valid_utf8(bytes({'a', 0xF0, 0x80}), &rest), "a" + kFFFD + kFFFD);
  EXPECT_EQ(rest, "");
  EXPECT_EQ(take_valid_utf8(bytes({0xED, 0xA0}), &rest), kFFFD + kFFFD);
  EXPECT_EQ(rest, "");
  EXPECT_EQ(take_valid_utf8(bytes({'a', 0xE4}), &rest), "a");
  EXPECT_EQ(rest, bytes({0xE4}));
  EXPECT_EQ(take_valid_utf8(bytes({0x80}), &rest), kFFFD);
  EXPECT_EQ(rest, "");
  // `rest` may be the very string being read.
  std::string buf = bytes({'x', 0xE4, 0xB8, 0xAD, 0xE4});
  EXPECT_EQ(take_valid_utf8(buf, &buf), "x中");
  EXPECT_EQ(buf, bytes({0xE4}));
}

TEST(Utf8Replacement, PiecewiseEqualsWholeForRandomBytes) {
  std::mt19937 rng(1234);
  // Bytes biased toward the interesting UTF-8 ranges.
  const std::vector<int> pool = {'a', ' ', 0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1,
                                 0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3,
                                 0xF4, 0xF5, 0xFF, 0xE4, 0xB8, 0xAD};
  for (int iter = 0; iter < 3000; ++iter) {
    std::string s;
    const int n = static_cast<int>(rng() % 24);
    for (int i = 0; i < n; ++i) s.push_back(static_cast<char>(pool[rng() % pool.size()]));
    const std::string whole = take_valid_utf8(s, nullptr);
    ASSERT_TRUE(is_valid_utf8(whole));
    if (is_valid_utf8(s)) {
      ASSERT_EQ(whole, s);
    }
    // Feed in random pieces.
    std::string pending, out;
    size_t pos = 0;
    while (pos < s.size()) {
      const size_t len = std::min(s.size() - pos, static_cast<size_t>(rng() % 4));
      pending += s.substr(pos, len);
      pos += len;
      const std::string part = take_valid_utf8(pending, &pending);
      ASSERT_TRUE(is_valid_utf8(part));
      out += part;
    }
    out += take_valid_utf8(pending, nullptr);
    ASSERT_EQ(out, whole) << "iteration " << iter;
  }
}

class StreamDecoderTest : public test::TokenizerFixture {};

TEST_F(StreamDecoderTest, HoldsBytesUntilTheCharacterCompletes) {
  StreamDecoder d(tok());
  EXPECT_EQ(d.push(3 + 0xF0), "");
  EXPECT_EQ(d.push(3 + 0x9F), "");
  EXPECT_EQ(d.push(3 + 0x98), "");
  EXPECT_EQ(d.push(3 + 0x80), "😀");
  EXPECT_EQ(d.push(3 + 0xE4), "");
  EXPECT_EQ(d.push(*tok().piece_to_id("\xE2\x96\x81Hello")), kFFFD + " Hello");
  EXPECT_EQ(d.push(3 + 0xE4), "");
  EXPECT_EQ(d.push(3 + 0xB8), "");
  EXPECT_EQ(d.flush(), kFFFD);
  EXPECT_EQ(d.flush(), "");
}

TEST_F(StreamDecoderTest, KeepsSpacesAndSpecialTokens) {
  const std::vector<TokenId> ids = tok().encode("Hello world, 你好<|im_end|>");
  StreamDecoder d(tok());
  std::string out;
  for (const TokenId id : ids) out += d.push(id);
  out += d.flush();
  EXPECT_EQ(out, "<s>Hello world, 你好<|im_end|>");
  StreamDecoder skip(tok(), true);
  out.clear();
  for (const TokenId id : ids) out += skip.push(id);
  out += skip.flush();
  EXPECT_EQ(out, "Hello world, 你好");
  EXPECT_THROW((void)d.push(92544), Error);
}

TEST_F(StreamDecoderTest, ConcatenationEqualsDecodeForRandomIdSequences) {
  std::mt19937 rng(20240228);
  const std::vector<TokenId> specials = {0, 1, 2, 92538, 92539, 92540, 92541, 92542, 92543};
  // Byte tokens of UTF-8 lead/continuation bytes, to make long valid and invalid runs likely.
  const std::vector<int> hot_bytes = {0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xAD, 0xB8, 0xBF, 0xC2, 0xDF,
                                      0xE0, 0xE4, 0xED, 0xEF, 0xF0, 0xF3, 0xF4, 0xF5, 0xFF, 0x41};
  const std::vector<TokenId> texts = tok().encode("Hi 中文 😀 x", false);
  int nonempty_replacements = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    std::vector<TokenId> ids(rng() % 30);
    for (TokenId& id : ids) {
      switch (rng() % 6) {
        case 0: id = static_cast<TokenId>(3 + rng() % 256); break;                     // any byte
        case 1:
        case 2: id = static_cast<TokenId>(3 + hot_bytes[rng() % hot_bytes.size()]); break;  // likely bytes
        case 3: id = specials[rng() % specials.size()]; break;
        case 4: id = texts[rng() % texts.size()]; break;
        default: id = static_cast<TokenId>(rng() % tok().vocab_size()); break;
      }
    }
    for (const bool skip : {false, true}) {
      const std::string whole = tok().decode(ids, skip);
      ASSERT_TRUE(is_valid_utf8(whole));
      StreamDecoder d(tok(), skip);
      std::string out;
      for (const TokenId id : ids) {
        const std::string part = d.push(id);
        ASSERT_TRUE(is_valid_utf8(part)) << "push returned a partial character";
        out += part;
      }
      const std::string tail = d.flush();
      ASSERT_TRUE(is_valid_utf8(tail));
      out += tail;
      ASSERT_EQ(out, whole) << "iteration " << iter << " skip " << skip;
      if (whole.find(kFFFD) != std::string::npos) ++nonempty_replacements;
    }
  }
  EXPECT_GT(nonempty_replacements, 1000);  // the invalid paths were exercised
}

}  // namespace
}  // namespace ilm
