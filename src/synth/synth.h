#pragma once
// Synthetic InternLM2 checkpoints in the exact Hugging Face layout (config.json,
// generation_config.json, tokenizer files, bf16/f32 safetensors, sharded with an index when
// large), with random weights. Written as a stream: memory use is bounded by one chunk, not
// by the checkpoint size, so the full 7B shape (~15.5 GB) can be produced on a small machine.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

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
  // 0: 5 GB = 5 * 10^9 bytes (HF's default max_shard_size "5GB"); a checkpoint larger than
  // this is sharded greedily in state_dict order, as save_pretrained does.
  uint64_t shard_bytes = 0;
  double init_std = 0.02;    // N(0, init_std) for matrices; norm weights are 1 + N(0, 0.1)
  std::filesystem::path tokenizer_dir;  // empty: the default (shared/models/internlm2-tokenizer)
  std::filesystem::path out;
  // An existing non-empty `out` is an error unless this is set; then stale weight files
  // (*.safetensors, *.safetensors.tmp, model.safetensors.index.json) are removed and the
  // files written here are replaced. Nothing else in the directory is touched.
  bool force = false;
};

struct SynthSummary {
  uint64_t params = 0;         // elements in all tensors
  uint64_t tensor_bytes = 0;   // sum of tensor byte sizes (the index's total_size)
  uint64_t bytes_written = 0;  // every file written: safetensors (headers too), JSON, tokenizer
  uint64_t weight_files = 0;   // number of .safetensors files
  std::vector<std::string> files;  // names of the files written into `out`, in write order
};

// Writes the checkpoint; `progress(bytes_done, bytes_total)` is called now and then from the
// calling thread, counting bytes of the .safetensors files (headers included); the last
// call has bytes_done == bytes_total. Throws ilm::Error on bad options (unknown preset,
// dtype other than BF16/F32, bad rope_scaling spec, negative or non-finite init_std), a
// missing tokenizer, a non-empty `out` without `force`, too little free disk space, or an
// I/O failure (weight files already written by the failed call are then removed).
// Weights depend only on (preset shape, seed, tensor name): the same options give
// byte-identical files, and a checkpoint written sharded holds the same tensors as unsharded.
SynthSummary write_synthetic_checkpoint(const SynthOptions& opts,
                                        const std::function<void(uint64_t, uint64_t)>& progress = {});

// The default tokenizer directory: $INTERNLM_TOKENIZER_DIR, else bundled_tokenizer_dir()
// (common/data_path.h: <prefix>/share/internlm/internlm2-tokenizer for an installed binary,
// <source dir>/../shared/models/internlm2-tokenizer otherwise). Throws if it holds no tokenizer.model.
std::filesystem::path default_tokenizer_dir();

}  // namespace ilm
