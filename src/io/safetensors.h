#pragma once
// The safetensors container: 8-byte little-endian header length N, N bytes of JSON header,
// then the data section. This layer checks the container's promises and knows no model.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/dtype.h"
#include "io/mapped_file.h"

namespace ilm {

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets relative to the start of the data section
  uint64_t end = 0;

  uint64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // in file order of their data (sorted by begin)
  std::map<std::string, std::string> metadata;  // "__metadata__", string -> string
  uint64_t data_offset = 0;  // 8 + N: where the data section starts in the file
};

// Parses and validates a whole safetensors file image held in memory. `label` (usually the
// path) starts every error message. Rejects, with ilm::Error naming the tensor where there is
// one: files shorter than 8 bytes; a header length beyond the file or above 100 MiB; header
// not a JSON object or not UTF-8; entries missing dtype/shape/data_offsets or of wrong JSON
// types; unknown dtypes; negative dims; element counts or byte sizes that overflow 64 bits;
// data_offsets not [begin, end] with begin <= end; a byte length that disagrees with
// shape x dtype size; ranges past the end of the data section; overlapping ranges; gaps
// between ranges or trailing bytes (the data section must be covered exactly, as the
// reference safetensors library requires); __metadata__ values that are not strings.
SafetensorsHeader parse_safetensors(std::span<const std::byte> file, std::string_view label);

// A memory-mapped, validated safetensors file.
class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return file_.path(); }
  const SafetensorsHeader& header() const { return header_; }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const TensorInfo* find(std::string_view name) const;  // nullptr when absent
  // The tensor's bytes inside the mapping (valid while this object lives).
  std::span<const std::byte> bytes(const TensorInfo& t) const;
  const MappedFile& mapping() const { return file_; }

 private:
  MappedFile file_;
  SafetensorsHeader header_;
  std::map<std::string, size_t, std::less<>> index_;
};

}  // namespace ilm
