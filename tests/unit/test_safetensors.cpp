// The safetensors container parser: table-driven valid and malformed headers built in memory,
// plus real files on disk through SafetensorsFile and MappedFile.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<std::byte>;

constexpr std::string_view kLabel = "mem/test.safetensors";

// 8-byte little-endian `header_len`, then `header`, then `data`.
Bytes raw_file(uint64_t header_len, std::string_view header, std::string_view data) {
  Bytes b;
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<std::byte>((header_len >> (8 * i)) & 0xff));
  for (char c : header) b.push_back(static_cast<std::byte>(c));
  for (char c : data) b.push_back(static_cast<std::byte>(c));
  return b;
}

// A well-formed container around `header` with `data_len` bytes of data (0, 1, 2, ...).
Bytes st_file(std::string_view header, size_t data_len) {
  std::string data;
  for (size_t i = 0; i < data_len; ++i) data.push_back(static_cast<char>(i & 0xff));
  return raw_file(header.size(), header, data);
}

Bytes raw_bytes(std::string_view s) {
  Bytes b;
  for (char c : s) b.push_back(static_cast<std::byte>(c));
  return b;
}

std::string parse_error(const Bytes& file, std::string_view label = kLabel) {
  try {
    ilm::parse_safetensors(file, label);
  } catch (const ilm::Error& e) {
    return e.what();
  }
  return "<no error>";
}

// ----------------------------------------------------------------------------------------------
// Malformed inputs

struct BadCase {
  std::string name;
  Bytes file;
  std::vector<std::string> expect;  // substrings of the message (tensor name first where there is one)
};

