// Stage 2, model: the checkpoint's files and their consistency (index <-> shards, shapes <->
// config), dtypes, parameters, memory per weight format, weights finite, the tokenizer's round
// trip on a multilingual sample, the chat template, and the load on the chosen backend.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "common/dtype.h"
#include "common/error.h"
#include "io/json_file.h"
#include "model/registry.h"
#include "runtime/loaded_model.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "validate/fault_inject.h"
#include "validate/stages.h"

namespace ilm::validate {

nlohmann::json checkpoint_footprint(const CheckpointInfo& info);  // environment.cpp

namespace fs = std::filesystem;

const std::vector<std::string>& tokenizer_samples() {
  static const std::vector<std::string> s = {
      "你好，请介绍一下你自己。上海人工智能实验室发布了书生·浦语大模型。",
      "The quick brown fox jumps over the lazy dog; it's 3.14 miles away!",
      "日本語のテキスト：東京は日本の首都です。",
      "한국어 문장입니다. 서울은 대한민국의 수도입니다.",
      "Привет, мир! Это проверка токенизатора.",
      "مرحبا بالعالم، هذا اختبار.",
      "emoji 😀🚀👩‍💻 and symbols ∑∫√π ≤ ≥ ≠ ∞ — “quotes” «guillemets»",
      "def f(x):\n\treturn x ** 2  # code with\ttabs and  double  spaces\n",
      "  leading spaces, trailing spaces  \n\n\nnewlines\r\nand CRLF",
      "数学：1 + 1 = 2，3 × 4 = 12；English mixed 中文 mixed.",
  };
  return s;
}

std::unique_ptr<LoadedModel> load_model(const Context& ctx, const std::string& backend) {
  const Options& o = ctx.opts;
  auto m = std::make_unique<LoadedModel>(LoadedModel::load(o.model_dir, {backend, o.threads, parse_quant(o.quant), o.precision, o.load_progress}));
  if (!ctx.fault.empty() && backend == o.backend) {
    // The backend under test, perturbed (test hook): same weights, rebuilt over the wrapper.
    m->lm.reset();
    m->backend = make_faulty_backend(std::move(m->backend), parse_fault(ctx.fault));
    m->lm = create_model(m->config, *m->store, *m->backend, parse_quant(o.quant));
  }
  return m;
}

namespace {

// Non-finite values in a tensor: all of it (full) or its first 1 MiB (quick).
uint64_t count_non_finite(const TensorRef& t, bool full, uint64_t& checked) {
  const size_t esize = dtype_size(t.dtype);
  if (t.dtype != DType::F32 && t.dtype != DType::BF16 && t.dtype != DType::F16) return 0;
  uint64_t n = t.nbytes / esize;
  if (!full) n = std::min<uint64_t>(n, (uint64_t{1} << 20) / esize);
  checked += n;
  uint64_t bad = 0;
  for (uint64_t i = 0; i < n; ++i) {
    float v;
    if (t.dtype == DType::F32) {
      std::memcpy(&v, t.data + i * 4, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, t.data + i * 2, 2);
      v = t.dtype == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
    }
    bad += std::isfinite(v) ? 0 : 1;
  }
  return bad;
}

}  // namespace

void stage_model(Context& ctx, StageResult& r) {
  const Options& o = ctx.opts;
  const fs::path dir = o.model_dir;
  auto emit = [&](Check c) -> Check& {
    if (c.source.empty()) c.source = fmt::format("checkpoint {}", dir.string());
    r.add(std::move(c));
    return r.checks.back();
  };
  auto mk = [](std::string id, std::string name, Status st, std::string detail) {
    Check c;
    c.id = fmt::format("model.{}", id);
    c.name = std::move(name);
    c.status = st;
    c.detail = std::move(detail);
    return c;
  };
  std::error_code ec;
  // Files.
  {
    std::vector<std::string> missing, present, optional_missing;
    for (const char* f : {"config.json", "tokenizer.model"}) (fs::exists(dir / f, ec) ? present : missing).push_back(f);
    for (const char* f : {"tokenizer_config.json", "generation_config.json"})
      (fs::exists(dir / f, ec) ? present : optional_missing).push_back(f);
    std::vector<std::string> shards;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
      if (it->path().extension() == ".safetensors") shards.push_back(it->path().filename().string());
    std::sort(shards.begin(), shards.end());
    if (shards.empty()) missing.push_back("*.safetensors");
    r.data["files"] = {{"present", present}, {"missing", missing}, {"optional_missing", optional_missing},
                       {"safetensors", shards}};
    emit(mk("files", "Required files", missing.empty() ? Status::Pass : Status::Fail,
            missing.empty() ? fmt::format("config.json, tokenizer.model and {} safetensors file(s) present", shards.size())
                            : fmt::format("{}: missing {}", dir.string(), fmt::join(missing, ", "))));
    if (!optional_missing.empty())
      emit(mk("optional_files", "Optional files", Status::Warn,
              fmt::format("missing {} (defaults apply: BOS added, no sampling defaults)", fmt::join(optional_missing, ", "))));
  }

  // Config, index and shards.
  std::optional<CheckpointInfo> info;
  try {
    info.emplace(CheckpointInfo::load(dir));
  } catch (const Error& e) {
    ctx.model_error = e.what();
    emit(mk("checkpoint", "Config, index and shards readable", Status::Fail, e.what()));
    return;
  }
  const ModelConfig& c = info->config;
  emit(mk("checkpoint", "Config, index and shards readable", Status::Pass,
          fmt::format("{} ({}), {} file(s), {} tensors; every header valid and data sections covered exactly",
                      c.architecture, c.model_type, info->store->files().size(), info->store->names().size())));
  if (info->store->sharded()) {
    const nlohmann::json idx = read_json_file(dir / "model.safetensors.index.json");
    std::set<std::string> named;
    for (const auto& [t, f] : idx["weight_map"].items()) named.insert(f.get<std::string>());
    std::vector<std::string> unnamed_shards, unindexed_tensors;
    for (const auto& s : r.data["files"]["safetensors"])
      if (!named.count(s.get<std::string>())) unnamed_shards.push_back(s.get<std::string>());
    for (const auto& n : info->store->names())
      if (!idx["weight_map"].contains(n)) unindexed_tensors.push_back(n);
    std::string detail = fmt::format("index names {} shard(s), all present, every tensor where the index says",
                                     named.size());
    Status st = Status::Pass;
    if (idx.contains("metadata") && idx["metadata"].is_object() && idx["metadata"].contains("total_size") &&
        idx["metadata"]["total_size"].is_number()) {
      const auto total = idx["metadata"]["total_size"].get<uint64_t>();
      if (total != info->store->total_bytes()) {
        st = Status::Warn;
        detail += fmt::format("; metadata.total_size {} differs from the tensors' {} bytes", total,
                              info->store->total_bytes());
      } else {
        detail += fmt::format("; metadata.total_size {} matches", total);
      }
    }
    if (!unnamed_shards.empty()) {
      st = Status::Warn;
      detail += fmt::format("; shard(s) not named by the index (ignored): {}", fmt::join(unnamed_shards, ", "));
    }
    if (!unindexed_tensors.empty()) {
      st = Status::Warn;
      detail += fmt::format("; {} tensor(s) in the shards but not in the index", unindexed_tensors.size());
    }
    emit(mk("index", "Index <-> shards", st, detail));
  }

  // Shapes against the config: the architecture takes every tensor in place on the cpu backend.
  {
    try {
      auto be = make_backend("cpu", 1);
      auto lm = create_model(c, *info->store, *be);
      const auto used_list = lm->weight_names();
      std::set<std::string> used(used_list.begin(), used_list.end());
      std::vector<std::string> unused;
      for (const auto& n : info->store->names())
        if (!used.count(n)) unused.push_back(n);
      emit(mk("shapes", "Tensor shapes <-> config", unused.empty() ? Status::Pass : Status::Warn,
              unused.empty()
                  ? fmt::format("all {} tensors the config implies are present with the right shape and dtype",
                                used.size())
                  : fmt::format("shapes match; {} tensor(s) not used by {}: {}", unused.size(), c.architecture,
                                fmt::join(unused, ", "))));
      r.data["context_limit"] = lm->context_limit();
    } catch (const Error& e) {
      ctx.model_error = e.what();
      emit(mk("shapes", "Tensor shapes <-> config", Status::Fail, e.what()));
      return;
    }
  }

  // Dtypes, parameters, memory per format.
  {
    std::map<std::string, std::pair<uint64_t, uint64_t>> by_dtype;
    uint64_t bad = 0, checked = 0;
    std::string first_bad;
    for (const auto& n : info->store->names()) {
      const TensorRef t = info->store->get(n);
      auto& d = by_dtype[std::string(dtype_name(t.dtype))];
      d.first += 1;
      d.second += t.nbytes;
      const uint64_t b = count_non_finite(t, !ctx.quick(), checked);
      if (b && first_bad.empty()) first_bad = n;
      bad += b;
    }
    nlohmann::json dt = nlohmann::json::object();
    std::vector<std::string> parts;
    for (const auto& [k, v] : by_dtype) {
      dt[k] = {{"tensors", v.first}, {"bytes", v.second}};
      parts.push_back(fmt::format("{}: {} tensors ({})", k, v.first, gb(static_cast<double>(v.second))));
    }
    r.data["dtypes"] = dt;
    emit(mk("dtype", "Dtypes", Status::Info,
            fmt::format("{}; config torch_dtype {}", fmt::join(parts, ", "), c.torch_dtype)));
    Check fin = mk("finite", "Weights finite", bad ? Status::Fail : Status::Pass,
                   bad ? fmt::format("{} non-finite value(s) (NaN/Inf), first in tensor '{}'", bad, first_bad)
                       : fmt::format("no NaN/Inf in {} values checked ({})", checked,
                                     ctx.quick() ? "first 1 MiB of every tensor; --full reads all" : "every value"));
    fin.value = bad;
    fin.threshold = 0;
    emit(fin);

    if (ctx.checkpoint.is_null()) ctx.checkpoint = checkpoint_footprint(*info);
    r.data["footprint"] = ctx.checkpoint;
    const auto& b = ctx.checkpoint["bytes_per_format"];
    Check p = mk("parameters", "Parameters and memory per format", Status::Info,
                 fmt::format("{:.4g} B parameters; weights as stored {}, bf16 {}, f32 {}, int8 {}, int4 {}; KV cache {} "
                             "per token (f32)",
                             ctx.checkpoint["parameters"].get<double>() / 1e9, gb(b["as_stored"].get<double>()),
                             gb(b["bf16"].get<double>()), gb(b["f32"].get<double>()), gb(b["int8"].get<double>()),
                             gb(b["int4"].get<double>()), gb(ctx.checkpoint["kv_bytes_per_token"].get<double>())));
    p.value = ctx.checkpoint["parameters"];
    p.unit = "parameters";
    emit(p);
  }

  // Tokenizer.
  std::optional<Tokenizer> tok;
  try {
    tok.emplace(Tokenizer::load(dir));
  } catch (const Error& e) {
    ctx.model_error = e.what();
    emit(mk("tokenizer", "Tokenizer loads", Status::Fail, e.what()));
    return;
  }
  {
    Check v = mk("tokenizer_vocab", "Tokenizer vocabulary fits the model",
                 tok->vocab_size() <= c.vocab_size ? Status::Pass : Status::Fail,
                 fmt::format("tokenizer {} tokens, config vocab_size {}", tok->vocab_size(), c.vocab_size));
    emit(v);
    nlohmann::json samples = nlohmann::json::array();
    size_t ok = 0;
    std::string first_bad;
    for (const auto& s : tokenizer_samples()) {
      const auto ids = tok->encode(s, false);
      const std::string back = tok->decode(ids);
      const bool same = back == s;
      ok += same ? 1 : 0;
      if (!same && first_bad.empty()) first_bad = s;
      samples.push_back({{"text", s}, {"tokens", ids.size()}, {"round_trip", same}});
    }
    r.data["tokenizer_samples"] = samples;
    Check rt = mk("tokenizer_round_trip", "Tokenizer round trip (multilingual sample)",
                  ok == tokenizer_samples().size() ? Status::Pass : Status::Fail,
                  ok == tokenizer_samples().size()
                      ? fmt::format("decode(encode(text)) == text for all {} samples (Chinese, English, Japanese, "
                                    "Korean, Russian, Arabic, emoji, code, whitespace)",
                                    ok)
                      : fmt::format("{} of {} samples changed by the round trip, e.g. {:?}",
                                    tokenizer_samples().size() - ok, tokenizer_samples().size(), first_bad));
    rt.value = static_cast<double>(ok) / static_cast<double>(tokenizer_samples().size());
    rt.threshold = 1.0;
    emit(rt);

    // Chat template: the rendered text, and ids equal to encoding that text.
    const std::vector<ChatMessage> msgs = {{"system", "You are a helpful assistant."},
                                           {"user", "你好"},
                                           {"assistant", "你好！有什么可以帮你？"},
                                           {"user", "Tell me a joke."}};
    const std::string text = render_chat(msgs, true);
    const auto ids = encode_chat(*tok, msgs, true);
    const auto ids2 = tok->encode(text, false);
    const auto im_start = tok->piece_to_id("<|im_start|>"), im_end = tok->piece_to_id("<|im_end|>");
    const bool markers = text.rfind("<s><|im_start|>system\nYou are a helpful assistant.<|im_end|>\n", 0) == 0 &&
                         text.size() >= 22 && text.substr(text.size() - 22) == "<|im_start|>assistant\n";
    const bool ok_ids = ids == ids2 && !ids.empty() && ids.front() == tok->bos_id();
    const bool specials = im_start.has_value() && im_end.has_value();
    std::string why;
    if (!markers) why += "rendered text does not follow the InternLM2 template; ";
    if (!ok_ids) why += "encode_chat differs from encoding the rendered text; ";
    if (!specials) why += "<|im_start|> / <|im_end|> are not special tokens of this tokenizer; ";
    r.data["chat_template"] = {{"rendered", text}, {"ids", ids}, {"tokenizer_config_template", tok->chat_template()}};
    emit(mk("chat_template", "Chat template rendering", why.empty() ? Status::Pass : Status::Fail,
            why.empty() ? fmt::format("4-turn conversation renders to {} tokens, BOS once, <|im_start|>={} "
                                      "<|im_end|>={}, ids equal the encoded text",
                                      ids.size(), *im_start, *im_end)
                        : why.substr(0, why.size() - 2)));
  }

  // The load on the chosen backend.
  try {
    const double t0 = now_seconds();
    ctx.model = load_model(ctx, o.backend);
    const double secs = now_seconds() - t0;
    Check l = mk("load", "Loads on the chosen backend", Status::Pass,
                 fmt::format("backend {} ({} threads), weights {}, context limit {}, loaded in {:.2f} s", o.backend,
                             ctx.model->backend->threads(), o.quant == "none" ? "as stored" : o.quant,
                             ctx.model->lm->context_limit(), secs));
    l.value = secs;
    l.unit = "s";
    emit(l);
    r.data["load_seconds"] = secs;
  } catch (const Error& e) {
    ctx.model_error = e.what();
    emit(mk("load", "Loads on the chosen backend", Status::Fail, e.what()));
  }
}

}  // namespace ilm::validate
