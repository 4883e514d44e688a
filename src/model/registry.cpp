#include "model/registry.h"

#include <fmt/format.h>

#include "common/error.h"
#include "model/internlm2.h"

namespace ilm {

const std::vector<ArchitectureEntry>& architectures() {
  static const std::vector<ArchitectureEntry> entries = {
      {"InternLM2ForCausalLM", "InternLM2 / InternLM2.5 (fused wqkv, GQA, RoPE with dynamic NTK)",
       [](const ModelConfig& c, const TensorStore& s, Backend& b,
          const QuantSpec& q, Communicator* comm) -> std::unique_ptr<CausalLM> {
         return std::make_unique<InternLM2>(c, s, b, q, comm);
       }},
  };
  return entries;
}

std::unique_ptr<CausalLM> create_model(const ModelConfig& cfg, const TensorStore& store,
                                       Backend& backend, const QuantSpec& quant, Communicator* comm) {
  std::vector<std::string> names;
  for (const auto& a : architectures()) {
    if (a.name == cfg.architecture) return a.create(cfg, store, backend, quant, comm);
    names.push_back(a.name);
  }
  throw Error(fmt::format("unsupported architecture '{}' (supported: {})", cfg.architecture,
                          fmt::join(names, ", ")));
}

}  // namespace ilm
