// Causal GQA attention as small GEMMs over tiles of the KV cache, with an online softmax.
//
// The rows of a work item are up to kQueryBlock query positions x the G query heads of one KV
// head, so every K/V row fetched serves G x kQueryBlock queries. Keys go by in tiles of
// kKeyTile: scores S = Q · K^T come from one GEMM, each query row's running (max, sum) is
// updated (softmax_update), and O += P · V is a second GEMM. The keys are cut into fixed
// segments of kSegment: each segment's (max, sum, O) is computed from scratch and the segments
// are merged in order.
//
// Two schedules share that arithmetic:
//  - prompts (many query blocks): one work item per (query block, KV head) runs its segments
//    one after the other, widening its head's slice of each tile row into f32 once (the GEMMs
//    read it many times);
//  - decode and small batches: one work item per (segment, group of KV heads) reads each
//    head's slices where they lie in the cache, in the cache's type (transposed and widened in
//    registers for S, widened in registers for O += P · V), and the segments are merged
//    afterwards. This path streams the whole cache once per step, so it runs at memory speed
//    only if nothing is copied on the way.
// A query row's result depends only on its own scores and the fixed tile and segment
// boundaries (GEMM elements sum in their own lane in a fixed order, masked keys add exact
// zeros, the exponentials are the same for the same input, a tile's probabilities are summed
// in one fixed order), so a position gets the same values alone, batched, in a prompt chunk of
// any size, and under either schedule (the same bits, except that an output element that
// underflowed to -0 may come out +0 after the extra masked keys of a batch).
#include "backend/cpu/attention.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <vector>

