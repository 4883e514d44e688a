#pragma once
// The operator set. The model's forward pass is written once against this interface; a
// backend (ref, cpu, later cuda / an NPU) implements every operator, and the model code never
// changes per backend. Activations are f32 host buffers in this version; weights are opaque
// backend handles, so a backend may repack, quantize or upload them when they are loaded.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "backend/quant.h"
#include "common/dtype.h"
#include "common/precision.h"
#include "io/tensor_store.h"

namespace ilm {

using TokenId = int32_t;

// A loaded weight, owned by the backend that made it. 2-D weights are [rows, cols] with
// y = x · Wᵀ (rows = output features); 1-D weights (norms, biases) have rows == 1.
class Weight {
 public:
  virtual ~Weight() = default;
  std::string name;
  DType source_dtype = DType::F32;  // as stored in the checkpoint
  int64_t rows = 0, cols = 0;
  QuantSpec quant;  // format: None = used as stored
  uint64_t bytes = 0;  // bytes the backend reads to use the whole weight once

  // Checks that `t` is a 1-D or 2-D F32/F16/BF16 tensor (ilm::Error naming the file, tensor
  // and `backend` otherwise) and fills name, source_dtype, rows, cols and bytes from it.
  // Returns the tensor's bytes to use: the mapping itself, or — for a tensor whose offset in
  // its file is not a multiple of its element size, which safetensors allows — an aligned
  // copy kept in this weight.
  const void* init_from(const TensorRef& t, std::string_view backend);
  // The memory the backend reads to use this weight (for a bandwidth probe over exactly the
  // pages decode streams); empty where the backend does not say.
  virtual std::vector<std::span<const std::byte>> memory() const { return {}; }

 private:
  std::vector<std::byte> aligned_copy_;
};

// Throws ilm::Error for an id outside [0, vocab).
void check_token_ids(std::span<const TokenId> ids, int64_t vocab);

// One layer's slice of a sequence's paged KV cache: positions [0, length). Position p lives in
// block p / block_size, row p % block_size; each row holds n_kv_heads x head_dim values of
// `dtype`: F32, BF16 / F16 (half the memory), or I8 (a quarter): an I8 row is its stride int8
// values followed by one f32 scale per KV head (value = q x scale), so a row carries its own
// scales and a block copied or shared carries everything. Within a block, this layer's K rows
// start k_offset bytes from the block's base, its V rows v_offset bytes, rows row_bytes apart.
// A contiguous cache is one big block.
struct KvView {
  std::byte* const* blocks = nullptr;
  int64_t block_size = 0;
  int64_t k_offset = 0, v_offset = 0;  // bytes
  int64_t length = 0;
  int64_t stride = 0;     // values per row (n_kv_heads x head_dim)
  int64_t head_dim = 0;   // values per KV head: the span one I8 scale covers
  DType dtype = DType::F32;
  int64_t elem_bytes = 4;  // bytes per value (an I8 row's scales not counted)
  int64_t row_bytes = 0;   // bytes from one row to the next: stride x elem_bytes, + scales for I8
  void* k(int64_t p) const { return row(k_offset, p); }
  void* v(int64_t p) const { return row(v_offset, p); }

