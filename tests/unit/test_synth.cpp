// Synthetic checkpoints: files, config, tensor set and shapes, weight statistics,
// determinism, sharding, f32, tied embeddings, option errors; and the counter-based RNG.
//
// The tiny preset is ~97 MB in bf16 (two 92544 x 256 matrices), so a run of the suite writes a
// full checkpoint four times: the reference (shared by the tests of one process), the
// reference again (determinism), sharded, and f32 + tied + 3 layers + seed 2.
#include <gtest/gtest.h>

#include "test_util.h"
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/dtype.h"
#include "common/error.h"
#include "io/safetensors.h"
#include "io/tensor_store.h"
#include "model/config.h"
#include "synth/presets.h"
#include "synth/random.h"
#include "synth/synth.h"

namespace fs = std::filesystem;

namespace {

const fs::path kTokenizerDir = INTERNLM_TEST_TOKENIZER_DIR;

// ilm::test::TempDir with this file's tag.
class TempDir : public ilm::test::TempDir {
 public:
  explicit TempDir(const std::string& tag) : ilm::test::TempDir("synth-" + tag, false) {}
};

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::string s(static_cast<size_t>(fs::file_size(p)), '\0');
  f.read(s.data(), static_cast<std::streamsize>(s.size()));
  return s;
}

nlohmann::json read_json(const fs::path& p) { return nlohmann::json::parse(read_file(p)); }

ilm::SynthOptions tiny_options(const fs::path& out) {
  ilm::SynthOptions o;
  o.preset = "tiny";
  o.seed = 1;
  o.tokenizer_dir = kTokenizerDir;
  o.out = out;
  return o;
}

// The tensors of the tiny preset, written out independently of presets.cpp.
std::map<std::string, std::vector<int64_t>> expected_tiny_tensors(int layers, bool tied) {
  const int64_t V = 92544, H = 256, I = 512, nh = 8, nkv = 2, hd = H / nh;
  std::map<std::string, std::vector<int64_t>> m;
  m["model.tok_embeddings.weight"] = {V, H};
  for (int i = 0; i < layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    m[p + "attention_norm.weight"] = {H};
    m[p + "attention.wqkv.weight"] = {(nh + 2 * nkv) * hd, H};
    m[p + "attention.wo.weight"] = {H, nh * hd};
    m[p + "ffn_norm.weight"] = {H};
    m[p + "feed_forward.w1.weight"] = {I, H};
    m[p + "feed_forward.w3.weight"] = {I, H};
    m[p + "feed_forward.w2.weight"] = {H, I};
  }
  m["model.norm.weight"] = {H};
  if (!tied) m["output.weight"] = {V, H};
  return m;
}

std::vector<float> as_f32(const ilm::TensorRef& t) {
  std::vector<float> v(t.numel());
  for (size_t i = 0; i < v.size(); ++i) v[i] = ilm::load_as_f32(t.data, t.dtype, i);
  return v;
}

void mean_std(const std::vector<float>& v, double& mean, double& std) {
  double s = 0, s2 = 0;
  for (float x : v) {
    s += x;
    s2 += static_cast<double>(x) * x;
  }
  mean = s / static_cast<double>(v.size());
  std = std::sqrt(s2 / static_cast<double>(v.size()) - mean * mean);
}

}  // namespace

// ---- the counter-based generator ------------------------------------------------------

TEST(SynthRandom, ValuesDoNotDependOnChunking) {
  const uint64_t key = ilm::synth::stream_key(7, "model.layers.0.attention.wqkv.weight");
  const size_t n = 10001;
  std::vector<float> whole(n), pieces(n);
  ilm::synth::fill_normal_f32(key, 3, n, 0.0f, 1.0f, whole.data());
  size_t done = 0, step = 1;
  while (done < n) {  // odd and even starts, sizes 1, 2, 3, ... (crossing block boundaries)
    const size_t m = std::min(step, n - done);
    ilm::synth::fill_normal_f32(key, 3 + done, m, 0.0f, 1.0f, pieces.data() + done);
    done += m;
    step = step * 3 + 1;
  }
  EXPECT_EQ(std::memcmp(whole.data(), pieces.data(), n * sizeof(float)), 0);
}

