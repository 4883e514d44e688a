#include "synth/presets.h"

#include <string>

namespace ilm::synth {

namespace {

struct NamedPreset {
  std::string_view name;
  ModelShape shape;
};

ModelShape make(int64_t hidden, int64_t layers, int64_t heads, int64_t kv_heads, int64_t inter) {
  ModelShape s;
  s.hidden_size = hidden;
  s.num_layers = layers;
  s.num_heads = heads;
  s.num_kv_heads = kv_heads;
  s.intermediate_size = inter;
  return s;
}

const NamedPreset* presets(size_t& n) {
  static const NamedPreset table[] = {
      {"tiny", make(256, 2, 8, 2, 512)},
      {"small", make(1024, 4, 16, 4, 2816)},
      {"1_8b", make(2048, 24, 16, 8, 8192)},   // InternLM2-1.8B
      {"7b", make(4096, 32, 32, 8, 14336)},    // internlm2_5-7b-chat
  };
  n = sizeof(table) / sizeof(table[0]);
  return table;
}

}  // namespace

std::optional<ModelShape> find_preset(std::string_view name) {
  size_t n = 0;
  const NamedPreset* table = presets(n);
  for (size_t i = 0; i < n; ++i)
    if (table[i].name == name) return table[i].shape;
  return std::nullopt;
}

std::string preset_names() {
  size_t n = 0;
  const NamedPreset* table = presets(n);
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    if (i) out += ", ";
    out += table[i].name;
  }
  return out;
}

uint64_t SynthTensor::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

std::vector<SynthTensor> tensor_list(const ModelShape& s, bool tie_word_embeddings) {
  const int64_t H = s.hidden_size, I = s.intermediate_size, V = s.vocab_size, hd = s.head_dim();
  std::vector<SynthTensor> out;
  out.push_back({"model.tok_embeddings.weight", {V, H}, InitKind::Normal});
  for (int64_t i = 0; i < s.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    // Module registration order of InternLM2DecoderLayer: attention, feed_forward (w1, w3,
    // w2), attention_norm, ffn_norm; state_dict() and so save_pretrained's sharding follow it.
    out.push_back({p + "attention.wqkv.weight", {(s.num_heads + 2 * s.num_kv_heads) * hd, H},
                   InitKind::Normal});
    out.push_back({p + "attention.wo.weight", {H, s.num_heads * hd}, InitKind::Normal});
    out.push_back({p + "feed_forward.w1.weight", {I, H}, InitKind::Normal});
    out.push_back({p + "feed_forward.w3.weight", {I, H}, InitKind::Normal});
    out.push_back({p + "feed_forward.w2.weight", {H, I}, InitKind::Normal});
    out.push_back({p + "attention_norm.weight", {H}, InitKind::Norm});
    out.push_back({p + "ffn_norm.weight", {H}, InitKind::Norm});
  }
  out.push_back({"model.norm.weight", {H}, InitKind::Norm});
  if (!tie_word_embeddings) out.push_back({"output.weight", {V, H}, InitKind::Normal});
  return out;
}

}  // namespace ilm::synth
