// TensorStore over real directories: a single file, sharded checkpoints with an index, and the
// errors for inconsistent layouts.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "io/tensor_store.h"

namespace {

namespace fs = std::filesystem;

struct TensorSpec {
  std::string name;
  std::string dtype;  // safetensors spelling
  std::vector<int64_t> shape;
  uint8_t fill = 0;  // every byte of the tensor's data
};

uint64_t spec_bytes(const TensorSpec& t) {
  uint64_t n = ilm::dtype_size(*ilm::parse_dtype(t.dtype));
  for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
  return n;
}

// Writes a safetensors file with plain std::ofstream (header padded with spaces to 8 bytes).
void write_safetensors(const fs::path& p, const std::vector<TensorSpec>& tensors) {
  nlohmann::json h = nlohmann::json::object();
  h["__metadata__"] = {{"format", "pt"}};
  std::string data;
  for (const auto& t : tensors) {
    const uint64_t begin = data.size();
    data.append(spec_bytes(t), static_cast<char>(t.fill));
    h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {begin, data.size()}}};
  }
  std::string header = h.dump();
  while (header.size() % 8 != 0) header.push_back(' ');
  std::ofstream f(p, std::ios::binary);
  const uint64_t n = header.size();
  char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  f.write(len, 8);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(f.good()) << p;
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary);
  f << text;
  ASSERT_TRUE(f.good()) << p;
}

class TensorStoreTest : public testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/ilm_store_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void write_index(const nlohmann::json& weight_map, uint64_t total_size = 0) {
    const nlohmann::json j = {{"metadata", {{"total_size", total_size}}}, {"weight_map", weight_map}};
    write_text(dir_ / "model.safetensors.index.json", j.dump(2));
  }

  // Two shards: a and b in shard 1, c in shard 2.
  void write_sharded() {
    write_safetensors(dir_ / "model-00001-of-00002.safetensors",
                      {{"a", "F32", {2, 3}, 1}, {"b", "BF16", {4}, 2}});
    write_safetensors(dir_ / "model-00002-of-00002.safetensors", {{"c", "F16", {5}, 3}});
    write_index({{"a", "model-00001-of-00002.safetensors"},
                 {"b", "model-00001-of-00002.safetensors"},
                 {"c", "model-00002-of-00002.safetensors"}},
                24 + 8 + 10);
  }

  std::string open_error(const fs::path& d) {
    try {
      ilm::TensorStore::open(d);
    } catch (const ilm::Error& e) {
      return e.what();
    }
    return "<no error>";
  }

  // Asserts the message starts with `prefix` and contains every one of `parts`.
  static void expect_message(const std::string& msg, const std::string& prefix,
                             const std::vector<std::string>& parts) {
    EXPECT_EQ(msg.rfind(prefix + ": ", 0), 0u) << msg;
    for (const auto& s : parts) EXPECT_NE(msg.find(s), std::string::npos) << "missing '" << s << "' in: " << msg;
  }

  fs::path dir_;
};

TEST_F(TensorStoreTest, SingleModelFile) {
  write_safetensors(dir_ / "model.safetensors", {{"w", "F32", {2, 2}, 7}, {"s", "BF16", {}, 9}});
  const auto store = ilm::TensorStore::open(dir_);
  EXPECT_FALSE(store.sharded());
  EXPECT_EQ(store.dir(), dir_);
  EXPECT_EQ(store.files().size(), 1u);
  EXPECT_EQ(store.names(), (std::vector<std::string>{"s", "w"}));
  EXPECT_TRUE(store.contains("w"));
  EXPECT_FALSE(store.contains("x"));
  EXPECT_FALSE(store.contains(""));
  EXPECT_EQ(store.total_bytes(), 16u + 2u);

  const auto w = store.get("w", {2, 2});
  EXPECT_EQ(w.name, "w");
  EXPECT_EQ(w.dtype, ilm::DType::F32);
  EXPECT_EQ(w.file, "model.safetensors");
  EXPECT_EQ(w.nbytes, 16u);
  EXPECT_EQ(w.numel(), 4u);
  EXPECT_EQ(w.shape_str(), "[2, 2]");
  ASSERT_NE(w.data, nullptr);
  for (size_t i = 0; i < w.nbytes; ++i) EXPECT_EQ(std::to_integer<int>(w.data[i]), 7);

  const auto s = store.get("s");
  EXPECT_EQ(s.shape_str(), "[]");
  EXPECT_EQ(s.numel(), 1u);
  EXPECT_EQ(std::to_integer<int>(s.data[1]), 9);
}

