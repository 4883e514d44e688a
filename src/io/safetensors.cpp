#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "io/json_file.h"

namespace ilm {

uint64_t TensorInfo::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);  // validated by the parser not to overflow
  return n;
}

namespace {

using nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100ull * 1024 * 1024;

std::string shape_string(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

class HeaderParser {
 public:
  HeaderParser(std::span<const std::byte> file, std::string_view label) : file_(file), label_(label) {}

  SafetensorsHeader parse() {
    if (file_.size() < 8)
      fail(fmt::format("file is {} bytes, shorter than the 8-byte header length field", file_.size()));
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | std::to_integer<uint64_t>(file_[static_cast<size_t>(i)]);
    if (n > kMaxHeaderBytes)
      fail(fmt::format("header length {} exceeds the limit of {} bytes (corrupt or not a safetensors file)",
                       n, kMaxHeaderBytes));
    if (n > file_.size() - 8)
      fail(fmt::format("header length {} runs past the end of the file ({} bytes)", n, file_.size()));

    SafetensorsHeader h;
    h.data_offset = 8 + n;
    data_size_ = file_.size() - h.data_offset;

    const json j = parse_json(reinterpret_cast<const char*>(file_.data()) + 8, static_cast<size_t>(n));
    if (!j.is_object()) fail(fmt::format("header is a JSON {}, expected an object", j.type_name()));

    for (const auto& [key, value] : j.items()) {
      if (key == "__metadata__") {
        parse_metadata(value, h.metadata);
        continue;
      }
      h.tensors.push_back(parse_tensor(key, value));
    }
    check_layout(h.tensors);
    return h;
  }

 private:
  [[noreturn]] void fail(const std::string& msg) const { throw Error(fmt::format("{}: {}", label_, msg)); }
  [[noreturn]] void fail_tensor(const std::string& name, const std::string& msg) const {
    throw Error(fmt::format("{}: tensor '{}': {}", label_, name, msg));
  }

  json parse_json(const char* p, size_t n) const {
    // Reject duplicate keys (the reference reader would silently pick one of them).
    std::vector<std::set<std::string>> keys;
    std::string duplicate;
    bool has_duplicate = false;
    auto cb = [&](int /*depth*/, json::parse_event_t ev, json& parsed) {
      switch (ev) {
        case json::parse_event_t::object_start:
          keys.emplace_back();
          break;
        case json::parse_event_t::object_end:
          if (!keys.empty()) keys.pop_back();
          break;
        case json::parse_event_t::key:
          if (!keys.empty() && parsed.is_string() && !keys.back().insert(parsed.get<std::string>()).second &&
              !has_duplicate) {
            has_duplicate = true;
            duplicate = parsed.get<std::string>();
          }
          break;
        default:
          break;
      }
      return true;
    };
    // nlohmann's lexer takes a NUL byte for the end of input and would ignore what follows it;
    // valid JSON never holds a raw NUL (inside strings it must be escaped), so refuse it outright.
    if (const void* nul = std::memchr(p, 0, n); nul != nullptr)
      fail(fmt::format("header is not valid JSON: NUL byte at header offset {}",
                       static_cast<const char*>(nul) - p));
    json j;
    try {
      j = json::parse(p, p + n, cb);
    } catch (const json::exception& e) {
      std::string_view what = e.what();
      if (!what.empty() && what.front() == '[') {
        const size_t close = what.find("] ");
        if (close != std::string_view::npos) what.remove_prefix(close + 2);
      }
      fail(fmt::format("header is not valid JSON: {}", what));
    }
    if (has_duplicate) fail(fmt::format("header has duplicate key '{}'", duplicate));
    return j;
  }

  void parse_metadata(const json& value, std::map<std::string, std::string>& out) const {
    if (value.is_null()) return;  // the reference reader treats a null __metadata__ as absent
    if (!value.is_object())
      fail(fmt::format("__metadata__ must be an object of strings, got {}", json_brief(value)));
    for (const auto& [k, v] : value.items()) {
      if (!v.is_string())
        fail(fmt::format("__metadata__ value for key '{}' must be a string, got {}", k, json_brief(v)));
      out.emplace(k, v.get<std::string>());
    }
  }

  TensorInfo parse_tensor(const std::string& name, const json& value) const {
    if (!value.is_object()) fail_tensor(name, fmt::format("entry must be a JSON object, got {}", json_brief(value)));
    TensorInfo t;
    t.name = name;

    const auto dt = value.find("dtype");
    if (dt == value.end()) fail_tensor(name, "missing \"dtype\"");
    if (!dt->is_string()) fail_tensor(name, fmt::format("\"dtype\" must be a string, got {}", json_brief(*dt)));
    const auto dtype = parse_dtype(dt->get_ref<const std::string&>());
    if (!dtype) fail_tensor(name, fmt::format("unknown dtype {}", json_brief(*dt)));
    t.dtype = *dtype;

    const auto sh = value.find("shape");
    if (sh == value.end()) fail_tensor(name, "missing \"shape\"");
    if (!sh->is_array())
      fail_tensor(name, fmt::format("\"shape\" must be an array of integers, got {}", json_brief(*sh)));
    for (const json& d : *sh) {
      if (d.is_number_unsigned()) {
        const uint64_t v = d.get<uint64_t>();
        if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
          fail_tensor(name, fmt::format("dimension {} in \"shape\" is too large", v));
        t.shape.push_back(static_cast<int64_t>(v));
      } else if (d.is_number_integer()) {
        const int64_t v = d.get<int64_t>();
        if (v < 0) fail_tensor(name, fmt::format("negative dimension {} in \"shape\" {}", v, json_brief(*sh)));
        t.shape.push_back(v);
      } else {
        fail_tensor(name, fmt::format("\"shape\" must be an array of integers, got {}", json_brief(*sh)));
      }
    }

    const auto off = value.find("data_offsets");
    if (off == value.end()) fail_tensor(name, "missing \"data_offsets\"");
    if (!off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned())
      fail_tensor(name, fmt::format("\"data_offsets\" must be [begin, end] with non-negative integers, got {}",
                                    json_brief(*off)));
    t.begin = (*off)[0].get<uint64_t>();
    t.end = (*off)[1].get<uint64_t>();
    if (t.begin > t.end)
      fail_tensor(name, fmt::format("data_offsets [{}, {}] have begin > end", t.begin, t.end));

    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel))
        fail_tensor(name, fmt::format("element count of shape {} overflows 64 bits", shape_string(t.shape)));
    }
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(t.dtype)), &bytes))
      fail_tensor(name, fmt::format("byte size of shape {} x {} overflows 64 bits", shape_string(t.shape),
                                    dtype_name(t.dtype)));
    if (bytes != t.end - t.begin)
      fail_tensor(name, fmt::format("data_offsets [{}, {}] span {} bytes, but shape {} of {} needs {} bytes",
                                    t.begin, t.end, t.end - t.begin, shape_string(t.shape),
                                    dtype_name(t.dtype), bytes));
    if (t.end > data_size_)
      fail_tensor(name, fmt::format("data_offsets [{}, {}] run past the end of the data section ({} bytes)",
                                    t.begin, t.end, data_size_));
    return t;
  }

  // The ranges must tile the data section exactly: no overlaps, no gaps, no trailing bytes.
  void check_layout(std::vector<TensorInfo>& tensors) const {
    std::stable_sort(tensors.begin(), tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    uint64_t covered = 0;
    const TensorInfo* prev = nullptr;
    for (const TensorInfo& t : tensors) {
      if (t.begin < covered) {
        // prev is non-null here: covered > 0 only after some tensor.
        fail(fmt::format("tensors '{}' (data_offsets [{}, {}]) and '{}' (data_offsets [{}, {}]) overlap",
                         prev ? prev->name : std::string("?"), prev ? prev->begin : 0, prev ? prev->end : 0,
                         t.name, t.begin, t.end));
      }
      if (t.begin > covered)
        fail(fmt::format("gap of {} unused bytes in the data section before tensor '{}' (bytes [{}, {}) "
                         "belong to no tensor)",
                         t.begin - covered, t.name, covered, t.begin));
      covered = t.end;
      prev = &t;
    }
    if (covered != data_size_) {
      if (prev != nullptr)
        fail(fmt::format("{} trailing bytes after the last tensor '{}' belong to no tensor (data section is "
                         "{} bytes, tensors cover {})",
                         data_size_ - covered, prev->name, data_size_, covered));
      fail(fmt::format("{} trailing bytes in the data section but the header lists no tensors", data_size_));
    }
  }

  std::span<const std::byte> file_;
  std::string label_;
  uint64_t data_size_ = 0;
};

}  // namespace

SafetensorsHeader parse_safetensors(std::span<const std::byte> file, std::string_view label) {
  return HeaderParser(file, label).parse();
}

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  SafetensorsFile f;
  f.file_ = MappedFile::open(path);
  f.header_ = parse_safetensors(std::span<const std::byte>(f.file_.data(), f.file_.size()), path.string());
  for (size_t i = 0; i < f.header_.tensors.size(); ++i) f.index_.emplace(f.header_.tensors[i].name, i);
  return f;
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

std::span<const std::byte> SafetensorsFile::bytes(const TensorInfo& t) const {
  const uint64_t start = header_.data_offset + t.begin;
  if (t.end < t.begin || start > file_.size() || t.nbytes() > file_.size() - start)
    throw Error(fmt::format("{}: tensor '{}' lies outside the file", path().string(), t.name));
  return {file_.data() + start, static_cast<size_t>(t.nbytes())};
}

}  // namespace ilm
