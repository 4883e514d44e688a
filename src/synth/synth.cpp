#include "synth/synth.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <future>
#include <optional>
#include <system_error>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/data_path.h"
#include "common/error.h"
#include "common/thread_pool.h"
#include "io/json_file.h"
#include "io/safetensors_writer.h"
#include "io/shard_plan.h"
#include "synth/presets.h"
#include "synth/random.h"

namespace ilm {

namespace fs = std::filesystem;

namespace {

constexpr size_t kBatchBytes = 4u << 20;  // one generation batch; two are alive at a time
constexpr double kNormStd = 0.1;
constexpr const char* kTransformersVersion = "4.41.0";

// Tokenizer files copied when present; tokenizer.model is required.
constexpr std::array<const char*, 6> kTokenizerFiles = {
    "tokenizer.model",         "tokenizer_config.json",        "special_tokens_map.json",
    "tokenizer.json",          "tokenization_internlm2.py",    "tokenization_internlm2_fast.py"};

struct Rope {
  std::string type;  // "" = none
  double factor = 1.0;
};

Rope parse_rope(const std::string& spec) {
  if (spec.empty()) return {"dynamic", 2.0};  // the presets' (InternLM2.5) default
  if (spec == "none") return {};
  const auto bad = [&](const std::string& why) {
    return Error(fmt::format("invalid rope scaling '{}': {} (expected none, dynamic:F or linear:F with F >= 1)",
                             spec, why));
  };
  const size_t colon = spec.find(':');
  if (colon == std::string::npos) throw bad("no factor");
  Rope r;
  r.type = spec.substr(0, colon);
  if (r.type != "dynamic" && r.type != "linear") throw bad("unknown type '" + r.type + "'");
  const char* b = spec.data() + colon + 1;
  const char* e = spec.data() + spec.size();
  const auto [end, ec] = std::from_chars(b, e, r.factor);
  if (b == e || ec != std::errc() || end != e) throw bad("factor is not a number");
  if (!std::isfinite(r.factor) || r.factor < 1.0) throw bad("factor must be >= 1");
  return r;
}

std::string format_number(double v) { return fmt::format("{}", v); }

std::string gb(uint64_t bytes) { return fmt::format("{:.2f} GB", static_cast<double>(bytes) / 1e9); }

// The command line that reproduces these options (for the README).
std::string command_line(const SynthOptions& o) {
  std::string c = fmt::format("internlm synth --preset {} --seed {} --dtype {}", o.preset, o.seed,
                              o.dtype == DType::F32 ? "f32" : "bf16");
  if (o.layers > 0) c += fmt::format(" --layers {}", o.layers);
  if (!o.rope_scaling.empty()) c += " --rope-scaling " + o.rope_scaling;
  if (o.max_position_embeddings > 0) c += fmt::format(" --max-position-embeddings {}", o.max_position_embeddings);
  if (o.tie_word_embeddings) c += " --tie-word-embeddings";
  if (o.shard_bytes > 0) {
    if (o.shard_bytes % 1'000'000 == 0)
      c += fmt::format(" --shard-mb {}", o.shard_bytes / 1'000'000);
    else
      c += fmt::format(" (shard size {} bytes)", o.shard_bytes);
  }
  if (o.init_std != 0.02) c += " --init-std " + format_number(o.init_std);
  // The output path is left out so that identical options give identical files everywhere.
  c += " --out DIR";
  return c;
}

struct Plan {
  synth::ModelShape shape;
  Rope rope;
  std::vector<synth::SynthTensor> tensors;
  std::vector<std::vector<size_t>> shards;  // tensor indices, each shard sorted by name
  std::vector<std::string> shard_names;
  fs::path tokenizer_dir;
};

uint64_t tensor_bytes(const synth::SynthTensor& t, DType dtype) { return t.numel() * dtype_size(dtype); }

Plan make_plan(const SynthOptions& o) {
  Plan p;
  const auto shape = synth::find_preset(o.preset);
  if (!shape)
    throw Error(fmt::format("unknown preset '{}' (choose one of: {})", o.preset, synth::preset_names()));
  p.shape = *shape;
  constexpr int64_t kMaxLayers = 100'000;
  if (o.layers < 0 || o.layers > kMaxLayers)
    throw Error(fmt::format("layers must be between 1 and {}, got {}", kMaxLayers, o.layers));
  if (o.layers > 0) p.shape.num_layers = o.layers;
  if (o.max_position_embeddings < 0)
    throw Error(fmt::format("max_position_embeddings must be positive, got {}", o.max_position_embeddings));
  if (o.max_position_embeddings > 0) p.shape.max_position_embeddings = o.max_position_embeddings;
  if (o.dtype != DType::BF16 && o.dtype != DType::F32)
    throw Error(fmt::format("unsupported dtype {} for a synthetic checkpoint (use bf16 or f32)", dtype_name(o.dtype)));
  if (!std::isfinite(o.init_std) || o.init_std < 0)
    throw Error(fmt::format("init_std must be a finite number >= 0, got {}", o.init_std));
  p.rope = parse_rope(o.rope_scaling);
  if (o.out.empty()) throw Error("no output directory given");

  p.tokenizer_dir = o.tokenizer_dir.empty() ? default_tokenizer_dir() : o.tokenizer_dir;
  std::error_code ec;
  if (!fs::is_regular_file(p.tokenizer_dir / "tokenizer.model", ec))
    throw Error(fmt::format("{}: no tokenizer.model in this tokenizer directory", p.tokenizer_dir.string()));

  p.tensors = synth::tensor_list(p.shape, o.tie_word_embeddings);

  std::vector<std::string> names;
  std::vector<uint64_t> bytes;
  for (const auto& t : p.tensors) {
    names.push_back(t.name);
    bytes.push_back(tensor_bytes(t, o.dtype));
  }
  ShardPlan sp = plan_shards(names, bytes, o.shard_bytes ? o.shard_bytes : kDefaultShardBytes);
  p.shards = std::move(sp.shards);
  p.shard_names = std::move(sp.file_names);
  return p;
}

std::vector<TensorDecl> shard_decls(const Plan& p, size_t shard, DType dtype) {
  std::vector<TensorDecl> decls;
  for (size_t i : p.shards[shard]) decls.push_back({p.tensors[i].name, dtype, p.tensors[i].shape});
  return decls;
}

// Checks `out`: a missing path or an empty directory is fine; a non-empty directory needs
// `force`. Returns the stale weight files that would then be removed (a loader would
// otherwise pick up an old index or shard); nothing else in the directory is touched.
std::vector<fs::path> check_out_dir(const SynthOptions& o) {
  std::error_code ec;
  const fs::path& out = o.out;
  std::vector<fs::path> stale;
  if (!fs::exists(out, ec)) return stale;
  if (!fs::is_directory(out, ec)) throw Error(fmt::format("{}: exists and is not a directory", out.string()));
  const bool empty = fs::directory_iterator(out, ec) == fs::directory_iterator();
  if (ec) throw Error(fmt::format("{}: cannot read directory: {}", out.string(), ec.message()));
  if (empty) return stale;
  if (!o.force)
    throw Error(fmt::format("{}: directory exists and is not empty (pass --force to overwrite)", out.string()));
  for (const auto& entry : fs::directory_iterator(out, ec)) {
    const std::string name = entry.path().filename().string();
    const auto ends_with = [&](std::string_view suffix) {
      return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    std::error_code e;
    if (entry.is_regular_file(e) &&
        (ends_with(".safetensors") || ends_with(".safetensors.tmp") || name == "model.safetensors.index.json"))
      stale.push_back(entry.path());
  }
  return stale;
}

// Free space where `path` is or would be created (its nearest existing ancestor).
std::optional<uint64_t> available_space(const fs::path& path) {
  std::error_code ec;
  fs::path p = fs::absolute(path, ec);
  if (ec) return std::nullopt;
  while (!p.empty() && !fs::exists(p, ec)) {
    if (p == p.parent_path()) break;
    p = p.parent_path();
  }
  const fs::space_info space = fs::space(p, ec);
  if (ec) return std::nullopt;
  return space.available;
}

nlohmann::json config_json(const SynthOptions& o, const Plan& p) {
  const synth::ModelShape& s = p.shape;
  nlohmann::json j;
  j["architectures"] = {"InternLM2ForCausalLM"};
  j["auto_map"] = {{"AutoConfig", "configuration_internlm2.InternLM2Config"},
                   {"AutoModel", "modeling_internlm2.InternLM2ForCausalLM"},
                   {"AutoModelForCausalLM", "modeling_internlm2.InternLM2ForCausalLM"}};
  j["attn_implementation"] = "eager";
  j["bias"] = false;
  j["bos_token_id"] = 1;
  j["eos_token_id"] = 2;
  j["pad_token_id"] = 2;
  j["hidden_act"] = "silu";
  j["hidden_size"] = s.hidden_size;
  j["initializer_range"] = o.init_std;
  j["intermediate_size"] = s.intermediate_size;
  j["max_position_embeddings"] = s.max_position_embeddings;
  j["model_type"] = "internlm2";
  j["num_attention_heads"] = s.num_heads;
  j["num_hidden_layers"] = s.num_layers;
  j["num_key_value_heads"] = s.num_kv_heads;
  j["pretraining_tp"] = 1;
  j["rms_norm_eps"] = s.rms_norm_eps;
  if (p.rope.type.empty())
    j["rope_scaling"] = nullptr;
  else
    j["rope_scaling"] = {{"type", p.rope.type}, {"factor", p.rope.factor}};
  // The real file has the integer 1000000.
  if (s.rope_theta == std::floor(s.rope_theta) && s.rope_theta < 9e15)
    j["rope_theta"] = static_cast<int64_t>(s.rope_theta);
  else
    j["rope_theta"] = s.rope_theta;
  j["tie_word_embeddings"] = o.tie_word_embeddings;
  j["torch_dtype"] = o.dtype == DType::F32 ? "float32" : "bfloat16";
  j["transformers_version"] = kTransformersVersion;
  j["use_cache"] = true;
  j["vocab_size"] = s.vocab_size;
  return j;
}

nlohmann::json generation_config_json() {
  // InternLM2.5-chat's generation_config (eos also <|im_end|>, id 92542).
  nlohmann::json j;
  j["bos_token_id"] = 1;
  j["eos_token_id"] = {2, 92542};
  j["pad_token_id"] = 2;
  j["do_sample"] = true;
  j["temperature"] = 0.8;
  j["top_p"] = 0.8;
  j["transformers_version"] = kTransformersVersion;
  return j;
}

std::string readme_text(const SynthOptions& o, const Plan& p, uint64_t params) {
  const synth::ModelShape& s = p.shape;
  std::string rope = p.rope.type.empty() ? "null" : fmt::format("{} x{}", p.rope.type, format_number(p.rope.factor));
  return fmt::format(
      "# Synthetic InternLM2 checkpoint: RANDOM WEIGHTS, NOT A TRAINED MODEL\n"
      "\n"
      "Generated by internlm.cpp (`internlm synth`). It has the exact file layout, config and\n"
      "tensor shapes of a Hugging Face InternLM2 checkpoint, and the real InternLM2 tokenizer,\n"
      "but every weight is random: matrices ~ N(0, {}), norm weights 1 + N(0, {}). Its output\n"
      "is gibberish. Use it to test loaders and engines, never as a model.\n"
      "\n"
      "Command (the same command gives byte-identical files):\n"
      "\n"
      "    {}\n"
      "\n"
      "- preset: {} (hidden {}, layers {}, heads {}, kv heads {}, intermediate {}, vocab {})\n"
      "- seed: {}\n"
      "- dtype: {}\n"
      "- parameters: {}\n"
      "- rope_scaling: {}, max_position_embeddings {}\n"
      "- tie_word_embeddings: {}\n"
      "- weight files: {}\n",
      format_number(o.init_std), format_number(kNormStd), command_line(o), o.preset, s.hidden_size,
      s.num_layers, s.num_heads, s.num_kv_heads, s.intermediate_size, s.vocab_size, o.seed,
      o.dtype == DType::F32 ? "float32" : "bfloat16", params, rope, s.max_position_embeddings,
      o.tie_word_embeddings ? "true" : "false", p.shard_names.size());
}

void write_text_file(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) throw Error(fmt::format("{}: cannot write", path.string()));
}

// Streams every shard. Generation of batch k+1 (on the pool) overlaps the write of batch k
// (on an async task); at most two batches exist at any time.
void write_weights(const SynthOptions& o, const Plan& p, uint64_t total,
                   const std::function<void(uint64_t, uint64_t)>& progress, std::vector<fs::path>& written) {
  ThreadPool pool(0);
  const size_t esize = dtype_size(o.dtype);
  const size_t batch_elems = kBatchBytes / esize;
  std::array<std::vector<std::byte>, 2> bufs;
  for (auto& b : bufs) b.resize(kBatchBytes);
  uint64_t done = 0;
  if (progress) progress(0, total);

  for (size_t s = 0; s < p.shards.size(); ++s) {
    const fs::path path = o.out / p.shard_names[s];
    SafetensorsWriter writer(path, shard_decls(p, s, o.dtype));
    done += writer.file_size();
    for (size_t i : p.shards[s]) done -= tensor_bytes(p.tensors[i], o.dtype);  // header only
    uint64_t in_flight = 0;
    std::future<void> pending;  // declared after `writer`: destroyed (joined) before it
    int cur = 0;
    for (size_t ti : p.shards[s]) {
      const synth::SynthTensor& t = p.tensors[ti];
      const uint64_t key = synth::stream_key(o.seed, t.name);
      const float mean = t.init == synth::InitKind::Norm ? 1.0f : 0.0f;
      const float stddev = static_cast<float>(t.init == synth::InitKind::Norm ? kNormStd : o.init_std);
      const uint64_t numel = t.numel();
      for (uint64_t off = 0; off < numel; off += batch_elems) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(batch_elems, numel - off));
        std::byte* dst = bufs[static_cast<size_t>(cur)].data();
        pool.parallel_for(static_cast<int64_t>(n), [&](int64_t b, int64_t e) {
          synth::fill_normal(key, off + static_cast<uint64_t>(b), static_cast<size_t>(e - b), mean, stddev,
                             o.dtype, dst + static_cast<size_t>(b) * esize);
        });
        if (pending.valid()) {
          pending.get();
          done += in_flight;
          if (progress) progress(done, total);
        }
        in_flight = n * esize;
        pending = std::async(std::launch::async, [&writer, dst, bytes = in_flight] {
          writer.write(std::span<const std::byte>(dst, static_cast<size_t>(bytes)));
        });
        cur ^= 1;
      }
    }
    if (pending.valid()) {
      pending.get();
      done += in_flight;
    }
    writer.finish();
    written.push_back(path);
    if (progress) progress(done, total);
  }
}

}  // namespace

