#pragma once
// Synthetic InternLM2 checkpoints in the exact Hugging Face layout (config.json,
// generation_config.json, tokenizer files, bf16/f32 safetensors, sharded with an index when
// large), with random weights. Written as a stream: memory use is bounded by one chunk, not
// by the checkpoint size, so the full 7B shape (~15.5 GB) can be produced on a small machine.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "common/dtype.h"

namespace ilm {

struct SynthOptions {
  std::string preset = "tiny";  // tiny | small | 1_8b | 7b
  int64_t layers = 0;           // 0: the preset's
  uint64_t seed = 0;
  DType dtype = DType::BF16;    // BF16 or F32
  std::string rope_scaling = "";  // "" = preset default, "none", "dynamic:F", "linear:F"
  int64_t max_position_embeddings = 0;  // 0: the preset's
  bool tie_word_embeddings = false;
  uint64_t shard_bytes = 0;  // 0: 5 GB (HF's default); a checkpoint larger than this is sharded
  double init_std = 0.02;    // N(0, init_std) for matrices; norm weights are 1 + N(0, 0.1)
  std::filesystem::path tokenizer_dir;  // empty: the default (shared/models/internlm2-tokenizer)
  std::filesystem::path out;
};

// Writes the checkpoint; `progress(bytes_done, bytes_total)` is called now and then.
// Weights depend only on (preset shape, seed, tensor name): the same options give
// byte-identical files, and a checkpoint written sharded holds the same tensors as unsharded.
void write_synthetic_checkpoint(const SynthOptions& opts,
                                const std::function<void(uint64_t, uint64_t)>& progress = {});

// The default tokenizer directory: $INTERNLM_TOKENIZER_DIR, else
// <source dir>/../shared/models/internlm2-tokenizer. Throws if it holds no tokenizer.model.
std::filesystem::path default_tokenizer_dir();

}  // namespace ilm
