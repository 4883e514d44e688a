// Quantization quality on a `small`-preset checkpoint with N(0, 0.02) weights: mean KL
// divergence of int8 / int4 logits from the bf16 logits over the fixed prompt set.
// Bounds: what plain 8-bit and 4-bit block quantization of such weights reaches (issue 4).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include <fmt/format.h>

#include "perf/quant_quality.h"
#include "synth/synth.h"

namespace ilm {
namespace {

TEST(QuantQuality, KlDivergenceFromBf16IsBounded) {
  const auto dir = std::filesystem::temp_directory_path() / fmt::format("ilm-quant-quality-{}", ::getpid());
  SynthOptions o;
  o.preset = "small";
  o.seed = 5;
  o.out = dir;
  o.tokenizer_dir = INTERNLM_TEST_TOKENIZER_DIR;
  write_synthetic_checkpoint(o);
  const auto q = measure_quant_quality(dir, "cpu", {parse_quant("int8"), parse_quant("int4")}, 2);
  std::filesystem::remove_all(dir);
  ASSERT_EQ(q.size(), 2u);
  for (const auto& r : q)
    std::printf("%s: mean KL %.3e, max KL %.3e, top-1 agreement %.3f over %lld positions\n", r.format.c_str(),
                r.mean_kl, r.max_kl, r.top1_agreement, static_cast<long long>(r.positions));
  EXPECT_GT(q[0].positions, 50);
  EXPECT_GT(q[0].mean_kl, 0.0);  // quantization does change the weights
  EXPECT_LE(q[0].mean_kl, 2e-4);
  EXPECT_LE(q[1].mean_kl, 2.5e-2);
  EXPECT_LT(q[0].mean_kl, q[1].mean_kl);
}

}  // namespace
}  // namespace ilm
