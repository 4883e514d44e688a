#pragma once
// A tensor in host memory, stored as F32, F16 or BF16, with the TensorRef a backend loads it
// from: for operator checks and tests that feed backends weights that come from no file.
#include <string>
#include <utility>
#include <vector>

#include "common/dtype.h"
#include "io/tensor_store.h"

namespace ilm {

struct HostTensor {
  std::vector<uint16_t> half;
  std::vector<float> f32;
  TensorRef ref;
  // `values` rounded to `dt` (round to nearest even for the 16-bit types).
  HostTensor(DType dt, std::vector<int64_t> shape, const std::vector<float>& values,
             std::string name = "w") {
    ref.name = std::move(name);
    ref.file = "host memory";
    ref.dtype = dt;
    ref.shape = std::move(shape);
    if (dt == DType::F32) {
      f32 = values;
      ref.data = reinterpret_cast<const std::byte*>(f32.data());
      ref.nbytes = f32.size() * 4;
    } else {
      half.reserve(values.size());
      for (float v : values) half.push_back(dt == DType::BF16 ? f32_to_bf16(v) : f32_to_f16(v));
      ref.data = reinterpret_cast<const std::byte*>(half.data());
      ref.nbytes = half.size() * 2;
    }
  }
  HostTensor(const HostTensor&) = delete;  // ref points into this object's vectors
  HostTensor& operator=(const HostTensor&) = delete;
};

}  // namespace ilm
