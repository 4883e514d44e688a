#include "model/internlm2.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "common/error.h"
#include "io/mapped_file.h"
#include "model/rope.h"
#include "parallel/communicator.h"

namespace ilm {
namespace {

// A pass's activations, kept between passes by the calling thread and grown to the largest
// pass it ran (at most kMaxChunk tokens): a server steps many times a second, and fresh
// buffers each step cost page faults and allocator churn (megabytes of logits rows alone).
// Per thread, not per model: forward may run on several threads at once (each on its own
// caches), and a thread runs one pass at a time. Everything is written before it is read.
struct Workspace {
  std::vector<float> x, h, qkv, q, attn, gate, up, k_new, v_new, logits, gathered;
  static Workspace& of_this_thread() {
    thread_local Workspace ws;
    return ws;
  }
};

// v's storage with room for n floats; grows, never shrinks.
float* grown(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

}  // namespace

InternLM2::InternLM2(const ModelConfig& cfg, const TensorStore& store, Backend& backend,
                     const QuantSpec& quant, Communicator* comm)
    : cfg_(cfg),
      be_(backend),
      comm_(comm && comm->size() > 1 ? comm : nullptr),
      shard_(TpShard::of(cfg, comm_ ? comm_->rank() : 0, comm_ ? comm_->size() : 1, quant)),
      qkv_{cfg.num_heads / shard_.size, cfg.num_kv_heads / shard_.size, cfg.head_dim} {
  const int64_t H = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size;
  auto load = [&](const std::string& name, std::vector<int64_t> shape) {
    return be_.load_weight(store.get(name, shape));
  };
  // The part of a matrix this rank holds: rows [begin, end) or columns [begin, end); all of it
  // when unsharded.
  struct Part {
    bool columns = false;
    int64_t begin = 0, end = 0;
  };
  // The projection matrices and the head: stored quantized (a checkpoint written by
  // `internlm quantize`), or quantized now per `quant`, or used as stored.
  auto load_matrix = [&](const std::string& name, std::vector<int64_t> shape, Part part) {
    matrix_names_.push_back(name);
    const int64_t rows = shape[0], cols = shape[1];
    const bool whole = !shard_.sharded() || (part.begin == 0 && part.end == (part.columns ? cols : rows));
    if (cfg.stored_quant.format != QuantFormat::None && store.contains(qdata_name(name))) {
      QuantizedMatrix q = read_quantized(store, name, rows, cols, cfg.stored_quant);
      if (whole) return be_.load_quantized(name, std::move(q));
      QuantizedMatrix slice = part.columns ? slice_quantized(q, 0, rows, part.begin, part.end)
                                           : slice_quantized(q, part.begin, part.end, 0, cols);
      release_mapped_pages(q.data.data(), q.data.size());
      release_mapped_pages(q.scales.data(), q.scales.size_bytes());
      return be_.load_quantized(name, std::move(slice));
    }
    const TensorRef t = store.get(name, shape);
    if (whole) return be_.load_weight(t, quant);
    if (!part.columns) return be_.load_weight(slice_rows(t, part.begin, part.end), quant);
    auto copy = slice_columns(t, part.begin, part.end);
    auto w = be_.load_weight(copy->ref, quant);
    release_mapped_pages(t.data, t.nbytes);  // this rank keeps its copy only
    if (w->quant.format == QuantFormat::None) owned_.push_back(std::move(copy));  // used in place
    return w;
  };
  // wqkv rows of this rank's KV-head groups; wo's matching input columns (query heads).
  const int64_t group_rows = (qkv_.group() + 2) * cfg.head_dim;
  const Part qkv_rows{false, shard_.kv_begin * group_rows, shard_.kv_end * group_rows};
  const Part wo_cols{true, shard_.kv_begin * qkv_.group() * cfg.head_dim, shard_.kv_end * qkv_.group() * cfg.head_dim};
  const Part ffn_rows{false, shard_.ffn_begin, shard_.ffn_end}, ffn_cols{true, shard_.ffn_begin, shard_.ffn_end};
  tok_embeddings_ = load("model.tok_embeddings.weight", {V, H});
  for (int64_t i = 0; i < cfg.num_layers; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    Layer l;
    l.attention_norm = load(p + "attention_norm.weight", {H});
    l.wqkv = load_matrix(p + "attention.wqkv.weight", {cfg.num_kv_heads * group_rows, H}, qkv_rows);
    l.wo = load_matrix(p + "attention.wo.weight", {H, cfg.num_heads * cfg.head_dim}, wo_cols);
    if (cfg.bias) {
      const TensorRef b = store.get(p + "attention.wqkv.bias", {cfg.num_kv_heads * group_rows});
      l.wqkv_bias = be_.load_weight(shard_.sharded() ? slice_rows(b, qkv_rows.begin, qkv_rows.end) : b);
      // Added once, by rank 0, before the sum over ranks.
      if (shard_.rank == 0) l.wo_bias = load(p + "attention.wo.bias", {H});
    }
    l.ffn_norm = load(p + "ffn_norm.weight", {H});
    l.w1 = load_matrix(p + "feed_forward.w1.weight", {I, H}, ffn_rows);
    l.w3 = load_matrix(p + "feed_forward.w3.weight", {I, H}, ffn_rows);
    l.w2 = load_matrix(p + "feed_forward.w2.weight", {H, I}, ffn_cols);
    layers_.push_back(std::move(l));
  }
  norm_ = load("model.norm.weight", {H});
  const Part vocab_rows{false, shard_.vocab_begin, shard_.vocab_end};
  if (!cfg.tie_word_embeddings)
    output_ = load_matrix("output.weight", {V, H}, vocab_rows);
  else if (shard_.sharded())  // the head is this rank's rows of the (replicated) embedding table
    output_ = be_.load_weight(slice_rows(store.get("model.tok_embeddings.weight", {V, H}), vocab_rows.begin,
                                         vocab_rows.end));
}

KvCache InternLM2::new_cache(int64_t capacity) const {
  return KvCache(cfg_.num_layers, qkv_.n_kv_heads, cfg_.head_dim, capacity);
}

std::shared_ptr<KvBlockPool> InternLM2::new_kv_pool(int64_t block_size, int64_t max_blocks,
                                                    DType dtype) const {
  return std::make_shared<KvBlockPool>(cfg_.num_layers, qkv_.n_kv_heads, cfg_.head_dim,
                                       block_size, max_blocks, dtype);
}

std::vector<std::string> InternLM2::weight_names() const {
  std::vector<std::string> names;
  auto add = [&](const std::unique_ptr<Weight>& w) {
    if (!w) return;
    if (w->quant.format != QuantFormat::None && cfg_.stored_quant.format != QuantFormat::None) {
      names.push_back(qdata_name(w->name));
      names.push_back(qscale_name(w->name));
    } else {
      names.push_back(w->name);
    }
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

std::vector<std::span<const std::byte>> InternLM2::decode_weight_memory() const {
  std::vector<std::span<const std::byte>> out;
  auto add = [&out](const std::unique_ptr<Weight>& w) {
    if (!w) return;
    for (auto s : w->memory()) out.push_back(s);
  };
  for (const Layer& l : layers_)
    for (const auto* w : {&l.attention_norm, &l.wqkv, &l.wqkv_bias, &l.wo, &l.wo_bias, &l.ffn_norm, &l.w1, &l.w3, &l.w2})
      add(*w);
  add(norm_);
  add(output_ ? output_ : tok_embeddings_);
  return out;
}

void InternLM2::forward(std::span<const TokenId> ids, KvCache& cache, std::span<float> logits,
                        bool all_logits) {
  SequenceInput one{ids, &cache, logits, all_logits};
  forward_batch(std::span<SequenceInput>(&one, 1));
}

void InternLM2::forward_batch(std::span<SequenceInput> batch) {
  const int64_t V = cfg_.vocab_size;
  // Validate everything and fix each sequence's RoPE setting before any state changes: the
  // base depends on the total length of the sequence's forward (official dynamic NTK), also
  // when a long prompt is split into several passes.
  std::vector<RopeSpec> ropes;
  for (const auto& in : batch) {
    const int64_t T = static_cast<int64_t>(in.ids.size());
    if (T == 0) throw Error("forward called with no tokens");
    if (!in.cache) throw Error("forward: no KV cache");
    check_token_ids(in.ids, V);
    if (!in.no_logits && static_cast<int64_t>(in.logits.size()) < (in.all_logits ? T : 1) * V)
      throw Error("forward: logits buffer too small");
    for (const auto& other : batch)
      if (&other != &in && other.cache == in.cache) throw Error("forward: a KV cache appears twice in one batch");
    in.cache->reserve_more(T);
    ropes.push_back(rope_spec(cfg_, std::max(in.cache->length() + T, in.rope_length)));
  }
  // Pack the sequences into passes of at most kMaxChunk tokens; a sequence longer than that
  // is split into consecutive chunks, which later passes see through the cache.
  std::vector<Segment> pass;
  int64_t pass_tokens = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    const int64_t T = static_cast<int64_t>(batch[i].ids.size());
    for (int64_t start = 0; start < T;) {
      if (pass_tokens == kMaxChunk) {
        run_pass(pass, batch, ropes);
        pass.clear();
        pass_tokens = 0;
      }
      const int64_t n = std::min(kMaxChunk - pass_tokens, T - start);
      pass.push_back({i, start, n});
      pass_tokens += n;
      start += n;
    }
  }
  if (!pass.empty()) run_pass(pass, batch, ropes);
}

// One pass through the layers for a set of segments (each a run of new tokens of one
// sequence). The matmuls see all segments' tokens at once, so each weight is read once per
// pass; RoPE and attention are per segment, against that sequence's own cache.
void InternLM2::run_pass(const std::vector<Segment>& segs, std::span<SequenceInput> batch,
                         const std::vector<RopeSpec>& ropes) {
  // This rank's heads and intermediate rows (all of them when unsharded).
  const int64_t H = cfg_.hidden_size, I = shard_.ffn_end - shard_.ffn_begin, V = cfg_.vocab_size;
  const int64_t nh = qkv_.n_heads, nkv = qkv_.n_kv_heads, hd = cfg_.head_dim;
  const float eps = static_cast<float>(cfg_.rms_norm_eps);

  int64_t N = 0;
  std::vector<int64_t> row0, past;  // first row of each segment in the pass; its cache length
  std::vector<TokenId> ids;
  std::vector<std::vector<int64_t>> positions;
  for (const auto& s : segs) {
    const SequenceInput& in = batch[s.seq];
    row0.push_back(N);
    past.push_back(in.cache->length());
    ids.insert(ids.end(), in.ids.begin() + s.start, in.ids.begin() + s.start + s.len);
    positions.emplace_back(static_cast<size_t>(s.len));
    for (int64_t t = 0; t < s.len; ++t) positions.back()[static_cast<size_t>(t)] = past.back() + t;
    N += s.len;
  }

  Workspace& ws = Workspace::of_this_thread();
  float* x = grown(ws.x, N * H);
  float* h = grown(ws.h, N * H);
  float* qkv = grown(ws.qkv, N * qkv_.width());
  float* q = grown(ws.q, N * nh * hd);
  float* attn = grown(ws.attn, N * nh * hd);
  float* gate = grown(ws.gate, N * I);
  float* up = grown(ws.up, N * I);
  float* k_new = grown(ws.k_new, N * nkv * hd);
  float* v_new = grown(ws.v_new, N * nkv * hd);

  be_.embedding(*tok_embeddings_, ids, x);
  for (int64_t li = 0; li < cfg_.num_layers; ++li) {
    const Layer& L = layers_[static_cast<size_t>(li)];

    // Attention block.
    be_.rmsnorm(x, N, *L.attention_norm, eps, h);
    be_.matmul(h, N, *L.wqkv, L.wqkv_bias.get(), qkv);
    for (size_t si = 0; si < segs.size(); ++si) {
      const Segment& s = segs[si];
      const int64_t r0 = row0[si], p0 = past[si];
      KvView kv = batch[s.seq].cache->layer(li, p0 + s.len);
      for (int64_t t = 0; t < s.len; ++t) {
        const float* row = qkv + (r0 + t) * qkv_.width();
        for (int64_t hh = 0; hh < nh; ++hh)
          std::memcpy(q + ((r0 + t) * nh + hh) * hd, row + qkv_.query_offset(hh), hd * sizeof(float));
        // Keys and values are gathered into contiguous rows (keys are rotated there), then
        // stored in the cache's element type.
        float* k_row = k_new + (r0 + t) * kv.stride;
        float* v_row = v_new + (r0 + t) * kv.stride;
        for (int64_t g = 0; g < nkv; ++g) {
          std::memcpy(k_row + g * hd, row + qkv_.key_offset(g), hd * sizeof(float));
          std::memcpy(v_row + g * hd, row + qkv_.value_offset(g), hd * sizeof(float));
        }
        kv_row_store(kv, kv.v(p0 + t), v_row);
      }
      const RopeSpec& rope = ropes[s.seq];
      be_.rope(q + r0 * nh * hd, s.len, nh, hd, nh * hd, positions[si], rope);
      be_.rope(k_new + r0 * kv.stride, s.len, nkv, hd, kv.stride, positions[si], rope);
      for (int64_t t = 0; t < s.len; ++t)
        kv_row_store(kv, kv.k(p0 + t), k_new + (r0 + t) * kv.stride);
      be_.attention(q + r0 * nh * hd, s.len, nh, nkv, hd, kv, p0, attn + r0 * nh * hd);
    }
    be_.matmul(attn, N, *L.wo, L.wo_bias.get(), h);
    reduce(h, N * H);  // tensor parallel: the sum of every rank's heads
    be_.add(x, h, N * H);

    // Feed-forward block: w2(silu(w1 x) ⊙ w3 x).
    be_.rmsnorm(x, N, *L.ffn_norm, eps, h);
    be_.matmul(h, N, *L.w1, nullptr, gate);
    be_.matmul(h, N, *L.w3, nullptr, up);
    be_.silu_mul(gate, up, N * I, gate);
    be_.matmul(gate, N, *L.w2, nullptr, h);
    reduce(h, N * H);  // tensor parallel: the sum of every rank's intermediate slice
    be_.add(x, h, N * H);
  }

  // Logits: every row of segments that want all of them, else the last row of a sequence's
  // last segment. The wanted rows are gathered so the head is read once.
  std::vector<float*> dest;
  for (size_t si = 0; si < segs.size(); ++si) {
    const Segment& s = segs[si];
    SequenceInput& in = batch[s.seq];
    const bool last = s.start + s.len == static_cast<int64_t>(in.ids.size());
    for (int64_t t = 0; t < s.len; ++t) {
      float* target = nullptr;
      if (in.no_logits)
        break;
      else if (in.all_logits)
        target = in.logits.data() + (s.start + t) * V;
      else if (last && t == s.len - 1)
        target = in.logits.data();
      if (!target) continue;
      // Rows gather in place: row r of the head's input is the r-th wanted row of x (r ≤ its row).
      std::memmove(x + static_cast<int64_t>(dest.size()) * H, x + (row0[si] + t) * H, H * sizeof(float));
      dest.push_back(target);
    }
    in.cache->advance(s.len);
  }
  if (dest.empty()) return;
  const int64_t R = static_cast<int64_t>(dest.size());
  be_.rmsnorm(x, R, *norm_, eps, h);
  // Rows that land next to each other (one sequence's all-logits, or a single row) are
  // written in place; a batch's rows go through the workspace.
  bool contiguous = true;
  for (int64_t r = 1; r < R; ++r) contiguous &= dest[static_cast<size_t>(r)] == dest[0] + r * V;
  head(h, R, dest, contiguous);
}

void InternLM2::reduce(float* x, int64_t n) {
  if (comm_) comm_->all_reduce_sum(std::span<float>(x, static_cast<size_t>(n)));
}

// Logits of R normed rows into dest[r] (V floats each). Sharded: each rank computes its
// vocabulary rows, rank 0 gathers them ([R, V_0] of rank 0, then [R, V_1] of rank 1, ...) and
// puts every row together.
void InternLM2::head(const float* h, int64_t R, const std::vector<float*>& dest, bool contiguous) {
  const int64_t V = cfg_.vocab_size;
  const Weight& w = output_ ? *output_ : *tok_embeddings_;
  Workspace& ws = Workspace::of_this_thread();
  if (!comm_) {
    float* out = contiguous ? dest[0] : grown(ws.logits, R * V);
    be_.matmul(h, R, w, nullptr, out);
    if (!contiguous)
      for (int64_t r = 0; r < R; ++r) std::memcpy(dest[static_cast<size_t>(r)], out + r * V, V * sizeof(float));
    return;
  }
  const int64_t local = shard_.vocab_end - shard_.vocab_begin;
  float* mine = grown(ws.logits, R * local);
  be_.matmul(h, R, w, nullptr, mine);
  std::vector<int64_t> counts;
  for (int r = 0; r < shard_.size; ++r) counts.push_back(R * shard_.vocab_rows(r));
  const bool root = shard_.rank == 0;
  float* all = grown(ws.gathered, root ? R * V : 0);
  comm_->gather(std::span<const float>(mine, static_cast<size_t>(R * local)), counts,
                std::span<float>(all, static_cast<size_t>(root ? R * V : 0)), 0);
  if (!root) return;
  int64_t offset = 0, v0 = 0;
  for (int r = 0; r < shard_.size; ++r) {
    const int64_t n = shard_.vocab_rows(r);
    for (int64_t t = 0; t < R; ++t)
      std::memcpy(dest[static_cast<size_t>(t)] + v0, all + offset + t * n, static_cast<size_t>(n) * sizeof(float));
    offset += R * n;
    v0 += n;
  }
}

}  // namespace ilm
