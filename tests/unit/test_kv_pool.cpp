// The paged KV pool: allocation, reference counts, the prefix registry with LRU eviction, and
// the cache operations built on it (grow, truncate with copy-on-write, fork, adopt).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "model/kv_cache.h"

namespace ilm {
namespace {

std::shared_ptr<KvBlockPool> small_pool(int64_t blocks) {
  return std::make_shared<KvBlockPool>(/*layers=*/2, /*kv heads=*/1, /*head dim=*/2, /*block=*/4, blocks);
}

TEST(KvBlockPool, AllocatesUntilFullAndReusesFreedBlocks) {
  auto pool = small_pool(2);
  auto a = pool->allocate(), b = pool->allocate();
  ASSERT_TRUE(a && b);
  EXPECT_NE(*a, *b);
  EXPECT_FALSE(pool->allocate());
  EXPECT_EQ(pool->used_blocks(), 2);
  pool->release(*a);
  EXPECT_EQ(pool->available_blocks(), 1);
  EXPECT_EQ(pool->allocate(), a);
  pool->retain(*b);
  pool->release(*b);
  EXPECT_EQ(pool->ref_count(*b), 1);
  pool->release(*b);
  EXPECT_THROW(pool->release(*b), Error);
}

TEST(KvBlockPool, PrefaultPreparesFreeBlocksUpToTheBoundAndAllocateTakesThem) {
  auto pool = small_pool(3);
  EXPECT_EQ(pool->prefault(0), 0);
  EXPECT_EQ(pool->prefault(2), 2);  // two blocks allocated and written, still free
  EXPECT_EQ(pool->used_blocks(), 0);
  EXPECT_EQ(pool->available_blocks(), 3);
  auto a = pool->allocate();
  ASSERT_TRUE(a);
  EXPECT_LT(*a, 2);  // a prefaulted block, not a third one
  const std::byte* d = pool->data(*a);
  EXPECT_TRUE(std::all_of(d, d + pool->block_bytes(), [](std::byte x) { return x == std::byte{0}; }));
  EXPECT_EQ(pool->prefault(5), 2);  // one left plus the third and last: capped by max_blocks
  EXPECT_TRUE(pool->allocate() && pool->allocate());
  EXPECT_FALSE(pool->allocate());
  EXPECT_EQ(pool->prefault(1), 0);  // nothing free, nothing left to allocate
}

TEST(KvCache, PrefaultCoversTheBlocksOfTheNextPositions) {
  auto pool = small_pool(8);  // blocks of 4 positions
  KvCache c(pool, 10);
  c.prefault(10);  // positions 0..9: three blocks
  EXPECT_EQ(pool->prefault(0), 3);
  c.reserve_more(6);
  c.advance(6);
  EXPECT_EQ(pool->prefault(0), 1);  // two taken
  c.prefault(100);                  // capped at the capacity: one more block for 6..9, ready
  EXPECT_EQ(pool->prefault(0), 1);
}

TEST(KvBlockPool, PublishedBlocksAreFoundByPrefixAndEvictedLeastRecentlyUsed) {
  auto pool = small_pool(3);
  const std::vector<TokenId> t1{1, 2, 3, 4}, t2{5, 6, 7, 8};
  const auto a = *pool->allocate(), b = *pool->allocate();
  pool->publish(a, 0, t1);
  const uint64_t h1 = KvBlockPool::chain_hash(0, t1);
  pool->publish(b, h1, t2);
  // While referenced, a lookup shares the block.
  EXPECT_EQ(pool->lookup(0, t1), a);
  EXPECT_EQ(pool->ref_count(a), 2);
  pool->release(a);
  // The same tokens under another parent are a different block.
  EXPECT_FALSE(pool->lookup(0, t2));
  EXPECT_FALSE(pool->lookup(h1 + 1, t2));
  // Released published blocks stay cached and findable.
  pool->release(a);
  pool->release(b);
  EXPECT_EQ(pool->cached_blocks(), 2);
  EXPECT_EQ(pool->available_blocks(), 3);
  EXPECT_EQ(pool->lookup(h1, t2), b);  // b is used again: a is now the least recently used
  pool->release(b);                    // ... and b goes to the back of the LRU list
  const auto c = *pool->allocate();    // never-used memory first
  EXPECT_NE(c, a);
  EXPECT_NE(c, b);
  const auto d = *pool->allocate();    // then the least recently used cached block: a
  EXPECT_EQ(d, a);
  EXPECT_FALSE(pool->lookup(0, t1));   // evicted from the registry
  EXPECT_EQ(pool->lookup(h1, t2), b);
}

TEST(KvCache, GrowsInBlocksAndFailsCleanlyWhenThePoolIsFull) {
  auto pool = small_pool(3);
  KvCache c(pool, 100);
  c.reserve_more(5);  // 2 blocks
  EXPECT_EQ(c.blocks().size(), 2u);
  static_cast<float*>(c.layer(1, 5).k(4))[1] = 42;
  c.advance(5);
  KvCache other(pool, 100);
  other.reserve_more(4);  // the last block
  EXPECT_THROW(c.reserve_more(4), KvPoolExhausted);
  EXPECT_EQ(c.blocks().size(), 2u);  // unchanged
  EXPECT_EQ(static_cast<float*>(c.layer(1, 5).k(4))[1], 42);
  EXPECT_THROW(KvCache(pool, 3).reserve_more(4), Error);  // past its capacity
}

TEST(KvCache, ForkSharesFullBlocksAndCopiesThePartialOne) {
  auto pool = small_pool(8);
  KvCache c(pool, 100);
  c.reserve_more(6);
  for (int64_t p = 0; p < 6; ++p) static_cast<float*>(c.layer(0, 6).v(p))[0] = static_cast<float>(p);
  c.advance(6);
  KvCache f = c.fork();
  EXPECT_EQ(f.length(), 6);
  EXPECT_EQ(f.blocks()[0], c.blocks()[0]);
  EXPECT_NE(f.blocks()[1], c.blocks()[1]);
  EXPECT_EQ(pool->ref_count(c.blocks()[0]), 2);
  EXPECT_EQ(static_cast<float*>(f.layer(0, 6).v(5))[0], 5.0f);
  static_cast<float*>(f.layer(0, 6).v(5))[0] = -1;  // the fork's own copy
  EXPECT_EQ(static_cast<float*>(c.layer(0, 6).v(5))[0], 5.0f);
}

TEST(KvCache, TruncateIntoASharedBlockCopiesItFirst) {
  auto pool = small_pool(8);
  KvCache c(pool, 100);
  c.reserve_more(8);
  static_cast<float*>(c.layer(0, 8).k(1))[0] = 7;
  c.advance(8);
  KvCache f = c.fork();  // both blocks full: shared
  f.truncate(2);
  EXPECT_EQ(f.blocks().size(), 1u);
  EXPECT_NE(f.blocks()[0], c.blocks()[0]);  // the kept partial block is now f's own
  EXPECT_EQ(static_cast<float*>(f.layer(0, 2).k(1))[0], 7);
  f.reserve_more(1);
  static_cast<float*>(f.layer(0, 3).k(2))[0] = 9;
  EXPECT_NE(static_cast<float*>(c.layer(0, 8).k(2))[0], 9);
}

TEST(KvCache, AdoptsAPrefixAndReleasesEverythingOnDestruction) {
  auto pool = small_pool(4);
  std::vector<int32_t> prefix;
  {
    KvCache c(pool, 100);
    c.reserve_more(8);
    c.advance(8);
    const std::vector<TokenId> t{1, 2, 3, 4};
    pool->publish(c.blocks()[0], 0, t);
    auto hit = pool->lookup(0, t);
    ASSERT_TRUE(hit);
    prefix.push_back(*hit);
  }
  EXPECT_EQ(pool->used_blocks(), 1);  // only the looked-up block is still held
  KvCache d(pool, 100);
  d.adopt_prefix(prefix);
  EXPECT_EQ(d.length(), 4);
  EXPECT_THROW(d.adopt_prefix(prefix), Error);
}

// ---------------------------------------------------------------------------------------------
// The int8 KV cache: one f32 scale per (position, layer, K or V, KV head), stored at the end of
// the row inside the block.

// A row of n_heads x hd values: head 0 ordinary, head 1 huge, head 2 all zero, the rest tiny.
std::vector<float> int8_test_row(int64_t n_heads, int64_t hd, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> row(static_cast<size_t>(n_heads * hd));
  for (int64_t h = 0; h < n_heads; ++h) {
    const float mag = h == 0 ? 1.0f : h == 1 ? 3e4f : h == 2 ? 0.0f : 1e-3f;
    for (int64_t i = 0; i < hd; ++i) row[static_cast<size_t>(h * hd + i)] = mag * d(rng);
  }
  return row;
}

// Every head of `row` read back from `stored` is within half a quantization step of its own
// scale (max |v| / 127 of that head alone); all-zero heads are exact.
void expect_int8_round_trip(const KvView& kv, const void* stored, const std::vector<float>& row,
                            const char* what) {
  std::vector<float> got(static_cast<size_t>(kv.head_dim));
  for (int64_t h = 0; h * kv.head_dim < kv.stride; ++h) {
    const float* orig = row.data() + h * kv.head_dim;
    float amax = 0;
    for (int64_t i = 0; i < kv.head_dim; ++i) amax = std::max(amax, std::abs(orig[i]));
    const double step = amax / 127.0;
    const float* r = kv_row_f32(kv, stored, h, got.data());
    for (int64_t i = 0; i < kv.head_dim; ++i) {
      if (amax == 0) {
        EXPECT_EQ(r[i], 0.0f) << what << " head " << h;
      } else {
        // Half a step, plus f32 rounding of v / s and of q x s.
        EXPECT_LE(std::abs(static_cast<double>(r[i]) - orig[i]), step / 2 * (1 + 1e-5) + 1e-6 * amax)
            << what << " head " << h << " i " << i;
      }
    }
  }
}

TEST(KvInt8, RoundTripIsWithinHalfAStepOfEachHeadsOwnScale) {
  // Odd head_dim: the scales after the int8 values are unaligned and rows are 4 x 5 + 16 bytes.
  for (int64_t hd : {int64_t{5}, int64_t{32}}) {
    const int64_t nkv = 4, layers = 2, block = 3;
    auto pool = std::make_shared<KvBlockPool>(layers, nkv, hd, block, 8, DType::I8);
    KvCache c(pool, 100);
    c.reserve_more(7);  // three blocks
    std::vector<std::vector<float>> rows;
    for (int64_t l = 0; l < layers; ++l) {
      KvView kv = c.layer(l, 7);
      EXPECT_EQ(kv.row_bytes, nkv * hd + nkv * 4);
      for (int64_t p = 0; p < 7; ++p) {
        rows.push_back(int8_test_row(nkv, hd, static_cast<uint32_t>(100 * l + 2 * p)));
        kv_row_store(kv, kv.k(p), rows.back().data());
        rows.push_back(int8_test_row(nkv, hd, static_cast<uint32_t>(100 * l + 2 * p + 1)));
        kv_row_store(kv, kv.v(p), rows.back().data());
      }
    }
    // Read back after everything is written: no row or scale overwrote another.
    size_t i = 0;
    for (int64_t l = 0; l < layers; ++l) {
      KvView kv = c.layer(l, 7);
      for (int64_t p = 0; p < 7; ++p) {
        expect_int8_round_trip(kv, kv.k(p), rows[i++], "K");
        expect_int8_round_trip(kv, kv.v(p), rows[i++], "V");
      }
    }
  }
  // The 16-bit-only overloads refuse int8 instead of reading scales as values.
  float scratch[4];
  int8_t row[8] = {};
  EXPECT_THROW(kv_row_f32(row, DType::I8, 0, 4, scratch), Error);
  EXPECT_THROW(kv_row_store(row, DType::I8, scratch, 4), Error);
  EXPECT_THROW(KvBlockPool(1, 1, 4, 4, 4, DType::U8), Error);
}

TEST(KvInt8, ValuesAreQuantizedSymmetricallyToTheNearestStep) {
  auto pool = std::make_shared<KvBlockPool>(1, 2, 4, 4, 1, DType::I8);
  KvCache c(pool, 4);
  c.reserve_more(1);
  KvView kv = c.layer(0, 1);
  const float src[8] = {127, -63.4f, 0.5f, 1.5f, /* head 1 */ -2.54f, 0, 0.004f, 1.3f};
  kv_row_store(kv, kv.k(0), src);
  const auto* q = static_cast<const int8_t*>(kv.k(0));
  EXPECT_EQ(std::vector<int>(q, q + 4), (std::vector<int>{127, -63, 0, 2}));  // half to even
  EXPECT_EQ(std::vector<int>(q + 4, q + 8), (std::vector<int>{-127, 0, 0, 65}));
  float s[2];
  std::memcpy(s, q + 8, sizeof s);
  EXPECT_EQ(s[0], 1.0f);
  EXPECT_EQ(s[1], 2.54f / 127.0f);
}

TEST(KvInt8, BlockBytesCountTheScalesAndTheLastRowEndsTheBlock) {
  // 7B layout: 8 KV heads of 128: 1024 int8 + 32 scale bytes per row, vs 4096 for f32.
  EXPECT_EQ(kv_row_bytes(8, 128, DType::I8), 1056);
  EXPECT_EQ(kv_row_bytes(8, 128, DType::F32), 4096);
  EXPECT_EQ(kv_row_bytes(8, 128, DType::BF16), 2048);
  const int64_t layers = 3, nkv = 2, hd = 6, block = 5;
  KvBlockPool pool(layers, nkv, hd, block, 2, DType::I8);
  EXPECT_EQ(pool.block_bytes(), static_cast<uint64_t>(layers * 2 * block * (nkv * hd + nkv * 4)));
  KvCache c(std::shared_ptr<KvBlockPool>(&pool, [](KvBlockPool*) {}), 10);
  c.reserve_more(10);
  const auto* base = pool.data(c.blocks()[1]);
  KvView kv = c.layer(layers - 1, 10);
  EXPECT_EQ(static_cast<const std::byte*>(kv.v(9)) + kv.row_bytes, base + pool.block_bytes());
  EXPECT_EQ(static_cast<const std::byte*>(c.layer(0, 10).k(5)), base);
  EXPECT_EQ(parse_kv_cache_dtype("int8"), DType::I8);
  EXPECT_EQ(parse_kv_cache_dtype("bf16"), DType::BF16);
  EXPECT_FALSE(parse_kv_cache_dtype("i8"));
}

TEST(KvInt8, ForkTruncateAndAdoptedPrefixesCarryTheScales) {
  const int64_t nkv = 3, hd = 4, block = 4;
  auto pool = std::make_shared<KvBlockPool>(2, nkv, hd, block, 16, DType::I8);
  KvCache c(pool, 100);
  c.reserve_more(6);
  std::vector<std::vector<float>> k, v;
  for (int64_t p = 0; p < 6; ++p) {
    k.push_back(int8_test_row(nkv, hd, static_cast<uint32_t>(10 + p)));
    v.push_back(int8_test_row(nkv, hd, static_cast<uint32_t>(50 + p)));
    for (int64_t l = 0; l < 2; ++l) {
      KvView kv = c.layer(l, 6);
      kv_row_store(kv, kv.k(p), k.back().data());
      kv_row_store(kv, kv.v(p), v.back().data());
    }
  }
  c.advance(6);
  auto expect_same = [&](KvCache& x, int64_t n, const char* what) {
    for (int64_t l = 0; l < 2; ++l) {
      KvView kv = x.layer(l, n);
      for (int64_t p = 0; p < n; ++p) {
        expect_int8_round_trip(kv, kv.k(p), k[static_cast<size_t>(p)], what);
        expect_int8_round_trip(kv, kv.v(p), v[static_cast<size_t>(p)], what);
      }
    }
  };
  KvCache f = c.fork();  // block 0 shared, the partial block 1 copied with its scales
  EXPECT_NE(f.blocks()[1], c.blocks()[1]);
  expect_same(f, 6, "fork");
  // Overwriting the fork's partial row (values and scales) leaves the original's alone.
  const auto other = int8_test_row(nkv, hd, 99);
  kv_row_store(f.layer(1, 6), f.layer(1, 6).k(5), other.data());
  expect_same(c, 6, "original after the fork wrote");
  // Truncating a fork into a shared full block copies it, scales included.
  KvCache g = c.fork();
  g.truncate(3);
  EXPECT_NE(g.blocks()[0], c.blocks()[0]);
  expect_same(g, 3, "truncated");
  // A published block adopted by a new cache reads the same values.
  const std::vector<TokenId> t{1, 2, 3, 4};
  pool->publish(c.blocks()[0], 0, t);
  auto hit = pool->lookup(0, t);
  ASSERT_TRUE(hit);
  const int32_t b = *hit;
  KvCache d(pool, 100);
  d.adopt_prefix(std::span<const int32_t>(&b, 1));
  expect_same(d, 4, "adopted");
}

}  // namespace
}  // namespace ilm
