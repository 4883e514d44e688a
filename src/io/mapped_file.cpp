#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "common/error.h"

namespace ilm {

namespace {

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& what, int err) {
  throw Error(fmt::format("{}: {}: {}", path.string(), what, std::strerror(err)));
}

// Closes a descriptor on every path out of open().
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
};

size_t page_size() {
  static const size_t ps = [] {
    const long v = ::sysconf(_SC_PAGESIZE);
    return v > 0 ? static_cast<size_t>(v) : size_t{4096};
  }();
  return ps;
}

// The live read-only file mappings (begin -> end), so that release_mapped_pages never drops
// pages of anything else: MADV_DONTNEED on private anonymous memory (a heap buffer) would
// silently zero it.
std::mutex g_maps_mu;
std::map<uintptr_t, uintptr_t> g_maps;

void register_mapping(const std::byte* p, size_t n) {
  std::lock_guard lock(g_maps_mu);
  g_maps[reinterpret_cast<uintptr_t>(p)] = reinterpret_cast<uintptr_t>(p) + n;
}
void unregister_mapping(const std::byte* p) {
  std::lock_guard lock(g_maps_mu);
  g_maps.erase(reinterpret_cast<uintptr_t>(p));
}
bool inside_a_mapping(uintptr_t begin, uintptr_t end) {
  std::lock_guard lock(g_maps_mu);
  auto it = g_maps.upper_bound(begin);
  if (it == g_maps.begin()) return false;
  --it;
  return begin >= it->first && end <= it->second;
}

constexpr uintptr_t kHuge = uintptr_t{2} << 20;

// Maps the whole file read-only. Large files go at a 2 MiB-aligned address (so file offset and
// address agree modulo 2 MiB, which a huge-page mapping needs) and are advised MADV_HUGEPAGE.
void* map_file(int fd, size_t size) {
  if (size < MappedFile::kHugeMapMin) return ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  void* reserve = ::mmap(nullptr, size + kHuge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (reserve == MAP_FAILED) return ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const auto r = reinterpret_cast<uintptr_t>(reserve);
  const uintptr_t aligned = (r + kHuge - 1) & ~(kHuge - 1);
  void* p = ::mmap(reinterpret_cast<void*>(aligned), size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
  if (p == MAP_FAILED) {
    ::munmap(reserve, size + kHuge);
    return ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  }
  // Give back the reservation around the file's pages.
  const size_t ps = page_size();
  const uintptr_t end = aligned + (size + ps - 1) / ps * ps;
  if (aligned > r) ::munmap(reserve, aligned - r);
  if (r + size + kHuge > end) ::munmap(reinterpret_cast<void*>(end), r + size + kHuge - end);
#ifdef MADV_HUGEPAGE
  (void)::madvise(p, size, MADV_HUGEPAGE);  // a hint: fine if refused
#endif
  return p;
}

// Faults every page of [p, p + n) in (read-ahead in large folios where advised).
void populate(const std::byte* p, size_t n) {
#ifdef MADV_POPULATE_READ
  if (::madvise(const_cast<std::byte*>(p), n, MADV_POPULATE_READ) == 0) return;
#endif
  const size_t ps = page_size();
  volatile std::byte sink{};
  for (size_t i = 0; i < n; i += ps) sink = p[i];
  (void)sink;
}

// populate() in 64 MiB steps (2 MiB-aligned, so huge pages stay whole), telling `paged` the
// bytes done after each; one step when nobody listens.
void populate(const std::byte* p, size_t n, const std::function<void(size_t)>& paged) {
  if (!paged) return populate(p, n);
  constexpr size_t kStep = size_t{64} << 20;
  for (size_t off = 0; off < n; off += kStep) {
    populate(p + off, std::min(kStep, n - off));
    paged(std::min(off + kStep, n));
  }
}

}  // namespace

size_t huge_mapped_bytes(const void* p, size_t n) {
  std::ifstream smaps("/proc/self/smaps");
  if (!smaps) return 0;
  const auto begin = reinterpret_cast<uintptr_t>(p), end = begin + n;
  size_t total = 0;
  bool inside = false;
  std::string line;
  while (std::getline(smaps, line)) {
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(':') > line.find('-')) {
      inside = lo < end && hi > begin;
      continue;
    }
    if (!inside) continue;
    unsigned long kb = 0;
    if (std::sscanf(line.c_str(), "FilePmdMapped: %lu kB", &kb) == 1 || std::sscanf(line.c_str(), "AnonHugePages: %lu kB", &kb) == 1)
      total += kb * 1024;
  }
  return total;
}