std::vector<BadCase> bad_cases() {
  const std::string f32x2 = R"("dtype":"F32","shape":[2],"data_offsets":[0,8])";
  return {
      // Truncation.
      {"EmptyFile", {}, {"0 bytes", "8-byte"}},
      {"SevenBytes", raw_bytes(std::string_view("\x02\0\0\0\0\0\0", 7)), {"7 bytes"}},
      {"HeaderLengthPastEof", raw_file(100, "{}", ""), {"header length 100", "past the end"}},
      {"HeaderLengthOneTooMany", raw_file(3, "{}", ""), {"header length 3", "past the end"}},
      {"HeaderLength2Pow63", raw_file(1ull << 63, "{}", ""), {"header length 9223372036854775808"}},
      {"HeaderLengthMax", raw_file(~0ull, "{}", ""), {"header length 18446744073709551615"}},
      {"HeaderLengthOver100MiB", raw_file(100ull * 1024 * 1024 + 1, "{}", ""), {"header length", "limit"}},
      {"DataShorterThanOffsets", st_file("{\"w\":{" + f32x2 + "}}", 4), {"'w'", "past the end of the data"}},
      {"DataEmptyButTensorNeedsBytes", st_file("{\"w\":{" + f32x2 + "}}", 0), {"'w'", "past the end"}},
      // Not a JSON object.
      {"HeaderLengthZero", raw_file(0, "", ""), {"not valid JSON"}},
      {"NotJson", st_file("this is not json", 0), {"not valid JSON"}},
      {"TruncatedJson", st_file(R"({"w":{"dtype":"F32")", 0), {"not valid JSON"}},
      {"JsonArray", st_file("[]", 0), {"array", "expected an object"}},
      {"JsonString", st_file("\"hello\"", 0), {"string", "expected an object"}},
      {"JsonNumber", st_file("42", 0), {"number", "expected an object"}},
      {"JsonNull", st_file("null", 0), {"null", "expected an object"}},
      {"NulPadding", st_file(std::string("{}\0\0", 4), 0), {"not valid JSON", "NUL byte at header offset 2"}},
      {"NulThenGarbage", st_file(std::string("{}\0garbage", 10), 0), {"not valid JSON", "NUL"}},
      {"InvalidUtf8", st_file("{\"w\xff\":{" + f32x2 + "}}", 8), {"not valid JSON"}},
      {"DuplicateTensor", st_file("{\"w\":{" + f32x2 + "},\"w\":{" + f32x2 + "}}", 8), {"duplicate key 'w'"}},
      {"DuplicateField", st_file(R"({"w":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}})", 8),
       {"duplicate key 'dtype'"}},
      // Entry structure and JSON types.
      {"EntryNotObject", st_file(R"({"w":[1,2]})", 0), {"'w'", "must be a JSON object"}},
      {"EntryNull", st_file(R"({"w":null})", 0), {"'w'", "must be a JSON object"}},
      {"MissingDtype", st_file(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", 8), {"'w'", "missing \"dtype\""}},
      {"MissingShape", st_file(R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", 8), {"'w'", "missing \"shape\""}},
      {"MissingOffsets", st_file(R"({"w":{"dtype":"F32","shape":[2]}})", 8), {"'w'", "missing \"data_offsets\""}},
      {"DtypeNotString", st_file(R"({"w":{"dtype":32,"shape":[2],"data_offsets":[0,8]}})", 8),
       {"'w'", "\"dtype\" must be a string"}},
      {"UnknownDtype", st_file(R"({"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", 8),
       {"'w'", "unknown dtype \"Q4\""}},
      {"LowercaseDtype", st_file(R"({"w":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}})", 8),
       {"'w'", "unknown dtype"}},
      {"ShapeNotArray", st_file(R"({"w":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", 8),
       {"'w'", "\"shape\" must be an array of integers"}},
      {"ShapeFloatDim", st_file(R"({"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8),
       {"'w'", "\"shape\" must be an array of integers"}},
      {"ShapeStringDim", st_file(R"({"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", 8),
       {"'w'", "\"shape\" must be an array of integers"}},
      {"ShapeBoolDim", st_file(R"({"w":{"dtype":"F32","shape":[true],"data_offsets":[0,4]}})", 4),
       {"'w'", "\"shape\" must be an array of integers"}},
      {"NegativeDim", st_file(R"({"w":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,8]}})", 8),
       {"'w'", "negative dimension -1"}},
      {"DimAboveInt64", st_file(R"({"w":{"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,8]}})", 8),
       {"'w'", "too large"}},
      {"NumelOverflow",
       st_file(R"({"w":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", 0),
       {"'w'", "element count", "overflows"}},
      {"NumelOverflowAfterZeroIsStillChecked",
       st_file(R"({"w":{"dtype":"U8","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})", 0),
       {"'w'", "overflows"}},
      {"ByteSizeOverflow", st_file(R"({"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})", 0),
       {"'w'", "byte size", "overflows"}},
      {"OffsetsNotArray", st_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":8}})", 8),
       {"'w'", "\"data_offsets\" must be [begin, end]"}},
      {"OffsetsOneElement", st_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8]}})", 8),
       {"'w'", "\"data_offsets\""}},
      {"OffsetsThreeElements", st_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}})", 8),
       {"'w'", "\"data_offsets\""}},
      {"OffsetsNegative", st_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", 8),
       {"'w'", "\"data_offsets\""}},
      {"OffsetsFloat", st_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}})", 8),
       {"'w'", "\"data_offsets\""}},
      {"OffsetsString", st_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":["0","8"]}})", 8),
       {"'w'", "\"data_offsets\""}},
      {"BeginAfterEnd", st_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8),
       {"'w'", "[8, 0]", "begin > end"}},
      {"NbytesMismatch", st_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
       {"'w'", "8 bytes", "needs 12 bytes"}},
      {"NbytesMismatchDtype", st_file(R"({"w":{"dtype":"BF16","shape":[2],"data_offsets":[0,8]}})", 8),
       {"'w'", "BF16", "needs 4 bytes"}},
      {"OffsetsPastDataEnd", st_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 8),
       {"'w'", "[4, 12]", "past the end of the data section (8 bytes)"}},
      {"OffsetsNearUint64Max",
       st_file(R"({"w":{"dtype":"F32","shape":[],"data_offsets":[18446744073709551611,18446744073709551615]}})",
               4),
       {"'w'", "past the end"}},
      // Layout of the data section.
      {"Overlap",
       st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
               12),
       {"'a'", "'b'", "overlap"}},
      {"SameRangeTwice",
       st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
               8),
       {"'a'", "'b'", "overlap"}},
      {"ZeroSizedInsideAnother",
       st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
               R"("z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
               8),
       {"'a'", "'z'", "overlap"}},
      {"Gap",
       st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
               R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
               12),
       {"'b'", "gap of 4"}},
      {"GapAtStart", st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), {"'a'", "gap of 4"}},
      {"TrailingBytes", st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8),
       {"'a'", "4 trailing bytes"}},
      {"TrailingBytesNoTensors", st_file("{}", 3), {"3 trailing bytes"}},
      // __metadata__.
      {"MetadataNonString", st_file(R"({"__metadata__":{"format":"pt","step":1}})", 0),
       {"__metadata__", "'step'", "must be a string"}},
      {"MetadataNested", st_file(R"({"__metadata__":{"x":{"y":"z"}}})", 0), {"__metadata__", "'x'"}},
      {"MetadataNotObject", st_file(R"({"__metadata__":"pt"})", 0), {"__metadata__", "must be an object"}},
  };
}

