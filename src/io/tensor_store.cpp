#include "io/tensor_store.h"

#include <algorithm>
#include <map>
#include <set>
#include <system_error>
#include <utility>

#include <fmt/format.h>

#include "common/error.h"
#include "common/progress.h"
#include "io/json_file.h"

namespace ilm {

namespace fs = std::filesystem;

uint64_t TensorRef::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

std::string TensorRef::shape_str() const { return fmt::format("[{}]", fmt::join(shape, ", ")); }

namespace {

constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleName = "model.safetensors";

std::string shape_string(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

bool is_regular(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

bool path_exists(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

// A shard name from the index must be a plain file name inside the directory.
bool plain_file_name(const std::string& s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos &&
         s.find('\\') == std::string::npos && s.find('\0') == std::string::npos;
}

}  // namespace

TensorStore TensorStore::open(const fs::path& dir, LoadProgress* progress) {
  TensorStore store;
  store.dir_ = dir;
  const std::string d = dir.string();
  {
    std::error_code ec;
    const auto st = fs::status(dir, ec);
    if (ec || !fs::exists(st)) throw Error(fmt::format("{}: model directory does not exist", d));
    if (!fs::is_directory(st)) throw Error(fmt::format("{}: not a directory", d));
  }

  const fs::path index_path = dir / kIndexName;
  if (path_exists(index_path)) {
    store.sharded_ = true;
    const nlohmann::json j = read_json_file(index_path);
    if (!j.is_object()) throw Error(fmt::format("{}: expected a JSON object", index_path.string()));
    const auto wm = j.find("weight_map");
    if (wm == j.end()) throw Error(fmt::format("{}: missing \"weight_map\"", index_path.string()));
    if (!wm->is_object())
      throw Error(fmt::format("{}: \"weight_map\" must be an object of tensor name -> file name", index_path.string()));
    if (wm->empty()) throw Error(fmt::format("{}: \"weight_map\" lists no tensors", index_path.string()));

    // tensor -> shard as the index says, and the shards in name order.
    std::map<std::string, std::string> assigned;
    std::map<std::string, std::string> first_tensor_of_shard;
    for (const auto& [tensor, shard] : wm->items()) {
      if (!shard.is_string())
        throw Error(fmt::format("{}: \"weight_map\" entry for tensor '{}' must be a file name string, got {}",
                                index_path.string(), tensor, json_brief(shard)));
      const std::string& s = shard.get_ref<const std::string&>();
      if (!plain_file_name(s))
        throw Error(fmt::format("{}: tensor '{}' is mapped to '{}', which is not a plain file name",
                                index_path.string(), tensor, s));
      assigned.emplace(tensor, s);
      first_tensor_of_shard.emplace(s, tensor);
    }

    std::map<std::string, size_t> shard_index;
    if (progress) progress->begin("mapping shards", first_tensor_of_shard.size(), ProgressUnit::Count);
    for (const auto& [shard, tensor] : first_tensor_of_shard) {
      const fs::path p = dir / shard;
      if (!path_exists(p))
        throw Error(fmt::format("{}: {} names shard '{}' (e.g. for tensor '{}'), but {} does not exist", d,
                                kIndexName, shard, tensor, p.string()));
      shard_index.emplace(shard, store.files_.size());
      store.files_.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(p)));
      if (progress) progress->update(store.files_.size());
    }
    if (progress) progress->end();
    for (const auto& [tensor, shard] : assigned) {
      if (store.files_[shard_index.at(shard)]->find(tensor) == nullptr)
        throw Error(fmt::format("{}: {} puts tensor '{}' in '{}', but that file has no such tensor", d,
                                kIndexName, tensor, shard));
    }
  } else if (path_exists(dir / kSingleName)) {
    if (progress) progress->begin("mapping shards", 1, ProgressUnit::Count);
    store.files_.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(dir / kSingleName)));
    if (progress) progress->end();
  } else {
    std::vector<fs::path> candidates;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      const fs::path& p = it->path();
      if (p.extension() == ".safetensors" && is_regular(p)) candidates.push_back(p);
    }
    if (ec) throw Error(fmt::format("{}: cannot list directory: {}", d, ec.message()));
    std::sort(candidates.begin(), candidates.end());
    if (candidates.empty())
      throw Error(fmt::format("{}: no {}, {} or other *.safetensors file found", d, kIndexName, kSingleName));
    if (candidates.size() > 1) {
      std::vector<std::string> names;
      for (const auto& c : candidates) names.push_back(c.filename().string());
      throw Error(fmt::format("{}: {} *.safetensors files ({}) but no {} to say how they fit together", d,
                              candidates.size(), fmt::join(names, ", "), kIndexName));
    }
    if (progress) progress->begin("mapping shards", 1, ProgressUnit::Count);
    store.files_.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(candidates.front())));
    if (progress) progress->end();
  }

  // Build the name index; a tensor may live in only one file.
  for (size_t fi = 0; fi < store.files_.size(); ++fi) {
    const auto& tensors = store.files_[fi]->tensors();
    for (size_t ti = 0; ti < tensors.size(); ++ti) store.index_.push_back({tensors[ti].name, {fi, ti}});
  }
  std::stable_sort(store.index_.begin(), store.index_.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 1; i < store.index_.size(); ++i) {
    if (store.index_[i].first == store.index_[i - 1].first)
      throw Error(fmt::format("{}: tensor '{}' appears in both {} and {}", d, store.index_[i].first,
                              store.files_[store.index_[i - 1].second.first]->path().filename().string(),
                              store.files_[store.index_[i].second.first]->path().filename().string()));
  }
  return store;
}

bool TensorStore::contains(std::string_view name) const {
  const auto it = std::lower_bound(index_.begin(), index_.end(), name,
                                   [](const auto& e, std::string_view n) { return e.first < n; });
  return it != index_.end() && it->first == name;
}

TensorRef TensorStore::get(std::string_view name) const {
  const auto it = std::lower_bound(index_.begin(), index_.end(), name,
                                   [](const auto& e, std::string_view n) { return e.first < n; });
  if (it == index_.end() || it->first != name) {
    std::vector<std::string> names;
    for (const auto& f : files_) names.push_back(f->path().filename().string());
    throw Error(fmt::format("{}: tensor '{}' not found in {}", dir_.string(), name, fmt::join(names, ", ")));
  }
  if (read_progress_) read_progress_->update(++reads_);
  const SafetensorsFile& f = *files_[it->second.first];
  const TensorInfo& t = f.tensors()[it->second.second];
  const auto bytes = f.bytes(t);
  TensorRef r;
  r.name = t.name;
  r.dtype = t.dtype;
  r.shape = t.shape;
  r.data = bytes.data();
  r.nbytes = bytes.size();
  r.file = f.path().filename().string();
  return r;
}

TensorRef TensorStore::get(std::string_view name, const std::vector<int64_t>& expected_shape) const {
  TensorRef r = get(name);
  if (r.shape != expected_shape)
    throw Error(fmt::format("{}: tensor '{}' in {} has shape {}, expected {}", dir_.string(), r.name, r.file,
                            r.shape_str(), shape_string(expected_shape)));
  return r;
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& e : index_) out.push_back(e.first);
  return out;
}

uint64_t TensorStore::total_bytes() const {
  uint64_t total = 0;
  for (const auto& e : index_) total += files_[e.second.first]->tensors()[e.second.second].nbytes();
  return total;
}

}  // namespace ilm