TEST(SynthRandom, Bf16IsTheRoundedF32) {
  const uint64_t key = ilm::synth::stream_key(3, "x");
  const size_t n = 4097;
  std::vector<float> f(n);
  std::vector<uint16_t> h(n);
  std::vector<float> f2(n);
  ilm::synth::fill_normal(key, 11, n, 1.0f, 0.1f, ilm::DType::F32, reinterpret_cast<std::byte*>(f.data()));
  ilm::synth::fill_normal_f32(key, 11, n, 1.0f, 0.1f, f2.data());
  ilm::synth::fill_normal(key, 11, n, 1.0f, 0.1f, ilm::DType::BF16, reinterpret_cast<std::byte*>(h.data()));
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(f[i], f2[i]) << i;
    ASSERT_EQ(h[i], ilm::f32_to_bf16(f[i])) << i;
  }
  EXPECT_THROW(ilm::synth::fill_normal(key, 0, 1, 0, 1, ilm::DType::F16, reinterpret_cast<std::byte*>(h.data())),
               ilm::Error);
}

TEST(SynthRandom, SeedAndNameChangeTheStream) {
  const size_t n = 64;
  auto draw = [&](uint64_t seed, const char* name) {
    std::vector<float> v(n);
    ilm::synth::fill_normal_f32(ilm::synth::stream_key(seed, name), 0, n, 0.0f, 1.0f, v.data());
    return v;
  };
  const auto a = draw(1, "w"), b = draw(2, "w"), c = draw(1, "v"), a2 = draw(1, "w");
  EXPECT_EQ(a, a2);
  int same_b = 0, same_c = 0;
  for (size_t i = 0; i < n; ++i) {
    same_b += a[i] == b[i];
    same_c += a[i] == c[i];
  }
  EXPECT_EQ(same_b, 0);
  EXPECT_EQ(same_c, 0);
}

TEST(SynthRandom, StandardNormalMoments) {
  const size_t n = 1 << 21;
  std::vector<float> v(n);
  ilm::synth::fill_normal_f32(ilm::synth::stream_key(0, "moments"), 0, n, 0.0f, 1.0f, v.data());
  double s1 = 0, s2 = 0, s3 = 0, s4 = 0, max_abs = 0;
  for (float x : v) {
    const double d = x;
    s1 += d;
    s2 += d * d;
    s3 += d * d * d;
    s4 += d * d * d * d;
    max_abs = std::max(max_abs, std::fabs(d));
  }
  const double N = static_cast<double>(n);
  EXPECT_NEAR(s1 / N, 0.0, 0.003);
  EXPECT_NEAR(s2 / N, 1.0, 0.005);
  EXPECT_NEAR(s3 / N, 0.0, 0.01);
  EXPECT_NEAR(s4 / N, 3.0, 0.03);
  EXPECT_GT(max_abs, 4.0);
  EXPECT_LE(max_abs, 5.8);
  // A crude check of the shape: the fraction within one sigma is 0.6827.
  size_t within = 0;
  for (float x : v) within += std::fabs(x) < 1.0f;
  EXPECT_NEAR(static_cast<double>(within) / N, 0.6827, 0.002);
}

// ---- presets ------------------------------------------------------------------------------

TEST(SynthPresets, ShapesAndParameterCounts) {
  const auto seven = ilm::synth::find_preset("7b");
  ASSERT_TRUE(seven);
  uint64_t params = 0;
  for (const auto& t : ilm::synth::tensor_list(*seven, false)) params += t.numel();
  EXPECT_EQ(params, 7737708544u);  // internlm2_5-7b-chat
  const auto small = ilm::synth::find_preset("1_8b");
  ASSERT_TRUE(small);
  params = 0;
  for (const auto& t : ilm::synth::tensor_list(*small, false)) params += t.numel();
  EXPECT_EQ(params, 1889110016u);  // InternLM2-1.8B
  EXPECT_TRUE(ilm::synth::find_preset("small"));
  EXPECT_FALSE(ilm::synth::find_preset("13b"));
  // HF state_dict order.
  const auto list = ilm::synth::tensor_list(*ilm::synth::find_preset("tiny"), false);
  EXPECT_EQ(list.front().name, "model.tok_embeddings.weight");
  EXPECT_EQ(list[1].name, "model.layers.0.attention.wqkv.weight");
  EXPECT_EQ(list[7].name, "model.layers.0.ffn_norm.weight");
  EXPECT_EQ(list.back().name, "output.weight");
}

