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
#include "parallel/communicator.h"
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
  // Tensor parallelism: the number of ranks of the MPI job this process is one of (1: none).
  int tp = 1;
};

struct LoadedModel {
  std::filesystem::path dir;
  ModelConfig config;
  GenerationConfig generation;
  // The ranks of the job (a LocalCommunicator for one process). Declared before lm, so it
  // outlives the model (rank 0's TpLeader stops the followers when destroyed).
  std::unique_ptr<Communicator> comm;
  std::unique_ptr<TensorStore> store;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<CausalLM> lm;

  // Every id that ends a reply: generation_config's eos ids, config's eos id, and
  // <|im_end|> when the tokenizer has it.
  std::vector<TokenId> stop_ids() const;
  // A rank other than 0 of a tensor-parallel job: it runs follow(*lm, *comm), nothing else.
  bool follower() const { return comm && comm->rank() != 0; }

  // Throws ilm::Error naming the file at fault (missing dir, config, tokenizer, tensors ...).
  // With opts.tp > 1 every rank loads its shard; rank 0's lm is a TpLeader
  // (runtime/tensor_parallel.h).
  static LoadedModel load(const std::filesystem::path& dir, const LoadOptions& opts = {});
};

// Loads only what `inspect` needs: config, generation config and the tensor index (no
// backend, no tokenizer).
struct CheckpointInfo {
  ModelConfig config;
  GenerationConfig generation;
  // The ranks of the job (a LocalCommunicator for one process). Declared before lm, so it
  // outlives the model (rank 0's TpLeader stops the followers when destroyed).
  std::unique_ptr<Communicator> comm;
  std::unique_ptr<TensorStore> store;
  static CheckpointInfo load(const std::filesystem::path& dir, LoadProgress* progress = nullptr);
};

}  // namespace ilm
