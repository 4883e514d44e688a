#pragma once
// A test hook: INTERNLM_FAULT_INJECT=OP:REL (e.g. matmul:1e-2) makes `internlm validate` wrap
// the backend under test so that every output of operator OP is perturbed by up to REL times
// the output's largest magnitude (deterministic signs). It proves the operator and precision
// checks catch a numeric error. Only validate honours it; the report says when it is active.
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "backend/backend.h"

namespace ilm::validate {

struct FaultSpec {
  std::string op;  // an operator name of Backend::operators()
  double rel = 0;
  std::string str() const;
};

// "matmul:1e-2" -> {matmul, 0.01}; throws ilm::Error for anything else.
FaultSpec parse_fault(std::string_view s);
// From INTERNLM_FAULT_INJECT (nullopt when unset or empty).
std::optional<FaultSpec> fault_from_env();

// The backend `inner` with `fault` applied to its outputs (same name, same weights).
std::unique_ptr<Backend> make_faulty_backend(std::unique_ptr<Backend> inner, const FaultSpec& fault);

}  // namespace ilm::validate