// ---- whole checkpoints ----------------------------------------------------------------

// The reference checkpoint (tiny, seed 1, bf16, one file), written once per process on first
// use and removed at exit.
struct Reference {
  TempDir dir{"ref"};
  ilm::SynthSummary summary;
  std::vector<std::pair<uint64_t, uint64_t>> progress;
  Reference() {
    summary = ilm::write_synthetic_checkpoint(
        tiny_options(dir.path()), [this](uint64_t done, uint64_t total) { progress.emplace_back(done, total); });
  }
};

const Reference& reference() {
  static const Reference r;
  return r;
}

const fs::path& ref() { return reference().dir.path(); }

TEST(SynthCheckpoint, TinyWritesAllFilesConfigAndProgress) {
  const ilm::SynthSummary& summary_ = reference().summary;
  const auto& progress_ = reference().progress;
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(ref())) names.insert(e.path().filename().string());
  const std::set<std::string> expected = {"model.safetensors",      "config.json",
                                          "generation_config.json", "tokenizer.model",
                                          "tokenizer_config.json",  "special_tokens_map.json",
                                          "README.md"};
  EXPECT_EQ(names, expected);
  EXPECT_EQ(std::set<std::string>(summary_.files.begin(), summary_.files.end()), expected);
  EXPECT_EQ(summary_.weight_files, 1u);
  EXPECT_EQ(read_file(ref() / "tokenizer.model"), read_file(kTokenizerDir / "tokenizer.model"));
  uint64_t bytes = 0;
  for (const auto& n : expected) bytes += fs::file_size(ref() / n);
  EXPECT_EQ(summary_.bytes_written, bytes);

  const std::string readme = read_file(ref() / "README.md");
  EXPECT_NE(readme.find("RANDOM WEIGHTS"), std::string::npos);
  EXPECT_NE(readme.find("internlm synth --preset tiny --seed 1 --dtype bf16"), std::string::npos);

  // Progress: monotonic, constant total = the safetensors file size, ends at the total.
  ASSERT_GE(progress_.size(), 2u);
  const uint64_t total = progress_.front().second;
  EXPECT_EQ(total, fs::file_size(ref() / "model.safetensors"));
  uint64_t last = 0;
  for (const auto& [done, t] : progress_) {
    EXPECT_EQ(t, total);
    EXPECT_GE(done, last);
    last = done;
  }
  EXPECT_EQ(progress_.back().first, total);

  // config.json: every field of the Hugging Face file, nothing else.
  const nlohmann::json c = read_json(ref() / "config.json");
  std::set<std::string> keys;
  for (const auto& [k, v] : c.items()) keys.insert(k);
  const std::set<std::string> expected_keys = {
      "architectures", "auto_map", "attn_implementation", "bias", "bos_token_id", "eos_token_id",
      "hidden_act", "hidden_size", "initializer_range", "intermediate_size", "max_position_embeddings",
      "model_type", "num_attention_heads", "num_hidden_layers", "num_key_value_heads", "pad_token_id",
      "pretraining_tp", "rms_norm_eps", "rope_scaling", "rope_theta", "tie_word_embeddings", "torch_dtype",
      "transformers_version", "use_cache", "vocab_size"};
  EXPECT_EQ(keys, expected_keys);
  EXPECT_EQ(c["architectures"], nlohmann::json::array({"InternLM2ForCausalLM"}));
  EXPECT_EQ(c["auto_map"]["AutoConfig"], "configuration_internlm2.InternLM2Config");
  EXPECT_EQ(c["auto_map"]["AutoModel"], "modeling_internlm2.InternLM2ForCausalLM");
  EXPECT_EQ(c["auto_map"]["AutoModelForCausalLM"], "modeling_internlm2.InternLM2ForCausalLM");
  EXPECT_EQ(c["attn_implementation"], "eager");
  EXPECT_EQ(c["bias"], false);
  EXPECT_EQ(c["bos_token_id"], 1);
  EXPECT_EQ(c["eos_token_id"], 2);
  EXPECT_EQ(c["pad_token_id"], 2);
  EXPECT_EQ(c["hidden_act"], "silu");
  EXPECT_EQ(c["hidden_size"], 256);
  EXPECT_DOUBLE_EQ(c["initializer_range"].get<double>(), 0.02);
  EXPECT_EQ(c["intermediate_size"], 512);
  EXPECT_EQ(c["max_position_embeddings"], 32768);
  EXPECT_EQ(c["model_type"], "internlm2");
  EXPECT_EQ(c["num_attention_heads"], 8);
  EXPECT_EQ(c["num_hidden_layers"], 2);
  EXPECT_EQ(c["num_key_value_heads"], 2);
  EXPECT_EQ(c["pretraining_tp"], 1);
  EXPECT_DOUBLE_EQ(c["rms_norm_eps"].get<double>(), 1e-5);
  EXPECT_EQ(c["rope_scaling"]["type"], "dynamic");
  EXPECT_DOUBLE_EQ(c["rope_scaling"]["factor"].get<double>(), 2.0);
  EXPECT_TRUE(c["rope_scaling"]["factor"].is_number_float());
  EXPECT_EQ(c["rope_scaling"].size(), 2u);
  EXPECT_DOUBLE_EQ(c["rope_theta"].get<double>(), 1e6);
  EXPECT_EQ(c["tie_word_embeddings"], false);
  EXPECT_EQ(c["torch_dtype"], "bfloat16");
  EXPECT_EQ(c["transformers_version"], "4.41.0");
  EXPECT_EQ(c["use_cache"], true);
  EXPECT_EQ(c["vocab_size"], 92544);

  const nlohmann::json g = read_json(ref() / "generation_config.json");
  EXPECT_EQ(g["eos_token_id"], nlohmann::json::array({2, 92542}));
  EXPECT_EQ(g["bos_token_id"], 1);
  EXPECT_EQ(g["pad_token_id"], 2);

  // The project's own config reader accepts it.
  const ilm::ModelConfig mc = ilm::ModelConfig::load(ref());
  EXPECT_EQ(mc.head_dim, 32);
  EXPECT_EQ(mc.num_kv_heads, 2);
  EXPECT_EQ(mc.rope_scaling.type, ilm::RopeScaling::Type::Dynamic);
  const ilm::GenerationConfig gc = ilm::GenerationConfig::load(ref());
  EXPECT_EQ(gc.eos_token_ids, (std::vector<int64_t>{2, 92542}));
}