void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

class SafetensorsMalformed : public testing::TestWithParam<BadCase> {};

TEST_P(SafetensorsMalformed, RejectedWithMessageNamingLabelAndTensor) {
  const BadCase& c = GetParam();
  std::string msg;
  try {
    ilm::parse_safetensors(c.file, kLabel);
    FAIL() << "accepted a malformed file";
  } catch (const ilm::Error& e) {
    msg = e.what();
  }
  EXPECT_EQ(msg.rfind(std::string(kLabel) + ": ", 0), 0u) << msg;
  for (const auto& s : c.expect) EXPECT_NE(msg.find(s), std::string::npos) << "missing '" << s << "' in: " << msg;
}

INSTANTIATE_TEST_SUITE_P(Table, SafetensorsMalformed, testing::ValuesIn(bad_cases()),
                         [](const testing::TestParamInfo<BadCase>& i) { return i.param.name; });

// ----------------------------------------------------------------------------------------------
// Valid inputs

struct ExpectTensor {
  std::string name;
  ilm::DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end, numel;
};

struct GoodCase {
  std::string name;
  Bytes file;
  std::vector<ExpectTensor> tensors;  // in data order
  std::map<std::string, std::string> metadata;
};

std::vector<GoodCase> good_cases() {
  using ilm::DType;
  return {
      {"EmptyHeaderNoData", st_file("{}", 0), {}, {}},
      {"OnlyMetadata", st_file(R"({"__metadata__":{"format":"pt"}})", 0), {}, {{"format", "pt"}}},
      {"NullMetadata", st_file(R"({"__metadata__":null})", 0), {}, {}},
      {"EmptyMetadata", st_file(R"({"__metadata__":{}})", 0), {}, {}},
      {"OneTensor", st_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8),
       {{"w", DType::F32, {2}, 0, 8, 2}}, {}},
      {"ScalarShape", st_file(R"({"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})", 4),
       {{"s", DType::F32, {}, 0, 4, 1}}, {}},
      {"ZeroSizedAlone", st_file(R"({"z":{"dtype":"BF16","shape":[0,4],"data_offsets":[0,0]}})", 0),
       {{"z", DType::BF16, {0, 4}, 0, 0, 0}}, {}},
      {"ZeroSizedBetween",
       st_file(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
               R"("z":{"dtype":"F32","shape":[3,0],"data_offsets":[2,2]},)"
               R"("b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}})",
               3),
       {{"a", DType::U8, {2}, 0, 2, 2}, {"z", DType::F32, {3, 0}, 2, 2, 0}, {"b", DType::U8, {1}, 2, 3, 1}}, {}},
      {"ZeroSizedAtEnd",
       st_file(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
               R"("z":{"dtype":"I64","shape":[0],"data_offsets":[2,2]}})",
               2),
       {{"a", DType::U8, {2}, 0, 2, 2}, {"z", DType::I64, {0}, 2, 2, 0}}, {}},
      {"SortedByOffsetNotName",
       st_file(R"({"__metadata__":{"format":"pt","note":"x"},)"
               R"("a":{"dtype":"F16","shape":[2,3],"data_offsets":[16,28]},)"
               R"("b":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}})",
               28),
       {{"b", DType::I64, {2}, 0, 16, 2}, {"a", DType::F16, {2, 3}, 16, 28, 6}},
       {{"format", "pt"}, {"note", "x"}}},
      {"UnalignedMixedDtypes",
       st_file(R"({"h":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]},)"
               R"("f":{"dtype":"F32","shape":[1,1],"data_offsets":[6,10]},)"
               R"("c":{"dtype":"BOOL","shape":[1],"data_offsets":[10,11]}})",
               11),
       {{"h", DType::BF16, {3}, 0, 6, 3}, {"f", DType::F32, {1, 1}, 6, 10, 1}, {"c", DType::BOOL, {1}, 10, 11, 1}},
       {}},
      {"SpacePaddedHeader", st_file(R"({"w":{"dtype":"I8","shape":[1],"data_offsets":[0,1]}}       )", 1),
       {{"w", DType::I8, {1}, 0, 1, 1}}, {}},
      {"ExtraFieldsInEntryIgnored",
       st_file(R"({"w":{"dtype":"I32","shape":[1],"data_offsets":[0,4],"extra":[1]}})", 4),
       {{"w", DType::I32, {1}, 0, 4, 1}}, {}},
      {"UnicodeName", st_file("{\"caf\xc3\xa9\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1),
       {{"caf\xc3\xa9", DType::U8, {1}, 0, 1, 1}}, {}},
  };
}

