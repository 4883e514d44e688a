#include "runtime/quantize_checkpoint.h"

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "common/error.h"
#include "common/progress.h"
#include "io/json_file.h"
#include "io/mapped_file.h"
#include "io/safetensors_writer.h"
#include "io/shard_plan.h"
#include "model/registry.h"
#include "runtime/loaded_model.h"

namespace ilm {

namespace fs = std::filesystem;

namespace {

// One tensor of the output: a copy of an input tensor, or one half of a quantized matrix.
struct OutTensor {
  std::string name, source;
  enum class Kind { Copy, QData, QScale } kind;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t bytes() const {
    uint64_t n = dtype_size(dtype);
    for (auto d : shape) n *= static_cast<uint64_t>(d);
    return n;
  }
};

void prepare_out_dir(const fs::path& out, bool force) {
  std::error_code ec;
  if (fs::exists(out, ec) && !fs::is_directory(out, ec))
    throw Error(fmt::format("{}: exists and is not a directory", out.string()));
  if (fs::exists(out, ec) && !fs::is_empty(out, ec)) {
    if (!force) throw Error(fmt::format("{}: directory exists and is not empty (use --force)", out.string()));
    for (const auto& e : fs::directory_iterator(out)) {
      const auto n = e.path().filename().string();
      if (n.ends_with(".safetensors") || n.ends_with(".safetensors.tmp") || n == "model.safetensors.index.json")
        fs::remove(e.path());
    }
  }
  fs::create_directories(out, ec);
  if (ec) throw Error(fmt::format("{}: cannot create directory: {}", out.string(), ec.message()));
}

}  // namespace

QuantizeSummary quantize_checkpoint(const QuantizeOptions& o, const std::function<void(uint64_t, uint64_t)>& progress) {
  if (o.quant.format == QuantFormat::None) throw Error("quantize: give --quant int8 or int4");
  CheckpointInfo info = CheckpointInfo::load(o.model, o.progress);
  if (info.config.stored_quant.format != QuantFormat::None)
    throw Error(fmt::format("{}: checkpoint is already quantized ({})", o.model.string(),
                            quant_name(info.config.stored_quant)));
  std::error_code same_ec;
  if (fs::equivalent(o.model, o.out, same_ec)) throw Error("quantize: --out must differ from --model");
  // The architecture says which tensors are matrices (it also checks every shape).
  auto backend = make_backend("ref", 1);
  const auto lm = create_model(info.config, *info.store, *backend);
  const auto matrices = lm->matrix_names();
  const std::set<std::string> matrix_set(matrices.begin(), matrices.end());

  std::vector<OutTensor> outs;
  QuantizeSummary sum;
  for (const auto& name : info.store->names()) {
    const TensorRef t = info.store->get(name);
    sum.input_bytes += t.nbytes;
    if (matrix_set.count(name) && t.shape.size() == 2 && quantizable(o.quant, t.shape[1])) {
      const bool int8 = o.quant.format == QuantFormat::Int8;
      outs.push_back({qdata_name(name), name, OutTensor::Kind::QData, int8 ? DType::I8 : DType::U8,
                      {t.shape[0], int8 ? t.shape[1] : t.shape[1] / 2}});
      outs.push_back({qscale_name(name), name, OutTensor::Kind::QScale, DType::F16, {t.shape[0], t.shape[1] / o.quant.group}});
      ++sum.quantized_tensors;
    } else {
      outs.push_back({name, name, OutTensor::Kind::Copy, t.dtype, t.shape});
      ++sum.copied_tensors;
    }
  }
  std::vector<std::string> names;
  std::vector<uint64_t> sizes;
  for (const auto& t : outs) {
    names.push_back(t.name);
    sizes.push_back(t.bytes());
    sum.output_bytes += t.bytes();
  }
  const ShardPlan plan = plan_shards(names, sizes, o.shard_bytes ? o.shard_bytes : kDefaultShardBytes);
  prepare_out_dir(o.out, o.force);

  ThreadPool pool(o.threads);
  std::string cached_source;  // the last quantized matrix: its data and scales may straddle two files
  QuantizedMatrix cached;
  uint64_t done = 0;
  if (o.progress) o.progress->begin("quantizing", sum.output_bytes, ProgressUnit::Bytes);
  for (size_t s = 0; s < plan.shards.size(); ++s) {
    std::vector<TensorDecl> decls;
    for (size_t i : plan.shards[s]) decls.push_back({outs[i].name, outs[i].dtype, outs[i].shape});
    SafetensorsWriter w(o.out / plan.file_names[s], decls);
    for (size_t i : plan.shards[s]) {
      const OutTensor& t = outs[i];
      const TensorRef src = info.store->get(t.source);
      if (t.kind == OutTensor::Kind::Copy) {
        w.write({src.data, src.nbytes});
      } else {
        if (cached_source != t.source) {
          cached = quantize(src, o.quant, pool);
          cached_source = t.source;
        }
        if (t.kind == OutTensor::Kind::QData)
          w.write({reinterpret_cast<const std::byte*>(cached.data.data()), cached.data.size()});
        else
          w.write({reinterpret_cast<const std::byte*>(cached.scales.data()), cached.scales.size_bytes()});
      }
      release_mapped_pages(src.data, src.nbytes);
      done += t.bytes();
      if (progress) progress(done, sum.output_bytes);
      if (o.progress) o.progress->update(done);
    }
    w.finish();
  }
  if (o.progress) o.progress->end();
  write_shard_index(o.out, plan, names, sum.output_bytes);

  nlohmann::json cfg = read_json_file(o.model / "config.json");
  cfg["quantization_config"] = {{"quant_method", "internlm.cpp"},
                                {"format", o.quant.format == QuantFormat::Int8 ? "int8" : "int4"},
                                {"group_size", o.quant.group}};
  write_json_file(o.out / "config.json", cfg);
  for (const char* f : {"generation_config.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                        "tokenizer.json"}) {
    std::error_code ec;
    if (!fs::is_regular_file(o.model / f, ec)) continue;
    fs::copy_file(o.model / f, o.out / f, fs::copy_options::overwrite_existing, ec);
    if (!ec) fs::permissions(o.out / f, fs::perms::owner_write, fs::perm_options::add, ec);
    if (ec) throw Error(fmt::format("{}: cannot copy {}: {}", o.out.string(), f, ec.message()));
  }
  sum.files = static_cast<int64_t>(plan.file_names.size());
  return sum;
}

}  // namespace ilm