TEST(SynthCheckpoint, TinyTensorSetShapesAndValues) {
  const ilm::SynthSummary& summary_ = reference().summary;
  const auto store = ilm::TensorStore::open(ref());
  EXPECT_FALSE(store.sharded());
  const auto expected = expected_tiny_tensors(2, false);
  std::vector<std::string> expected_names;
  uint64_t params = 0;
  for (const auto& [name, shape] : expected) {
    expected_names.push_back(name);
    const ilm::TensorRef t = store.get(name, shape);
    EXPECT_EQ(t.dtype, ilm::DType::BF16) << name;
    params += t.numel();
  }
  EXPECT_EQ(store.names(), expected_names);
  EXPECT_EQ(summary_.params, params);
  EXPECT_EQ(summary_.tensor_bytes, 2 * params);
  EXPECT_EQ(store.total_bytes(), 2 * params);

  // Data order inside the file is by name, as the reference safetensors library writes it.
  const auto file = ilm::SafetensorsFile::open(ref() / "model.safetensors");
  for (size_t i = 1; i < file.tensors().size(); ++i)
    EXPECT_LT(file.tensors()[i - 1].name, file.tensors()[i].name);
  EXPECT_EQ(file.header().metadata.at("format"), "pt");

  // Values: N(0, 0.02) matrices, 1 + N(0, 0.1) norms.
  double mean = 0, std = 0;
  mean_std(as_f32(store.get("model.tok_embeddings.weight")), mean, std);
  EXPECT_NEAR(mean, 0.0, 1e-4);
  EXPECT_NEAR(std, 0.02, 0.0002);
  mean_std(as_f32(store.get("model.layers.1.feed_forward.w2.weight")), mean, std);
  EXPECT_NEAR(mean, 0.0, 5e-4);
  EXPECT_NEAR(std, 0.02, 0.0005);
  for (const char* norm : {"model.norm.weight", "model.layers.0.attention_norm.weight"}) {
    mean_std(as_f32(store.get(norm)), mean, std);
    EXPECT_NEAR(mean, 1.0, 0.02) << norm;
    EXPECT_NEAR(std, 0.1, 0.015) << norm;
  }
  // Every element is exactly the generator's value for (seed, name, index), rounded to bf16.
  const ilm::TensorRef wo = store.get("model.layers.1.attention.wo.weight");
  std::vector<uint16_t> expect(wo.numel());
  ilm::synth::fill_normal(ilm::synth::stream_key(1, wo.name), 0, expect.size(), 0.0f, 0.02f, ilm::DType::BF16,
                          reinterpret_cast<std::byte*>(expect.data()));
  EXPECT_EQ(std::memcmp(wo.data, expect.data(), wo.nbytes), 0);
  // The two big matrices differ (not the same stream).
  const ilm::TensorRef emb = store.get("model.tok_embeddings.weight"), out = store.get("output.weight");
  EXPECT_NE(std::memcmp(emb.data, out.data, 4096), 0);
}