void PrintTo(const GoodCase& c, std::ostream* os) { *os << c.name; }

class SafetensorsValid : public testing::TestWithParam<GoodCase> {};

TEST_P(SafetensorsValid, Parses) {
  const GoodCase& c = GetParam();
  ilm::SafetensorsHeader h;
  try {
    h = ilm::parse_safetensors(c.file, kLabel);
  } catch (const ilm::Error& e) {
    FAIL() << e.what();
  }
  // data_offset is 8 + header length.
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | std::to_integer<uint64_t>(c.file[static_cast<size_t>(i)]);
  EXPECT_EQ(h.data_offset, 8 + n);
  ASSERT_EQ(h.tensors.size(), c.tensors.size());
  for (size_t i = 0; i < c.tensors.size(); ++i) {
    const auto& got = h.tensors[i];
    const auto& want = c.tensors[i];
    SCOPED_TRACE(want.name);
    EXPECT_EQ(got.name, want.name);
    EXPECT_EQ(got.dtype, want.dtype);
    EXPECT_EQ(got.shape, want.shape);
    EXPECT_EQ(got.begin, want.begin);
    EXPECT_EQ(got.end, want.end);
    EXPECT_EQ(got.numel(), want.numel);
    EXPECT_EQ(got.nbytes(), want.end - want.begin);
  }
  EXPECT_EQ(h.metadata, c.metadata);
}

INSTANTIATE_TEST_SUITE_P(Table, SafetensorsValid, testing::ValuesIn(good_cases()),
                         [](const testing::TestParamInfo<GoodCase>& i) { return i.param.name; });

// ----------------------------------------------------------------------------------------------
// Robustness: every prefix and many single-byte corruptions of a valid file either parse or throw
// ilm::Error (never another exception, never a crash; ASan/UBSan builds check the memory side).

Bytes sample_file() {
  return st_file(R"({"__metadata__":{"format":"pt"},)"
                 R"("a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
                 R"("b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]},)"
                 R"("c":{"dtype":"U8","shape":[0],"data_offsets":[22,22]}})",
                 22);
}

TEST(SafetensorsRobustness, EveryTruncationIsAnError) {
  const Bytes full = sample_file();
  ASSERT_NO_THROW(ilm::parse_safetensors(full, kLabel));
  for (size_t len = 0; len < full.size(); ++len) {
    const Bytes prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(len));
    const std::string msg = parse_error(prefix);
    EXPECT_EQ(msg.rfind(std::string(kLabel) + ": ", 0), 0u) << "len " << len << ": " << msg;
  }
}

TEST(SafetensorsRobustness, ByteCorruptionsParseOrThrowIlmError) {
  const Bytes full = sample_file();
  std::mt19937 rng(12345);
  for (size_t pos = 0; pos < full.size(); ++pos) {
    for (int k = 0; k < 12; ++k) {
      Bytes b = full;
      b[pos] = static_cast<std::byte>(k < 8 ? (std::to_integer<unsigned>(full[pos]) ^ (1u << k)) : rng() & 0xff);
      try {
        const auto h = ilm::parse_safetensors(b, kLabel);
        // Whatever parsed must describe ranges inside the data section.
        for (const auto& t : h.tensors) {
          EXPECT_LE(t.begin, t.end);
          EXPECT_LE(h.data_offset + t.end, b.size());
          EXPECT_EQ(t.nbytes(), t.numel() * ilm::dtype_size(t.dtype));
        }
      } catch (const ilm::Error& e) {
        EXPECT_EQ(std::string(e.what()).rfind(std::string(kLabel) + ": ", 0), 0u) << e.what();
      } catch (const std::exception& e) {
        ADD_FAILURE() << "pos " << pos << ": non-ilm exception: " << e.what();
      }
    }
  }
}

