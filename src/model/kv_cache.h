#pragma once
// Paged key/value cache. KV memory is a pool of fixed-size blocks (block_size positions x every
// layer's K and V); a sequence's cache is a table of block ids into that pool, so sequences
// grow without copying, free memory block by block, and share the blocks of a common prompt
// prefix. The pool also keeps a registry of "published" full blocks keyed by the tokens they
// hold and the prefix before them: a new sequence whose prompt starts the same way adopts
// those blocks instead of recomputing them. Freed published blocks stay reusable until the
// pool needs the memory (least recently used first).
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "common/error.h"

namespace ilm {

// Thrown when the pool has no block left (the caller may free some and retry).
class KvPoolExhausted : public Error {
 public:
  using Error::Error;
};

// The KV cache element types by the names the CLI takes (--kv-cache-dtype): "f32" (exact),
// "bf16" / "f16" (half the memory), "int8" (DType::I8: a quarter, one f32 scale per KV head
// and row; backend/backend.h). nullopt for anything else.
std::optional<DType> parse_kv_cache_dtype(std::string_view name);
// The CLI name of a KV cache element type ("f32", "bf16", "f16", "int8"); dtype_name otherwise.
std::string_view kv_cache_dtype_name(DType t);

class KvBlockPool {
 public:
  // max_blocks blocks of block_size positions, elements of `dtype` (F32, BF16, F16 or I8);
  // memory is allocated when a block is first used. A block holds every layer's K and V rows
  // (an I8 row with its scales, see KvView), so copying or sharing a block moves all of it.
  KvBlockPool(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim, int64_t block_size,
              int64_t max_blocks, DType dtype = DType::F32);

  int64_t block_size() const { return block_size_; }
  int64_t n_layers() const { return n_layers_; }
  int64_t stride() const { return stride_; }  // elements per position per layer (K or V)
  int64_t head_dim() const { return head_dim_; }
  int64_t row_bytes() const { return row_bytes_; }  // bytes per position per layer (K or V)
  int64_t max_blocks() const { return max_blocks_; }
  DType dtype() const { return dtype_; }
  uint64_t block_bytes() const { return block_bytes_; }

  // A block with reference count 1: a never-used one, else a free one, else the least
  // recently used cached (published, unreferenced) one, which leaves the registry.
  // nullopt when every block is referenced.
  std::optional<int32_t> allocate();
  // Makes sure at least `n` free blocks have their memory allocated and written (every page
  // faulted in), allocating never-used blocks up to max_blocks, so the steps that later take
  // them from allocate() never first-touch a KV page. Returns the free blocks ready now.
  int64_t prefault(int64_t n);
  void retain(int32_t b);
  void release(int32_t b);  // at 0 a published block becomes cached, others free
  int32_t ref_count(int32_t b) const { return info_[static_cast<size_t>(b)].refs; }
  std::byte* data(int32_t b);

  // Prefix registry. A block's key is the hash of the prefix before it (`parent`, 0 for the
  // first block) and its tokens; `publish` records a full block under that key (a second
  // block with the same key is not recorded), `lookup` finds and retains one, comparing the
  // stored tokens and parent so a hash collision cannot hand out wrong KV.
  static uint64_t chain_hash(uint64_t parent, std::span<const TokenId> tokens);
  void publish(int32_t b, uint64_t parent, std::span<const TokenId> tokens);
  std::optional<int32_t> lookup(uint64_t parent, std::span<const TokenId> tokens);
  bool published(int32_t b) const { return info_[static_cast<size_t>(b)].published; }

  // Copies block src's contents into block dst (copy-on-write: KvCache::fork, truncate). While
  // copies are logged (a tensor-parallel leader's pool), each copy is also recorded in order.
  void copy(int32_t dst, int32_t src);
  void log_copies(bool on) { log_copies_ = on; }
  // The (dst, src) copies recorded since the last call, oldest first.
  std::vector<std::pair<int32_t, int32_t>> take_copies() { return std::exchange(copies_, {}); }

