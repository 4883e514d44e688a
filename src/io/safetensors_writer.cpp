#include "io/safetensors_writer.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <system_error>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/error.h"

namespace ilm {

namespace {

constexpr size_t kStdioBuffer = 4u << 20;  // 4 MiB

// A JSON string literal for `s`; names must be valid UTF-8 (JSON text is).
std::string json_string(const std::string& s, const std::string& label) {
  try {
    return nlohmann::json(s).dump();
  } catch (const nlohmann::json::exception&) {
    throw Error(fmt::format("{}: name or metadata {} is not valid UTF-8", label,
                            nlohmann::json(s).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace)));
  }
}

// The padded JSON header, as the reference implementation writes it (compact JSON,
// __metadata__ first, tensors in data order, keys dtype/shape/data_offsets, spaces up to a
// multiple of 8). `ends` receives each tensor's end offset in the data section.
std::string build_header(const std::string& label, const std::vector<TensorDecl>& decls,
                         const std::map<std::string, std::string>& metadata, std::vector<uint64_t>* ends) {
  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first_kv = true;
    for (const auto& [k, v] : metadata) {
      if (!first_kv) header += ',';
      first_kv = false;
      header += json_string(k, label) + ':' + json_string(v, label);
    }
    header += '}';
    first = false;
  }
  std::set<std::string, std::less<>> seen;
  uint64_t offset = 0;
  ends->clear();
  ends->reserve(decls.size());
  for (const TensorDecl& d : decls) {
    if (d.name.empty()) throw Error(fmt::format("{}: a tensor has an empty name", label));
    if (d.name == "__metadata__")
      throw Error(fmt::format("{}: '__metadata__' is reserved and cannot name a tensor", label));
    if (!seen.insert(d.name).second) throw Error(fmt::format("{}: tensor '{}' is declared twice", label, d.name));
    uint64_t bytes = dtype_size(d.dtype);
    std::string shape;
    for (int64_t dim : d.shape) {
      if (dim < 0) throw Error(fmt::format("{}: tensor '{}' has a negative dimension {}", label, d.name, dim));
      if (__builtin_mul_overflow(bytes, static_cast<uint64_t>(dim), &bytes))
        throw Error(fmt::format("{}: tensor '{}' is too large (size overflows 64 bits)", label, d.name));
      if (!shape.empty()) shape += ',';
      shape += std::to_string(dim);
    }
    uint64_t end = 0;
    if (__builtin_add_overflow(offset, bytes, &end))
      throw Error(fmt::format("{}: total data size overflows 64 bits at tensor '{}'", label, d.name));
    if (!first) header += ',';
    first = false;
    header += fmt::format("{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
                          json_string(d.name, label), dtype_name(d.dtype), shape, offset, end);
    offset = end;
    ends->push_back(end);
  }
  header += '}';
  header.append((8 - header.size() % 8) % 8, ' ');
  return header;
}

}  // namespace

SafetensorsWriter::SafetensorsWriter(const std::filesystem::path& path, std::vector<TensorDecl> decls,
                                     std::map<std::string, std::string> metadata)
    : path_(path), decls_(std::move(decls)) {
  tmp_path_ = path_;
  tmp_path_ += ".tmp";

  std::string header = build_header(path_.string(), decls_, metadata, &ends_);
  data_bytes_ = ends_.empty() ? 0 : ends_.back();
  header_bytes_ = 8 + header.size();

  buffer_ = std::make_unique<char[]>(kStdioBuffer);
  f_ = std::fopen(tmp_path_.c_str(), "wb");
  if (f_ == nullptr)
    throw Error(fmt::format("{}: cannot create: {}", tmp_path_.string(), std::strerror(errno)));
  std::setvbuf(f_, buffer_.get(), _IOFBF, kStdioBuffer);

  unsigned char len[8];
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
  if (std::fwrite(len, 1, 8, f_) != 8 || std::fwrite(header.data(), 1, header.size(), f_) != header.size()) {
    const int err = errno;
    std::fclose(f_);
    f_ = nullptr;
    std::error_code ec;
    std::filesystem::remove(tmp_path_, ec);
    throw Error(fmt::format("{}: write failed: {}", tmp_path_.string(), std::strerror(err)));
  }
}

SafetensorsWriter::~SafetensorsWriter() {
  if (f_ != nullptr) std::fclose(f_);
  if (!finished_) {
    std::error_code ec;
    std::filesystem::remove(tmp_path_, ec);
  }
}

void SafetensorsWriter::write(std::span<const std::byte> bytes) {
  if (finished_ || f_ == nullptr)
    throw Error(fmt::format("{}: write after the file was finished or failed", path_.string()));
  if (bytes.size() > data_bytes_ - written_) {
    throw Error(fmt::format(
        "{}: {} bytes written past the declared data size ({} bytes, {} already written, {} tensors)",
        path_.string(), bytes.size() - (data_bytes_ - written_), data_bytes_, written_, decls_.size()));
  }
  if (bytes.empty()) return;
  if (std::fwrite(bytes.data(), 1, bytes.size(), f_) != bytes.size()) {
    const int err = errno;
    const size_t t = static_cast<size_t>(std::upper_bound(ends_.begin(), ends_.end(), written_) - ends_.begin());
    throw Error(fmt::format("{}: write failed in tensor '{}': {}", tmp_path_.string(),
                            t < decls_.size() ? decls_[t].name : std::string("?"), std::strerror(err)));
  }
  written_ += bytes.size();
}

void SafetensorsWriter::finish() {
  if (finished_) throw Error(fmt::format("{}: finish() called twice", path_.string()));
  if (f_ == nullptr) throw Error(fmt::format("{}: finish() after a failed write", path_.string()));
  if (written_ != data_bytes_) {
    // The first tensor that is not complete.
    const size_t t = static_cast<size_t>(std::upper_bound(ends_.begin(), ends_.end(), written_) - ends_.begin());
    throw Error(fmt::format("{}: only {} of {} data bytes were written (tensor '{}' is incomplete)",
                            path_.string(), written_, data_bytes_,
                            t < decls_.size() ? decls_[t].name : std::string("?")));
  }
  const bool flushed = std::fflush(f_) == 0;
  const int flush_err = errno;
  const bool closed = std::fclose(f_) == 0;
  const int close_err = errno;
  f_ = nullptr;
  if (!flushed || !closed)
    throw Error(fmt::format("{}: write failed: {}", tmp_path_.string(),
                            std::strerror(!flushed ? flush_err : close_err)));
  std::error_code ec;
  std::filesystem::rename(tmp_path_, path_, ec);
  if (ec)
    throw Error(fmt::format("{}: cannot rename {} into place: {}", path_.string(), tmp_path_.string(),
                            ec.message()));
  finished_ = true;
}

uint64_t SafetensorsWriter::file_size() const { return header_bytes_ + data_bytes_; }

uint64_t SafetensorsWriter::planned_file_size(const std::vector<TensorDecl>& decls,
                                              const std::map<std::string, std::string>& metadata) {
  std::vector<uint64_t> ends;
  const std::string header = build_header("safetensors header", decls, metadata, &ends);
  return 8 + header.size() + (ends.empty() ? 0 : ends.back());
}

}  // namespace ilm
