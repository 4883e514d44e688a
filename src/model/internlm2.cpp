#include "model/internlm2.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "common/error.h"
#include "model/rope.h"

namespace ilm {

InternLM2::InternLM2(const ModelConfig& cfg, const TensorStore& store, Backend& backend,
                     const QuantSpec& quant)
    : cfg_(cfg), be_(backend), qkv_{cfg.num_heads, cfg.num_kv_heads, cfg.head_dim} {
  const int64_t H = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size;
  auto load = [&](const std::string& name, std::vector<int64_t> shape) {
    return be_.load_weight(store.get(name, shape));
  };
  auto load_matrix = [&](const std::string& name, std::vector<int64_t> shape) {
    return be_.load_weight(store.get(name, shape), quant);
  };
  tok_embeddings_ = load("model.tok_embeddings.weight", {V, H});
  for (int64_t i = 0; i < cfg.num_layers; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    Layer l;
    l.attention_norm = load(p + "attention_norm.weight", {H});
    l.wqkv = load_matrix(p + "attention.wqkv.weight", {qkv_.width(), H});
    l.wo = load_matrix(p + "attention.wo.weight", {H, cfg.num_heads * cfg.head_dim});
    if (cfg.bias) {
      l.wqkv_bias = load(p + "attention.wqkv.bias", {qkv_.width()});
      l.wo_bias = load(p + "attention.wo.bias", {H});
    }
    l.ffn_norm = load(p + "ffn_norm.weight", {H});
    l.w1 = load_matrix(p + "feed_forward.w1.weight", {I, H});
    l.w3 = load_matrix(p + "feed_forward.w3.weight", {I, H});
    l.w2 = load_matrix(p + "feed_forward.w2.weight", {H, I});
    layers_.push_back(std::move(l));
  }
  norm_ = load("model.norm.weight", {H});
  if (!cfg.tie_word_embeddings) output_ = load_matrix("output.weight", {V, H});
}

KvCache InternLM2::new_cache(int64_t capacity) const {
  return KvCache(cfg_.num_layers, cfg_.num_kv_heads, cfg_.head_dim, capacity);
}

std::vector<std::string> InternLM2::weight_names() const {
  std::vector<std::string> names;
  auto add = [&](const std::unique_ptr<Weight>& w) {
    if (w) names.push_back(w->name);
  };
  add(tok_embeddings_);
  for (const Layer& l : layers_)
    for (const auto* w : {&l.attention_norm, &l.wqkv, &l.wqkv_bias, &l.wo, &l.wo_bias, &l.ffn_norm,
                          &l.w1, &l.w3, &l.w2})
      add(*w);
  add(norm_);
  add(output_);
  return names;
}

uint64_t InternLM2::decode_weight_bytes() const {
  uint64_t total = 0;
  for (const Layer& l : layers_)
    for (const auto* w : {&l.attention_norm, &l.wqkv, &l.wqkv_bias, &l.wo, &l.wo_bias, &l.ffn_norm,
                          &l.w1, &l.w3, &l.w2})
      if (*w) total += (*w)->bytes;
  total += norm_->bytes;
  // One embedding row per token; the head is read whole (the embedding table when tied).
  total += tok_embeddings_->bytes / static_cast<uint64_t>(cfg_.vocab_size);
  total += output_ ? output_->bytes : tok_embeddings_->bytes;
  return total;
}

void InternLM2::forward(std::span<const TokenId> ids, KvCache& cache, std::span<float> logits,
                        bool all_logits) {
  const int64_t T = static_cast<int64_t>(ids.size());
  const int64_t H = cfg_.hidden_size, V = cfg_.vocab_size;
  if (T == 0) throw Error("forward called with no tokens");
  if (static_cast<int64_t>(logits.size()) < (all_logits ? T : 1) * V)
    throw Error("forward: logits buffer too small");
  cache.reserve_more(T);
  // The RoPE base depends on the total length of this forward (official dynamic NTK).
  const RopeSpec rope = rope_spec(cfg_, cache.length() + T);
  const Weight& head = output_ ? *output_ : *tok_embeddings_;

  std::vector<float> hidden;
  for (int64_t start = 0; start < T; start += kMaxChunk) {
    const int64_t n = std::min(kMaxChunk, T - start);
    hidden.resize(static_cast<size_t>(n * H));
    forward_chunk(ids.subspan(static_cast<size_t>(start), static_cast<size_t>(n)), cache, rope,
                  hidden.data());
    if (all_logits) {
      be_.matmul(hidden.data(), n, head, nullptr, logits.data() + start * V);
    } else if (start + n == T) {
      be_.matmul(hidden.data() + (n - 1) * H, 1, head, nullptr, logits.data());
    }
  }
}

// Runs the layers over `ids` (positions cache.length() ...), leaving the final-normed hidden
// states in hidden_out [n, H] and the new keys/values in the cache.
void InternLM2::forward_chunk(std::span<const TokenId> ids, KvCache& cache, const RopeSpec& rope,
                              float* hidden_out) {
  const int64_t T = static_cast<int64_t>(ids.size());
  const int64_t H = cfg_.hidden_size, I = cfg_.intermediate_size;
  const int64_t nh = cfg_.num_heads, nkv = cfg_.num_kv_heads, hd = cfg_.head_dim;
  const int64_t past = cache.length();
  const float eps = static_cast<float>(cfg_.rms_norm_eps);

  std::vector<int64_t> positions(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) positions[static_cast<size_t>(t)] = past + t;

  std::vector<float> x(static_cast<size_t>(T * H)), h(static_cast<size_t>(T * H));
  std::vector<float> qkv(static_cast<size_t>(T * qkv_.width()));
  std::vector<float> q(static_cast<size_t>(T * nh * hd)), attn(static_cast<size_t>(T * nh * hd));
  std::vector<float> gate(static_cast<size_t>(T * I)), up(static_cast<size_t>(T * I));

  be_.embedding(*tok_embeddings_, ids, x.data());
  for (int64_t li = 0; li < cfg_.num_layers; ++li) {
    const Layer& L = layers_[static_cast<size_t>(li)];
    KvView kv = cache.layer(li, past + T);

    // Attention block.
    be_.rmsnorm(x.data(), T, *L.attention_norm, eps, h.data());
    be_.matmul(h.data(), T, *L.wqkv, L.wqkv_bias.get(), qkv.data());
    for (int64_t t = 0; t < T; ++t) {
      const float* row = qkv.data() + t * qkv_.width();
      for (int64_t hh = 0; hh < nh; ++hh)
        std::memcpy(q.data() + (t * nh + hh) * hd, row + qkv_.query_offset(hh), hd * sizeof(float));
      float* k_dst = kv.k + (past + t) * kv.stride;
      float* v_dst = kv.v + (past + t) * kv.stride;
      for (int64_t g = 0; g < nkv; ++g) {
        std::memcpy(k_dst + g * hd, row + qkv_.key_offset(g), hd * sizeof(float));
        std::memcpy(v_dst + g * hd, row + qkv_.value_offset(g), hd * sizeof(float));
      }
    }
    be_.rope(q.data(), T, nh, hd, nh * hd, positions, rope);
    be_.rope(kv.k + past * kv.stride, T, nkv, hd, kv.stride, positions, rope);
    be_.attention(q.data(), T, nh, nkv, hd, kv, past, attn.data());
    be_.matmul(attn.data(), T, *L.wo, L.wo_bias.get(), h.data());
    be_.add(x.data(), h.data(), T * H);

    // Feed-forward block: w2(silu(w1 x) ⊙ w3 x).
    be_.rmsnorm(x.data(), T, *L.ffn_norm, eps, h.data());
    be_.matmul(h.data(), T, *L.w1, nullptr, gate.data());
    be_.matmul(h.data(), T, *L.w3, nullptr, up.data());
    be_.silu_mul(gate.data(), up.data(), T * I, gate.data());
    be_.matmul(gate.data(), T, *L.w2, nullptr, h.data());
    be_.add(x.data(), h.data(), T * H);
  }
  cache.advance(T);
  be_.rmsnorm(x.data(), T, *norm_, eps, hidden_out);
}

}  // namespace ilm