  // Mirror use (runtime/tensor_parallel: a rank other than 0 follows rank 0's pool, block id for
  // block id): the memory of block b, allocated on first use. A mirror pool is never used through
  // allocate / retain / release / the registry; rank 0's pool makes every decision.
  std::byte* mirror_data(int32_t b);
  void mirror_copy(int32_t dst, int32_t src);

  int64_t used_blocks() const { return used_; }      // referenced by some sequence
  int64_t cached_blocks() const { return static_cast<int64_t>(lru_.size()); }
  int64_t available_blocks() const { return max_blocks_ - used_; }  // free or cached

 private:
  struct Info {
    int32_t refs = 0;
    bool published = false;
    uint64_t hash = 0, parent = 0;
    std::vector<TokenId> tokens;
    std::list<int32_t>::iterator lru_pos;  // valid while cached
  };
  int64_t n_layers_, stride_, head_dim_, row_bytes_, block_size_, max_blocks_;
  DType dtype_;
  uint64_t block_bytes_;
  int64_t used_ = 0;
  struct FreeBlock {
    void operator()(std::byte* p) const;
  };
  std::vector<std::unique_ptr<std::byte[], FreeBlock>> memory_;  // per block, allocated on first use
  std::vector<Info> info_;
  std::vector<int32_t> free_;   // unreferenced, unpublished, memory allocated
  std::list<int32_t> lru_;      // unreferenced, published: front = least recently used
  std::unordered_map<uint64_t, int32_t> registry_;
  bool log_copies_ = false;
  std::vector<std::pair<int32_t, int32_t>> copies_;
  void unpublish(int32_t b);
};

class KvCache {
 public:
  // A cache drawing on a shared pool, for a sequence of at most `capacity` positions.
  KvCache(std::shared_ptr<KvBlockPool> pool, int64_t capacity);
  // A cache with a private pool just big enough for `capacity` positions.
  KvCache(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim, int64_t capacity,
          DType dtype = DType::F32);
  ~KvCache();
  KvCache(KvCache&& other) noexcept;
  KvCache& operator=(KvCache&& other) noexcept;
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  // A view of rank 0's cache on another tensor-parallel rank (runtime/tensor_parallel): the
  // given block ids of a mirror pool (KvBlockPool::mirror_data), `length` positions filled.
  // It holds no references: it cannot grow past its blocks, fork, truncate or adopt.
  static KvCache mirror(std::shared_ptr<KvBlockPool> pool, int64_t capacity, std::span<const int32_t> blocks,
                        int64_t length);

  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  int64_t stride() const { return pool_->stride(); }
  const std::vector<int32_t>& blocks() const { return table_; }
  KvBlockPool& pool() const { return *pool_; }
  const std::shared_ptr<KvBlockPool>& shared_pool() const { return pool_; }

  // Makes room for `n` more positions. Throws ilm::Error past capacity and KvPoolExhausted
  // when the pool has no free block (the cache is unchanged then).
  void reserve_more(int64_t n);
  // Faults in, ahead of use, the memory of the blocks the next `n` positions will take
  // (KvBlockPool::prefault), so a decode step that crosses into a new block finds it ready.
  void prefault(int64_t n);
  // View of one layer covering positions [0, length).
  KvView layer(int64_t layer, int64_t length);
  // Marks `n` more positions as filled (after every layer wrote them).
  void advance(int64_t n) { length_ += n; }
  // Forgets positions >= n and frees the blocks past it. A kept partial block that others
  // share is copied first, so later writes never touch shared KV.
  void truncate(int64_t n);

  // Starts an empty cache with shared full blocks (each already retained by the caller).
  void adopt_prefix(std::span<const int32_t> blocks);
  // A second cache with the same contents: full blocks shared, the partial last one copied.
  KvCache fork() const;

 private:
  std::shared_ptr<KvBlockPool> pool_;
  int64_t capacity_ = 0, length_ = 0;
  std::vector<int32_t> table_;
  std::vector<std::byte*> ptrs_;  // base of each block in table_
  bool mirror_ = false;           // a mirror view: no references held (see mirror())
  void release_all();
  void require_owner(const char* what) const;
  int32_t copy_of(int32_t b) const;
};

}  // namespace ilm
