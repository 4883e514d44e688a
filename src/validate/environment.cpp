// Stage 1, environment: the machine, the build, the libraries, and whether the checkpoint fits
// (memory and disk) — each failure says what is needed and what is there.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "common/error.h"
#include "model/kv_cache.h"
#include "model/registry.h"
#include "runtime/loaded_model.h"
#include "validate/stages.h"
#include "validate/subprocess.h"

#ifndef INTERNLM_SENTENCEPIECE_VERSION
#define INTERNLM_SENTENCEPIECE_VERSION "unknown"
#endif
#ifndef INTERNLM_BUILD_FLAGS
#define INTERNLM_BUILD_FLAGS ""
#endif
#ifndef INTERNLM_COMPILER_ID
#define INTERNLM_COMPILER_ID "unknown"
#endif

namespace ilm::validate {

std::string httplib_version();  // api_check.cpp (where httplib.h is included)

namespace {

// Finds `prog` on PATH.
std::string which(const std::string& prog) {
  const char* path = std::getenv("PATH");
  if (!path) return "";
  std::string p(path), dir;
  size_t pos = 0;
  while (pos <= p.size()) {
    size_t colon = p.find(':', pos);
    if (colon == std::string::npos) colon = p.size();
    dir = p.substr(pos, colon - pos);
    pos = colon + 1;
    if (dir.empty()) continue;
    const std::filesystem::path cand = std::filesystem::path(dir) / prog;
    std::error_code ec;
    if (std::filesystem::is_regular_file(cand, ec) && ::access(cand.c_str(), X_OK) == 0) return cand.string();
  }
  return "";
}

}  // namespace

// Weights per format, from the tensor index alone (no backend): the quantized formats apply to
// every 2-D tensor but the embedding table (the projections and the output head).
nlohmann::json checkpoint_footprint(const CheckpointInfo& info) {
  const ModelConfig& c = info.config;
  double params = 0, matrix_params = 0, other_bytes_bf16 = 0;
  for (const auto& n : info.store->names()) {
    const TensorRef t = info.store->get(n);
    const double k = static_cast<double>(t.numel());
    params += k;
    if (t.shape.size() == 2 && n.find("tok_embeddings") == std::string::npos)
      matrix_params += k;
    else
      other_bytes_bf16 += k * 2;
  }
  const double kv_per_token_f32 = 2.0 * static_cast<double>(c.num_layers * c.num_kv_heads * c.head_dim) * 4;
  nlohmann::json j;
  j["parameters"] = params;
  j["stored_bytes"] = static_cast<double>(info.store->total_bytes());
  j["bytes_per_format"] = {
      {"as_stored", static_cast<double>(info.store->total_bytes())},
      {"f32", params * 4},
      {"bf16", params * 2},
      {"int8", matrix_params * quant_bytes_per_weight(parse_quant("int8")) + other_bytes_bf16},
      {"int4", matrix_params * quant_bytes_per_weight(parse_quant("int4")) + other_bytes_bf16}};
  j["kv_bytes_per_token"] = kv_per_token_f32;
  j["max_position_embeddings"] = c.max_position_embeddings;
  return j;
}

double weights_in_format(const nlohmann::json& fp, const std::string& quant) {
  const std::string fmt_name = quant == "none" ? "as_stored" : quant.substr(0, quant.find(':'));
  const auto& b = fp["bytes_per_format"];
  return b.contains(fmt_name) ? b[fmt_name].get<double>() : b["as_stored"].get<double>();
}

void stage_environment(Context& ctx, StageResult& r) {
  const Options& o = ctx.opts;
  nlohmann::json m;
  const MemoryInfo mem = memory_info();
  const unsigned hw = std::thread::hardware_concurrency();
  m["cpu_model"] = cpu_model_name();
  m["cpu_features"] = cpu::cpu_features();
  std::vector<std::string> isas;
  for (auto s : cpu::supported_isas()) isas.emplace_back(s);
  m["cpu_kernel_isas"] = isas;
  const char* forced = std::getenv("INTERNLM_CPU_KERNELS");
  m["cpu_kernel_isa_selected"] = forced && *forced ? std::string(forced) : std::string(cpu::best_kernels(o.precision).isa);
  m["hardware_threads"] = hw;
  m["threads_used"] = o.threads > 0 ? o.threads : static_cast<int>(hw);
  m["memory_total_bytes"] = mem.total_bytes;
  m["memory_available_bytes"] = mem.available_bytes;
  m["out_dir_free_disk_bytes"] = free_disk_bytes(o.out_dir);
  m["model_dir_free_disk_bytes"] = free_disk_bytes(o.model_dir);
  m["os"] = os_description();
#ifdef __VERSION__
  m["compiler"] = fmt::format("{} ({})", INTERNLM_COMPILER_ID, __VERSION__);
#else
  m["compiler"] = INTERNLM_COMPILER_ID;
#endif
  m["engine_version"] = INTERNLM_VERSION;
  m["build_type"] = INTERNLM_BUILD_TYPE;
  m["build_flags"] = INTERNLM_BUILD_FLAGS;
  m["backends_compiled"] = backend_names();
  m["backend_selected"] = o.backend;
  m["precision"] = std::string(precision_name(o.precision));
  m["quant"] = o.quant;
  m["kv_cache_dtype"] = o.kv_dtype;
  std::vector<std::string> archs;
  for (const auto& a : architectures()) archs.push_back(a.name);
  m["architectures"] = archs;
  m["libraries"] = {
      {"sentencepiece", INTERNLM_SENTENCEPIECE_VERSION},
      {"fmt", fmt::format("{}.{}.{}", FMT_VERSION / 10000, FMT_VERSION / 100 % 100, FMT_VERSION % 100)},
      {"nlohmann_json", fmt::format("{}.{}.{}", NLOHMANN_JSON_VERSION_MAJOR, NLOHMANN_JSON_VERSION_MINOR,
                                    NLOHMANN_JSON_VERSION_PATCH)},
      {"cpp_httplib", httplib_version()}};

  // Accelerators: nvidia-smi when present (this build has no GPU backend: a GPU is only listed).
  const std::string smi = which("nvidia-smi");
  nlohmann::json acc = {{"nvidia_smi", smi.empty() ? nlohmann::json() : nlohmann::json(smi)}};
  std::string acc_detail = "no accelerator found (no nvidia-smi on PATH)";
  if (!smi.empty()) {
    const auto log = o.out_dir / "nvidia-smi.log";
    const auto st = run_command({smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"}, log,
                                log, 20);
    const std::string text = slurp(log);
    acc["query"] = text;
    acc["exit_status"] = st ? *st : -1;
    std::vector<std::string> gpus;
    size_t pos = 0;
    while (pos < text.size()) {
      auto nl = text.find('\n', pos);
      if (nl == std::string::npos) nl = text.size();
      if (nl > pos) gpus.push_back(text.substr(pos, nl - pos));
      pos = nl + 1;
    }
    acc["gpus"] = gpus;
    acc_detail = st && *st == 0 && !gpus.empty()
                     ? fmt::format("{} GPU(s): {}; no GPU backend is compiled into this build, so it is not used",
                                   gpus.size(), fmt::join(gpus, "; "))
                     : fmt::format("nvidia-smi found at {} but the query failed (exit {}); see nvidia-smi.log", smi,
                                   st ? *st : -1);
  }
  m["accelerator"] = acc;
  r.data["machine"] = m;

  const std::string src = "read from /proc, statvfs, uname and the build's version macros";
  auto info = [&](std::string id, std::string name, std::string detail, nlohmann::json value = {}) {
    Check c;
    c.id = fmt::format("environment.{}", id);
    c.name = std::move(name);
    c.status = Status::Info;
    c.detail = std::move(detail);
    c.value = std::move(value);
    c.source = src;
    r.add(c);
  };
  info("cpu", "CPU", fmt::format("{}; {} hardware threads, {} used; kernels {} (features: {})",
                                 m["cpu_model"].get<std::string>(), hw, m["threads_used"].get<int>(),
                                 m["cpu_kernel_isa_selected"].get<std::string>(),
                                 fmt::join(cpu::cpu_features(), " ")));
  info("os", "OS", m["os"].get<std::string>());
  info("build", "Engine build",
       fmt::format("internlm.cpp {} ({}), {}, flags '{}'", INTERNLM_VERSION, INTERNLM_BUILD_TYPE,
                   m["compiler"].get<std::string>(), INTERNLM_BUILD_FLAGS));
  info("libraries", "Linked libraries",
       fmt::format("sentencepiece {}, fmt {}, nlohmann-json {}, cpp-httplib {}",
                   m["libraries"]["sentencepiece"].get<std::string>(), m["libraries"]["fmt"].get<std::string>(),
                   m["libraries"]["nlohmann_json"].get<std::string>(),
                   m["libraries"]["cpp_httplib"].get<std::string>()));
  info("accelerator", "Accelerator", acc_detail);

  // The backend and weight format asked for.
  auto emit = [&](Check c) {
    if (c.source.empty()) c.source = src;
    r.add(c);
  };
  const auto names = backend_names();
  const bool compiled = std::find(names.begin(), names.end(), o.backend) != names.end();
  {
    Check c;
    c.id = "environment.backend";
    c.name = "Backend compiled in";
    c.status = compiled ? Status::Pass : Status::Fail;
    c.detail = compiled ? fmt::format("'{}' will run (compiled: {})", o.backend, fmt::join(names, ", "))
                        : fmt::format("backend '{}' is not compiled into this build (compiled: {})", o.backend,
                                      fmt::join(names, ", "));
    c.value = o.backend;
    emit(c);
  }
  if (compiled && o.quant != "none") {
    Check c;
    c.id = "environment.weight_format";
    c.name = "Weight format supported";
    try {
      const QuantSpec q = parse_quant(o.quant);
      auto be = make_backend(o.backend, 1);
      const auto formats = be->weight_formats();
      const std::string base = quant_name(q).substr(0, quant_name(q).find(':'));
      const bool ok = std::find(formats.begin(), formats.end(), base) != formats.end();
      c.status = ok ? Status::Pass : Status::Fail;
      c.detail = fmt::format("--quant {}: backend '{}' accepts {}", quant_name(q), o.backend, fmt::join(formats, ", "));
    } catch (const Error& e) {
      c.status = Status::Fail;
      c.detail = e.what();
    }
    emit(c);
  }
  if (o.threads > 0 && hw > 0 && static_cast<unsigned>(o.threads) > hw) {
    Check c;
    c.id = "environment.threads";
    c.name = "Threads vs hardware";
    c.status = Status::Warn;
    c.detail = fmt::format("--threads {} exceeds the {} hardware threads: threads will share cores and every "
                           "throughput figure is lower than this machine can do",
                           o.threads, hw);
    emit(c);
  }
  if (!ctx.fault.empty()) {
    Check c;
    c.id = "environment.fault_injection";
    c.name = "Fault injection";
    c.status = Status::Warn;
    c.detail = fmt::format("INTERNLM_FAULT_INJECT={} is set: the backend under test is deliberately perturbed",
                           ctx.fault);
    emit(c);
  }
  if (forced && *forced) {
    Check c;
    c.id = "environment.cpu_kernels_forced";
    c.name = "Kernel set forced";
    c.status = Status::Info;
    c.detail = fmt::format("INTERNLM_CPU_KERNELS={} overrides the automatic choice", forced);
    emit(c);
  }

  // Disk for the report and logs.
  {
    const double need = ctx.th.get("environment.min_free_disk_gb") * 1e9;
    const double have = m["out_dir_free_disk_bytes"].get<double>();
    Check c;
    c.id = "environment.disk";
    c.name = "Free disk (output folder)";
    c.value = have / 1e9;
    c.threshold = need / 1e9;
    c.unit = "GB";
    c.status = have >= need ? Status::Pass : Status::Fail;
    c.detail = have >= need ? fmt::format("{} free in {}, {} required", gb(have), o.out_dir.string(), gb(need))
                            : fmt::format("{} needs {} free, {} free", o.out_dir.string(), gb(need), gb(have));
    c.source = "statvfs of the output folder; threshold environment.min_free_disk_gb";
    emit(c);
  }

  // Memory vs the checkpoint in the format it will run in.
  Check c;
  c.id = "environment.memory";
  c.name = "Memory for weights + KV cache";
  c.unit = "GB";
  try {
    const CheckpointInfo ci = CheckpointInfo::load(o.model_dir);
    ctx.checkpoint = checkpoint_footprint(ci);
    const double weights = weights_in_format(ctx.checkpoint, o.quant);
    const int64_t kv_tokens = std::min<int64_t>(4096, ci.config.max_position_embeddings);
    // kv_bytes_per_token is for an f32 cache; the servers use o.kv_dtype.
    const auto kv_t = parse_kv_cache_dtype(o.kv_dtype).value_or(DType::F32);
    const double kv_scale = static_cast<double>(kv_row_bytes(ci.config.num_kv_heads, ci.config.head_dim, kv_t)) /
                            static_cast<double>(kv_row_bytes(ci.config.num_kv_heads, ci.config.head_dim, DType::F32));
    const double kv =
        ctx.checkpoint["kv_bytes_per_token"].get<double>() * kv_scale * static_cast<double>(kv_tokens);
    const double margin = ctx.th.get("environment.memory_margin_gb") * 1e9;
    // Weights used as stored are one page-cache copy shared by validate and the `internlm serve` it
    // starts; weights quantized at load are a private copy in each process.
    const bool serves = o.stages.empty() || std::find(o.stages.begin(), o.stages.end(), "api") != o.stages.end() ||
                        std::find(o.stages.begin(), o.stages.end(), "performance") != o.stages.end();
    const int copies = serves && o.quant != "none" ? 2 : 1;
    const double need = weights * copies + kv * copies + margin;
    c.value = need / 1e9;
    c.threshold = mem.available_bytes / 1e9;
    c.status = need <= mem.available_bytes ? Status::Pass : Status::Fail;
    c.detail = fmt::format("checkpoint needs {} ({}weights {} as {} + {} KV cache {} for {} tokens + margin {}), {} "
                           "available of {}",
                           gb(need), copies == 2 ? "2 x (validate and the serve it starts quantize separately) " : "",
                           gb(weights), o.quant == "none" ? "stored" : o.quant, o.kv_dtype, gb(kv), kv_tokens, gb(margin),
                           gb(mem.available_bytes), gb(mem.total_bytes));
    c.source = "tensor index of the checkpoint and /proc/meminfo MemAvailable; environment.memory_margin_gb";
  } catch (const Error& e) {
    c.status = Status::Skip;
    c.detail = fmt::format("skipped: the checkpoint cannot be read ({}); see the model stage", e.what());
  }
  emit(c);
}

}  // namespace ilm::validate
