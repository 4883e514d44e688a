#pragma once
// Streams a safetensors file to disk: the header is written first from declarations, then
// tensor bytes are appended in declaration order, so arbitrarily large files never sit in memory.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "common/dtype.h"

namespace ilm {

struct TensorDecl {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
};

class SafetensorsWriter {
 public:
  // Creates `path` (via a temporary name, renamed on finish() so a crash leaves no half file
  // under the final name). Tensors are laid out contiguously in declaration order.
  SafetensorsWriter(const std::filesystem::path& path, std::vector<TensorDecl> decls,
                    std::map<std::string, std::string> metadata = {{"format", "pt"}});
  ~SafetensorsWriter();  // removes the temporary file if finish() was not reached
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // Appends bytes of the current tensor; may be called many times per tensor. Throws if more
  // bytes are written than declared.
  void write(std::span<const std::byte> bytes);
  // Checks every declared byte was written, flushes, renames into place.
  void finish();

  // Total file size this writer will produce (header + data).
  uint64_t file_size() const;

 private:
  std::filesystem::path path_, tmp_path_;
  std::vector<TensorDecl> decls_;
  std::FILE* f_ = nullptr;
  uint64_t header_bytes_ = 0, data_bytes_ = 0, written_ = 0;
  bool finished_ = false;
};

}  // namespace ilm
