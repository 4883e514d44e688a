// Causal GQA attention as small GEMMs over tiles of the KV cache, with an online softmax.
//
// The rows of a work item are up to kQueryBlock query positions x the G query heads of one KV
// head, so every K/V row fetched serves G x kQueryBlock queries. Keys go by in tiles of
// kKeyTile: the tile's K and V rows are gathered as f32 (widened or dequantized once), scores
// S^T = K · Q^T come from one GEMM, each query row's running (max, sum) is updated, and
// O += P · V is a second GEMM. The keys are cut into fixed segments of kSegment: each
// segment's (max, sum, O) is computed from scratch and the segments are merged in order.
//
// Two schedules share that arithmetic:
//  - prompts (many query blocks): one work item per (query block, KV head) runs its
//    segments one after the other, widening only its head's slice of each row;
//  - decode and small batches: one work item per (query block, segment) runs every KV head on
//    whole K/V rows read front to back (a head's slice alone is 512 bytes of a 4 KB row, which
//    the hardware prefetcher does not follow), and the segments are merged afterwards.
// A query row's result depends only on its own scores and the fixed tile and segment
// boundaries (GEMM elements sum in their own lane in a fixed order, masked keys add exact
// zeros, the exponentials are the same for the same input), so a position gets the same
// values alone, batched, in a prompt chunk of any size, and under either schedule (the same
// bits, except that an output element that underflowed to -0 may come out +0 after the extra
// masked keys of a batch).
#include "backend/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace ilm::cpu {