namespace ilm::cpu {

namespace {

constexpr int64_t kQueryBlock = 32;   // query positions per work item
constexpr int64_t kKeyTile = 64;      // keys per GEMM / softmax step
constexpr int64_t kSegment = 256;     // keys per independently computed segment
constexpr int64_t kSmallBatch = 8;    // up to this many positions: the decode schedule
constexpr int64_t kPrefetchKeys = 8;  // how far ahead a prompt's gather asks for rows

// The softmax state of M query rows over some keys: unnormalised O [M][hd], running max and
// sum per row, in storage owned elsewhere.
struct State {
  float* o;
  float* m;
  float* l;
};

// Storage for n states of M rows x hd.
struct States {
  std::vector<float> o, m, l;
  int64_t M = 0, hd = 0;
  void reset(int64_t n, int64_t M_, int64_t hd_) {
    M = M_;
    hd = hd_;
    o.assign(static_cast<size_t>(n * M * hd), 0.0f);
    m.assign(static_cast<size_t>(n * M), -INFINITY);
    l.assign(static_cast<size_t>(n * M), 0.0f);
  }
  State at(int64_t i) { return {o.data() + i * M * hd, m.data() + i * M, l.data() + i * M}; }
};

// One query block of one KV head: Q^T (pre-scaled by 1/sqrt(hd)) and each row's key limit.
struct Queries {
  int64_t M = 0;
  std::vector<float> qt;         // [hd][M]
  std::vector<int64_t> limit;    // keys row r may see
  void load(const float* q, int64_t t0, int64_t nq, int64_t g, int64_t G, int64_t n_heads, int64_t hd,
            int64_t past) {
    M = nq * G;  // row r: position t0 + r / G, query head g·G + r % G
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    qt.resize(static_cast<size_t>(hd * M));
    limit.resize(static_cast<size_t>(M));
    for (int64_t r = 0; r < M; ++r) {
      const float* qr = q + ((t0 + r / G) * n_heads + g * G + r % G) * hd;
      for (int64_t d = 0; d < hd; ++d) qt[static_cast<size_t>(d * M + r)] = qr[d] * scale;
      limit[static_cast<size_t>(r)] = past + t0 + r / G + 1;
    }
  }
};

// A tile's scores, then probabilities: s[r·kKeyTile + j] for query row r and key j0 + j.
//
// Folds them into `st`: keys past a row's limit count as -inf; the running max grows to the
// tile's, the scores become e^(score - max), O and the sum are rescaled when the max moved,
// and the tile's probabilities are added to the sum in a fixed order (16 running partial sums,
// key j into partial j mod 16, then a pairwise tree), so the sum is the same bits whatever
// instruction set or schedule computed the scores.
void softmax_update(const Kernels& k, const Queries& qs, int64_t j0, int64_t nj, float* s, const State& st,
                    int64_t hd) {
  for (int64_t r = 0; r < qs.M; ++r) {
    float* row = s + r * kKeyTile;
    const int64_t visible = std::clamp<int64_t>(qs.limit[static_cast<size_t>(r)] - j0, 0, nj);
    float mr = st.m[r];
    float sum = 0.0f;
    if (k.exp_row) {
      sum = k.exp_row(row, visible, nj, &mr);
      if (mr == -INFINITY) continue;  // a row with no visible key yet stays empty
    } else {
      for (int64_t j = 0; j < visible; ++j) mr = std::max(mr, row[j]);
      if (mr == -INFINITY) {
        std::fill_n(row, nj, 0.0f);
        continue;
      }
      for (int64_t j = 0; j < visible; ++j) row[j] -= mr;
      k.exp(row, visible);
      std::fill(row + visible, row + nj, 0.0f);
      float part[16] = {};
      int64_t c = 0;
      for (; c + 16 <= nj; c += 16)
        for (int i = 0; i < 16; ++i) part[i] += row[c + i];
      for (int i = 0; c + i < nj; ++i) part[i] += row[c + i];
      for (int w = 8; w > 0; w /= 2)
        for (int i = 0; i < w; ++i) part[i] += part[i + w];
      sum = part[0];
    }
    const float old_m = st.m[r];
    if (old_m != mr && old_m != -INFINITY) {
      const float scale = std::exp(old_m - mr);
      st.l[r] *= scale;
      float* orow = st.o + r * hd;
      for (int64_t d = 0; d < hd; ++d) orow[d] *= scale;
    }
    st.l[r] += sum;
    st.m[r] = mr;
  }
}

// run ⊕= seg (segments in key order): the one formula both schedules use.
void merge(const State& run, const State& seg, int64_t M, int64_t hd) {
  for (int64_t r = 0; r < M; ++r) {
    const int64_t i = r;
    if (seg.l[i] == 0.0f) continue;  // no visible key in this segment
    float* o = run.o + r * hd;
    const float* so = seg.o + r * hd;
    if (run.l[i] == 0.0f) {
      std::copy_n(so, hd, o);
      run.m[i] = seg.m[i];
      run.l[i] = seg.l[i];
      continue;
    }
    const float mx = std::max(run.m[i], seg.m[i]);
    const float a = std::exp(run.m[i] - mx), b = std::exp(seg.m[i] - mx);
    for (int64_t d = 0; d < hd; ++d) o[d] = o[d] * a + so[d] * b;
    run.l[i] = run.l[i] * a + seg.l[i] * b;
    run.m[i] = mx;
  }
}

// Normalised output of the M rows (positions t0 + r / G, query heads g·G + r % G).
void write_out(const State& st, int64_t t0, int64_t M, int64_t g, int64_t G, int64_t n_heads, int64_t hd,
               float* out) {
  for (int64_t r = 0; r < M; ++r) {
    float* dst = out + ((t0 + r / G) * n_heads + g * G + r % G) * hd;
    const float inv = 1.0f / st.l[r];
    for (int64_t d = 0; d < hd; ++d) dst[d] = st.o[r * hd + d] * inv;
  }
}

// Row p's K (or V) address; inside a block rows advance by a fixed step, so the block lookup
// (a division) is done once per block.
struct RowWalk {
  const KvView& kv;
  bool keys;
  const std::byte* at = nullptr;
  const std::byte* row(int64_t p, bool first) {
    if (first || p % kv.block_size == 0)
      at = static_cast<const std::byte*>(keys ? kv.k(p) : kv.v(p));
    else
      at += kv.row_bytes;
    return at;
  }
};

// The bytes of KV head g's slice of a row (an I8 row's scale for the head sits at the row's end).
void prefetch_head(const KvView& kv, const std::byte* row, int64_t g, int64_t hd) {
  const auto* at = reinterpret_cast<const char*>(row) + g * hd * kv.elem_bytes;
  for (int64_t c = 0; c < hd * kv.elem_bytes; c += 64) __builtin_prefetch(at + c);
  if (kv.dtype == DType::I8) __builtin_prefetch(reinterpret_cast<const char*>(row) + kv.stride + g * 4);
}

// KV head g's slices of rows [j0, j0 + nj), read where they are in the cache.
struct HeadRows {
  KvRows k, v;
};
struct RowSet {
  std::array<const void*, kKeyTile> k_at, v_at;
  std::array<float, kKeyTile> k_scale, v_scale;
  int64_t n = 0;
  void fill(const KvView& kv, int64_t hd, int64_t g, int64_t j0, int64_t nj) {
    RowWalk kw{kv, true}, vw{kv, false};
    for (int64_t j = 0; j < nj; ++j) {
      const std::byte* k_row = kw.row(j0 + j, j == 0);
      const std::byte* v_row = vw.row(j0 + j, j == 0);
      k_at[static_cast<size_t>(j)] = k_row + g * hd * kv.elem_bytes;
      v_at[static_cast<size_t>(j)] = v_row + g * hd * kv.elem_bytes;
      k_scale[static_cast<size_t>(j)] = kv_row_scale(kv, k_row, g);
      v_scale[static_cast<size_t>(j)] = kv_row_scale(kv, v_row, g);
    }
    n = nj;
  }
  // These rows, with `next`'s to be prefetched meanwhile.
  HeadRows rows(DType t, const RowSet* next, int64_t slice_bytes) const {
    HeadRows h{{k_at.data(), k_scale.data(), t}, {v_at.data(), v_scale.data(), t}};
    if (next) {
      h.k.ahead = next->k_at.data();
      h.v.ahead = next->v_at.data();
      h.k.n_ahead = h.v.n_ahead = next->n;
      h.k.ahead_bytes = h.v.ahead_bytes = slice_bytes;
    }
    return h;
  }
};

// A thread's tile buffers, kept across calls: the pool's threads live as long as the backend,
// and allocating (and zero-filling) them per work item cost more than the decode attention
// itself and churned the allocator every layer. Everything read from them is written first.
struct Buffers {
  std::vector<float> kb, vb, scores, gemm_out, kt;
  RowSet sets[2];  // the rows of this step (and, decoding, of the next)
  static Buffers& of_this_thread() {
    thread_local Buffers b;
    return b;
  }
  template <class T>
  static T* at_least(std::vector<T>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
    return v.data();
  }
};

// Prompt schedule: rows [j0, j0 + nj) of KV head g widened into kb / vb (hd floats a row: a
// prompt's GEMMs read the tile many times, so dense rows beat 4 KB-strided ones that share L1
// sets), prefetching rows below n_keys a few keys ahead (a head's slice is a few hundred bytes
// of a row kilobytes long, which the hardware prefetcher does not follow).
void gather_head(const Kernels& k, const KvView& kv, int64_t hd, int64_t g, int64_t j0, int64_t nj, int64_t n_keys,
                 RowSet& rows, float* kb, float* vb) {
  rows.fill(kv, hd, g, j0, nj);
  for (int64_t j = 0; j < nj; ++j) {
    if (j0 + j + kPrefetchKeys < n_keys) {
      prefetch_head(kv, static_cast<const std::byte*>(kv.k(j0 + j + kPrefetchKeys)), g, hd);
      prefetch_head(kv, static_cast<const std::byte*>(kv.v(j0 + j + kPrefetchKeys)), g, hd);
    }
    const auto i = static_cast<size_t>(j);
    k.widen(rows.k_at[i], kv.dtype, rows.k_scale[i], hd, kb + j * hd);
    k.widen(rows.v_at[i], kv.dtype, rows.v_scale[i], hd, vb + j * hd);
  }
}

// Folds keys [j0, j0 + nj), gathered as f32 rows kb / vb, into `st` (prompt schedule): S = K · Q^T
// as one GEMM (keys are GEMM rows: many query rows fill the vector lanes), transposed to the
// tile layout, the softmax step, then O += P · V.
void prompt_tile(const Kernels& k, const Queries& qs, int64_t hd, const float* kb, const float* vb, int64_t j0,
                 int64_t nj, const State& st, Buffers& b) {
  const int64_t M = qs.M;
  float* st_t = Buffers::at_least(b.gemm_out, kKeyTile * M);  // [nj][M]
  float* s = Buffers::at_least(b.scores, M * kKeyTile);
  k.gemm(nj, M, hd, kb, hd, 1, qs.qt.data(), M, st_t, M, false);
  k.transpose(st_t, M, nj, M, s, kKeyTile);
  softmax_update(k, qs, j0, nj, s, st, hd);
  k.gemm(M, hd, nj, s, kKeyTile, 1, vb, hd, st.o, hd, true);
}

// Folds keys [j0, j0 + nj) of one KV head into `st` (decode schedule): the keys are transposed
// (widened on the way) so that they fill the vector lanes, S = Q · K^T is one GEMM of the few
// query rows, then the softmax step and O += P · V, with K and V read straight from the cache.
// Each score is the same chain of FMAs over d as in prompt_tile (products commute exactly),
// and O the same chain over keys, so both schedules give the same bits.
void decode_tile(const Kernels& k, const Queries& qs, int64_t hd, const HeadRows& rows, int64_t j0, int64_t nj,
                 const State& st, Buffers& b) {
  const int64_t M = qs.M;
  float* kt = Buffers::at_least(b.kt, hd * kKeyTile);
  float* s = Buffers::at_least(b.scores, M * kKeyTile);
  const bool fused = k.widen_transpose && k.gemm_kv_rows && hd % 16 == 0;
  float* vb = nullptr;
  if (fused) {
    k.widen_transpose(rows.k, nj, hd, kt, kKeyTile);
  } else {  // the same numbers through an f32 copy
    float* kb = Buffers::at_least(b.kb, kKeyTile * hd);
    vb = Buffers::at_least(b.vb, kKeyTile * hd);
    for (int64_t j = 0; j < nj; ++j) {
      k.widen(rows.k.at[j], rows.k.type, rows.k.scales[j], hd, kb + j * hd);
      k.widen(rows.v.at[j], rows.v.type, rows.v.scales[j], hd, vb + j * hd);
    }
    k.transpose(kb, hd, nj, hd, kt, kKeyTile);
  }
  k.gemm(M, nj, hd, qs.qt.data(), 1, M, kt, kKeyTile, s, kKeyTile, false);
  softmax_update(k, qs, j0, nj, s, st, hd);
  if (fused)
    k.gemm_kv_rows(M, hd, nj, s, kKeyTile, 1, rows.v, st.o, hd);
  else
    k.gemm(M, hd, nj, s, kKeyTile, 1, vb, hd, st.o, hd, true);
}

}  // namespace

void attention(const Kernels& k, ThreadPool& pool, const float* q, int64_t T, int64_t n_heads, int64_t n_kv_heads,
               int64_t hd, const KvView& kv, int64_t past, float* out) {
  const int64_t G = n_heads / n_kv_heads;
  const int64_t n_blocks = (T + kQueryBlock - 1) / kQueryBlock;
  const int64_t n_segments = (past + T + kSegment - 1) / kSegment;  // what the last position sees

  if (T > kSmallBatch) {
    // Prompts: (query block, KV head) items, segments in order inside each.
    pool.parallel_for(n_blocks * n_kv_heads, [&](int64_t i0, int64_t i1) {
      Queries qs;
      States run, seg;
      Buffers& b = Buffers::of_this_thread();
      float* kb = Buffers::at_least(b.kb, kKeyTile * hd);
      float* vb = Buffers::at_least(b.vb, kKeyTile * hd);
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t t0 = i / n_kv_heads * kQueryBlock, g = i % n_kv_heads;
        const int64_t nq = std::min(kQueryBlock, T - t0);
        qs.load(q, t0, nq, g, G, n_heads, hd, past);
        const int64_t n_keys = past + t0 + nq;  // what the block's last position sees
        run.reset(1, qs.M, hd);
        for (int64_t s0 = 0; s0 < n_keys; s0 += kSegment) {
          seg.reset(1, qs.M, hd);
          for (int64_t j0 = s0; j0 < std::min(n_keys, s0 + kSegment); j0 += kKeyTile) {
            const int64_t nj = std::min({kKeyTile, n_keys - j0, s0 + kSegment - j0});
            gather_head(k, kv, hd, g, j0, nj, n_keys, b.sets[0], kb, vb);
            prompt_tile(k, qs, hd, kb, vb, j0, nj, seg.at(0), b);
          }
          merge(run.at(0), seg.at(0), qs.M, hd);
        }
        write_out(run.at(0), t0, qs.M, g, G, n_heads, hd, out);
      }
    });
    return;
  }