TEST(SynthCheckpoint, SameSeedGivesIdenticalBytes) {
  TempDir again("again");
  ilm::write_synthetic_checkpoint(tiny_options(again.path()));
  for (const char* f : {"model.safetensors", "config.json", "generation_config.json", "README.md"}) {
    const std::string a = read_file(ref() / f), b = read_file(again.path() / f);
    EXPECT_EQ(a.size(), b.size()) << f;
    EXPECT_TRUE(a == b) << f << " differs";
  }
}

TEST(SynthCheckpoint, ShardedHoldsTheSameTensorsWithAValidIndex) {
  TempDir sharded("sharded");
  ilm::SynthOptions o = tiny_options(sharded.path());
  o.shard_bytes = 20'000'000;  // --shard-mb 20
  const ilm::SynthSummary s = ilm::write_synthetic_checkpoint(o);

  // Greedy in state_dict order: the embeddings (47.4 MB) alone, both layers and the final
  // norm (2.2 MB), the output head alone.
  const std::vector<std::string> shard_names = {"model-00001-of-00003.safetensors",
                                                "model-00002-of-00003.safetensors",
                                                "model-00003-of-00003.safetensors"};
  EXPECT_EQ(s.weight_files, 3u);
  EXPECT_FALSE(fs::exists(sharded.path() / "model.safetensors"));
  for (const auto& n : shard_names) EXPECT_TRUE(fs::exists(sharded.path() / n)) << n;

  const std::string index_text = read_file(sharded.path() / "model.safetensors.index.json");
  const nlohmann::json index = nlohmann::json::parse(index_text);
  EXPECT_EQ(index.size(), 2u);
  const auto expected = expected_tiny_tensors(2, false);
  uint64_t total = 0;
  for (const auto& [name, shape] : expected) {
    uint64_t n = 2;
    for (int64_t d : shape) n *= static_cast<uint64_t>(d);
    total += n;
  }
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), total);
  EXPECT_EQ(s.tensor_bytes, total);
  ASSERT_EQ(index["weight_map"].size(), expected.size());
  EXPECT_EQ(index["weight_map"]["model.tok_embeddings.weight"], shard_names[0]);
  EXPECT_EQ(index["weight_map"]["model.layers.0.attention.wqkv.weight"], shard_names[1]);
  EXPECT_EQ(index["weight_map"]["model.norm.weight"], shard_names[1]);
  EXPECT_EQ(index["weight_map"]["output.weight"], shard_names[2]);
  // Keys sorted in the file, as json.dumps(sort_keys=True) writes them.
  EXPECT_LT(index_text.find("\"model.layers.0."), index_text.find("\"model.layers.1."));
  EXPECT_LT(index_text.find("\"model.norm.weight\""), index_text.find("\"model.tok_embeddings.weight\""));

  const auto a = ilm::TensorStore::open(ref());
  const auto b = ilm::TensorStore::open(sharded.path());
  EXPECT_TRUE(b.sharded());
  ASSERT_EQ(a.names(), b.names());
  for (const auto& name : a.names()) {
    const ilm::TensorRef ta = a.get(name), tb = b.get(name);
    EXPECT_EQ(ta.shape, tb.shape) << name;
    ASSERT_EQ(ta.nbytes, tb.nbytes) << name;
    EXPECT_EQ(std::memcmp(ta.data, tb.data, ta.nbytes), 0) << name;
    EXPECT_EQ(index["weight_map"][name], tb.file) << name;
  }
  EXPECT_EQ(read_file(ref() / "config.json"), read_file(sharded.path() / "config.json"));
}

