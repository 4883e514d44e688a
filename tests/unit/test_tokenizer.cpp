// The InternLM2 tokenizer against facts from the spec (section 8) and the official tokenizer.
#include <gtest/gtest.h>

#include "test_util.h"
#include <sentencepiece_processor.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "tokenizer/sp_model_patch.h"
#include "tokenizer/tokenizer.h"

namespace ilm {
namespace {

const std::filesystem::path kDir = INTERNLM_TEST_TOKENIZER_DIR;

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<TokenId> cat(std::vector<TokenId> a, const std::vector<TokenId>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

class TokenizerTest : public test::TokenizerFixture {};

TEST_F(TokenizerTest, LoadsVocabularyAndSpecialTokens) {
  EXPECT_EQ(tok().vocab_size(), 92544);
  EXPECT_EQ(tok().bos_id(), 1);
  EXPECT_EQ(tok().eos_id(), 2);
  ASSERT_TRUE(tok().pad_id().has_value());
  EXPECT_EQ(*tok().pad_id(), 2);
  EXPECT_TRUE(tok().add_bos());
  EXPECT_FALSE(tok().chat_template().empty());
  const auto& added = tok().added_tokens();
  ASSERT_EQ(added.size(), 9u);
  for (size_t i = 1; i < added.size(); ++i) EXPECT_GE(added[i - 1].content.size(), added[i].content.size());
  const std::vector<std::pair<TokenId, std::string>> expected = {
      {0, "<unk>"},          {1, "<s>"},              {2, "</s>"},
      {92538, "<|plugin|>"}, {92539, "<|interpreter|>"}, {92540, "<|action_end|>"},
      {92541, "<|action_start|>"}, {92542, "<|im_end|>"}, {92543, "<|im_start|>"}};
  for (const auto& [id, content] : expected) {
    const auto it = std::find_if(added.begin(), added.end(), [&](const AddedToken& t) { return t.id == id; });
    ASSERT_NE(it, added.end()) << id;
    EXPECT_EQ(it->content, content);
    EXPECT_TRUE(it->special);
    EXPECT_TRUE(tok().is_special(id)) << id;
    EXPECT_EQ(tok().id_to_piece(id), content);
  }
  EXPECT_FALSE(tok().is_special(3));
  EXPECT_FALSE(tok().is_special(259));
  EXPECT_FALSE(tok().is_special(92537));
  EXPECT_FALSE(tok().is_special(-1));
  EXPECT_FALSE(tok().is_special(92544));
}

TEST_F(TokenizerTest, EncodesWithBosAndNoDummyPrefix) {
  EXPECT_EQ(tok().encode("Hello world"), (std::vector<TokenId>{1, 9843, 2028}));
  EXPECT_EQ(tok().encode("Hello world", false), (std::vector<TokenId>{9843, 2028}));
  EXPECT_EQ(tok().encode(""), (std::vector<TokenId>{1}));
  EXPECT_TRUE(tok().encode("", false).empty());
  // "<|im_start|>user": `user` (1008), not `▁user`.
  EXPECT_EQ(tok().encode("<|im_start|>user", false), (std::vector<TokenId>{92543, 1008}));
  // Runs of spaces are kept; no digit splitting.
  EXPECT_EQ(tok().id_to_piece(tok().encode("  x", false)[0]), "\xE2\x96\x81\xE2\x96\x81");
}

TEST_F(TokenizerTest, SpecExamplePrompt) {
  const std::string prompt = "<s><|im_start|>user\n你好,请介绍一下你自己<|im_end|>\n<|im_start|>assistant\n";
  EXPECT_EQ(tok().encode(prompt, false),
            (std::vector<TokenId>{1, 92543, 1008, 364, 77230, 328, 60836, 70068, 72329, 92542, 364, 92543, 525,
                                  11353, 364}));
  // The pitfall: encoding the rendered text with specials gives a double BOS.
  EXPECT_EQ(tok().encode(prompt, true)[0], 1);
  EXPECT_EQ(tok().encode(prompt, true)[1], 1);
}

TEST_F(TokenizerTest, AddedTokensAreSplitLiterally) {
  const auto sp = [&](std::string_view s) { return tok().encode(s, false); };
  // No whitespace is stripped around added tokens.
  EXPECT_EQ(sp(" <|im_end|> "), cat(cat(sp(" "), {92542}), sp(" ")));
  EXPECT_EQ(sp("a<|im_end|>b"), cat(cat(sp("a"), {92542}), sp("b")));
  // Literal control strings become their ids.
  EXPECT_EQ(sp("<s></s><unk>"), (std::vector<TokenId>{1, 2, 0}));
  EXPECT_EQ(sp("<|im_start|><|im_start|>"), (std::vector<TokenId>{92543, 92543}));
  // Leftmost first: the partial "<|im_start" is text, the following token is found.
  EXPECT_EQ(sp("<|im_start<|im_end|>"), cat(sp("<|im_start"), {92542}));
  EXPECT_EQ(sp("<<s>>"), cat(cat(sp("<"), {1}), sp(">")));
  // Partial and differently-cased strings are ordinary text.
  for (const char* s : {"<|im_start", "<|im_end", "im_end|>", "<|IM_END|>", "< s>", "<|im_end |>", "<S>"}) {
    const auto ids = sp(s);
    for (const TokenId id : ids) EXPECT_FALSE(tok().is_special(id)) << s;
    EXPECT_EQ(tok().decode(ids), s);
  }
  const std::vector<TokenId> all = sp("<|plugin|><|interpreter|><|action_end|><|action_start|><|im_end|><|im_start|>");
  EXPECT_EQ(all, (std::vector<TokenId>{92538, 92539, 92540, 92541, 92542, 92543}));
}

TEST_F(TokenizerTest, UnusedTokenStringsAreOrdinaryText) {
  // The sp file calls 92542 "[UNUSED_TOKEN_145]"; the loaded model must not.
  for (const char* s : {"[UNUSED_TOKEN_141]", "[UNUSED_TOKEN_142]", "[UNUSED_TOKEN_143]", "[UNUSED_TOKEN_144]",
                        "[UNUSED_TOKEN_145]", "[UNUSED_TOKEN_146]", "stop[UNUSED_TOKEN_145]here"}) {
    const std::vector<TokenId> ids = tok().encode(s);
    for (const TokenId id : ids) {
      EXPECT_NE(id, 92542) << s;
      EXPECT_FALSE(id >= 92538 && id <= 92543) << s;
    }
    EXPECT_GT(ids.size(), 2u) << s;
    EXPECT_EQ(tok().decode(ids), std::string("<s>") + s);
    EXPECT_EQ(tok().decode(ids, true), s);
    EXPECT_FALSE(tok().piece_to_id(s).has_value()) << s;
  }
  EXPECT_EQ(tok().piece_to_id("<|im_end|>"), 92542);
  // Unrenamed user-defined pieces are still atomic, as in sentencepiece.
  EXPECT_EQ(tok().encode("[UNUSED_TOKEN_140]", false), (std::vector<TokenId>{92537}));
  EXPECT_EQ(tok().encode("——", false), (std::vector<TokenId>{92395}));
}

TEST_F(TokenizerTest, RejectsInvalidUtf8WithOffset) {
  const std::vector<std::string> bad = {
      std::string("abc\xFF"), std::string("abc\xC0\x80"), std::string("abc\xED\xA0\x80"),  // overlong, surrogate
      std::string("abc\xF4\x90\x80\x80"), std::string("abc\xE4\xB8"), std::string("abc\x80"),
      std::string("abc\xF8\x88\x80\x80\x80")};
  for (const std::string& s : bad) {
    try {
      (void)tok().encode(s);
      ADD_FAILURE() << "no error for invalid UTF-8";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("UTF-8"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("offset 3"), std::string::npos) << e.what();
    }
  }
}

TEST_F(TokenizerTest, DecodesExactly) {
  const auto hello = tok().piece_to_id("\xE2\x96\x81Hello");
  ASSERT_TRUE(hello.has_value());
  EXPECT_EQ(tok().decode({*hello}), " Hello");  // no leading-space stripping
  EXPECT_EQ(tok().token_bytes(*hello), " Hello");
  EXPECT_EQ(tok().decode({1, 92543, 1008, 364}), "<s><|im_start|>user\n");
  EXPECT_EQ(tok().decode({1, 92543, 1008, 364}, true), "user\n");
  EXPECT_EQ(tok().decode({0, 2}), "<unk></s>");
  EXPECT_EQ(tok().decode({0, 2}, true), "");
  // Byte fallback: <0xE4><0xB8><0xAD> = "中"; a lone lead byte is U+FFFD.
  EXPECT_EQ(tok().decode({3 + 0xE4, 3 + 0xB8, 3 + 0xAD}), "中");
  EXPECT_EQ(tok().decode({3 + 0xE4, 3 + 0xB8}), "\xEF\xBF\xBD");
  EXPECT_EQ(tok().decode({3 + 0xE4, 1, 3 + 0xB8, 3 + 0xAD}), "\xEF\xBF\xBD<s>\xEF\xBF\xBD\xEF\xBF\xBD");
  // With the special token dropped first, the bytes join.
  EXPECT_EQ(tok().decode({3 + 0xE4, 1, 3 + 0xB8, 3 + 0xAD}, true), "中");
  EXPECT_EQ(tok().token_bytes(3 + 0xE4), "\xE4");
  EXPECT_EQ(tok().token_bytes(3), std::string(1, '\0'));
  EXPECT_THROW((void)tok().decode({-1}), Error);
  EXPECT_THROW((void)tok().decode({92544}), Error);
  EXPECT_THROW((void)tok().id_to_piece(92544), Error);
  EXPECT_THROW((void)tok().token_bytes(-5), Error);
}

TEST_F(TokenizerTest, RoundTrips) {
  const std::vector<std::string> texts = {
      "Hello, world!",
      "你好,请介绍一下你自己",
      "  leading and trailing  ",
      "tabs\tand\r\nCRLF\n\n\n",
      "def f(x):\n    return x * 2\n",
      "emoji 😀👩‍👩‍👧‍👦🇨🇳🇺🇸 done",
      "rare 𠀀𪚥𰻞 astral",
      "ＡＢＣ——……",
      "mixed 日本語 한국어 русский العربية",
      "<s>literal</s> and <unk>",
      "12345 3.14159 -0.5e10",
      std::string("nul\0char", 8),
  };
  for (const std::string& s : texts) {
    EXPECT_EQ(tok().decode(tok().encode(s, false)), s);
    EXPECT_EQ(tok().decode(tok().encode(s)), "<s>" + s);
  }
  // Astral characters outside the vocabulary fall back to bytes.
  const std::vector<TokenId> ids = tok().encode("𠀀", false);
  EXPECT_EQ(ids, (std::vector<TokenId>{3 + 0xF0, 3 + 0xA0, 3 + 0x80, 3 + 0x80}));
  // U+2581 in the input is the space marker: it decodes to a space, as in sentencepiece and
  // the fast tokenizer.
  EXPECT_EQ(tok().decode(tok().encode("a\xE2\x96\x81" "b", false)), "a b");
}

TEST_F(TokenizerTest, PieceLookups) {
  EXPECT_EQ(tok().piece_to_id("<unk>"), 0);
  EXPECT_EQ(tok().piece_to_id("<s>"), 1);
  EXPECT_EQ(tok().piece_to_id("<0xE4>"), 3 + 0xE4);
  EXPECT_FALSE(tok().piece_to_id("no such piece \x01").has_value());
  EXPECT_EQ(tok().id_to_piece(92537), "[UNUSED_TOKEN_140]");
}

TEST(SpModelPatch, ListsThePiecesOfTheModelFile) {
  const std::string proto = read_file(kDir / "tokenizer.model");
  const std::vector<SpPieceInfo> pieces = list_sp_pieces(proto);
  ASSERT_EQ(pieces.size(), 92544u);
  EXPECT_EQ(pieces[0].piece, "<unk>");
  EXPECT_EQ(pieces[0].type, static_cast<int>(SpPieceType::kUnknown));
  EXPECT_EQ(pieces[1].type, static_cast<int>(SpPieceType::kControl));
  EXPECT_EQ(pieces[3].piece, "<0x00>");
  EXPECT_EQ(pieces[3].type, static_cast<int>(SpPieceType::kByte));
  EXPECT_EQ(pieces[259].type, static_cast<int>(SpPieceType::kNormal));
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(pieces[static_cast<size_t>(92538 + i)].piece, "[UNUSED_TOKEN_14" + std::to_string(1 + i) + "]");
    EXPECT_EQ(pieces[static_cast<size_t>(92538 + i)].type, static_cast<int>(SpPieceType::kUserDefined));
  }
}

TEST(SpModelPatch, RenamesPiecesAndKeepsEverythingElse) {
  const std::string proto = read_file(kDir / "tokenizer.model");
  // A 300-byte name makes both the piece's and the message's length varints grow a byte.
  const std::string long_name(300, 'Z');
  const std::map<int32_t, std::string> renames = {{92538, long_name}, {92542, "<|im_end|>"}, {259, "@@renamed@@"}};
  const std::string patched = rename_sp_pieces(proto, renames);
  const std::vector<SpPieceInfo> a = list_sp_pieces(proto), b = list_sp_pieces(patched);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    const auto it = renames.find(static_cast<int32_t>(i));
    EXPECT_EQ(b[i].piece, it == renames.end() ? a[i].piece : it->second) << i;
    EXPECT_EQ(b[i].type, a[i].type) << i;
    EXPECT_EQ(b[i].score, a[i].score) << i;
  }
  // Size: the piece strings' difference, plus the grown varints for the long name (piece
  // length 18 -> 300: +1 byte; message length < 128 -> >= 128: +1 byte).
  const int64_t expected_delta = (300 - 18) + 2 + (10 - 18) + (11 - 1);
  EXPECT_EQ(static_cast<int64_t>(patched.size()) - static_cast<int64_t>(proto.size()), expected_delta);
  // Renaming nothing is the identity.
  EXPECT_EQ(rename_sp_pieces(proto, {}), proto);