 private:
  void* row(int64_t offset, int64_t p) const {
    return blocks[p / block_size] + offset + (p % block_size) * row_bytes;
  }
};

// Bytes of one KV row of n_kv_heads x head_dim values of `t` (F32, BF16, F16 or I8; an I8 row
// also holds one f32 scale per KV head). The pool's block size and the KV byte budget both
// come from this.
int64_t kv_row_bytes(int64_t n_kv_heads, int64_t head_dim, DType t);

// KV head `head`'s head_dim values of a row of `kv`, as f32: the row itself for an f32 cache,
// else `scratch` (head_dim floats) filled with the widened (16-bit) or dequantized (int8:
// q x the head's scale) values. Every backend reads the cache through this, so all of them
// compute with the same numbers.
const float* kv_row_f32(const KvView& kv, const void* row, int64_t head, float* scratch);
// Stores a whole row (kv.stride f32 values) in kv's element type: 16-bit types round to
// nearest even; I8 quantizes each KV head's slice symmetrically, scale = max|v| / 127 (0 for
// an all-zero slice), q = round(v / scale), so |v - q x scale| <= scale / 2.
void kv_row_store(const KvView& kv, void* row, const float* src);
// The scale of KV head `head` in an I8 row (value = q x scale); 1 for the float types. For
// backends that widen rows their own way: the value is what kv_row_f32 multiplies by.
float kv_row_scale(const KvView& kv, const void* row, int64_t head);

// The float element types only (F32, BF16, F16; I8 needs the view's head layout): n values of
// a KV row starting at element `first`, as f32 (the row itself for an f32 cache, else
// `scratch`), and the matching store.
const float* kv_row_f32(const void* row, DType t, int64_t first, int64_t n, float* scratch);
void kv_row_store(void* row, DType t, const float* src, int64_t n);

// The per-forward rotary setting: inverse frequencies (head_dim / 2 of them, f32 as the
// official code builds them) and the divisor of positions (the factor for "linear" scaling).
// The angle of dimension d at position p is float(p) / position_divisor * inv_freq[d], in f32.
struct RopeSpec {
  std::vector<float> inv_freq;
  float position_divisor = 1.0f;
};

struct OperatorInfo {
  std::string name;
  std::string description;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  virtual int threads() const = 0;
  // The arithmetic this backend runs (common/precision.h); the ref oracle is always Exact.
  virtual Precision precision() const { return Precision::Exact; }

  // Takes a checkpoint tensor (F32, F16 or BF16). The backend may keep a pointer into the
  // mapped file (the TensorStore must outlive the returned weight). With a quantization spec,
  // a 2-D weight whose width fits the group is quantized (backend/quant.h) and its mapped
  // pages are released; every backend computes with the same quantized values.
  virtual std::unique_ptr<Weight> load_weight(const TensorRef& t, const QuantSpec& quant = {}) = 0;
  // Takes a matrix that is already quantized (read from a quantized checkpoint).
  virtual std::unique_ptr<Weight> load_quantized(const std::string& name, QuantizedMatrix q) = 0;

  // out[i, :] = table[ids[i], :]. Throws ilm::Error for ids outside the table.
  virtual void embedding(const Weight& table, std::span<const TokenId> ids, float* out) = 0;
  // y[t, :] = x[t, :] · Wᵀ (+ bias when given) for t < T. x is [T, w.cols], y is [T, w.rows].
  virtual void matmul(const float* x, int64_t T, const Weight& w, const Weight* bias, float* y) = 0;
  // y[t] = w ⊙ x[t] / sqrt(mean(x[t]²) + eps), rows of width w.cols. y may alias x.
  virtual void rmsnorm(const float* x, int64_t T, const Weight& w, float eps, float* y) = 0;
  // Rotate-half RoPE in place on `n_heads` heads of `head_dim` per row; row t starts at
  // x + t * row_stride and is at absolute position positions[t].
  virtual void rope(float* x, int64_t T, int64_t n_heads, int64_t head_dim, int64_t row_stride,
                    std::span<const int64_t> positions, const RopeSpec& spec) = 0;
  // Causal GQA attention for T new queries at positions past .. past+T-1 of one sequence
  // whose K/V (including the new ones) are in `kv`. q is [T, n_heads, head_dim]; out is
  // [T, n_heads * head_dim]; query head h uses kv head h / (n_heads / n_kv_heads).
  virtual void attention(const float* q, int64_t T, int64_t n_heads, int64_t n_kv_heads,
                         int64_t head_dim, const KvView& kv, int64_t past, float* out) = 0;
  // out = silu(gate) ⊙ up, n elements. out may alias gate.
  virtual void silu_mul(const float* gate, const float* up, int64_t n, float* out) = 0;
  // x += y, n elements.
  virtual void add(float* x, const float* y, int64_t n) = 0;

  // The operators this backend implements and the weight formats it accepts.
  virtual std::vector<OperatorInfo> operators() const = 0;
  virtual std::vector<std::string> weight_formats() const = 0;
};

// Backends by name ("ref", ...). threads = 0: one per hardware thread. `precision` picks the
// fast backends' arithmetic (ref is exact either way).
std::unique_ptr<Backend> make_backend(std::string_view name, int threads = 0, Precision precision = Precision::Fast);
std::vector<std::string> backend_names();

}  // namespace ilm
