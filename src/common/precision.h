#pragma once
// Which arithmetic the fast backends use. Fast (the default): activations rounded where the
// CPU multiplies rounded values faster (bf16 x bf16 dot products for bf16 weights, one int8
// level for int8 / int4 weights), held to at least twice as close to the official f32 model
// as the official bf16 run is. Exact: f32 activations (about 1e-6 relative logit error), for
// validation. Both are batch-invariant: a token's result never depends on its batch.
#include <optional>
#include <string_view>

namespace ilm {

enum class Precision { Fast, Exact };

constexpr std::string_view precision_name(Precision p) { return p == Precision::Fast ? "fast" : "exact"; }
inline std::optional<Precision> parse_precision(std::string_view s) {
  if (s == "fast") return Precision::Fast;
  if (s == "exact") return Precision::Exact;
  return std::nullopt;
}

}  // namespace ilm
