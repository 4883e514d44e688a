#include "runtime/tensor_parallel.h"

#include <algorithm>
#include <cstdio>
#include <unordered_map>

#include <fmt/format.h>

#include "common/error.h"

namespace ilm {
namespace {

// A plan is a header {kind, sequences, body length}, then for a forward the body, all int64:
//   pools dropped:  count, then their ids (rank 0 destroyed them)
//   pools created:  count, then {id, block size, blocks, KV dtype} each
//   block copies:   count, then {pool, dst, src} each, in the order rank 0 made them
//   sequences:      {pool, capacity, cache length, new tokens, all_logits, no_logits, rope_length,
//                    blocks} each
//   then every sequence's block ids, then every sequence's new token ids.
enum Kind : int64_t { kStop = 0, kForward = 1, kAlive = 2 };
constexpr size_t kHeader = 3, kPerSequence = 8;

void broadcast(Communicator& comm, std::vector<int64_t>& v) {
  comm.broadcast(std::as_writable_bytes(std::span<int64_t>(v)), 0);
}

// Reads a follower's plan body front to back, refusing to run past its end.
class Reader {
 public:
  Reader(const std::vector<int64_t>& v, int rank) : v_(v), rank_(rank) {}
  int64_t next() {
    if (pos_ >= v_.size()) throw malformed();
    return v_[pos_++];
  }
  int64_t count() {
    const int64_t n = next();
    if (n < 0 || static_cast<uint64_t>(n) > v_.size() - pos_) throw malformed();
    return n;
  }
  Error malformed() const { return Error(fmt::format("tensor parallel rank {}: malformed plan from rank 0", rank_)); }

