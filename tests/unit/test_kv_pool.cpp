// The paged KV pool: allocation, reference counts, the prefix registry with LRU eviction, and
// the cache operations built on it (grow, truncate with copy-on-write, fork, adopt).
#include <gtest/gtest.h>

#include <memory>
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

}  // namespace
}  // namespace ilm
