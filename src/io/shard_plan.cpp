#include "io/shard_plan.h"

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "io/json_file.h"

namespace ilm {

ShardPlan plan_shards(const std::vector<std::string>& names, const std::vector<uint64_t>& bytes, uint64_t limit) {
  ShardPlan p;
  uint64_t current = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (p.shards.empty() || (!p.shards.back().empty() && current + bytes[i] > limit)) {
      p.shards.emplace_back();
      current = 0;
    }
    p.shards.back().push_back(i);
    current += bytes[i];
  }
  for (auto& s : p.shards) std::sort(s.begin(), s.end(), [&](size_t a, size_t b) { return names[a] < names[b]; });
  if (p.shards.size() == 1) {
    p.file_names.push_back("model.safetensors");
  } else {
    for (size_t i = 0; i < p.shards.size(); ++i)
      p.file_names.push_back(fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, p.shards.size()));
  }
  return p;
}

void write_shard_index(const std::filesystem::path& dir, const ShardPlan& plan,
                       const std::vector<std::string>& names, uint64_t total_size) {
  if (plan.shards.size() <= 1) return;
  nlohmann::json index;
  index["metadata"] = {{"total_size", total_size}};
  nlohmann::json map = nlohmann::json::object();
  for (size_t s = 0; s < plan.shards.size(); ++s)
    for (size_t i : plan.shards[s]) map[names[i]] = plan.file_names[s];
  index["weight_map"] = std::move(map);
  write_json_file(dir / "model.safetensors.index.json", index);
}

}  // namespace ilm