 private:
  const std::vector<int64_t>& v_;
  size_t pos_ = 0;
  int rank_;
};

}  // namespace

TpLeader::~TpLeader() {
  std::vector<int64_t> header = {kStop, 0, 0};
  try {
    broadcast(comm_, header);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: stopping the tensor-parallel ranks: %s\n", e.what());
  }
}

void TpLeader::heartbeat() {
  std::vector<int64_t> header = {kAlive, 0, 0};
  broadcast(comm_, header);
}

double TpLeader::heartbeat_seconds() { return std::max(0.05, collective_timeout_seconds() / 4); }

void TpLeader::forward(std::span<const TokenId> ids, KvCache& cache, std::span<float> logits, bool all_logits) {
  SequenceInput one{ids, &cache, logits, all_logits};
  forward_batch(std::span<SequenceInput>(&one, 1));
}

void TpLeader::forward_batch(std::span<SequenceInput> batch) {
  // The blocks this forward writes are taken now, so the plan can name them (the model's own
  // reserve_more then finds them there). Anything refused here is refused before the plan goes.
  for (const SequenceInput& in : batch) {
    if (!in.cache) throw Error("forward: no KV cache");
    for (const SequenceInput& other : batch)
      if (&other != &in && other.cache == in.cache) throw Error("forward: a KV cache appears twice in one batch");
  }
  for (const SequenceInput& in : batch) {
    in.cache->reserve_more(static_cast<int64_t>(in.ids.size()));
  }
  std::vector<int64_t> dropped, created, copies;
  std::erase_if(pools_, [&](const Mirrored& m) {
    if (!m.pool.expired()) return false;
    dropped.push_back(m.id);
    return true;
  });
  std::vector<int64_t> seq_pool(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    const std::shared_ptr<KvBlockPool>& pool = batch[i].cache->shared_pool();
    auto it = std::find_if(pools_.begin(), pools_.end(), [&](const Mirrored& m) { return m.address == pool.get(); });
    if (it == pools_.end()) {
      pool->log_copies(true);  // copies made before this carried no computed KV
      (void)pool->take_copies();
      pools_.push_back({pool, pool.get(), next_pool_id_++});
      it = pools_.end() - 1;
      created.insert(created.end(), {it->id, pool->block_size(), pool->max_blocks(),
                                     static_cast<int64_t>(pool->dtype())});
    }
    seq_pool[i] = it->id;
  }
  for (const Mirrored& m : pools_) {
    auto pool = m.pool.lock();
    if (!pool) continue;
    for (const auto& [dst, src] : pool->take_copies()) copies.insert(copies.end(), {m.id, dst, src});
  }

  std::vector<int64_t> body;
  body.push_back(static_cast<int64_t>(dropped.size()));
  body.insert(body.end(), dropped.begin(), dropped.end());
  body.push_back(static_cast<int64_t>(created.size() / 4));
  body.insert(body.end(), created.begin(), created.end());
  body.push_back(static_cast<int64_t>(copies.size() / 3));
  body.insert(body.end(), copies.begin(), copies.end());
  for (size_t i = 0; i < batch.size(); ++i) {
    const SequenceInput& in = batch[i];
    body.insert(body.end(), {seq_pool[i], in.cache->capacity(), in.cache->length(),
                             static_cast<int64_t>(in.ids.size()), in.all_logits ? 1 : 0, in.no_logits ? 1 : 0,
                             in.rope_length, static_cast<int64_t>(in.cache->blocks().size())});
  }
  for (const auto& in : batch) body.insert(body.end(), in.cache->blocks().begin(), in.cache->blocks().end());
  for (const auto& in : batch) body.insert(body.end(), in.ids.begin(), in.ids.end());
  std::vector<int64_t> header = {kForward, static_cast<int64_t>(batch.size()), static_cast<int64_t>(body.size())};
  broadcast(comm_, header);
  broadcast(comm_, body);
  inner_->forward_batch(batch);
}

void follow(CausalLM& lm, Communicator& comm) {
  const int64_t V = lm.config().vocab_size;
  std::unordered_map<int64_t, std::shared_ptr<KvBlockPool>> pools;  // rank 0's, by id
  std::vector<std::vector<float>> logits;
  std::vector<TokenId> ids;
  for (;;) {
    std::vector<int64_t> header(kHeader);
    broadcast(comm, header);
    if (header[0] == kStop) return;
    if (header[0] == kAlive) continue;
    if (header[0] != kForward || header[1] < 0 || header[2] < 0)
      throw Error(fmt::format("tensor parallel rank {}: malformed plan from rank 0", comm.rank()));
    const auto n = static_cast<size_t>(header[1]);
    std::vector<int64_t> body(static_cast<size_t>(header[2]));
    broadcast(comm, body);
    Reader r(body, comm.rank());
    auto pool_of = [&](int64_t id) -> const std::shared_ptr<KvBlockPool>& {
      auto it = pools.find(id);
      if (it == pools.end()) throw r.malformed();
      return it->second;
    };
    for (int64_t k = r.count(); k > 0; --k) pools.erase(r.next());
    for (int64_t k = r.count(); k > 0; --k) {
      const int64_t id = r.next(), block_size = r.next(), blocks = r.next(), dtype = r.next();
      pools[id] = lm.new_kv_pool(block_size, blocks, static_cast<DType>(dtype));
    }
    for (int64_t k = r.count(); k > 0; --k) {
      const int64_t id = r.next(), dst = r.next(), src = r.next();
      pool_of(id)->mirror_copy(static_cast<int32_t>(dst), static_cast<int32_t>(src));
    }
    if (n > body.size() / kPerSequence) throw r.malformed();
    std::vector<int64_t> seq(n * kPerSequence);
    for (int64_t& v : seq) v = r.next();
    std::vector<KvCache> caches;
    caches.reserve(n);  // the batch points into it
    for (size_t i = 0; i < n; ++i) {
      const int64_t* d = seq.data() + i * kPerSequence;
      if (d[3] < 0 || d[7] < 0 || d[7] > static_cast<int64_t>(body.size())) throw r.malformed();
      std::vector<int32_t> table(static_cast<size_t>(d[7]));
      for (int32_t& b : table) b = static_cast<int32_t>(r.next());
      caches.push_back(KvCache::mirror(pool_of(d[0]), d[1], table, d[2]));
    }
    ids.clear();
    for (size_t i = 0; i < n; ++i)
      for (int64_t t = seq[i * kPerSequence + 3]; t > 0; --t) ids.push_back(static_cast<TokenId>(r.next()));
    std::vector<SequenceInput> batch(n);
    logits.resize(n);
    size_t next_id = 0;
    for (size_t i = 0; i < n; ++i) {
      const int64_t* d = seq.data() + i * kPerSequence;
      const int64_t T = d[3];
      SequenceInput& in = batch[i];
      in.ids = std::span<const TokenId>(ids).subspan(next_id, static_cast<size_t>(T));
      next_id += static_cast<size_t>(T);
      in.cache = &caches[i];
      in.all_logits = d[4] != 0;
      in.no_logits = d[5] != 0;
      in.rope_length = d[6];
      logits[i].resize(static_cast<size_t>(in.no_logits ? 0 : (in.all_logits ? T : 1) * V));
      in.logits = logits[i];
    }
    lm.forward_batch(batch);
  }
}

}  // namespace ilm