fs::path default_tokenizer_dir() {
  if (const char* env = std::getenv("INTERNLM_TOKENIZER_DIR"); env != nullptr && *env != '\0') {
    const fs::path dir = env;
    std::error_code ec;
    if (!fs::is_regular_file(dir / "tokenizer.model", ec))
      throw Error(fmt::format("INTERNLM_TOKENIZER_DIR={}: no tokenizer.model in that directory", dir.string()));
    return dir;
  }
  const fs::path dir = bundled_tokenizer_dir();
  std::error_code ec;
  if (!fs::is_regular_file(dir / "tokenizer.model", ec))
    throw Error(fmt::format(
        "no tokenizer found: {} does not exist. Point to a directory holding the InternLM2 "
        "tokenizer.model (and tokenizer_config.json, special_tokens_map.json) with --tokenizer DIR "
        "or the INTERNLM_TOKENIZER_DIR environment variable",
        (dir / "tokenizer.model").string()));
  return dir;
}

SynthSummary write_synthetic_checkpoint(const SynthOptions& opts,
                                        const std::function<void(uint64_t, uint64_t)>& progress) {
  const Plan plan = make_plan(opts);

  SynthSummary summary;
  for (const auto& t : plan.tensors) {
    summary.params += t.numel();
    summary.tensor_bytes += tensor_bytes(t, opts.dtype);
  }
  uint64_t weight_total = 0;  // file sizes, headers included
  for (size_t s = 0; s < plan.shards.size(); ++s)
    weight_total += SafetensorsWriter::planned_file_size(shard_decls(plan, s, opts.dtype));

  const std::vector<fs::path> stale = check_out_dir(opts);

  // Disk space: weights + tokenizer copies + a little for JSON and README, checked before
  // anything is created or removed. Stale weights about to be removed count as free.
  uint64_t needed = weight_total + (1u << 20);
  std::error_code ec;
  for (const char* f : kTokenizerFiles) {
    const auto sz = fs::file_size(plan.tokenizer_dir / f, ec);
    if (!ec) needed += sz;
  }
  if (const auto avail = available_space(opts.out)) {
    uint64_t freed = 0;
    for (const auto& f : stale) {
      const auto sz = fs::file_size(f, ec);
      if (!ec) freed += sz;
    }
    if (*avail + freed < needed)
      throw Error(fmt::format("{}: not enough free disk space: the checkpoint needs {} ({} bytes), {} available",
                              opts.out.string(), gb(needed), needed, gb(*avail + freed)));
  }

  const bool created = !fs::exists(opts.out, ec);
  if (created) {
    fs::create_directories(opts.out, ec);
    if (ec) throw Error(fmt::format("{}: cannot create directory: {}", opts.out.string(), ec.message()));
  }
  for (const auto& f : stale) {
    fs::remove(f, ec);
    if (ec) throw Error(fmt::format("{}: cannot remove: {}", f.string(), ec.message()));
  }

  std::vector<fs::path> weight_files;
  try {
    write_weights(opts, plan, weight_total, progress, weight_files);
  } catch (...) {
    for (const auto& f : weight_files) fs::remove(f, ec);
    if (created) fs::remove(opts.out, ec);  // only if empty
    throw;
  }
  for (const auto& f : weight_files) summary.files.push_back(f.filename().string());
  summary.weight_files = weight_files.size();
  summary.bytes_written = weight_total;

  const auto add_file = [&](const fs::path& path) {
    summary.files.push_back(path.filename().string());
    std::error_code e;
    const auto sz = fs::file_size(path, e);
    if (!e) summary.bytes_written += sz;
  };

  if (plan.shards.size() > 1) {
    std::vector<std::string> names;
    for (const auto& t : plan.tensors) names.push_back(t.name);
    write_shard_index(opts.out, {plan.shards, plan.shard_names}, names, summary.tensor_bytes);
    add_file(opts.out / "model.safetensors.index.json");
  }
  write_json_file(opts.out / "config.json", config_json(opts, plan));
  add_file(opts.out / "config.json");
  write_json_file(opts.out / "generation_config.json", generation_config_json());
  add_file(opts.out / "generation_config.json");
  for (const char* f : kTokenizerFiles) {
    const fs::path src = plan.tokenizer_dir / f, dst = opts.out / f;
    std::error_code e;
    if (!fs::is_regular_file(src, e)) continue;
    if (fs::exists(dst, e) && fs::equivalent(src, dst, e)) {
      add_file(dst);
      continue;
    }
    // The source may be read-only; the copy must not be (a later --force rewrites it).
    fs::remove(dst, e);
    fs::copy_file(src, dst, e);
    if (!e)
      fs::permissions(dst, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                      fs::perms::others_read, fs::perm_options::replace, e);
    if (e) throw Error(fmt::format("cannot copy {} to {}: {}", src.string(), dst.string(), e.message()));
    add_file(dst);
  }
  write_text_file(opts.out / "README.md", readme_text(opts, plan, summary.params));
  add_file(opts.out / "README.md");
  return summary;
}

}  // namespace ilm
