// ModelConfig / GenerationConfig: the real InternLM2.5 config, table-driven malformed variants,
// and loading from files.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "io/json_file.h"
#include "model/config.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ilm::GenerationConfig;
using ilm::ModelConfig;
using ilm::RopeScaling;

constexpr const char* kSource = "models/x/config.json";

// internlm2_5-7b-chat's config.json.
json real_config() {
  return json::parse(R"({
    "architectures": ["InternLM2ForCausalLM"],
    "attn_implementation": "eager",
    "auto_map": {
      "AutoConfig": "configuration_internlm2.InternLM2Config",
      "AutoModel": "modeling_internlm2.InternLM2ForCausalLM",
      "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM"
    },
    "bias": false,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "model_type": "internlm2",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "pad_token_id": 2,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {"type": "dynamic", "factor": 2.0},
    "rope_theta": 1000000,
    "tie_word_embeddings": false,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.41.0",
    "use_cache": true,
    "vocab_size": 92544
  })");
}

std::string model_error(const json& j) {
  try {
    ModelConfig::from_json(j, kSource);
  } catch (const ilm::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("<non-ilm exception> ") + e.what();
  }
  return "<no error>";
}

TEST(ModelConfigTest, RealInternLM25Config) {
  const ModelConfig c = ModelConfig::from_json(real_config(), kSource);
  EXPECT_EQ(c.architecture, "InternLM2ForCausalLM");
  EXPECT_EQ(c.model_type, "internlm2");
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.num_layers, 32);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.kv_group_size(), 4);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.vocab_size, 92544);
  EXPECT_EQ(c.max_position_embeddings, 32768);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Dynamic);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 2.0);
  EXPECT_FALSE(c.bias);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.hidden_act, "silu");
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_id, 2);
  EXPECT_EQ(c.pad_token_id, 2);
}

struct ValidCase {
  std::string name;
  std::function<void(json&)> edit;
  std::function<void(const ModelConfig&)> check;
};

