#pragma once
// What every architecture provides to the runtime: a forward pass over new tokens of one
// sequence, on top of that sequence's KV cache.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"
#include "model/kv_cache.h"

namespace ilm {

// One sequence's part of a batched forward.
struct SequenceInput {
  std::span<const TokenId> ids;  // new tokens, at positions cache->length() ...
  KvCache* cache = nullptr;      // this sequence's cache (each cache at most once per batch)
  std::span<float> logits;       // [ids.size(), vocab] if all_logits, else [1, vocab]
  bool all_logits = false;
  // The sequence length the RoPE base is computed from, when larger than cache length + new
  // tokens: a prompt prefilled in several chunks passes its whole length, so every chunk uses
  // the base one forward over the whole prompt would (dynamic NTK).
  int64_t rope_length = 0;
  bool no_logits = false;  // a prompt chunk whose logits nobody reads: skip the head
};

class CausalLM {
 public:
  virtual ~CausalLM() = default;
  virtual const ModelConfig& config() const = 0;

  // Runs `ids` at positions cache.length() ... and appends their keys and values to the
  // cache. Writes logits ([ids.size(), vocab] if all_logits, else [1, vocab] for the last
  // position) into `logits`.
  virtual void forward(std::span<const TokenId> ids, KvCache& cache, std::span<float> logits,
                       bool all_logits) = 0;

  // Runs several sequences in one pass: their tokens share every matmul (each weight is read
  // once per pass, not once per sequence), while RoPE and attention stay per sequence. Gives
  // each sequence the same logits as forward() on it alone.
  virtual void forward_batch(std::span<SequenceInput> batch) = 0;

  // A fresh, empty cache for one sequence of at most `capacity` tokens.
  virtual KvCache new_cache(int64_t capacity) const = 0;
  // The same with K and V held as `dtype` (F32, BF16, F16 or I8; --kv-cache-dtype of run,
  // logits and bench): F32 is new_cache(capacity), the others a private pool of new_kv_pool.
  KvCache new_cache_as(int64_t capacity, DType dtype) const;
  // A block pool that caches for many sequences draw on (KvCache(pool, capacity)), holding
  // K and V as `dtype` (F32, BF16, F16 or I8).
  virtual std::shared_ptr<KvBlockPool> new_kv_pool(int64_t block_size, int64_t max_blocks,
                                                   DType dtype = DType::F32) const = 0;
  // KV bytes one cached position takes (all layers, K and V) in elements of `dtype`, an I8
  // cache's per-head scales included (exactly what a KvBlockPool block holds per position).
  uint64_t kv_bytes_per_token(DType dtype = DType::F32) const;

  // Weight bytes one decode step reads (in the loaded formats): the bandwidth roofline's
  // numerator, without the KV cache.
  virtual uint64_t decode_weight_bytes() const = 0;
  // The memory of the weights a decode step reads whole (every matrix and norm, the head), as
  // the backend holds them: what `bench` streams to measure the bandwidth decode can reach.
  virtual std::vector<std::span<const std::byte>> decode_weight_memory() const { return {}; }

  // Names of the checkpoint tensors the model uses (to spot unexpected extra tensors).
  virtual std::vector<std::string> weight_names() const = 0;
  // The 2-D weights a quantization format applies to (projections and head).
  virtual std::vector<std::string> matrix_names() const = 0;

  // The longest sequence the model is configured for: max_position_embeddings, times the
  // rope scaling factor when one is set.
  int64_t context_limit() const;
};

}  // namespace ilm
