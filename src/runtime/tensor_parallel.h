#pragma once
// Running one model over the ranks of a tensor-parallel job (--tp N under mpirun). Rank 0 owns
// everything outside the forward pass (tokenization, scheduling, sampling, output) and drives:
// its model is wrapped in a TpLeader, which sends each forward call's plan to the other ranks
// before running it. The other ranks call follow(), which runs the same forward calls on their
// own shards until rank 0's TpLeader is destroyed. Inside the forward the ranks meet at the
// sums after wo and w2 and at the logits gather (model/internlm2.cpp).
//
// KV memory is mirrored block for block: every KvBlockPool rank 0 runs a forward over gets a
// twin on each other rank (same block count and size, that rank's KV heads), and a plan gives,
// per sequence, its block table (block ids in rank 0's pool) and cached length, plus the block
// copies rank 0's pools made since the previous plan (copy-on-write of KvCache::fork /
// truncate). A follower applies the copies, then runs each sequence on a view of those blocks,
// so its KV holds what rank 0's does for the same ids without deciding anything itself: the
// serving engine's allocation, prefix sharing, forks, preemption and frees all happen on rank 0
// alone (a prefix-cache hit adopts blocks whose twins the followers filled when rank 0 did).
#include <memory>
#include <vector>

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
  // Reserves each cache's blocks for its new tokens here, then sends the plan (see above).
  void forward_batch(std::span<SequenceInput> batch) override;
  // Tells the followers rank 0 is alive while no forward runs (a follower waiting for the next
  // plan ends the job after INTERNLM_TP_TIMEOUT seconds without one): the serving engine calls
  // it when idle, every heartbeat_seconds().
  void heartbeat();
  static double heartbeat_seconds();
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
  struct Mirrored {
    std::weak_ptr<KvBlockPool> pool;
    const KvBlockPool* address;
    int64_t id;
  };
  std::unique_ptr<CausalLM> inner_;
  Communicator& comm_;
  std::vector<Mirrored> pools_;  // rank 0's pools the followers mirror
  int64_t next_pool_id_ = 0;
};

// A rank other than 0: runs rank 0's forward calls on this rank's shard and mirror pools until
// rank 0 stops. Throws ilm::Error if a plan does not fit this rank's state (the ranks ran
// different code).
void follow(CausalLM& lm, Communicator& comm);

}  // namespace ilm
