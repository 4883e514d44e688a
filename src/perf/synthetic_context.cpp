#include "perf/synthetic_context.h"

#include <vector>

namespace ilm {

namespace {
uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
}  // namespace

void fill_synthetic_context(KvCache& cache, int64_t n, uint64_t seed) {
  if (n <= 0) return;
  const int64_t start = cache.length();
  cache.reserve_more(n);
  const KvBlockPool& pool = cache.pool();
  std::vector<float> row(static_cast<size_t>(pool.stride()));
  for (int64_t layer = 0; layer < pool.n_layers(); ++layer) {
    const KvView view = cache.layer(layer, start + n);
    for (int64_t p = start; p < start + n; ++p) {
      for (int kv = 0; kv < 2; ++kv) {
        uint64_t s = seed ^ (static_cast<uint64_t>(layer) << 48) ^ (static_cast<uint64_t>(p) << 1) ^
                     static_cast<uint64_t>(kv);
        for (size_t i = 0; i < row.size(); i += 2) {  // two values per draw
          const uint64_t r = splitmix64(s);
          row[i] = static_cast<float>(static_cast<int32_t>(r >> 32)) * (1.0f / 2147483648.0f);
          if (i + 1 < row.size()) row[i + 1] = static_cast<float>(static_cast<int32_t>(r)) * (1.0f / 2147483648.0f);
        }
        kv_row_store(view, kv == 0 ? view.k(p) : view.v(p), row.data());
      }
    }
  }
  cache.advance(n);
}

}  // namespace ilm
