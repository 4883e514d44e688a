// SafetensorsWriter: round trip through the reader, the exact header layout, and the
// failure modes (too many / too few bytes, no finish(), invalid declarations).
#include <gtest/gtest.h>

#include "test_util.h"
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/error.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"

namespace fs = std::filesystem;

namespace {

// ilm::test::TempDir with this file's tag.
class TempDir : public ilm::test::TempDir {
 public:
  explicit TempDir(const std::string& tag) : ilm::test::TempDir("writer-" + tag, true) {}
};

std::vector<std::byte> read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::vector<std::byte> out(static_cast<size_t>(fs::file_size(p)));
  f.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size()));
  return out;
}

std::vector<std::byte> pattern(size_t n, uint8_t seed) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 31 + seed) & 0xff);
  return v;
}

uint64_t header_len(const std::vector<std::byte>& file) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | std::to_integer<uint64_t>(file[static_cast<size_t>(i)]);
  return n;
}

}  // namespace

TEST(SafetensorsWriter, RoundTripThroughReader) {
  TempDir dir("roundtrip");
  const fs::path path = dir.path() / "t.safetensors";
  const std::vector<ilm::TensorDecl> decls = {
      {"b.weight", ilm::DType::F32, {2, 3}},
      {"a.norm", ilm::DType::BF16, {5}},
      {"empty", ilm::DType::F32, {0, 4}},
      {"scalar", ilm::DType::I64, {}},
      {"bytes", ilm::DType::U8, {7}},
  };
  const auto t0 = pattern(24, 1), t1 = pattern(10, 2), t3 = pattern(8, 3), t4 = pattern(7, 4);
  std::vector<std::byte> all;
  for (const auto* t : {&t0, &t1, &t3, &t4}) all.insert(all.end(), t->begin(), t->end());

  uint64_t planned = ilm::SafetensorsWriter::planned_file_size(decls, {{"format", "pt"}, {"note", "x\"y"}});
  {
    ilm::SafetensorsWriter w(path, decls, {{"format", "pt"}, {"note", "x\"y"}});
    EXPECT_EQ(w.file_size(), planned);
    // Chunks that straddle tensor boundaries, plus an empty write.
    w.write(std::span<const std::byte>(all.data(), 5));
    w.write(std::span<const std::byte>(all.data() + 5, 0));
    w.write(std::span<const std::byte>(all.data() + 5, 30));
    w.write(std::span<const std::byte>(all.data() + 35, all.size() - 35));
    EXPECT_FALSE(fs::exists(path));  // only the temporary exists until finish()
    EXPECT_TRUE(fs::exists(dir.path() / "t.safetensors.tmp"));
    w.finish();
  }
  EXPECT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(dir.path() / "t.safetensors.tmp"));
  EXPECT_EQ(fs::file_size(path), planned);

  const auto file = read_all(path);
  const ilm::SafetensorsHeader h = ilm::parse_safetensors(file, path.string());
  ASSERT_EQ(h.tensors.size(), decls.size());
  EXPECT_EQ(h.metadata.at("format"), "pt");
  EXPECT_EQ(h.metadata.at("note"), "x\"y");
  uint64_t offset = 0;
  for (size_t i = 0; i < decls.size(); ++i) {  // declaration order is data order
    EXPECT_EQ(h.tensors[i].name, decls[i].name);
    EXPECT_EQ(h.tensors[i].dtype, decls[i].dtype);
    EXPECT_EQ(h.tensors[i].shape, decls[i].shape);
    EXPECT_EQ(h.tensors[i].begin, offset);
    offset = h.tensors[i].end;
  }
  ASSERT_EQ(h.data_offset + all.size(), file.size());
  EXPECT_EQ(std::memcmp(file.data() + h.data_offset, all.data(), all.size()), 0);

  auto st = ilm::SafetensorsFile::open(path);
  const ilm::TensorInfo* b = st.find("b.weight");
  ASSERT_NE(b, nullptr);
  auto bytes = st.bytes(*b);
  ASSERT_EQ(bytes.size(), t0.size());
  EXPECT_EQ(std::memcmp(bytes.data(), t0.data(), t0.size()), 0);
  const ilm::TensorInfo* s = st.find("scalar");
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(s->shape.empty());
  EXPECT_EQ(s->nbytes(), 8u);
}