  // Decode and small batches: (segment, group of KV heads) items, enough of them to keep every
  // thread busy, each reading its heads' slices of the tile's rows where they lie in the cache
  // (the next tile's asked for ahead); then each head's segments are merged in order.
  const int64_t M = T * G;
  const int64_t groups = std::clamp<int64_t>((2 * pool.size() + n_segments - 1) / n_segments, 1, n_kv_heads);
  const int64_t per_group = (n_kv_heads + groups - 1) / groups;
  // [segment][KV head]. Kept per calling thread: at 32k cached tokens this is 2 MiB per layer
  // per step, which a fresh vector got from mmap, page-faulted in and zeroed every time
  // (a quarter of the decode attention's time in kernel_bench); reset() reuses the capacity.
  // (A reference: the pool's threads must see the caller's instance, not their own.)
  thread_local States kept;
  States& partial = kept;
  partial.reset(n_segments * n_kv_heads, M, hd);
  std::vector<Queries> qs;  // per KV head, shared read-only by the items
  qs.reserve(static_cast<size_t>(n_kv_heads));
  for (int64_t g = 0; g < n_kv_heads; ++g) {
    qs.emplace_back();
    qs.back().load(q, 0, T, g, G, n_heads, hd, past);
  }
  const int64_t n_keys = past + T;
  pool.parallel_for(n_segments * groups, [&](int64_t i0, int64_t i1) {
    Buffers& b = Buffers::of_this_thread();
    const int64_t slice_bytes = hd * kv.elem_bytes;
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t s = i / groups, g0 = i % groups * per_group, g1 = std::min(n_kv_heads, g0 + per_group);
      const int64_t s0 = s * kSegment, s1 = std::min(n_keys, s0 + kSegment);
      if (g0 >= g1) continue;
      // Steps (tile, head) in order; each one's rows are found while the previous computes and
      // prefetched during it. The next item's first rows are prefetched by the last step.
      int cur = 0;
      b.sets[cur].fill(kv, hd, g0, s0, std::min(kKeyTile, s1 - s0));
      for (int64_t j0 = s0; j0 < s1; j0 += kKeyTile) {
        const int64_t nj = std::min(kKeyTile, s1 - j0);
        for (int64_t g = g0; g < g1; ++g) {
          const bool last_head = g + 1 == g1;
          const int64_t next_j0 = last_head ? j0 + kKeyTile : j0;
          const int64_t next_end = last_head && next_j0 >= s1 ? std::min(n_keys, next_j0 + kKeyTile) : s1;
          RowSet* next = nullptr;
          if (next_j0 < next_end) {
            next = &b.sets[1 - cur];
            next->fill(kv, hd, last_head ? g0 : g + 1, next_j0, std::min(kKeyTile, next_end - next_j0));
          }
          decode_tile(k, qs[static_cast<size_t>(g)], hd, b.sets[cur].rows(kv.dtype, next, slice_bytes), j0, nj,
                      partial.at(s * n_kv_heads + g), b);
          cur = 1 - cur;
        }
      }
    }
  });
  pool.parallel_for(n_kv_heads, [&](int64_t g0, int64_t g1) {
    States run;
    for (int64_t g = g0; g < g1; ++g) {
      run.reset(1, M, hd);
      for (int64_t s = 0; s < n_segments; ++s) merge(run.at(0), partial.at(s * n_kv_heads + g), M, hd);
      write_out(run.at(0), 0, M, g, G, n_heads, hd, out);
    }
  });
}

}  // namespace ilm::cpu
