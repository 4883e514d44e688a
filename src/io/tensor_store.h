#pragma once
// All tensors of a checkpoint directory, from one `model.safetensors` or from the shards
// listed in `model.safetensors.index.json`. Knows file layout conventions, not models.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/dtype.h"
#include "io/safetensors.h"

namespace ilm {

class LoadProgress;

// A tensor used in place: `data` points into a read-only file mapping owned by the store.
struct TensorRef {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;
  uint64_t nbytes = 0;
  std::string file;  // file name (not full path) it lives in, for messages

  uint64_t numel() const;
  std::string shape_str() const;  // "[4096, 4096]"
};

class TensorStore {
 public:
  // Opens `dir`: the index file if present (every shard it names must exist and hold the
  // tensors the index assigns to it; no tensor may appear in two shards; shards not named in
  // the index are ignored), else `model.safetensors`, else any single `*.safetensors` file.
  // Errors name the directory, the file and the tensor. `progress` (optional) hears the phase
  // "mapping shards" (k/N files).
  static TensorStore open(const std::filesystem::path& dir, LoadProgress* progress = nullptr);

  const std::filesystem::path& dir() const { return dir_; }
  bool sharded() const { return sharded_; }
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

  bool contains(std::string_view name) const;
  // Throws ilm::Error("<dir>: tensor '<name>' not found in <files>") when absent.
  TensorRef get(std::string_view name) const;
  // Like get(), and also checks the shape: "tensor 'x' in f.safetensors has shape [a, b],
  // expected [c, d]".
  TensorRef get(std::string_view name, const std::vector<int64_t>& expected_shape) const;
  std::vector<std::string> names() const;  // sorted
  size_t tensor_count() const { return index_.size(); }
  uint64_t total_bytes() const;            // sum of tensor byte sizes

  // While set (during a load), each get() reports one more tensor read to `progress` (the
  // loader's own per-tensor loop drives it). Not for concurrent get() calls; nullptr stops it.
  void report_reads_to(LoadProgress* progress) {
    read_progress_ = progress;
    reads_ = 0;
  }

 private:
  std::filesystem::path dir_;
  bool sharded_ = false;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  // name -> (file index, tensor index in that file)
  std::vector<std::pair<std::string, std::pair<size_t, size_t>>> index_;  // sorted by name
  LoadProgress* read_progress_ = nullptr;
  mutable uint64_t reads_ = 0;
};

}  // namespace ilm