void collapse_to_huge_pages(void* p, size_t n) {
  const auto b = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const auto e = (reinterpret_cast<uintptr_t>(p) + n) & ~(kHuge - 1);
  if (e <= b) return;
#ifdef MADV_HUGEPAGE
  (void)::madvise(reinterpret_cast<void*>(b), e - b, MADV_HUGEPAGE);
#endif
  (void)::madvise(reinterpret_cast<void*>(b), e - b, 25 /* MADV_COLLAPSE, Linux 6.1 */);
}

double MappedFile::populate_huge(bool reread, const std::function<void(size_t)>& paged) const {
  if (data_ == nullptr) return 0;
  populate(data_, size_, paged);
  double share = static_cast<double>(huge_mapped_bytes(data_, size_)) / static_cast<double>(size_);
  if (!reread || size_ < kHugeMapMin || share >= 0.5) return share;
  // The page cache holds this file in small pages: drop them (only pages no process maps go)
  // and read the file again through the huge-page mapping.
  // The address stays the same (tensors already point into it): the file's pages are first
  // swapped for an inaccessible placeholder, then mapped again in place.
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return share;
  FdGuard guard{fd};
  if (::mmap(data_, size_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0) == MAP_FAILED)
    fail(path_, "cannot unmap for a huge-page read", errno);
  (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  if (::mmap(data_, size_, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0) == MAP_FAILED)
    fail(path_, "cannot map again", errno);
#ifdef MADV_HUGEPAGE
  (void)::madvise(data_, size_, MADV_HUGEPAGE);
#endif
  populate(data_, size_, paged);
  return static_cast<double>(huge_mapped_bytes(data_, size_)) / static_cast<double>(size_);
}

MappedFile MappedFile::open(const std::filesystem::path& path) {
  // O_NONBLOCK so that a FIFO given by mistake cannot hang us before fstat rejects it; it has
  // no effect on regular files.
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) fail(path, "cannot open", errno);
  FdGuard guard{fd};

  struct stat st {};
  if (::fstat(fd, &st) != 0) fail(path, "cannot stat", errno);
  if (S_ISDIR(st.st_mode)) throw Error(fmt::format("{}: is a directory, not a file", path.string()));
  if (!S_ISREG(st.st_mode)) throw Error(fmt::format("{}: not a regular file", path.string()));
  if (st.st_size < 0) throw Error(fmt::format("{}: invalid file size", path.string()));
  if (static_cast<uintmax_t>(st.st_size) > SIZE_MAX)
    throw Error(fmt::format("{}: file too large to map", path.string()));

  MappedFile m;
  m.path_ = path;
  m.size_ = static_cast<size_t>(st.st_size);
  if (m.size_ == 0) return m;  // mmap rejects zero-length mappings; an empty file is valid

  void* p = map_file(fd, m.size_);
  if (p == MAP_FAILED) {
    const int err = errno;
    m.size_ = 0;
    fail(path, "cannot map", err);
  }
  m.data_ = static_cast<std::byte*>(p);
  register_mapping(m.data_, m.size_);
  return m;  // the descriptor is closed by the guard; the mapping stays valid
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) {
    unregister_mapping(data_);
    ::munmap(data_, size_);
  }
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) {
      unregister_mapping(data_);
      ::munmap(data_, size_);
    }
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

namespace {

void advise(std::byte* data, size_t size, size_t offset, size_t length, int advice) {
  if (data == nullptr || offset >= size || length == 0) return;
  length = std::min(length, size - offset);
  const size_t ps = page_size();
  const size_t start = offset - offset % ps;  // madvise needs a page-aligned address
  const size_t stop = offset + length;
  // Ignore failures: these are hints.
  (void)::madvise(data + start, stop - start, advice);
}

}  // namespace

void MappedFile::advise_sequential() const { advise(data_, size_, 0, size_, MADV_SEQUENTIAL); }

void MappedFile::advise_willneed(size_t offset, size_t length) const {
  advise(data_, size_, offset, length, MADV_WILLNEED);
}

void MappedFile::advise_dontneed(size_t offset, size_t length) const {
  advise(data_, size_, offset, length, MADV_DONTNEED);
}

void release_mapped_pages(const void* p, size_t n) {
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto begin = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const auto end = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
  if (!inside_a_mapping(reinterpret_cast<uintptr_t>(p), reinterpret_cast<uintptr_t>(p) + n)) return;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace ilm
