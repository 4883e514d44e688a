// Causal GQA attention as small GEMMs over tiles of the KV cache, with an online softmax.
//
// One work item is a block of up to kQueryBlock query positions x one KV head: its rows are
// the block's positions x the G query heads sharing that KV head, so every K/V row fetched
// from the cache serves G x kQueryBlock queries (a long prompt reads the cache T / 32 times,
// not T times). Keys are visited in tiles of kKeyTile: the tile's K and V rows of the head are
// gathered as f32 (widened or dequantized once), scores S^T = K · Q^T come from one GEMM, the
// running (max, sum) of each query row is updated, and O += P · V is a second GEMM. Memory per
// work item is fixed, however long the context.
//
// A query row's result depends only on its own scores and the (fixed) tile boundaries: every
// GEMM element sums in its own lane in a fixed order, masked keys add exact zeros, and the
// exponentials are the same for the same input. So attention gives the same bits for a
// position whether it is computed alone (decode), in a batch, or in a prompt chunk of any
// size, which keeps batched, chunked and recomputed sequences identical to solo runs.
#include "backend/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace ilm::cpu {

namespace {

constexpr int64_t kQueryBlock = 32;   // query positions per work item
constexpr int64_t kKeyTile = 64;      // keys per GEMM / softmax step
constexpr int64_t kPrefetchKeys = 8;  // how far ahead the gather asks for K/V rows

struct Scratch {
  std::vector<float> qt, kb, vb, st, o, m, l, tmax;
  std::vector<int64_t> limit;
  void size(int64_t rows, int64_t hd) {
    qt.resize(static_cast<size_t>(hd * rows));
    kb.resize(static_cast<size_t>(kKeyTile * hd));
    vb.resize(kb.size());
    st.resize(static_cast<size_t>(kKeyTile * rows));
    o.resize(static_cast<size_t>(rows * hd));
    m.resize(static_cast<size_t>(rows));
    l.resize(m.size());
    tmax.resize(m.size());
    limit.resize(m.size());
  }
};

// Copies the tile's rows [j0, j0 + nj) of KV head g into kb / vb as f32 (hd values a row).
void gather(const KvView& kv, int64_t g, int64_t hd, int64_t j0, int64_t nj, int64_t n_keys, float* kb, float* vb) {
  // Row addresses advance by a fixed step inside a block: one block lookup per block.
  const std::byte* k_at = nullptr;
  const std::byte* v_at = nullptr;
  for (int64_t j = 0; j < nj; ++j) {
    const int64_t p = j0 + j;
    if (j == 0 || p % kv.block_size == 0) {
      k_at = static_cast<const std::byte*>(kv.k(p));
      v_at = static_cast<const std::byte*>(kv.v(p));
    } else {
      k_at += kv.row_bytes;
      v_at += kv.row_bytes;
    }
    // This head's slice of each row is a few hundred bytes in a row kilobytes long: the
    // hardware prefetcher does not follow it, so ask for rows a few keys ahead.
    if (p + kPrefetchKeys < n_keys) {
      const auto* kf = static_cast<const char*>(kv.k(p + kPrefetchKeys)) + g * hd * kv.elem_bytes;
      const auto* vf = static_cast<const char*>(kv.v(p + kPrefetchKeys)) + g * hd * kv.elem_bytes;
      for (int64_t c = 0; c < hd * kv.elem_bytes; c += 64) {
        __builtin_prefetch(kf + c);
        __builtin_prefetch(vf + c);
      }
    }
    float* kd = kb + j * hd;
    float* vd = vb + j * hd;
    if (const float* kr = kv_row_f32(kv, k_at, g, kd); kr != kd) std::memcpy(kd, kr, static_cast<size_t>(hd) * 4);
    if (const float* vr = kv_row_f32(kv, v_at, g, vd); vr != vd) std::memcpy(vd, vr, static_cast<size_t>(hd) * 4);
  }
}

}  // namespace

