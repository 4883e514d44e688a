#pragma once
// A read-only memory map of a whole file. Weights are used in place from these pages.
#include <cstddef>
#include <filesystem>

namespace ilm {

class MappedFile {
 public:
  MappedFile() = default;
  // Throws ilm::Error("<path>: <reason>") if the file is missing, unreadable or not a regular file.
  // An empty file maps to size() == 0 and data() == nullptr.
  static MappedFile open(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

  // Paging hints (madvise); no-ops where unsupported. Ranges are clamped to the file.
  void advise_sequential() const;
  void advise_willneed(size_t offset, size_t length) const;
  void advise_dontneed(size_t offset, size_t length) const;

 private:
  std::filesystem::path path_;
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// Drops the resident pages fully inside [p, p + n) of a read-only file mapping (they are
// re-read from the file if touched again). Used once a weight has been converted. Memory that
// is not inside a live MappedFile (e.g. a heap buffer) is left alone.
void release_mapped_pages(const void* p, size_t n);

}  // namespace ilm
