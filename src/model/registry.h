#pragma once
// Architectures by the name in config.json's architectures[0]. Adding a model family means
// one forward-pass file over the operator set and one line in registry.cpp.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "io/tensor_store.h"
#include "model/causal_lm.h"
#include "model/config.h"

namespace ilm {

class Communicator;

// quant: the weight format for the big matrices (QuantFormat::None = as stored).
// comm: the ranks of a tensor-parallel job (null: one process holds the whole model).
using ModelFactory = std::function<std::unique_ptr<CausalLM>(const ModelConfig&, const TensorStore&,
                                                             Backend&, const QuantSpec&, Communicator*)>;

struct ArchitectureEntry {
  std::string name;         // "InternLM2ForCausalLM"
  std::string description;  // human-readable
  ModelFactory create;
};

const std::vector<ArchitectureEntry>& architectures();
// Throws ilm::Error "unsupported architecture 'X' (supported: ...)".
std::unique_ptr<CausalLM> create_model(const ModelConfig& cfg, const TensorStore& store,
                                       Backend& backend, const QuantSpec& quant = {},
                                       Communicator* comm = nullptr);

}  // namespace ilm
