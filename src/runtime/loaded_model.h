#pragma once
// Everything needed to run a checkpoint directory: config, generation defaults, mapped
// weights, tokenizer, backend and the architecture's forward pass.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "io/tensor_store.h"
#include "model/causal_lm.h"
#include "model/config.h"
#include "tokenizer/tokenizer.h"

namespace ilm {

class LoadProgress;

struct LoadOptions {
  std::string backend = "cpu";
  int threads = 0;  // 0: all hardware threads
  QuantSpec quant;  // weight format of the big matrices (none = as stored)
  Precision precision = Precision::Fast;
  // Hears the load's phases (common/progress.h): mapping shards, paging in (bytes, when the
  // weights are used in place), quantizing / repacking tensors (when they are converted).
  // Reported from the load's own loops; nullptr: silent.
  LoadProgress* progress = nullptr;
};

struct LoadedModel {
  std::filesystem::path dir;
  ModelConfig config;
  GenerationConfig generation;
  std::unique_ptr<TensorStore> store;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<CausalLM> lm;

  // Every id that ends a reply: generation_config's eos ids, config's eos id, and
  // <|im_end|> when the tokenizer has it.
  std::vector<TokenId> stop_ids() const;

  // Throws ilm::Error naming the file at fault (missing dir, config, tokenizer, tensors ...).
  static LoadedModel load(const std::filesystem::path& dir, const LoadOptions& opts = {});
};

// Loads only what `inspect` needs: config, generation config and the tensor index (no
// backend, no tokenizer).
struct CheckpointInfo {
  ModelConfig config;
  GenerationConfig generation;
  std::unique_ptr<TensorStore> store;
  static CheckpointInfo load(const std::filesystem::path& dir, LoadProgress* progress = nullptr);
};

}  // namespace ilm
