#include "model/kv_cache.h"

#include <stdlib.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include <fmt/format.h>

namespace ilm {

// ---------------------------------------------------------------------------------------------
// KvBlockPool

namespace {
constexpr size_t kHugePage = size_t{2} << 20;

// Block memory. Attention reads one KV head's slice of every position, rows a few KB apart,
// so a long context touches a new 4 KB page per key: blocks of 2 MB or more are aligned to
// and advised as transparent huge pages, which takes TLB misses off that path.
std::byte* allocate_block(size_t bytes) {
  const bool huge = bytes >= kHugePage;
  const size_t align = huge ? kHugePage : 64;
  // Rounded to pages, not to huge pages: the tail of a 3 MB block stays in small pages rather
  // than wasting a third of the memory the KV budget counts.
  const size_t rounded = (bytes + 4095) / 4096 * 4096;
  void* p = nullptr;  // posix_memalign: unlike aligned_alloc, any size is valid
  if (::posix_memalign(&p, align, rounded) != 0) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  if (huge) (void)::madvise(p, rounded, MADV_HUGEPAGE);  // a hint: fine if refused
#endif
  return static_cast<std::byte*>(p);
}
}  // namespace

void KvBlockPool::FreeBlock::operator()(std::byte* p) const { std::free(p); }

std::optional<DType> parse_kv_cache_dtype(std::string_view name) {
  if (name == "f32") return DType::F32;
  if (name == "bf16") return DType::BF16;
  if (name == "f16") return DType::F16;
  if (name == "int8") return DType::I8;
  return std::nullopt;
}

std::string_view kv_cache_dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
    case DType::I8: return "int8";
    default: return dtype_name(t);
  }
}

KvBlockPool::KvBlockPool(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim,
                         int64_t block_size, int64_t max_blocks, DType dtype)
    : n_layers_(n_layers),
      stride_(n_kv_heads * head_dim),
      head_dim_(head_dim),
      row_bytes_(0),
      block_size_(block_size),
      max_blocks_(max_blocks),
      dtype_(dtype),
      block_bytes_(0) {
  if (block_size <= 0 || max_blocks <= 0 || max_blocks > INT32_MAX)
    throw Error(fmt::format("KV pool: invalid block size {} or block count {}", block_size, max_blocks));
  if (dtype != DType::F32 && dtype != DType::BF16 && dtype != DType::F16 && dtype != DType::I8)
    throw Error(fmt::format("KV pool: element type {} is not f32, bf16, f16 or int8", dtype_name(dtype)));
  row_bytes_ = kv_row_bytes(n_kv_heads, head_dim, dtype);
  block_bytes_ = static_cast<uint64_t>(n_layers * 2 * block_size * row_bytes_);
  info_.reserve(static_cast<size_t>(std::min<int64_t>(max_blocks, 1 << 16)));
}

std::optional<int32_t> KvBlockPool::allocate() {
  int32_t b = -1;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (static_cast<int64_t>(info_.size()) < max_blocks_) {
    b = static_cast<int32_t>(info_.size());
    info_.emplace_back();
    memory_.emplace_back(allocate_block(block_bytes_));
  } else if (!lru_.empty()) {
    b = lru_.front();
    lru_.pop_front();
    unpublish(b);
  } else {
    return std::nullopt;
  }
  info_[static_cast<size_t>(b)].refs = 1;
  ++used_;
  return b;
}

int64_t KvBlockPool::prefault(int64_t n) {
  while (static_cast<int64_t>(free_.size()) < n && static_cast<int64_t>(info_.size()) < max_blocks_) {
    std::byte* p = allocate_block(block_bytes_);
    memory_.emplace_back(p);
    std::memset(p, 0, block_bytes_);  // writes every page: faulted in now, not in a decode step
    info_.emplace_back();
    free_.push_back(static_cast<int32_t>(info_.size() - 1));
  }
  return static_cast<int64_t>(free_.size());
}

void KvBlockPool::retain(int32_t b) {
  Info& in = info_[static_cast<size_t>(b)];
  if (in.refs == 0) {  // a cached block comes back into use
    lru_.erase(in.lru_pos);
    ++used_;
  }
  ++in.refs;
}

void KvBlockPool::release(int32_t b) {
  Info& in = info_[static_cast<size_t>(b)];
  if (in.refs <= 0) throw Error("KV pool: block released more often than retained");
  if (--in.refs > 0) return;
  --used_;
  if (in.published) {
    in.lru_pos = lru_.insert(lru_.end(), b);
  } else {
    free_.push_back(b);
  }
}

std::byte* KvBlockPool::data(int32_t b) { return memory_[static_cast<size_t>(b)].get(); }

