#include "runtime/tensor_parallel.h"

#include <cstdio>
#include <map>

#include <fmt/format.h>

#include "common/error.h"

namespace ilm {
namespace {

// A plan is a header {kind, sequences, ids} then, for a forward, per sequence
// {slot, capacity, cache length, new tokens, all_logits, no_logits, rope_length, KV dtype} and
// the ids.
enum Kind : int64_t { kStop = 0, kForward = 1 };
constexpr size_t kHeader = 3, kPerSequence = 8;

void broadcast(Communicator& comm, std::vector<int64_t>& v) {
  comm.broadcast(std::as_writable_bytes(std::span<int64_t>(v)), 0);
}

}  // namespace

TpLeader::~TpLeader() {
  std::vector<int64_t> header = {kStop, 0, 0};
  try {
    broadcast(comm_, header);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: stopping the tensor-parallel ranks: %s\n", e.what());
  }
}

void TpLeader::forward(std::span<const TokenId> ids, KvCache& cache, std::span<float> logits, bool all_logits) {
  SequenceInput one{ids, &cache, logits, all_logits};
  forward_batch(std::span<SequenceInput>(&one, 1));
}

void TpLeader::forward_batch(std::span<SequenceInput> batch) {
  std::vector<int64_t> header = {kForward, static_cast<int64_t>(batch.size()), 0};
  std::vector<int64_t> body;
  for (size_t i = 0; i < batch.size(); ++i) {
    const SequenceInput& in = batch[i];
    if (!in.cache) throw Error("forward: no KV cache");
    body.insert(body.end(), {static_cast<int64_t>(i), in.cache->capacity(), in.cache->length(),
                             static_cast<int64_t>(in.ids.size()), in.all_logits ? 1 : 0, in.no_logits ? 1 : 0,
                             in.rope_length, static_cast<int64_t>(in.cache->pool().dtype())});
    header[2] += static_cast<int64_t>(in.ids.size());
  }
  for (const auto& in : batch) body.insert(body.end(), in.ids.begin(), in.ids.end());
  broadcast(comm_, header);
  broadcast(comm_, body);
  inner_->forward_batch(batch);
}

void follow(CausalLM& lm, Communicator& comm) {
  const int64_t V = lm.config().vocab_size;
  std::map<int64_t, KvCache> caches;  // by slot
  std::vector<std::vector<float>> logits;
  std::vector<TokenId> ids;
  for (;;) {
    std::vector<int64_t> header(kHeader);
    broadcast(comm, header);
    if (header[0] == kStop) return;
    if (header[0] != kForward || header[1] < 0 || header[2] < 0)
      throw Error(fmt::format("tensor parallel rank {}: malformed plan from rank 0", comm.rank()));
    const auto n = static_cast<size_t>(header[1]);
    std::vector<int64_t> body(n * kPerSequence + static_cast<size_t>(header[2]));
    broadcast(comm, body);
    ids.assign(body.begin() + static_cast<std::ptrdiff_t>(n * kPerSequence), body.end());
    std::vector<SequenceInput> batch(n);
    logits.resize(n);
    size_t next_id = 0;
    for (size_t i = 0; i < n; ++i) {
      const int64_t* d = body.data() + i * kPerSequence;
      const int64_t slot = d[0], capacity = d[1], past = d[2], T = d[3];
      if (past == 0) caches.insert_or_assign(slot, lm.new_cache_as(capacity, static_cast<DType>(d[7])));
      auto it = caches.find(slot);
      if (it == caches.end() || it->second.length() != past)
        throw Error(fmt::format("tensor parallel rank {}: slot {} holds {} positions, rank 0 expects {}", comm.rank(),
                                slot, it == caches.end() ? 0 : it->second.length(), past));
      SequenceInput& in = batch[i];
      in.ids = std::span<const TokenId>(ids).subspan(next_id, static_cast<size_t>(T));
      next_id += static_cast<size_t>(T);
      in.cache = &it->second;
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