TEST_F(TensorStoreTest, AnySingleSafetensorsFile) {
  write_safetensors(dir_ / "weights.safetensors", {{"w", "F32", {1}, 1}});
  write_text(dir_ / "config.json", "{}");
  const auto store = ilm::TensorStore::open(dir_);
  EXPECT_EQ(store.get("w").file, "weights.safetensors");
}

TEST_F(TensorStoreTest, SeveralFilesWithoutIndexIsAnError) {
  write_safetensors(dir_ / "a.safetensors", {{"w", "F32", {1}, 1}});
  write_safetensors(dir_ / "b.safetensors", {{"v", "F32", {1}, 1}});
  expect_message(open_error(dir_), dir_.string(), {"a.safetensors", "b.safetensors", "model.safetensors.index.json"});
}

TEST_F(TensorStoreTest, ShardedDirectory) {
  write_sharded();
  const auto store = ilm::TensorStore::open(dir_);
  EXPECT_TRUE(store.sharded());
  EXPECT_EQ(store.files().size(), 2u);
  EXPECT_EQ(store.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(store.total_bytes(), 24u + 8u + 10u);
  const auto a = store.get("a", {2, 3});
  EXPECT_EQ(a.file, "model-00001-of-00002.safetensors");
  EXPECT_EQ(std::to_integer<int>(a.data[23]), 1);
  const auto c = store.get("c", {5});
  EXPECT_EQ(c.file, "model-00002-of-00002.safetensors");
  EXPECT_EQ(c.dtype, ilm::DType::F16);
  EXPECT_EQ(std::to_integer<int>(c.data[0]), 3);
  EXPECT_EQ(store.get("b").nbytes, 8u);
}

TEST_F(TensorStoreTest, IndexWinsAndUnlistedFilesAreIgnored) {
  write_sharded();
  // A stray file that is not named in the index, holding a clashing tensor, is not opened.
  write_safetensors(dir_ / "model.safetensors", {{"a", "F32", {1}, 0}});
  write_text(dir_ / "junk.safetensors", "not a safetensors file");
  const auto store = ilm::TensorStore::open(dir_);
  EXPECT_TRUE(store.sharded());
  EXPECT_EQ(store.get("a").file, "model-00001-of-00002.safetensors");
}

TEST_F(TensorStoreTest, IndexNamesMissingShard) {
  write_sharded();
  fs::remove(dir_ / "model-00002-of-00002.safetensors");
  expect_message(open_error(dir_), dir_.string(), {"model-00002-of-00002.safetensors", "does not exist", "'c'"});
}

TEST_F(TensorStoreTest, TensorInIndexButNotInShard) {
  write_sharded();
  write_index({{"a", "model-00001-of-00002.safetensors"},
               {"b", "model-00001-of-00002.safetensors"},
               {"c", "model-00002-of-00002.safetensors"},
               {"d", "model-00002-of-00002.safetensors"}});
  expect_message(open_error(dir_), dir_.string(), {"'d'", "model-00002-of-00002.safetensors", "no such tensor"});
}

TEST_F(TensorStoreTest, TensorInTwoShards) {
  write_sharded();
  write_safetensors(dir_ / "model-00002-of-00002.safetensors", {{"c", "F16", {5}, 3}, {"a", "F32", {2, 3}, 4}});
  expect_message(open_error(dir_), dir_.string(),
                 {"'a'", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "both"});
}

TEST_F(TensorStoreTest, CorruptShardNamesTheShard) {
  write_sharded();
  write_text(dir_ / "model-00002-of-00002.safetensors", "garbage!garbage!");
  const std::string msg = open_error(dir_);
  expect_message(msg, (dir_ / "model-00002-of-00002.safetensors").string(), {"header length"});
}

TEST_F(TensorStoreTest, EmptyAndMissingDirectories) {
  expect_message(open_error(dir_), dir_.string(), {"no model.safetensors.index.json", "*.safetensors"});
  expect_message(open_error(dir_ / "nope"), (dir_ / "nope").string(), {"does not exist"});
  write_text(dir_ / "file", "x");
  expect_message(open_error(dir_ / "file"), (dir_ / "file").string(), {"not a directory"});
}

TEST_F(TensorStoreTest, MalformedIndexFiles) {
  const fs::path index = dir_ / "model.safetensors.index.json";
  write_safetensors(dir_ / "s.safetensors", {{"a", "F32", {1}, 1}});
  const struct {
    const char* name;
    std::string text;
    std::vector<std::string> expect;
  } cases[] = {
      {"bad json", "{\"weight_map\": {\"a\": ", {"invalid JSON", "line"}},
      {"empty file", "", {"invalid JSON"}},
      {"array", "[]", {"JSON object"}},
      {"no weight_map", R"({"metadata": {}})", {"weight_map", "missing"}},
      {"weight_map not object", R"({"weight_map": ["a"]})", {"weight_map", "object"}},
      {"empty weight_map", R"({"weight_map": {}})", {"weight_map", "no tensors"}},
      {"shard not string", R"({"weight_map": {"a": 1}})", {"'a'", "file name"}},
      {"shard path escapes", R"({"weight_map": {"a": "../s.safetensors"}})", {"'a'", "../s.safetensors"}},
      {"shard absolute", R"({"weight_map": {"a": "/etc/passwd"}})", {"'a'", "plain file name"}},
      {"shard empty", R"({"weight_map": {"a": ""}})", {"'a'", "plain file name"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    write_text(index, c.text);
    expect_message(open_error(dir_), index.string(), c.expect);
  }
}

TEST_F(TensorStoreTest, GetErrors) {
  write_sharded();
  const auto store = ilm::TensorStore::open(dir_);
  std::string msg;
  try {
    store.get("model.missing.weight");
  } catch (const ilm::Error& e) {
    msg = e.what();
  }
  expect_message(msg, dir_.string(),
                 {"tensor 'model.missing.weight' not found", "model-00001-of-00002.safetensors",
                  "model-00002-of-00002.safetensors"});

  msg.clear();
  try {
    store.get("a", {3, 2});
  } catch (const ilm::Error& e) {
    msg = e.what();
  }
  expect_message(msg, dir_.string(),
                 {"tensor 'a'", "model-00001-of-00002.safetensors", "has shape [2, 3], expected [3, 2]"});

  msg.clear();
  try {
    store.get("c", {});
  } catch (const ilm::Error& e) {
    msg = e.what();
  }
  expect_message(msg, dir_.string(), {"tensor 'c'", "[5]", "expected []"});
  EXPECT_NO_THROW(store.get("c", {5}));
}

TEST_F(TensorStoreTest, StoreIsMovableAndDataStaysValid) {
  write_safetensors(dir_ / "model.safetensors", {{"w", "U8", {3}, 5}});
  auto store = ilm::TensorStore::open(dir_);
  const auto before = store.get("w");
  ilm::TensorStore moved = std::move(store);
  const auto after = moved.get("w");
  EXPECT_EQ(before.data, after.data);  // the mapping did not move
  EXPECT_EQ(std::to_integer<int>(after.data[2]), 5);
}

}  // namespace
