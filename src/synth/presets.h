#pragma once
// The model shapes `internlm synth` knows, and the tensor list an InternLM2 checkpoint of a
// given shape holds (Hugging Face names and [out, in] shapes, in state_dict order).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ilm::synth {

struct ModelShape {
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t intermediate_size = 0;
  int64_t vocab_size = 92544;
  int64_t max_position_embeddings = 32768;
  double rope_theta = 1e6;
  double rms_norm_eps = 1e-5;

  int64_t head_dim() const { return hidden_size / num_heads; }
};

// tiny | small | 1_8b | 7b; nullopt for anything else.
std::optional<ModelShape> find_preset(std::string_view name);
// "tiny, small, 1_8b, 7b" (for error messages and help).
std::string preset_names();

enum class InitKind { Normal, Norm };  // N(0, init_std) | 1 + N(0, 0.1)

struct SynthTensor {
  std::string name;
  std::vector<int64_t> shape;
  InitKind init = InitKind::Normal;
  uint64_t numel() const;
};

// In Hugging Face state_dict order: model.tok_embeddings.weight; per layer attention.wqkv,
// attention.wo, feed_forward.w1, w3, w2, attention_norm, ffn_norm; model.norm.weight; and
// (unless tied) output.weight.
std::vector<SynthTensor> tensor_list(const ModelShape& shape, bool tie_word_embeddings);

}  // namespace ilm::synth
