#pragma once
// How far quantized weights move the model's output distribution: mean KL(p_ref ‖ p_quant)
// over every position of a fixed prompt set, and top-1 agreement (weak on random weights,
// whose logits are nearly flat; judge by KL).
#include <filesystem>
#include <string>
#include <vector>

#include "backend/quant.h"

namespace ilm {

struct QuantQuality {
  std::string format;
  double mean_kl = 0, max_kl = 0;
  double top1_agreement = 0;
  int64_t positions = 0;
};

// The fixed prompt set (Chinese, English, code, mixed).
const std::vector<std::string>& quality_prompts();

// Runs `dir` on `backend` unquantized and with each format, over quality_prompts().
std::vector<QuantQuality> measure_quant_quality(const std::filesystem::path& dir, const std::string& backend,
                                                const std::vector<QuantSpec>& formats, int threads = 0);

}  // namespace ilm
