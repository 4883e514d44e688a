#pragma once
// `internlm quantize`: writes a copy of a checkpoint whose projection matrices and head are
// stored in int8 / int4 (backend/quant.h layout), so it loads in seconds without re-quantizing.
// The result keeps the Hugging Face layout (config.json + "quantization_config", sharded
// safetensors + index, tokenizer and generation files).
#include <cstdint>
#include <filesystem>
#include <functional>

#include "backend/quant.h"

namespace ilm {

class LoadProgress;

struct QuantizeOptions {
  std::filesystem::path model, out;
  QuantSpec quant;
  uint64_t shard_bytes = 0;  // 0: 5 GB
  bool force = false;        // replace weight files in a non-empty `out`
  int threads = 0;
  // Hears "mapping shards" and "quantizing" (bytes written of the total); nullptr: silent.
  LoadProgress* progress = nullptr;
};

struct QuantizeSummary {
  uint64_t input_bytes = 0, output_bytes = 0;
  int64_t quantized_tensors = 0, copied_tensors = 0, files = 0;
};

QuantizeSummary quantize_checkpoint(const QuantizeOptions& o,
                                    const std::function<void(uint64_t, uint64_t)>& progress = {});

}  // namespace ilm