TEST(SafetensorsWriter, HeaderIsCompactJsonPaddedWithSpacesToEightBytes) {
  TempDir dir("header");
  for (size_t name_len = 1; name_len <= 9; ++name_len) {
    const fs::path path = dir.path() / ("h" + std::to_string(name_len) + ".safetensors");
    const std::string name(name_len, 'w');
    {
      ilm::SafetensorsWriter w(path, {{name, ilm::DType::F32, {2}}});
      const auto data = pattern(8, 9);
      w.write(data);
      w.finish();
    }
    const auto file = read_all(path);
    const uint64_t n = header_len(file);
    EXPECT_EQ(n % 8, 0u) << name_len;
    EXPECT_EQ(file.size(), 8 + n + 8);
    std::string header(reinterpret_cast<const char*>(file.data()) + 8, n);
    const std::string json = "{\"__metadata__\":{\"format\":\"pt\"},\"" + name +
                             "\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    ASSERT_GE(header.size(), json.size());
    EXPECT_EQ(header.substr(0, json.size()), json);
    EXPECT_LT(header.size() - json.size(), 8u);
    EXPECT_EQ(header.find_first_not_of(' ', json.size()), std::string::npos) << "padding must be spaces";
  }
}

TEST(SafetensorsWriter, NoMetadataAndNoTensors) {
  TempDir dir("empty");
  const fs::path path = dir.path() / "e.safetensors";
  {
    ilm::SafetensorsWriter w(path, {}, {});
    EXPECT_EQ(w.file_size(), 16u);  // "{}" padded to 8
    w.finish();
  }
  const auto file = read_all(path);
  ASSERT_EQ(file.size(), 16u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(file.data()) + 8, 8), "{}      ");
  const auto h = ilm::parse_safetensors(file, path.string());
  EXPECT_TRUE(h.tensors.empty());
  EXPECT_TRUE(h.metadata.empty());
}

TEST(SafetensorsWriter, TooManyBytesThrows) {
  TempDir dir("toomany");
  const fs::path path = dir.path() / "x.safetensors";
  {
    ilm::SafetensorsWriter w(path, {{"a", ilm::DType::BF16, {3}}});
    const auto data = pattern(8, 0);
    EXPECT_THROW(w.write(data), ilm::Error);
    w.write(std::span<const std::byte>(data.data(), 4));
    EXPECT_THROW(w.write(std::span<const std::byte>(data.data(), 3)), ilm::Error);
    w.write(std::span<const std::byte>(data.data(), 2));
    w.finish();
    EXPECT_THROW(w.write(std::span<const std::byte>(data.data(), 1)), ilm::Error);
    EXPECT_THROW(w.finish(), ilm::Error);
  }
  EXPECT_TRUE(fs::exists(path));  // the successful finish() stands
}

TEST(SafetensorsWriter, TooFewBytesThrowsNamingTheTensorAndLeavesNoFile) {
  TempDir dir("toofew");
  const fs::path path = dir.path() / "x.safetensors";
  {
    ilm::SafetensorsWriter w(path, {{"first", ilm::DType::F32, {2}}, {"second", ilm::DType::F32, {4}}});
    const auto data = pattern(12, 0);
    w.write(data);
    try {
      w.finish();
      FAIL() << "finish() accepted a short file";
    } catch (const ilm::Error& e) {
      EXPECT_NE(std::string(e.what()).find("second"), std::string::npos) << e.what();
    }
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(dir.path() / "x.safetensors.tmp"));
}

TEST(SafetensorsWriter, TemporaryRemovedWithoutFinish) {
  TempDir dir("nofinish");
  const fs::path path = dir.path() / "x.safetensors";
  {
    ilm::SafetensorsWriter w(path, {{"a", ilm::DType::F32, {2}}});
    const auto data = pattern(8, 0);
    w.write(data);  // complete, but never finished
    EXPECT_TRUE(fs::exists(dir.path() / "x.safetensors.tmp"));
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(dir.path() / "x.safetensors.tmp"));
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(SafetensorsWriter, RejectsInvalidDeclarations) {
  TempDir dir("invalid");
  const fs::path path = dir.path() / "x.safetensors";
  using D = std::vector<ilm::TensorDecl>;
  EXPECT_THROW(ilm::SafetensorsWriter(path, D{{"a", ilm::DType::F32, {2}}, {"a", ilm::DType::F32, {2}}}),
               ilm::Error);
  EXPECT_THROW(ilm::SafetensorsWriter(path, D{{"__metadata__", ilm::DType::F32, {2}}}), ilm::Error);
  EXPECT_THROW(ilm::SafetensorsWriter(path, D{{"", ilm::DType::F32, {2}}}), ilm::Error);
  EXPECT_THROW(ilm::SafetensorsWriter(path, D{{"a", ilm::DType::F32, {2, -1}}}), ilm::Error);
  EXPECT_THROW(ilm::SafetensorsWriter(path, D{{"a", ilm::DType::F32, {int64_t{1} << 62, 8}}}), ilm::Error);
  EXPECT_THROW(ilm::SafetensorsWriter(dir.path() / "missing-dir" / "x.safetensors", D{}), ilm::Error);
  EXPECT_TRUE(fs::is_empty(dir.path()));
}