TEST(SafetensorsRobustness, DeeplyNestedHeaderValues) {
  const std::string deep = std::string(50000, '[') + std::string(50000, ']');
  for (const std::string& header :
       {"{\"w\":" + deep + "}", "{\"w\":{\"dtype\":\"F32\",\"shape\":" + deep + ",\"data_offsets\":[0,0]}}",
        "{\"__metadata__\":{\"k\":" + deep + "}}", deep}) {
    const std::string msg = parse_error(st_file(header, 0));
    EXPECT_EQ(msg.rfind(std::string(kLabel) + ": ", 0), 0u) << msg.substr(0, 200);
    EXPECT_LT(msg.size(), 300u);
  }
}

TEST(SafetensorsRobustness, HugeValuesInMessagesAreShortened) {
  const std::string big(1 << 20, 'x');
  const std::string msg =
      parse_error(st_file(R"({"w":{"dtype":")" + big + R"(","shape":[1],"data_offsets":[0,1]}})", 1));
  EXPECT_NE(msg.find("'w'"), std::string::npos);
  EXPECT_NE(msg.find("unknown dtype"), std::string::npos);
  EXPECT_LT(msg.size(), 200u);
}

// ----------------------------------------------------------------------------------------------
// Files on disk

class SafetensorsFileTest : public testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/ilm_st_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  fs::path write(const std::string& name, const Bytes& b) {
    const fs::path p = dir_ / name;
    std::ofstream f(p, std::ios::binary);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    EXPECT_TRUE(f.good());
    return p;
  }
  std::string open_error(const fs::path& p) {
    try {
      ilm::SafetensorsFile::open(p);
    } catch (const ilm::Error& e) {
      return e.what();
    }
    return "<no error>";
  }
  fs::path dir_;
};

TEST_F(SafetensorsFileTest, OpensAndExposesBytes) {
  const fs::path p = write("m.safetensors", sample_file());
  auto f = ilm::SafetensorsFile::open(p);
  EXPECT_EQ(f.path(), p);
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.header().metadata.at("format"), "pt");
  ASSERT_NE(f.find("b"), nullptr);
  EXPECT_EQ(f.find("nope"), nullptr);
  const auto* b = f.find("b");
  EXPECT_EQ(b->dtype, ilm::DType::BF16);
  const auto bytes = f.bytes(*b);
  ASSERT_EQ(bytes.size(), 6u);
  for (size_t i = 0; i < bytes.size(); ++i) EXPECT_EQ(std::to_integer<unsigned>(bytes[i]), 16 + i);
  EXPECT_EQ(bytes.data(), f.mapping().data() + f.header().data_offset + 16);
  EXPECT_EQ(f.bytes(*f.find("c")).size(), 0u);
  // Moving keeps the mapping and the index.
  ilm::SafetensorsFile g = std::move(f);
  ASSERT_NE(g.find("a"), nullptr);
  EXPECT_EQ(std::to_integer<unsigned>(g.bytes(*g.find("a"))[3]), 3u);
}