void KvBlockPool::copy(int32_t dst, int32_t src) {
  std::memcpy(data(dst), data(src), block_bytes_);
  if (log_copies_) copies_.emplace_back(dst, src);
}

std::byte* KvBlockPool::mirror_data(int32_t b) {
  if (b < 0 || b >= max_blocks_)
    throw Error(fmt::format("KV pool: block {} is outside the pool of {} blocks", b, max_blocks_));
  const auto i = static_cast<size_t>(b);
  if (memory_.size() <= i) memory_.resize(i + 1);
  if (!memory_[i]) memory_[i].reset(allocate_block(block_bytes_));
  return memory_[i].get();
}

void KvBlockPool::mirror_copy(int32_t dst, int32_t src) {
  if (dst == src) return;
  std::byte* to = mirror_data(dst);
  std::memcpy(to, mirror_data(src), block_bytes_);
}

uint64_t KvBlockPool::chain_hash(uint64_t parent, std::span<const TokenId> tokens) {
  // FNV-1a over the parent hash and the token ids, then a final avalanche (splitmix64).
  uint64_t h = 1469598103934665603ull ^ parent;
  auto mix = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xff;
      h *= 1099511628211ull;
    }
  };
  mix(parent);
  for (TokenId t : tokens) mix(static_cast<uint32_t>(t));
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h == 0 ? 1 : h;  // 0 is the parent of a first block
}

void KvBlockPool::publish(int32_t b, uint64_t parent, std::span<const TokenId> tokens) {
  Info& in = info_[static_cast<size_t>(b)];
  if (in.published || static_cast<int64_t>(tokens.size()) != block_size_) return;
  const uint64_t h = chain_hash(parent, tokens);
  if (registry_.count(h)) return;  // an identical block is already published
  in.published = true;
  in.hash = h;
  in.parent = parent;
  in.tokens.assign(tokens.begin(), tokens.end());
  registry_.emplace(h, b);
}

std::optional<int32_t> KvBlockPool::lookup(uint64_t parent, std::span<const TokenId> tokens) {
  auto it = registry_.find(chain_hash(parent, tokens));
  if (it == registry_.end()) return std::nullopt;
  const Info& in = info_[static_cast<size_t>(it->second)];
  if (in.parent != parent || !std::equal(tokens.begin(), tokens.end(), in.tokens.begin(), in.tokens.end()))
    return std::nullopt;
  retain(it->second);
  return it->second;
}

void KvBlockPool::unpublish(int32_t b) {
  Info& in = info_[static_cast<size_t>(b)];
  if (!in.published) return;
  registry_.erase(in.hash);
  in.published = false;
  in.tokens.clear();
}

// ---------------------------------------------------------------------------------------------
// KvCache

namespace {
constexpr int64_t kPrivateBlockSize = 16;
int64_t blocks_for(int64_t positions, int64_t block_size) {
  return (positions + block_size - 1) / block_size;
}
}  // namespace

KvCache::KvCache(std::shared_ptr<KvBlockPool> pool, int64_t capacity)
    : pool_(std::move(pool)), capacity_(capacity) {}

KvCache::KvCache(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim, int64_t capacity,
                 DType dtype)
    : pool_(std::make_shared<KvBlockPool>(n_layers, n_kv_heads, head_dim, kPrivateBlockSize,
                                          std::max<int64_t>(1, blocks_for(capacity, kPrivateBlockSize)),
                                          dtype)),
      capacity_(capacity) {}

KvCache::~KvCache() { release_all(); }

KvCache::KvCache(KvCache&& other) noexcept
    : pool_(std::move(other.pool_)),
      capacity_(other.capacity_),
      length_(other.length_),
      table_(std::move(other.table_)),
      ptrs_(std::move(other.ptrs_)),
      mirror_(other.mirror_) {
  other.length_ = 0;
  other.table_.clear();
  other.ptrs_.clear();
}

KvCache& KvCache::operator=(KvCache&& other) noexcept {
  if (this != &other) {
    release_all();
    pool_ = std::move(other.pool_);
    capacity_ = other.capacity_;
    length_ = other.length_;
    table_ = std::move(other.table_);
    ptrs_ = std::move(other.ptrs_);
    mirror_ = other.mirror_;
    other.length_ = 0;
    other.table_.clear();
    other.ptrs_.clear();
  }
  return *this;
}

KvCache KvCache::mirror(std::shared_ptr<KvBlockPool> pool, int64_t capacity, std::span<const int32_t> blocks,
                       int64_t length) {
  const int64_t room = static_cast<int64_t>(blocks.size()) * pool->block_size();
  if (length < 0 || length > room || room > capacity + pool->block_size() - 1)
    throw Error(fmt::format("KV cache mirror: {} blocks of {} positions cannot hold {} positions of a cache of {}",
                            blocks.size(), pool->block_size(), length, capacity));
  KvCache c(std::move(pool), capacity);
  c.mirror_ = true;
  for (int32_t b : blocks) {
    c.ptrs_.push_back(c.pool_->mirror_data(b));
    c.table_.push_back(b);
  }
  c.length_ = length;
  return c;
}

