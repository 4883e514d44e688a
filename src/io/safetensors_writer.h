#pragma once
// Streams a safetensors file to disk: the header is written first from declarations, then
// tensor bytes are appended in declaration order, so arbitrarily large files never sit in memory.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
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
  // Creates `path` (via the temporary name "<path>.tmp", renamed on finish() so a crash leaves
  // no half file under the final name). Tensors are laid out contiguously in declaration
  // order. The header is compact JSON: "__metadata__" first (omitted when `metadata` is
  // empty), then the tensors in declaration order, each {"dtype","shape","data_offsets"},
  // padded with spaces to a multiple of 8 bytes as the reference library does. Throws
  // ilm::Error on empty, duplicate or reserved ("__metadata__") names, negative dimensions,
  // sizes that overflow 64 bits, or when the file cannot be created.
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
  // The file size a writer with these arguments would produce; creates nothing. Throws like
  // the constructor on invalid declarations.
  static uint64_t planned_file_size(const std::vector<TensorDecl>& decls,
                                    const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

 private:
  std::filesystem::path path_, tmp_path_;
  std::vector<TensorDecl> decls_;
  std::vector<uint64_t> ends_;  // end offset of each tensor's data (for messages)
  std::unique_ptr<char[]> buffer_;  // stdio buffer (large, so small tensors batch up)
  std::FILE* f_ = nullptr;
  uint64_t header_bytes_ = 0, data_bytes_ = 0, written_ = 0;
  bool finished_ = false;
};

}  // namespace ilm