TEST_F(SafetensorsFileTest, TruncatedFileOnDiskIsAnError) {
  Bytes full = sample_file();
  full.resize(full.size() - 1);
  const fs::path p = write("trunc.safetensors", full);
  const std::string msg = open_error(p);
  EXPECT_EQ(msg.rfind(p.string() + ": ", 0), 0u) << msg;
  // 21 data bytes left: 'b' ends at 22.
  EXPECT_NE(msg.find("'b'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("past the end"), std::string::npos) << msg;
}

TEST_F(SafetensorsFileTest, TruncatedDataNamesTensor) {
  const Bytes full = st_file(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 16);
  const fs::path p = write("t.safetensors", Bytes(full.begin(), full.end() - 5));
  const std::string msg = open_error(p);
  EXPECT_EQ(msg.rfind(p.string() + ": ", 0), 0u) << msg;
  EXPECT_NE(msg.find("'w'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("past the end"), std::string::npos) << msg;
}

TEST_F(SafetensorsFileTest, EmptyFileIsAnError) {
  const fs::path p = write("empty.safetensors", {});
  const std::string msg = open_error(p);
  EXPECT_EQ(msg.rfind(p.string() + ": ", 0), 0u) << msg;
  EXPECT_NE(msg.find("0 bytes"), std::string::npos) << msg;
}

TEST_F(SafetensorsFileTest, MissingFileAndDirectoryAreErrors) {
  const std::string missing = open_error(dir_ / "absent.safetensors");
  EXPECT_EQ(missing.rfind((dir_ / "absent.safetensors").string() + ": ", 0), 0u) << missing;
  EXPECT_NE(missing.find("No such file"), std::string::npos) << missing;
  const std::string isdir = open_error(dir_);
  EXPECT_EQ(isdir.rfind(dir_.string() + ": ", 0), 0u) << isdir;
  EXPECT_NE(isdir.find("directory"), std::string::npos) << isdir;
}

TEST_F(SafetensorsFileTest, FifoIsRejectedWithoutBlocking) {
  const fs::path p = dir_ / "fifo.safetensors";
  ASSERT_EQ(::mkfifo(p.c_str(), 0600), 0);
  const std::string msg = open_error(p);
  EXPECT_NE(msg.find("not a regular file"), std::string::npos) << msg;
}

TEST_F(SafetensorsFileTest, ReleasingPagesTouchesOnlyFileMappings) {
  // Heap memory: MADV_DONTNEED would zero it; release_mapped_pages must leave it alone.
  std::vector<uint8_t> heap(1 << 20, 7);
  ilm::release_mapped_pages(heap.data(), heap.size());
  EXPECT_EQ(heap[heap.size() / 2], 7);
  // A mapped file: its pages are dropped and read back from the file, unchanged.
  Bytes bytes(1 << 20, std::byte{9});
  const fs::path p = write("big.bin", bytes);
  ilm::MappedFile m = ilm::MappedFile::open(p);
  ilm::release_mapped_pages(m.data(), m.size());
  EXPECT_EQ(std::to_integer<int>(m.data()[m.size() / 2]), 9);
}

TEST_F(SafetensorsFileTest, MappedFileBasics) {
  const fs::path p = write("x.bin", raw_bytes("hello"));
  ilm::MappedFile m = ilm::MappedFile::open(p);
  ASSERT_EQ(m.size(), 5u);
  EXPECT_EQ(std::to_integer<char>(m.data()[4]), 'o');
  // Hints never fail, whatever the range.
  m.advise_sequential();
  m.advise_willneed(0, 5);
  m.advise_willneed(3, 1000);
  m.advise_willneed(1000, 1);
  m.advise_dontneed(0, ~size_t{0});
  EXPECT_EQ(std::to_integer<char>(m.data()[0]), 'h');  // still readable after DONTNEED

  ilm::MappedFile moved(std::move(m));
  EXPECT_EQ(moved.size(), 5u);
  EXPECT_EQ(m.data(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from state is specified
  EXPECT_EQ(m.size(), 0u);
  ilm::MappedFile assigned;
  assigned = std::move(moved);
  EXPECT_EQ(std::to_integer<char>(assigned.data()[1]), 'e');
  assigned = ilm::MappedFile::open(write("y.bin", raw_bytes("ab")));  // replaces (and unmaps) the old one
  EXPECT_EQ(assigned.size(), 2u);

  const ilm::MappedFile empty = ilm::MappedFile::open(write("e.bin", {}));
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_EQ(empty.data(), nullptr);
  empty.advise_willneed(0, 10);
}

TEST_F(SafetensorsFileTest, UnreadableFileIsAnError) {
  if (::geteuid() == 0) GTEST_SKIP() << "root can read anything";
  const fs::path p = write("locked.safetensors", sample_file());
  fs::permissions(p, fs::perms::none);
  const std::string msg = open_error(p);
  EXPECT_EQ(msg.rfind(p.string() + ": ", 0), 0u) << msg;
  EXPECT_NE(msg.find("Permission denied"), std::string::npos) << msg;
}

}  // namespace