void KvCache::require_owner(const char* what) const {
  if (mirror_) throw Error(fmt::format("KV cache: a mirror view cannot {}", what));
}

void KvCache::release_all() {
  if (pool_ && !mirror_)
    for (int32_t b : table_) pool_->release(b);
  table_.clear();
  ptrs_.clear();
}

void KvCache::reserve_more(int64_t n) {
  const int64_t need = length_ + n;
  if (need > capacity_)
    throw Error(fmt::format("sequence of {} tokens exceeds the context limit of {} tokens", need,
                            capacity_));
  const int64_t want = blocks_for(need, pool_->block_size());
  const size_t had = table_.size();
  if (static_cast<int64_t>(table_.size()) < want) require_owner("grow past the blocks rank 0 gave it");
  while (static_cast<int64_t>(table_.size()) < want) {
    auto b = pool_->allocate();
    if (!b) {
      while (table_.size() > had) {  // leave the cache as it was
        pool_->release(table_.back());
        table_.pop_back();
        ptrs_.pop_back();
      }
      throw KvPoolExhausted(fmt::format("KV cache is full ({} blocks of {} tokens in use)",
                                        pool_->used_blocks(), pool_->block_size()));
    }
    table_.push_back(*b);
    ptrs_.push_back(pool_->data(*b));
  }
}

void KvCache::prefault(int64_t n) {
  const int64_t need = blocks_for(std::min(length_ + n, capacity_), pool_->block_size()) -
                       static_cast<int64_t>(table_.size());
  if (need > 0) pool_->prefault(need);
}

KvView KvCache::layer(int64_t layer, int64_t length) {
  const int64_t rows_bytes = pool_->block_size() * pool_->row_bytes();  // one layer's K (or V)
  KvView v;
  v.blocks = ptrs_.data();
  v.block_size = pool_->block_size();
  v.k_offset = layer * 2 * rows_bytes;
  v.v_offset = v.k_offset + rows_bytes;
  v.length = length;
  v.stride = pool_->stride();
  v.head_dim = pool_->head_dim();
  v.dtype = pool_->dtype();
  v.elem_bytes = static_cast<int64_t>(dtype_size(v.dtype));
  v.row_bytes = pool_->row_bytes();
  return v;
}

int32_t KvCache::copy_of(int32_t b) const {
  auto c = pool_->allocate();
  if (!c) throw KvPoolExhausted("KV cache is full (no block to copy a shared block into)");
  pool_->copy(*c, b);
  return *c;
}

void KvCache::truncate(int64_t n) {
  require_owner("truncate");
  n = std::clamp<int64_t>(n, 0, length_);
  const int64_t keep = blocks_for(n, pool_->block_size());
  while (static_cast<int64_t>(table_.size()) > keep) {
    pool_->release(table_.back());
    table_.pop_back();
    ptrs_.pop_back();
  }
  length_ = n;
  // A partial last block will be written again: it must be this cache's own.
  if (n % pool_->block_size() != 0) {
    const int32_t last = table_.back();
    if (pool_->ref_count(last) > 1 || pool_->published(last)) {
      const int32_t mine = copy_of(last);
      pool_->release(last);
      table_.back() = mine;
      ptrs_.back() = pool_->data(mine);
    }
  }
}

void KvCache::adopt_prefix(std::span<const int32_t> blocks) {
  require_owner("adopt blocks");
  if (length_ != 0 || !table_.empty()) throw Error("adopt_prefix: the cache is not empty");
  const int64_t n = static_cast<int64_t>(blocks.size()) * pool_->block_size();
  if (n > capacity_) throw Error("adopt_prefix: prefix longer than the cache's capacity");
  for (int32_t b : blocks) {
    table_.push_back(b);
    ptrs_.push_back(pool_->data(b));
  }
  length_ = n;
}

KvCache KvCache::fork() const {
  require_owner("fork");
  KvCache c(pool_, capacity_);
  const int64_t full = length_ / pool_->block_size();
  for (int64_t i = 0; i < static_cast<int64_t>(table_.size()); ++i) {
    const int32_t b = table_[static_cast<size_t>(i)];
    int32_t mine = b;
    if (i < full) {
      pool_->retain(b);
    } else {
      mine = c.copy_of(b);  // the partial block: the fork will write into it
    }
    c.table_.push_back(mine);
    c.ptrs_.push_back(pool_->data(mine));
  }
  c.length_ = length_;
  return c;
}

}  // namespace ilm
