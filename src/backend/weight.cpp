#include <fmt/format.h>

#include "backend/backend.h"
#include "common/error.h"

namespace ilm {

const void* Weight::init_from(const TensorRef& t, std::string_view backend) {
  if (!is_weight_dtype(t.dtype))
    throw Error(fmt::format("{}: tensor '{}' has dtype {}, the {} backend needs F32, F16 or BF16", t.file,
                            t.name, dtype_name(t.dtype), backend));
  if (t.shape.empty() || t.shape.size() > 2)
    throw Error(fmt::format("{}: tensor '{}' has shape {}, expected 1 or 2 dimensions", t.file, t.name,
                            t.shape_str()));
  name = t.name;
  source_dtype = t.dtype;
  rows = t.shape.size() == 2 ? t.shape[0] : 1;
  cols = t.shape.back();
  bytes = t.nbytes;
  if (reinterpret_cast<uintptr_t>(t.data) % dtype_size(t.dtype) == 0) return t.data;
  aligned_copy_.assign(t.data, t.data + t.nbytes);  // vector storage is suitably aligned
  return aligned_copy_.data();
}

void check_token_ids(std::span<const TokenId> ids, int64_t vocab) {
  for (TokenId id : ids)
    if (id < 0 || id >= vocab)
      throw Error(fmt::format("token id {} is outside the vocabulary [0, {})", id, vocab));
}

}  // namespace ilm
