#pragma once
// Operator-by-operator comparison of a backend with the ref oracle on the model's shapes.
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"

namespace ilm::validate {

struct OpError {
  double max_abs = 0;   // max |got - want|
  double rel = 0;       // max_abs / max |want|
  double ref_peak = 0;  // max |want|
};
// NaN in `got` counts as an infinite error.
OpError compare_outputs(std::span<const float> got, std::span<const float> want);

struct OpCase {
  std::string op;     // operator name
  std::string name;   // case, e.g. "wqkv T=8"
  std::string shape;  // human-readable shapes
  OpError err;
};

struct OpCaseOptions {
  int64_t tokens = 8;            // multi-token case (a 1-token case always runs)
  int64_t max_head_rows = 8192;  // rows of the output head / embedding table used
  int64_t attention_past = 64;
};

// Every operator on random inputs of the config's shapes, on `test` and on `ref`.
std::vector<OpCase> run_operator_cases(Backend& test, Backend& ref, const ModelConfig& cfg, const QuantSpec& quant,
                                       const OpCaseOptions& opts,
                                       const std::function<void(const std::string&)>& note = {});

DType dtype_of_config(const ModelConfig& cfg);

}  // namespace ilm::validate
