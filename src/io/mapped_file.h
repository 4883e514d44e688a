#pragma once
// A read-only memory map of a whole file. Weights are used in place from these pages.
#include <cstddef>
#include <filesystem>
#include <functional>

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

  // Reads the whole file into memory now, in transparent huge pages where the kernel offers
  // them for this file (files of kHugeMapMin bytes or more are mapped 2 MiB-aligned and advised
  // MADV_HUGEPAGE, so the page cache fills with 2 MiB folios that map with one TLB entry each
  // instead of 512). Page cache that already holds the file in small pages (e.g. right after
  // the file was written) is dropped and read again once, when `reread` is set. Returns the
  // share of the file mapped in huge pages afterwards (0 where the kernel offers none).
  // `paged` (optional) hears the bytes read so far, every 64 MiB of the read (a re-read
  // counts from 0 again).
  double populate_huge(bool reread, const std::function<void(size_t)>& paged = {}) const;
  static constexpr size_t kHugeMapMin = size_t{64} << 20;

 private:
  std::filesystem::path path_;
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// Drops the resident pages fully inside [p, p + n) of a read-only file mapping (they are
// re-read from the file if touched again). Used once a weight has been converted. Memory that
// is not inside a live MappedFile (e.g. a heap buffer) is left alone.
void release_mapped_pages(const void* p, size_t n);

// Bytes of [p, p + n) that this process maps with huge pages (file PMD mappings and anonymous
// transparent huge pages, from /proc/self/smaps); 0 where that is not available.
size_t huge_mapped_bytes(const void* p, size_t n);

// Asks for [p, p + n) of anonymous memory (already written, e.g. a repacked weight) to be
// moved into transparent huge pages now (MADV_COLLAPSE), and to stay so. A hint: no-op where
// unsupported.
void collapse_to_huge_pages(void* p, size_t n);

}  // namespace ilm