TEST(ModelConfigTest, ValidVariants) {
  const std::vector<ValidCase> cases = {
      {"kv heads absent -> heads", [](json& j) { j.erase("num_key_value_heads"); },
       [](const ModelConfig& c) { EXPECT_EQ(c.num_kv_heads, 32); EXPECT_EQ(c.kv_group_size(), 1); }},
      {"kv heads null -> heads", [](json& j) { j["num_key_value_heads"] = nullptr; },
       [](const ModelConfig& c) { EXPECT_EQ(c.num_kv_heads, 32); }},
      {"kv heads == heads", [](json& j) { j["num_key_value_heads"] = 32; },
       [](const ModelConfig& c) { EXPECT_EQ(c.num_kv_heads, 32); }},
      {"rope_scaling null", [](json& j) { j["rope_scaling"] = nullptr; },
       [](const ModelConfig& c) { EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::None); }},
      {"rope_scaling absent", [](json& j) { j.erase("rope_scaling"); },
       [](const ModelConfig& c) {
         EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::None);
         EXPECT_EQ(c.rope_scaling.factor, 1.0);
       }},
      {"rope_scaling linear", [](json& j) { j["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}}; },
       [](const ModelConfig& c) {
         EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Linear);
         EXPECT_EQ(c.rope_scaling.factor, 4.0);
       }},
      {"rope_scaling integer factor", [](json& j) { j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2}}; },
       [](const ModelConfig& c) { EXPECT_EQ(c.rope_scaling.factor, 2.0); }},
      {"rope_scaling factor exactly 1", [](json& j) { j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 1.0}}; },
       [](const ModelConfig& c) { EXPECT_EQ(c.rope_scaling.factor, 1.0); }},
      {"rope_type alias", [](json& j) { j["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 3.0}}; },
       [](const ModelConfig& c) {
         EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Dynamic);
         EXPECT_EQ(c.rope_scaling.factor, 3.0);
       }},
      {"float rope_theta", [](json& j) { j["rope_theta"] = 10000.0; },
       [](const ModelConfig& c) { EXPECT_EQ(c.rope_theta, 10000.0); }},
      {"tie absent -> false", [](json& j) { j.erase("tie_word_embeddings"); },
       [](const ModelConfig& c) { EXPECT_FALSE(c.tie_word_embeddings); }},
      {"tie true", [](json& j) { j["tie_word_embeddings"] = true; },
       [](const ModelConfig& c) { EXPECT_TRUE(c.tie_word_embeddings); }},
      {"bias true", [](json& j) { j["bias"] = true; }, [](const ModelConfig& c) { EXPECT_TRUE(c.bias); }},
      {"hidden_act absent -> silu", [](json& j) { j.erase("hidden_act"); },
       [](const ModelConfig& c) { EXPECT_EQ(c.hidden_act, "silu"); }},
      {"token ids absent or null", [](json& j) {
         j.erase("bos_token_id");
         j["eos_token_id"] = nullptr;
         j.erase("pad_token_id");
       },
       [](const ModelConfig& c) {
         EXPECT_EQ(c.bos_token_id, -1);
         EXPECT_EQ(c.eos_token_id, -1);
         EXPECT_EQ(c.pad_token_id, -1);
       }},
      {"optional strings absent", [](json& j) {
         j.erase("model_type");
         j.erase("torch_dtype");
       },
       [](const ModelConfig& c) {
         EXPECT_EQ(c.model_type, "");
         EXPECT_EQ(c.torch_dtype, "");
       }},
      {"unknown fields ignored", [](json& j) {
         j["some_future_field"] = {{"x", 1}};
         j["attn_implementation"] = "flash_attention_2";
         j["use_cache"] = "whatever";
       },
       [](const ModelConfig& c) { EXPECT_EQ(c.hidden_size, 4096); }},
      {"tiny synthetic preset", [](json& j) {
         j["hidden_size"] = 256;
         j["num_attention_heads"] = 8;
         j["num_key_value_heads"] = 2;
         j["num_hidden_layers"] = 2;
         j["intermediate_size"] = 512;
         j["vocab_size"] = 92544;
         j["max_position_embeddings"] = 128;
       },
       [](const ModelConfig& c) {
         EXPECT_EQ(c.head_dim, 32);
         EXPECT_EQ(c.kv_group_size(), 4);
       }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    json j = real_config();
    c.edit(j);
    try {
      c.check(ModelConfig::from_json(j, kSource));
    } catch (const ilm::Error& e) {
      ADD_FAILURE() << e.what();
    }
  }
}

struct BadCase {
  std::string name;
  std::function<void(json&)> edit;
  std::vector<std::string> expect;  // substrings; the field is named first
};