TEST(SynthCheckpoint, F32TiedThreeLayersOtherSeedWithForce) {
  TempDir d("f32");
  fs::create_directories(d.path());
  { std::ofstream(d.path() / "model-00001-of-00009.safetensors") << "stale"; }
  { std::ofstream(d.path() / "model.safetensors.index.json") << "{}"; }
  { std::ofstream(d.path() / "notes.txt") << "keep me"; }
  ilm::SynthOptions o = tiny_options(d.path());
  o.seed = 2;
  o.dtype = ilm::DType::F32;
  o.tie_word_embeddings = true;
  o.layers = 3;
  o.rope_scaling = "none";
  o.max_position_embeddings = 4096;
  EXPECT_THROW(ilm::write_synthetic_checkpoint(o), ilm::Error);  // non-empty without force
  o.force = true;
  const auto s = ilm::write_synthetic_checkpoint(o);
  EXPECT_EQ(s.weight_files, 1u);
  EXPECT_FALSE(fs::exists(d.path() / "model-00001-of-00009.safetensors"));
  EXPECT_FALSE(fs::exists(d.path() / "model.safetensors.index.json"));
  EXPECT_EQ(read_file(d.path() / "notes.txt"), "keep me");

  const nlohmann::json c = read_json(d.path() / "config.json");
  EXPECT_EQ(c["tie_word_embeddings"], true);
  EXPECT_EQ(c["torch_dtype"], "float32");
  EXPECT_EQ(c["num_hidden_layers"], 3);
  EXPECT_TRUE(c["rope_scaling"].is_null());
  EXPECT_EQ(c["max_position_embeddings"], 4096);

  const auto store = ilm::TensorStore::open(d.path());
  const auto expected = expected_tiny_tensors(3, true);
  std::vector<std::string> names;
  for (const auto& [name, shape] : expected) {
    names.push_back(name);
    EXPECT_EQ(store.get(name, shape).dtype, ilm::DType::F32) << name;
  }
  EXPECT_EQ(store.names(), names);
  EXPECT_FALSE(store.contains("output.weight"));

  // Seed 2 values are the generator's for seed 2, and unlike seed 1's.
  const ilm::TensorRef wqkv = store.get("model.layers.0.attention.wqkv.weight");
  const auto x = as_f32(wqkv);
  std::vector<float> seed1(x.size()), seed2(x.size());
  ilm::synth::fill_normal_f32(ilm::synth::stream_key(1, wqkv.name), 0, x.size(), 0.0f, 0.02f, seed1.data());
  ilm::synth::fill_normal_f32(ilm::synth::stream_key(2, wqkv.name), 0, x.size(), 0.0f, 0.02f, seed2.data());
  EXPECT_EQ(x, seed2);
  size_t same = 0;
  for (size_t i = 0; i < x.size(); ++i) same += ilm::f32_to_bf16(x[i]) == ilm::f32_to_bf16(seed1[i]);
  EXPECT_LT(same, x.size() / 50);
  double mean = 0, std = 0;
  mean_std(x, mean, std);
  EXPECT_NEAR(std, 0.02, 0.0005);
}

