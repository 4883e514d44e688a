#pragma once
// Model and generation settings read from a Hugging Face checkpoint directory. Every field is
// read from the files; the HF config-class defaults are NOT the real model's values, so a
// field the architecture needs and the file lacks is an error, not a silent default.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/quant.h"

namespace ilm {

struct RopeScaling {
  enum class Type { None, Dynamic, Linear };
  Type type = Type::None;
  double factor = 1.0;  // >= 1
};

struct ModelConfig {
  std::string architecture;  // architectures[0], e.g. "InternLM2ForCausalLM"
  std::string model_type;    // "internlm2"
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;  // defaults to num_heads only when the key is absent (as HF does)
  int64_t head_dim = 0;      // hidden_size / num_heads (InternLM2 reads no head_dim field)
  int64_t intermediate_size = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 0;
  double rope_theta = 0;
  RopeScaling rope_scaling;
  bool bias = false;
  bool tie_word_embeddings = false;
  std::string hidden_act;   // "silu"
  std::string torch_dtype;  // "bfloat16", informational
  int64_t bos_token_id = -1, eos_token_id = -1, pad_token_id = -1;  // -1: absent
  // "quantization_config" written by `internlm quantize`: the matrices are stored quantized
  // (QuantFormat::None for an ordinary checkpoint). Other quant_methods are rejected.
  QuantSpec stored_quant;

  int64_t kv_group_size() const { return num_heads / num_kv_heads; }

  // Validates: architectures a non-empty array of strings; integers positive and of integer
  // JSON type; hidden_size divisible by num_attention_heads; num_attention_heads divisible by
  // num_key_value_heads; head_dim even; rope_scaling null or an object with exactly "type"
  // ("dynamic"|"linear") and "factor" (number >= 1); rms_norm_eps in (0, 1); rope_theta > 1;
  // hidden_act "silu". `source` (the path) prefixes every error, which names the field.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& source);
  static ModelConfig load(const std::filesystem::path& model_dir);  // reads config.json
};

struct GenerationConfig {
  std::vector<int64_t> eos_token_ids;  // "eos_token_id": int or list of ints; empty if absent
  std::optional<int64_t> bos_token_id, pad_token_id;
  std::optional<double> temperature, top_p, repetition_penalty;
  std::optional<int64_t> top_k, max_new_tokens, max_length;
  std::optional<bool> do_sample;

  static GenerationConfig from_json(const nlohmann::json& j, const std::string& source);
  // Reads generation_config.json; a missing file gives an empty config (it is optional in HF).
  static GenerationConfig load(const std::filesystem::path& model_dir);
};

}  // namespace ilm