void attention(const Kernels& k, ThreadPool& pool, const float* q, int64_t T, int64_t n_heads, int64_t n_kv_heads,
               int64_t hd, const KvView& kv, int64_t past, float* out) {
  const int64_t G = n_heads / n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t n_blocks = (T + kQueryBlock - 1) / kQueryBlock;
  pool.parallel_for(n_blocks * n_kv_heads, [&](int64_t i0, int64_t i1) {
    Scratch s;
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t t0 = i / n_kv_heads * kQueryBlock, g = i % n_kv_heads;
      const int64_t nq = std::min(kQueryBlock, T - t0);
      const int64_t M = nq * G;  // row r: position t0 + r / G, query head g·G + r % G
      s.size(M, hd);
      // Q^T, pre-scaled by 1/sqrt(hd): column r is query row r.
      for (int64_t r = 0; r < M; ++r) {
        const float* qr = q + ((t0 + r / G) * n_heads + g * G + r % G) * hd;
        for (int64_t d = 0; d < hd; ++d) s.qt[static_cast<size_t>(d * M + r)] = qr[d] * scale;
        s.limit[static_cast<size_t>(r)] = past + t0 + r / G + 1;  // keys this row may see
      }
      std::fill(s.o.begin(), s.o.begin() + M * hd, 0.0f);
      std::fill(s.m.begin(), s.m.begin() + M, -INFINITY);
      std::fill(s.l.begin(), s.l.begin() + M, 0.0f);
      const int64_t n_keys = past + t0 + nq;  // what the block's last position sees
      for (int64_t j0 = 0; j0 < n_keys; j0 += kKeyTile) {
        const int64_t nj = std::min(kKeyTile, n_keys - j0);
        gather(kv, g, hd, j0, nj, n_keys, s.kb.data(), s.vb.data());
        float* st = s.st.data();  // [nj][M]: scores, then probabilities
        k.gemm(nj, M, hd, s.kb.data(), hd, 1, s.qt.data(), M, st, M, false);
        // Online softmax, column r = query row r; keys past a row's limit count as -inf.
        std::fill(s.tmax.begin(), s.tmax.begin() + M, -INFINITY);
        for (int64_t j = 0; j < nj; ++j)
          for (int64_t r = 0; r < M; ++r) {
            float& v = st[j * M + r];
            if (j0 + j >= s.limit[static_cast<size_t>(r)]) v = -INFINITY;
            s.tmax[static_cast<size_t>(r)] = std::max(s.tmax[static_cast<size_t>(r)], v);
          }
        for (int64_t r = 0; r < M; ++r) {
          const float new_m = std::max(s.m[static_cast<size_t>(r)], s.tmax[static_cast<size_t>(r)]);
          s.tmax[static_cast<size_t>(r)] = new_m;  // from here on: the row's new running max
        }
        for (int64_t j = 0; j < nj; ++j)
          for (int64_t r = 0; r < M; ++r) {
            const float mr = s.tmax[static_cast<size_t>(r)];
            float& v = st[j * M + r];
            v = mr == -INFINITY ? -INFINITY : v - mr;  // a row with no visible key yet stays empty
          }
        k.exp(st, nj * M);
        for (int64_t r = 0; r < M; ++r) {
          const float old_m = s.m[static_cast<size_t>(r)], new_m = s.tmax[static_cast<size_t>(r)];
          if (new_m == -INFINITY) continue;
          float sum = 0.0f;
          for (int64_t j = 0; j < nj; ++j) sum += st[j * M + r];
          if (old_m != new_m && old_m != -INFINITY) {
            const float c = std::exp(old_m - new_m);
            s.l[static_cast<size_t>(r)] *= c;
            float* orow = s.o.data() + r * hd;
            for (int64_t d = 0; d < hd; ++d) orow[d] *= c;
          }
          s.l[static_cast<size_t>(r)] += sum;
          s.m[static_cast<size_t>(r)] = new_m;
        }
        // O += P · V, P read as the transpose of st.
        k.gemm(M, hd, nj, st, 1, M, s.vb.data(), hd, s.o.data(), hd, true);
      }
      for (int64_t r = 0; r < M; ++r) {
        float* dst = out + ((t0 + r / G) * n_heads + g * G + r % G) * hd;
        const float inv = 1.0f / s.l[static_cast<size_t>(r)];
        for (int64_t d = 0; d < hd; ++d) dst[d] = s.o[static_cast<size_t>(r * hd + d)] * inv;
      }
    }
  });
}

}  // namespace ilm::cpu
