#pragma once
// Running one model over the ranks of a tensor-parallel job (--tp N under mpirun). Rank 0 owns
// everything outside the forward pass (tokenization, sampling, output) and drives: its model
// is wrapped in a TpLeader, which sends each forward call's plan (per sequence: its slot, new
// token ids, cache length and flags) to the other ranks before running it. The other ranks
// call follow(), which runs the same forward calls on their own shards and KV caches until
// rank 0's TpLeader is destroyed. Inside the forward the ranks meet at the sums after wo and
// w2 and at the logits gather (model/internlm2.cpp).
#include <memory>

#include "model/causal_lm.h"
#include "parallel/communicator.h"

namespace ilm {

class TpLeader final : public CausalLM {
 public:
  TpLeader(std::unique_ptr<CausalLM> inner, Communicator& comm) : inner_(std::move(inner)), comm_(comm) {}
  ~TpLeader() override;  // tells the followers to stop
  TpLeader(const TpLeader&) = delete;
  TpLeader& operator=(const TpLeader&) = delete;

  const ModelConfig& config() const override { return inner_->config(); }
  void forward(std::span<const TokenId> ids, KvCache& cache, std::span<float> logits, bool all_logits) override;
  // Sequence i of the batch is the followers' slot i: a slot whose cache is empty starts a new
  // sequence there; otherwise the follower's cache for the slot must have the same length.
  void forward_batch(std::span<SequenceInput> batch) override;
  KvCache new_cache(int64_t capacity) const override { return inner_->new_cache(capacity); }
  std::shared_ptr<KvBlockPool> new_kv_pool(int64_t block_size, int64_t max_blocks, DType dtype) const override {
    return inner_->new_kv_pool(block_size, max_blocks, dtype);
  }
  uint64_t decode_weight_bytes() const override { return inner_->decode_weight_bytes(); }
  std::vector<std::span<const std::byte>> decode_weight_memory() const override {
    return inner_->decode_weight_memory();
  }
  std::vector<std::string> weight_names() const override { return inner_->weight_names(); }
  std::vector<std::string> matrix_names() const override { return inner_->matrix_names(); }

 private:
  std::unique_ptr<CausalLM> inner_;
  Communicator& comm_;
};

// A rank other than 0: runs rank 0's forward calls on this rank's shard until rank 0 stops.
// Throws ilm::Error if a plan does not fit this rank's state (the ranks ran different code).
void follow(CausalLM& lm, Communicator& comm);

}  // namespace ilm
