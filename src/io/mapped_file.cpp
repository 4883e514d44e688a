#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
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

}  // namespace

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

  void* p = ::mmap(nullptr, m.size_, PROT_READ, MAP_PRIVATE, fd, 0);
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
