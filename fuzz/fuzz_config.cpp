// config.json and generation_config.json parsing on arbitrary JSON: a config, or an ilm::Error
// naming the file; an accepted config satisfies the domains the model code relies on.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "fuzz_common.h"
#include "model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  try {
    const ilm::ModelConfig c = ilm::ModelConfig::from_json(j, "config.json");
    if (!(c.rope_theta > 1) || !std::isfinite(c.rope_theta) || !(c.rms_norm_eps > 0 && c.rms_norm_eps < 1) ||
        c.hidden_size % c.num_heads != 0 || c.num_heads % c.num_kv_heads != 0 || c.head_dim % 2 != 0)
      ilm::fuzz::violated("an accepted config is outside its domain");
  } catch (const ilm::Error&) {
  }
  try {
    (void)ilm::GenerationConfig::from_json(j, "generation_config.json");
  } catch (const ilm::Error&) {
  }
  return 0;
}