// ---- option errors (nothing big is written) -------------------------------------------------

TEST(SynthErrors, BadOptionsThrowBeforeWritingAnything) {
  TempDir d("errors");
  auto expect_error = [&](ilm::SynthOptions o, const std::string& needle) {
    try {
      ilm::write_synthetic_checkpoint(o);
      ADD_FAILURE() << "no error for: " << needle;
    } catch (const ilm::Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(d.path())) << needle;
  };
  ilm::SynthOptions o = tiny_options(d.path());
  o.preset = "13b";
  expect_error(o, "unknown preset '13b'");
  o = tiny_options(d.path());
  o.dtype = ilm::DType::F16;
  expect_error(o, "F16");
  for (const char* spec : {"dynamic", "dynamic:0.5", "cubic:2", "dynamic:x", "linear:2x", "linear:", "nan"}) {
    o = tiny_options(d.path());
    o.rope_scaling = spec;
    expect_error(o, "rope scaling");
  }
  o = tiny_options(d.path());
  o.init_std = -1;
  expect_error(o, "init_std");
  o = tiny_options(d.path());
  o.layers = -2;
  expect_error(o, "layers");
  o = tiny_options(d.path());
  o.tokenizer_dir = d.path() / "no-tokenizer-here";
  expect_error(o, "tokenizer.model");
  o = tiny_options("");
  expect_error(o, "output directory");
  o = tiny_options(d.path() / "sub");
  o.preset = "7b";
  o.layers = 20'000;  // ~8.7 TB in bf16: refused up front, nothing created
  expect_error(o, "not enough free disk space");
}

TEST(SynthErrors, NonEmptyOutputNeedsForce) {
  TempDir d("nonempty");
  fs::create_directories(d.path());
  { std::ofstream(d.path() / "config.json") << "{\"mine\": true}"; }
  ilm::SynthOptions o = tiny_options(d.path());
  o.rope_scaling = "linear:4";  // accepted: the error is about the directory
  try {
    ilm::write_synthetic_checkpoint(o);
    FAIL() << "overwrote a non-empty directory";
  } catch (const ilm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("--force"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_file(d.path() / "config.json"), "{\"mine\": true}");

  const fs::path file = d.path() / "config.json";
  o.out = file;  // a file, not a directory
  o.force = true;
  EXPECT_THROW(ilm::write_synthetic_checkpoint(o), ilm::Error);
}

TEST(SynthErrors, DefaultTokenizerDirFollowsTheEnvironment) {
  const char* old = std::getenv("INTERNLM_TOKENIZER_DIR");
  const std::optional<std::string> saved = old ? std::optional<std::string>(old) : std::nullopt;
  setenv("INTERNLM_TOKENIZER_DIR", kTokenizerDir.c_str(), 1);
  EXPECT_EQ(ilm::default_tokenizer_dir(), kTokenizerDir);
  setenv("INTERNLM_TOKENIZER_DIR", "/nonexistent/tokenizer", 1);
  try {
    ilm::default_tokenizer_dir();
    ADD_FAILURE() << "accepted a missing tokenizer";
  } catch (const ilm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("INTERNLM_TOKENIZER_DIR"), std::string::npos) << e.what();
  }
  unsetenv("INTERNLM_TOKENIZER_DIR");
  if (fs::exists(kTokenizerDir / "tokenizer.model")) {
    const fs::path d = ilm::default_tokenizer_dir();  // <source>/../shared/models/internlm2-tokenizer
    EXPECT_TRUE(fs::exists(d / "tokenizer.model"));
    EXPECT_EQ(d.filename(), "internlm2-tokenizer");
  }
  if (saved) setenv("INTERNLM_TOKENIZER_DIR", saved->c_str(), 1);
}
