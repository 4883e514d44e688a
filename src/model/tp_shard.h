#pragma once
// This rank's part of the model under tensor parallelism (Megatron sharding of the unmodified
// checkpoint), and the slicing of checkpoint tensors into it:
//   wqkv   rows of whole KV-head groups (a KV head with its G query heads: contiguous rows)
//   wo     the matching input columns (repacked into an owned copy)
//   w1/w3  rows of the intermediate dimension;  w2 the matching columns (owned copy)
//   output rows of the vocabulary (logits are gathered to rank 0)
// Embeddings and norms are replicated. Row slices of a row-major matrix are contiguous, so
// they are used in place from the mapping; column slices are copied once at load and the
// mapped pages released, so each rank keeps about 1/N of every matrix resident.
#include <cstdint>
#include <memory>
#include <vector>

#include "backend/quant.h"
#include "io/tensor_store.h"
#include "model/config.h"

namespace ilm {

struct TpShard {
  int rank = 0, size = 1;
  int64_t kv_begin = 0, kv_end = 0;      // KV heads
  int64_t ffn_begin = 0, ffn_end = 0;    // rows of w1 / w3, columns of w2
  int64_t vocab = 0, vocab_begin = 0, vocab_end = 0;  // rows of the output head (of vocab)
  bool sharded() const { return size > 1; }
  int64_t vocab_rows(int r) const;  // rank r's vocabulary rows (the gather's counts)

  // Throws ilm::Error when `size` does not divide the KV heads or the intermediate size, or
  // when a quantization group would straddle two ranks.
  static TpShard of(const ModelConfig& cfg, int rank, int size, const QuantSpec& quant);
};

// Rows [r0, r1) of a 1-D or 2-D tensor, in place (a 1-D tensor's elements count as rows).
TensorRef slice_rows(const TensorRef& t, int64_t r0, int64_t r1);

// A tensor held in owned memory (a column slice), with the TensorRef a backend loads it from.
struct OwnedTensor {
  std::vector<std::byte> bytes;
  TensorRef ref;
};
// Columns [c0, c1) of a 2-D tensor, copied (row by row) into owned memory.
std::unique_ptr<OwnedTensor> slice_columns(const TensorRef& t, int64_t c0, int64_t c1);

// Rows [r0, r1) and columns [c0, c1) of a quantized matrix, copied; columns must start and
// end on group boundaries (int4 packs within 32-weight blocks, so groups slice cleanly).
QuantizedMatrix slice_quantized(const QuantizedMatrix& q, int64_t r0, int64_t r1, int64_t c0, int64_t c1);

}  // namespace ilm