namespace {

constexpr int64_t kQueryBlock = 32;   // query positions per work item
constexpr int64_t kKeyTile = 64;      // keys per GEMM / softmax step
constexpr int64_t kSegment = 256;     // keys per independently computed segment
constexpr int64_t kSmallBatch = 8;
constexpr int64_t kPrefetchKeys = 8;  // how far ahead a gather asks for rows    // up to this many positions: segment-parallel schedule

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

// A tile's K / V rows of one head as f32, in runs of rows `ld` floats apart: one run for a
// gathered copy, one per cache block when an f32 cache is read in place.
struct Run {
  const float* k;
  const float* v;
  int64_t n;
};
struct TileRows {
  Run runs[kKeyTile];
  int64_t n_runs = 0;
  int64_t ld = 0;
  int64_t first_head = 0;  // the KV head at offset 0 of a row
};

// Folds keys [j0, j0 + nj) into `st`. scratch: nj x M floats. Splitting the keys into runs
// changes no result: a score is one GEMM element either way, and O accumulates the runs' keys
// in order through f32 memory, which holds the register value exactly.
// With `kt` (hd x nj floats) and `sq` (M x nj) given, the scores are computed as Q · K^T on
// a transposed copy of the keys instead: keys fill the vector lanes, which pays when M (the
// query rows) is smaller than a vector. Each score is the same chain of FMAs over d either
// way (products commute exactly), so the result is the same bits.
void tile_update(const Kernels& k, const Queries& qs, int64_t hd, const TileRows& rows, int64_t j0, int64_t nj,
                 const State& st, std::vector<float>& scratch, std::vector<float>& new_m, float* kt = nullptr,
                 float* sq = nullptr) {
  const int64_t M = qs.M;
  scratch.resize(static_cast<size_t>(nj * M));
  new_m.resize(static_cast<size_t>(M));
  float* s = scratch.data();  // [nj][M]: scores, then probabilities
  if (kt) {
    for (int64_t i = 0, j = 0; i < rows.n_runs; j += rows.runs[i].n, ++i)
      k.transpose(rows.runs[i].k, rows.ld, rows.runs[i].n, hd, kt + j, nj);
    k.gemm(M, nj, hd, qs.qt.data(), 1, M, kt, nj, sq, nj, false);
    k.transpose(sq, nj, M, nj, s, M);
  } else {
    for (int64_t i = 0, j = 0; i < rows.n_runs; j += rows.runs[i].n, ++i)
      k.gemm(rows.runs[i].n, M, hd, rows.runs[i].k, rows.ld, 1, qs.qt.data(), M, s + j * M, M, false);
  }
  // Keys past a row's limit count as -inf.
  for (int64_t r = 0; r < M; ++r) new_m[static_cast<size_t>(r)] = st.m[r];
  for (int64_t j = 0; j < nj; ++j)
    for (int64_t r = 0; r < M; ++r) {
      float& v = s[j * M + r];
      if (j0 + j >= qs.limit[static_cast<size_t>(r)]) v = -INFINITY;
      new_m[static_cast<size_t>(r)] = std::max(new_m[static_cast<size_t>(r)], v);
    }
  for (int64_t j = 0; j < nj; ++j)
    for (int64_t r = 0; r < M; ++r) {
      const float mr = new_m[static_cast<size_t>(r)];
      float& v = s[j * M + r];
      v = mr == -INFINITY ? -INFINITY : v - mr;  // a row with no visible key yet stays empty
    }
  k.exp(s, nj * M);
  for (int64_t r = 0; r < M; ++r) {
    const float old_m = st.m[r], mr = new_m[static_cast<size_t>(r)];
    if (mr == -INFINITY) continue;
    float sum = 0.0f;
    for (int64_t j = 0; j < nj; ++j) sum += s[j * M + r];
    if (old_m != mr && old_m != -INFINITY) {
      const float c = std::exp(old_m - mr);
      st.l[r] *= c;
      float* orow = st.o + r * hd;
      for (int64_t d = 0; d < hd; ++d) orow[d] *= c;
    }
    st.l[r] += sum;
    st.m[r] = mr;
  }
  for (int64_t i = 0, j = 0; i < rows.n_runs; j += rows.runs[i].n, ++i)  // O += P · V, P read transposed
    k.gemm(M, hd, rows.runs[i].n, s + j * M, 1, M, rows.runs[i].v, rows.ld, st.o, hd, true);
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

// KV head g's values of a row as f32 into dst (the numbers kv_row_f32 gives, SIMD-widened).
void widen_head(const Kernels& k, const KvView& kv, const std::byte* row, int64_t g, int64_t hd, float* dst) {
  k.widen(row + g * hd * kv.elem_bytes, kv.dtype, kv_row_scale(kv, row, g), hd, dst);
}

// An f32 cache's rows are used where they are (no gather).
bool readable_in_place(const KvView& kv) { return kv.dtype == DType::F32 && kv.row_bytes % 4 == 0; }

// Rows [j0, j0 + nj) of KV heads [g0, g1), front to back: an f32 cache with `in_place` is
// used where it is, one run per block (decode reads each row once); otherwise the heads are
// widened into kb / vb, (g1 - g0)·hd floats a row (a prompt's GEMMs read the tile many times:
// dense rows, not 4 KB-strided ones that share L1 sets), prefetching rows below n_keys ahead.
TileRows gather_rows(const Kernels& k, const KvView& kv, int64_t hd, int64_t g0, int64_t g1, int64_t j0, int64_t nj,
                     int64_t n_keys, bool in_place, float* kb, float* vb) {
  TileRows t;
  RowWalk kw{kv, true}, vw{kv, false};
  if (in_place && readable_in_place(kv)) {
    t.ld = kv.row_bytes / 4;
    for (int64_t j = 0; j < nj; ++j) {
      const std::byte* k_at = kw.row(j0 + j, j == 0);
      const std::byte* v_at = vw.row(j0 + j, j == 0);
      if (j == 0 || (j0 + j) % kv.block_size == 0)
        t.runs[t.n_runs++] = {reinterpret_cast<const float*>(k_at), reinterpret_cast<const float*>(v_at), 0};
      ++t.runs[t.n_runs - 1].n;
    }
    return t;
  }
  const int64_t ld = (g1 - g0) * hd;
  for (int64_t j = 0; j < nj; ++j) {
    const std::byte* k_at = kw.row(j0 + j, j == 0);
    const std::byte* v_at = vw.row(j0 + j, j == 0);
    // The heads' slice is a few hundred bytes of a row kilobytes long, which the hardware
    // prefetcher does not follow: ask for the rows a few keys ahead.
    if (j0 + j + kPrefetchKeys < n_keys) {
      const auto* kf = static_cast<const char*>(kv.k(j0 + j + kPrefetchKeys)) + g0 * hd * kv.elem_bytes;
      const auto* vf = static_cast<const char*>(kv.v(j0 + j + kPrefetchKeys)) + g0 * hd * kv.elem_bytes;
      for (int64_t c = 0; c < ld * kv.elem_bytes; c += 64) {
        __builtin_prefetch(kf + c);
        __builtin_prefetch(vf + c);
      }
    }
    if (kv.dtype == DType::I8) {  // one scale per head
      for (int64_t g = g0; g < g1; ++g) {
        widen_head(k, kv, k_at, g, hd, kb + j * ld + (g - g0) * hd);
        widen_head(k, kv, v_at, g, hd, vb + j * ld + (g - g0) * hd);
      }
    } else {
      k.widen(k_at + g0 * hd * kv.elem_bytes, kv.dtype, 1.0f, ld, kb + j * ld);
      k.widen(v_at + g0 * hd * kv.elem_bytes, kv.dtype, 1.0f, ld, vb + j * ld);
    }
  }
  t.ld = ld;
  t.first_head = g0;
  t.runs[t.n_runs++] = {kb, vb, nj};
  return t;
}

// Head g's view of whole-row tile rows.
TileRows head_of(const TileRows& t, int64_t g, int64_t hd) {
  TileRows h = t;
  for (int64_t i = 0; i < h.n_runs; ++i) {
    h.runs[i].k += (g - t.first_head) * hd;
    h.runs[i].v += (g - t.first_head) * hd;
  }
  return h;
}

// A thread's tile buffers, kept across calls: the pool's threads live as long as the backend,
// and allocating (and zero-filling) them per work item cost more than the decode attention
// itself and churned the allocator every layer. Everything read from them is written first.
struct Buffers {
  std::vector<float> kb, vb, scores, new_m, kt, sq;
  static Buffers& of_this_thread() {
    thread_local Buffers b;
    return b;
  }
  static float* at_least(std::vector<float>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
    return v.data();
  }
};

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
            const TileRows rows = gather_rows(k, kv, hd, g, g + 1, j0, nj, n_keys, false, kb, vb);
            tile_update(k, qs, hd, head_of(rows, g, hd), j0, nj, seg.at(0), b.scores, b.new_m);
          }
          merge(run.at(0), seg.at(0), qs.M, hd);
        }
        write_out(run.at(0), t0, qs.M, g, G, n_heads, hd, out);
      }
    });
    return;
  }

  // Decode and small batches: (segment, group of KV heads) items reading rows front to back,
  // enough of them to keep every thread busy; then each head's segments are merged in order.
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
  pool.parallel_for(n_segments * groups, [&](int64_t i0, int64_t i1) {
    const int64_t ld = n_kv_heads * hd;
    Buffers& b = Buffers::of_this_thread();
    // An f32 cache is read in place: the gather buffers are only needed for other types.
    const bool in_place = readable_in_place(kv);
    float* kb = in_place ? nullptr : Buffers::at_least(b.kb, kKeyTile * ld);
    float* vb = in_place ? nullptr : Buffers::at_least(b.vb, kKeyTile * ld);
    float* kt = Buffers::at_least(b.kt, kKeyTile * hd);
    float* sq = Buffers::at_least(b.sq, kKeyTile * M);
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t s = i / groups, g0 = i % groups * per_group, g1 = std::min(n_kv_heads, g0 + per_group);
      const int64_t s0 = s * kSegment, s1 = std::min(past + T, s0 + kSegment);
      for (int64_t j0 = s0; j0 < s1 && g0 < g1; j0 += kKeyTile) {
        const int64_t nj = std::min(kKeyTile, s1 - j0);
        const TileRows rows = gather_rows(k, kv, hd, g0, g1, j0, nj, s1, true, kb, vb);
        for (int64_t g = g0; g < g1; ++g)
          tile_update(k, qs[static_cast<size_t>(g)], hd, head_of(rows, g, hd), j0, nj,
                      partial.at(s * n_kv_heads + g), b.scores, b.new_m, kt, sq);
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