TEST(ModelConfigTest, MissingRequiredFields) {
  for (const char* field :
       {"architectures", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
        "vocab_size", "max_position_embeddings", "rms_norm_eps", "rope_theta", "bias"}) {
    SCOPED_TRACE(field);
    json j = real_config();
    j.erase(field);
    const std::string msg = model_error(j);
    EXPECT_EQ(msg.rfind(std::string(kSource) + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find(std::string("field '") + field + "'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
  }
}

TEST(ModelConfigTest, MalformedVariants) {
  auto set = [](const char* field, json v) { return [field, v](json& j) { j[field] = v; }; };
  auto rope = [](json v) { return [v](json& j) { j["rope_scaling"] = v; }; };
  const std::vector<BadCase> cases = {
      {"architectures empty", set("architectures", json::array()), {"'architectures'", "non-empty array"}},
      {"architectures string", set("architectures", "InternLM2ForCausalLM"), {"'architectures'"}},
      {"architectures of ints", set("architectures", {1}), {"'architectures'"}},
      {"architectures null", set("architectures", nullptr), {"'architectures'"}},
      {"hidden_size string", set("hidden_size", "4096"), {"'hidden_size'", "integer", "\"4096\""}},
      {"hidden_size float", set("hidden_size", 4096.0), {"'hidden_size'", "integer"}},
      {"hidden_size bool", set("hidden_size", true), {"'hidden_size'", "integer"}},
      {"hidden_size null", set("hidden_size", nullptr), {"'hidden_size'", "integer"}},
      {"hidden_size zero", set("hidden_size", 0), {"'hidden_size'", "positive"}},
      {"layers negative", set("num_hidden_layers", -1), {"'num_hidden_layers'", "positive"}},
      {"vocab too large", set("vocab_size", 18446744073709551615ull), {"'vocab_size'", "too large"}},
      {"intermediate float", set("intermediate_size", 14336.5), {"'intermediate_size'", "integer"}},
      {"max_pos string", set("max_position_embeddings", "32k"), {"'max_position_embeddings'"}},
      {"kv heads zero", set("num_key_value_heads", 0), {"'num_key_value_heads'", "positive"}},
      {"kv heads float", set("num_key_value_heads", 8.0), {"'num_key_value_heads'", "integer"}},
      {"eps string", set("rms_norm_eps", "1e-5"), {"'rms_norm_eps'", "number"}},
      {"eps zero", set("rms_norm_eps", 0), {"'rms_norm_eps'", "> 0"}},
      {"eps negative", set("rms_norm_eps", -1e-5), {"'rms_norm_eps'", "> 0"}},
      {"theta zero", set("rope_theta", 0.0), {"'rope_theta'", "> 0"}},
      {"theta denormal", set("rope_theta", 1e-320), {"'rope_theta'", "> 1"}},
      {"theta one", set("rope_theta", 1.0), {"'rope_theta'", "> 1"}},
      {"eps huge", set("rms_norm_eps", 1e300), {"'rms_norm_eps'", "(0, 1)"}},
      {"eps one", set("rms_norm_eps", 1.0), {"'rms_norm_eps'", "(0, 1)"}},
      {"theta bool", set("rope_theta", false), {"'rope_theta'", "number"}},
      {"bias string", set("bias", "false"), {"'bias'", "true or false"}},
      {"bias int", set("bias", 0), {"'bias'", "true or false"}},
      {"bias null", set("bias", nullptr), {"'bias'", "true or false"}},
      {"tie int", set("tie_word_embeddings", 0), {"'tie_word_embeddings'", "true or false"}},
      {"hidden_act gelu", set("hidden_act", "gelu"), {"'hidden_act'", "gelu"}},
      {"hidden_act not string", set("hidden_act", 1), {"'hidden_act'", "string"}},
      {"model_type not string", set("model_type", 2), {"'model_type'", "string"}},
      {"hidden not divisible by heads", set("hidden_size", 4100), {"'hidden_size'", "4100", "divisible", "32"}},
      {"heads not divisible by kv heads", set("num_key_value_heads", 6),
       {"'num_key_value_heads'", "32", "divisible", "6"}},
      {"kv heads more than heads", set("num_key_value_heads", 64), {"'num_key_value_heads'", "divisible"}},
      {"odd head dim", [](json& j) { j["hidden_size"] = 96; j["num_key_value_heads"] = 32; },
       {"'hidden_size'", "even"}},
      {"bos negative", set("bos_token_id", -1), {"'bos_token_id'", "non-negative"}},
      {"eos outside vocab", set("eos_token_id", 92544), {"'eos_token_id'", "outside the vocabulary"}},
      {"pad string", set("pad_token_id", "2"), {"'pad_token_id'", "integer"}},
      {"rope unknown type", rope({{"type", "yarn"}, {"factor", 2.0}}), {"'rope_scaling'", "yarn"}},
      {"rope default type", rope({{"type", "default"}, {"factor", 1.0}}), {"'rope_scaling'", "default"}},
      {"rope type not string", rope({{"type", 1}, {"factor", 2.0}}), {"'rope_scaling'", "\"type\""}},
      {"rope factor below 1", rope({{"type", "dynamic"}, {"factor", 0.5}}), {"'rope_scaling'", ">= 1", "0.5"}},
      {"rope factor zero", rope({{"type", "linear"}, {"factor", 0}}), {"'rope_scaling'", ">= 1"}},
      {"rope factor string", rope({{"type", "dynamic"}, {"factor", "2"}}), {"'rope_scaling'", "number"}},
      {"rope factor null", rope({{"type", "dynamic"}, {"factor", nullptr}}), {"'rope_scaling'", "number"}},
      {"rope missing factor", rope({{"type", "dynamic"}}), {"'rope_scaling'", "\"factor\""}},
      {"rope missing type", rope({{"factor", 2.0}}), {"'rope_scaling'", "\"type\""}},
      {"rope extra key", rope({{"type", "dynamic"}, {"factor", 2.0}, {"original_max_position_embeddings", 4096}}),
       {"'rope_scaling'", "original_max_position_embeddings"}},
      {"rope both type and rope_type", rope({{"type", "dynamic"}, {"rope_type", "dynamic"}, {"factor", 2.0}}),
       {"'rope_scaling'", "rope_type"}},
      {"rope empty object", rope(json::object()), {"'rope_scaling'"}},
      {"rope string", rope("dynamic"), {"'rope_scaling'", "null or an object"}},
      {"rope array", rope({"dynamic", 2.0}), {"'rope_scaling'", "null or an object"}},
      {"rope number", rope(2.0), {"'rope_scaling'", "null or an object"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    json j = real_config();
    c.edit(j);
    const std::string msg = model_error(j);
    EXPECT_EQ(msg.rfind(std::string(kSource) + ": field ", 0), 0u) << msg;
    for (const auto& s : c.expect) EXPECT_NE(msg.find(s), std::string::npos) << "missing '" << s << "' in: " << msg;
  }
}

TEST(ModelConfigTest, DeeplyNestedValueIsAnErrorNotACrash) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  json j = real_config();
  j["hidden_size"] = json::parse(deep);
  const std::string msg = model_error(j);
  EXPECT_EQ(msg.rfind(std::string(kSource) + ": field 'hidden_size'", 0), 0u) << msg.substr(0, 200);
  EXPECT_LT(msg.size(), 300u);
}

TEST(ModelConfigTest, NotAnObject) {
  for (const json& j : {json::array(), json(nullptr), json("config"), json(3)}) {
    const std::string msg = model_error(j);
    EXPECT_EQ(msg.rfind(std::string(kSource) + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find("JSON object"), std::string::npos) << msg;
  }
}

// ----------------------------------------------------------------------------------------------
// generation_config.json

TEST(GenerationConfigTest, ValidVariants) {
  {
    const auto g = GenerationConfig::from_json(
        json::parse(R"({"bos_token_id": 1, "eos_token_id": [2, 92542], "pad_token_id": 2,
                        "transformers_version": "4.41.0"})"),
        kSource);
    EXPECT_EQ(g.eos_token_ids, (std::vector<int64_t>{2, 92542}));
    EXPECT_EQ(g.bos_token_id, 1);
    EXPECT_EQ(g.pad_token_id, 2);
    EXPECT_FALSE(g.temperature.has_value());
    EXPECT_FALSE(g.do_sample.has_value());
  }
  {
    const auto g = GenerationConfig::from_json(json::parse(R"({"eos_token_id": 2})"), kSource);
    EXPECT_EQ(g.eos_token_ids, (std::vector<int64_t>{2}));
    EXPECT_FALSE(g.bos_token_id.has_value());
  }
  {
    const auto g = GenerationConfig::from_json(json::object(), kSource);
    EXPECT_TRUE(g.eos_token_ids.empty());
  }
  {
    const auto g = GenerationConfig::from_json(json::parse(R"({"eos_token_id": null, "temperature": null})"), kSource);
    EXPECT_TRUE(g.eos_token_ids.empty());
    EXPECT_FALSE(g.temperature.has_value());
  }
  {
    const auto g = GenerationConfig::from_json(
        json::parse(R"({"temperature": 0.8, "top_p": 0.8, "top_k": 50, "repetition_penalty": 1.02,
                        "max_new_tokens": 1024, "max_length": 32768, "do_sample": true})"),
        kSource);
    EXPECT_DOUBLE_EQ(*g.temperature, 0.8);
    EXPECT_DOUBLE_EQ(*g.top_p, 0.8);
    EXPECT_EQ(*g.top_k, 50);
    EXPECT_DOUBLE_EQ(*g.repetition_penalty, 1.02);
    EXPECT_EQ(*g.max_new_tokens, 1024);
    EXPECT_EQ(*g.max_length, 32768);
    EXPECT_TRUE(*g.do_sample);
  }
  {
    const auto g = GenerationConfig::from_json(json::parse(R"({"temperature": 1, "eos_token_id": []})"), kSource);
    EXPECT_DOUBLE_EQ(*g.temperature, 1.0);
    EXPECT_TRUE(g.eos_token_ids.empty());
  }
}

TEST(GenerationConfigTest, MalformedVariants) {
  const struct {
    const char* text;
    std::vector<std::string> expect;
  } cases[] = {
      {R"([])", {"JSON object"}},
      {R"({"eos_token_id": "2"})", {"'eos_token_id'", "integer or a list"}},
      {R"({"eos_token_id": [2, "x"]})", {"'eos_token_id'", "integer or a list"}},
      {R"({"eos_token_id": [2.5]})", {"'eos_token_id'"}},
      {R"({"eos_token_id": -1})", {"'eos_token_id'", "non-negative"}},
      {R"({"eos_token_id": [[2]]})", {"'eos_token_id'"}},
      {R"({"bos_token_id": 1.0})", {"'bos_token_id'", "integer"}},
      {R"({"temperature": "hot"})", {"'temperature'", "number"}},
      {R"({"temperature": -0.5})", {"'temperature'", ">= 0"}},
      {R"({"top_p": 1.5})", {"'top_p'", "[0, 1]"}},
      {R"({"top_k": -1})", {"'top_k'", "non-negative"}},
      {R"({"top_k": 5.5})", {"'top_k'", "integer"}},
      {R"({"repetition_penalty": 0})", {"'repetition_penalty'", "> 0"}},
      {R"({"max_new_tokens": "10"})", {"'max_new_tokens'"}},
      {R"({"do_sample": "yes"})", {"'do_sample'", "true or false"}},
      {R"({"do_sample": 1})", {"'do_sample'", "true or false"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    std::string msg = "<no error>";
    try {
      GenerationConfig::from_json(json::parse(c.text), kSource);
    } catch (const ilm::Error& e) {
      msg = e.what();
    }
    EXPECT_EQ(msg.rfind(std::string(kSource) + ": ", 0), 0u) << msg;
    for (const auto& s : c.expect) EXPECT_NE(msg.find(s), std::string::npos) << "missing '" << s << "' in: " << msg;
  }
}

// ----------------------------------------------------------------------------------------------
// Loading from a model directory

class ConfigFileTest : public testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/ilm_config_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void write(const std::string& name, const std::string& text) {
    std::ofstream f(dir_ / name, std::ios::binary);
    f << text;
    ASSERT_TRUE(f.good());
  }
  template <class F>
  static std::string error_of(F&& f) {
    try {
      f();
    } catch (const ilm::Error& e) {
      return e.what();
    }
    return "<no error>";
  }
  fs::path dir_;
};

TEST_F(ConfigFileTest, LoadsModelAndGenerationConfig) {
  write("config.json", real_config().dump(2));
  write("generation_config.json", R"({"eos_token_id": [2, 92542], "bos_token_id": 1})");
  const auto c = ModelConfig::load(dir_);
  EXPECT_EQ(c.num_kv_heads, 8);
  const auto g = GenerationConfig::load(dir_);
  EXPECT_EQ(g.eos_token_ids, (std::vector<int64_t>{2, 92542}));
}

TEST_F(ConfigFileTest, ErrorsNameTheFile) {
  const std::string cfg = (dir_ / "config.json").string();
  // Missing config.json.
  std::string msg = error_of([&] { ModelConfig::load(dir_); });
  EXPECT_EQ(msg.rfind(cfg + ": ", 0), 0u) << msg;
  // Invalid JSON (with line information).
  write("config.json", "{\n  \"hidden_size\": 4096,\n  oops\n}");
  msg = error_of([&] { ModelConfig::load(dir_); });
  EXPECT_EQ(msg.rfind(cfg + ": ", 0), 0u) << msg;
  EXPECT_NE(msg.find("invalid JSON"), std::string::npos) << msg;
  EXPECT_NE(msg.find("line 3"), std::string::npos) << msg;
  // Valid JSON, invalid field.
  json j = real_config();
  j.erase("bias");
  write("config.json", j.dump());
  msg = error_of([&] { ModelConfig::load(dir_); });
  EXPECT_EQ(msg.rfind(cfg + ": field 'bias'", 0), 0u) << msg;
  // A NUL byte would end nlohmann's input early; it must not hide trailing garbage.
  write("config.json", real_config().dump() + std::string("\0garbage", 8));
  msg = error_of([&] { ModelConfig::load(dir_); });
  EXPECT_EQ(msg.rfind(cfg + ": ", 0), 0u) << msg;
  EXPECT_NE(msg.find("NUL"), std::string::npos) << msg;
  // Empty file.
  write("config.json", "");
  msg = error_of([&] { ModelConfig::load(dir_); });
  EXPECT_EQ(msg.rfind(cfg + ": ", 0), 0u) << msg;
}

TEST_F(ConfigFileTest, GenerationConfigOptionalButStrict) {
  EXPECT_TRUE(GenerationConfig::load(dir_).eos_token_ids.empty());  // absent: empty config
  const std::string gen = (dir_ / "generation_config.json").string();
  write("generation_config.json", "{\"eos_token_id\": [2,");
  std::string msg = error_of([&] { GenerationConfig::load(dir_); });
  EXPECT_EQ(msg.rfind(gen + ": ", 0), 0u) << msg;
  EXPECT_NE(msg.find("invalid JSON"), std::string::npos) << msg;
  write("generation_config.json", R"({"eos_token_id": "two"})");
  msg = error_of([&] { GenerationConfig::load(dir_); });
  EXPECT_EQ(msg.rfind(gen + ": field 'eos_token_id'", 0), 0u) << msg;
  // A directory where the file should be is an error, not "absent".
  fs::remove(dir_ / "generation_config.json");
  fs::create_directory(dir_ / "generation_config.json");
  msg = error_of([&] { GenerationConfig::load(dir_); });
  EXPECT_EQ(msg.rfind(gen + ": ", 0), 0u) << msg;
}

TEST_F(ConfigFileTest, JsonFileWriteAndReadBack) {
  const fs::path p = dir_ / "out.json";
  const json j = {{"b", {1, 2}}, {"a", "caf\xc3\xa9"}};
  ilm::write_json_file(p, j);
  EXPECT_EQ(ilm::read_json_file(p), j);
  std::string text(static_cast<size_t>(fs::file_size(p)), '\0');
  std::ifstream f(p, std::ios::binary);
  f.read(text.data(), static_cast<std::streamsize>(text.size()));
  EXPECT_TRUE(f.good());
  EXPECT_EQ(text, j.dump(2) + "\n");
  EXPECT_FALSE(fs::exists(dir_ / "out.json.tmp"));
  // Invalid UTF-8 cannot be serialised; unwritable places are errors naming the path.
  std::string msg = error_of([&] { ilm::write_json_file(dir_ / "bad.json", json("\xff")); });
  EXPECT_EQ(msg.rfind((dir_ / "bad.json").string() + ": ", 0), 0u) << msg;
  msg = error_of([&] { ilm::write_json_file(dir_ / "no" / "such" / "dir.json", j); });
  EXPECT_NE(msg.find((dir_ / "no" / "such" / "dir.json").string()), std::string::npos) << msg;
  EXPECT_EQ(ilm::json_brief(json(std::string(1000, 'x'))).size(), 60u);
  EXPECT_EQ(ilm::json_brief(json::parse("[1, [2, [3, [4, [5, [6]]]]]]")), "[1, [2, [3, [4, [...]]]]]");
}

}  // namespace

TEST(ModelConfigTest, HugeDimensionsAreRejectedBeforeAnySizeArithmetic) {
  for (const char* field : {"hidden_size", "intermediate_size", "vocab_size", "num_hidden_layers"}) {
    json j = real_config();
    j[field] = int64_t{1} << 40;
    try {
      ModelConfig::from_json(j, kSource);
      FAIL() << field << " accepted";
    } catch (const ilm::Error& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  }
}