  // sentencepiece accepts the result.
  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.LoadFromSerializedProto(patched).ok());
  EXPECT_EQ(sp.IdToPiece(92538), long_name);
  EXPECT_EQ(sp.IdToPiece(92542), "<|im_end|>");
  EXPECT_EQ(sp.PieceToId("[UNUSED_TOKEN_145]"), sp.unk_id());
  EXPECT_TRUE(sp.IsByte(4));
}

TEST(SpModelPatch, RejectsMalformedInput) {
  const std::string proto = read_file(kDir / "tokenizer.model");
  EXPECT_THROW((void)list_sp_pieces(proto.substr(0, proto.size() / 2 + 3)), Error);
  EXPECT_THROW((void)rename_sp_pieces(std::string("\x0A\xFF", 2), {{0, "x"}}), Error);
  EXPECT_THROW((void)rename_sp_pieces(proto, {{92544, "x"}}), Error);
  EXPECT_THROW((void)rename_sp_pieces(std::string("\x0B", 1), {}), Error);  // group wire type
}

TEST(TokenizerLoad, WithoutConfigUsesSentencepieceSpecials) {
  const auto dir = std::filesystem::temp_directory_path() / ("ilm_tok_noconfig_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(kDir / "tokenizer.model", dir / "tokenizer.model",
                             std::filesystem::copy_options::overwrite_existing);
  const Tokenizer t = Tokenizer::load(dir);
  std::filesystem::remove_all(dir);
  EXPECT_EQ(t.added_tokens().size(), 3u);
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_EQ(t.eos_id(), 2);
  EXPECT_FALSE(t.pad_id().has_value());
  EXPECT_TRUE(t.add_bos());
  EXPECT_EQ(t.encode("<s>x</s>", false)[0], 1);
  // Without the config nothing is renamed: the raw sentencepiece behaviour.
  EXPECT_EQ(t.encode("[UNUSED_TOKEN_145]", false), (std::vector<TokenId>{92542}));
  EXPECT_FALSE(t.is_special(92542));
}

TEST(TokenizerLoad, MissingModelIsAnError) {
  try {
    (void)Tokenizer::load("/nonexistent/dir");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.model"), std::string::npos);
  }
}

}  // namespace
}  // namespace ilm
