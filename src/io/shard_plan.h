#pragma once
// How a Hugging Face checkpoint is split into files: greedy sharding in state_dict order
// (transformers' shard_checkpoint), file names model-0000i-of-0000N.safetensors, or one
// model.safetensors; and the model.safetensors.index.json that maps tensors to files.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace ilm {

constexpr uint64_t kDefaultShardBytes = 5'000'000'000ull;  // HF's "5GB"

struct ShardPlan {
  std::vector<std::vector<size_t>> shards;  // tensor indices per file, each sorted by name
  std::vector<std::string> file_names;
};

// Starts a new shard when the next tensor would push a non-empty shard past `limit`; a
// tensor larger than the limit gets a shard of its own. Inside a file, tensors are ordered by
// name, as the reference safetensors library writes them.
ShardPlan plan_shards(const std::vector<std::string>& names, const std::vector<uint64_t>& bytes, uint64_t limit);

// Writes model.safetensors.index.json when the plan has more than one file.
void write_shard_index(const std::filesystem::path& dir, const ShardPlan& plan,
                       const std::vector<std::string>& names, uint64_t total_size);

}  // namespace ilm
