// Stage 3, operators: the operator compatibility matrix of the chosen backend, then every
// operator against the ref backend on random inputs of the model's real shapes (the weights are
// random too, in the checkpoint's dtype and the chosen weight format): max abs and relative
// error per operator and case, held to a stated tolerance per operator.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include <fmt/format.h>

#include "backend/backend.h"
#include "backend/host_tensor.h"
#include "common/dtype.h"
#include "common/error.h"
#include "model/kv_cache.h"
#include "model/rope.h"
#include "validate/fault_inject.h"
#include "validate/operator_check.h"
#include "validate/stages.h"

namespace ilm::validate {

namespace {

std::vector<float> random_vec(size_t n, uint64_t seed, float scale) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> d(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}


}  // namespace

OpError compare_outputs(std::span<const float> got, std::span<const float> want) {
  OpError e;
  double peak = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - static_cast<double>(want[i]));
    if (!(d <= e.max_abs)) e.max_abs = std::isnan(d) ? INFINITY : d;  // NaN counts as infinite error
    peak = std::max(peak, std::fabs(static_cast<double>(want[i])));
  }
  e.ref_peak = peak;
  e.rel = peak > 0 ? e.max_abs / peak : (e.max_abs > 0 ? INFINITY : 0.0);
  return e;
}

DType dtype_of_config(const ModelConfig& c) {
  if (c.torch_dtype == "float32") return DType::F32;
  if (c.torch_dtype == "float16") return DType::F16;
  return DType::BF16;
}

std::vector<OpCase> run_operator_cases(Backend& test, Backend& ref, const ModelConfig& c, const QuantSpec& quant,
                                       const OpCaseOptions& o, const std::function<void(const std::string&)>& note) {
  std::vector<OpCase> out;
  const int64_t H = c.hidden_size, nh = c.num_heads, nkv = c.num_kv_heads, hd = c.head_dim, I = c.intermediate_size;
  const int64_t V = c.vocab_size;
  const DType wt = dtype_of_config(c);
  uint64_t seed = 1234;
  auto say = [&](const std::string& s) {
    if (note) note(s);
  };
  const std::vector<int64_t> token_counts = {1, std::max<int64_t>(2, o.tokens)};

  // matmul on each projection's shape.
  struct Mat {
    std::string name;
    int64_t rows, cols;
  };
  const int64_t head_rows = std::min(V, o.max_head_rows);
  const std::vector<Mat> mats = {{"wqkv", (nh + 2 * nkv) * hd, H},
                                 {"wo", H, nh * hd},
                                 {"w1", I, H},
                                 {"w2", H, I},
                                 {"output", head_rows, H}};
  for (const auto& m : mats) {
    say(fmt::format("matmul {} [{}, {}]", m.name, m.rows, m.cols));
    HostTensor w(wt, {m.rows, m.cols}, random_vec(static_cast<size_t>(m.rows * m.cols), ++seed, 0.05f), m.name);
    auto wt_test = test.load_weight(w.ref, quant);
    auto wt_ref = ref.load_weight(w.ref, quant);
    for (int64_t T : token_counts) {
      const auto x = random_vec(static_cast<size_t>(T * m.cols), ++seed, 1.0f);
      std::vector<float> y1(static_cast<size_t>(T * m.rows)), y2(y1.size());
      test.matmul(x.data(), T, *wt_test, nullptr, y1.data());
      ref.matmul(x.data(), T, *wt_ref, nullptr, y2.data());
      OpCase k;
      k.op = "matmul";
      k.name = fmt::format("{} T={}", m.name, T);
      k.shape = fmt::format("x [{}, {}] · W[{}, {}]ᵀ{}{}", T, m.cols, m.rows, m.cols,
                            quant.format == QuantFormat::None ? std::string() : fmt::format(" {}", quant_name(quant)),
                            m.name == "output" && head_rows < V ? fmt::format(" (first {} of {} vocab rows)", head_rows, V) : "");
      k.err = compare_outputs(y1, y2);
      out.push_back(k);
    }
  }

  // rmsnorm
  for (int64_t T : token_counts) {
    auto wv = random_vec(static_cast<size_t>(H), ++seed, 0.2f);
    for (auto& v : wv) v += 1.0f;
    HostTensor w(wt, {H}, wv, "norm");
    auto a = test.load_weight(w.ref), b = ref.load_weight(w.ref);
    const auto x = random_vec(static_cast<size_t>(T * H), ++seed, 1.0f);
    std::vector<float> y1(x.size()), y2(x.size());
    test.rmsnorm(x.data(), T, *a, static_cast<float>(c.rms_norm_eps), y1.data());
    ref.rmsnorm(x.data(), T, *b, static_cast<float>(c.rms_norm_eps), y2.data());
    out.push_back({"rmsnorm", fmt::format("T={}", T), fmt::format("[{}, {}], eps {}", T, H, c.rms_norm_eps),
                   compare_outputs(y1, y2)});
  }

  // rope on the query heads, at early positions and at the end of the context.
  for (int64_t T : token_counts) {
    for (int64_t start : {int64_t{0}, std::max<int64_t>(0, c.max_position_embeddings - T)}) {
      const auto x = random_vec(static_cast<size_t>(T * nh * hd), ++seed, 1.0f);
      std::vector<float> y1 = x, y2 = x;
      std::vector<int64_t> pos(static_cast<size_t>(T));
      for (int64_t t = 0; t < T; ++t) pos[static_cast<size_t>(t)] = start + t;
      const RopeSpec spec = rope_spec(c, start + T);
      test.rope(y1.data(), T, nh, hd, nh * hd, pos, spec);
      ref.rope(y2.data(), T, nh, hd, nh * hd, pos, spec);
      out.push_back({"rope", fmt::format("T={} pos {}", T, start),
                     fmt::format("[{}, {} x {}], positions {}..{}, theta {}", T, nh, hd, start, start + T - 1,
                                 c.rope_theta),
                     compare_outputs(y1, y2)});
    }
  }

  // attention: T new queries after `past` cached positions, GQA as configured; an f32 cache for
  // each token count, and 16-bit and int8 caches (serve --kv-cache-dtype) for the multi-token
  // case. Both backends read the same cache.
  std::vector<std::pair<int64_t, DType>> attn_cases;
  for (int64_t T : token_counts) attn_cases.push_back({T, DType::F32});
  attn_cases.push_back({token_counts.back(), DType::BF16});
  attn_cases.push_back({token_counts.back(), DType::F16});
  attn_cases.push_back({token_counts.back(), DType::I8});
  for (auto [T, kv_dtype] : attn_cases) {
    const int64_t past = o.attention_past, L = past + T;
    say(fmt::format("attention past {} + {} new, {} cache", past, T, dtype_name(kv_dtype)));
    KvCache cache(1, nkv, hd, L, kv_dtype);
    cache.reserve_more(L);
    KvView kv = cache.layer(0, L);
    const auto kvals = random_vec(static_cast<size_t>(L * nkv * hd * 2), ++seed, 1.0f);
    for (int64_t p = 0; p < L; ++p) {
      kv_row_store(kv, kv.k(p), kvals.data() + p * nkv * hd);
      kv_row_store(kv, kv.v(p), kvals.data() + (L + p) * nkv * hd);
    }
    const auto q = random_vec(static_cast<size_t>(T * nh * hd), ++seed, 1.0f);
    std::vector<float> y1(q.size()), y2(q.size());
    test.attention(q.data(), T, nh, nkv, hd, kv, past, y1.data());
    ref.attention(q.data(), T, nh, nkv, hd, kv, past, y2.data());
    const bool f32 = kv_dtype == DType::F32;
    out.push_back({"attention",
                   f32 ? fmt::format("T={} past={}", T, past)
                       : fmt::format("T={} past={} kv {}", T, past, dtype_name(kv_dtype)),
                   fmt::format("q [{}, {} x {}], {} kv heads, {} cached positions{}", T, nh, hd, nkv, past,
                               f32 ? std::string() : fmt::format(", {} KV cache", dtype_name(kv_dtype))),
                   compare_outputs(y1, y2)});
  }

  // silu_mul and add on the FFN / hidden widths.
  for (int64_t T : token_counts) {
    const auto g = random_vec(static_cast<size_t>(T * I), ++seed, 4.0f);
    const auto u = random_vec(static_cast<size_t>(T * I), ++seed, 1.0f);
    std::vector<float> y1(g.size()), y2(g.size());
    test.silu_mul(g.data(), u.data(), T * I, y1.data());
    ref.silu_mul(g.data(), u.data(), T * I, y2.data());
    out.push_back({"silu_mul", fmt::format("T={}", T), fmt::format("[{}, {}]", T, I), compare_outputs(y1, y2)});

    const auto x = random_vec(static_cast<size_t>(T * H), ++seed, 1.0f);
    const auto y = random_vec(static_cast<size_t>(T * H), ++seed, 1.0f);
    std::vector<float> a1 = x, a2 = x;
    test.add(a1.data(), y.data(), T * H);
    ref.add(a2.data(), y.data(), T * H);
    out.push_back({"add", fmt::format("T={}", T), fmt::format("[{}, {}]", T, H), compare_outputs(a1, a2)});
  }

  // embedding: rows of a table of the model's width (sampled vocabulary).
  {
    const int64_t rows = std::min(V, o.max_head_rows);
    HostTensor tab(wt, {rows, H}, random_vec(static_cast<size_t>(rows * H), ++seed, 0.05f), "tok_embeddings");
    auto a = test.load_weight(tab.ref), b = ref.load_weight(tab.ref);
    const int64_t T = token_counts.back();
    std::vector<TokenId> ids(static_cast<size_t>(T));
    std::mt19937 rng(static_cast<uint32_t>(++seed));
    for (auto& id : ids) id = static_cast<TokenId>(rng() % static_cast<uint32_t>(rows));
    std::vector<float> y1(static_cast<size_t>(T * H)), y2(y1.size());
    test.embedding(*a, ids, y1.data());
    ref.embedding(*b, ids, y2.data());
    out.push_back({"embedding", fmt::format("T={}", T),
                   fmt::format("{} ids into [{}, {}]{}", T, rows, H,
                               rows < V ? fmt::format(" (first {} of {} vocab rows)", rows, V) : ""),
                   compare_outputs(y1, y2)});
  }
  return out;
}

void stage_operators(Context& ctx, StageResult& r) {
  const Options& o = ctx.opts;
  std::optional<ModelConfig> cfg;
  if (ctx.model) {
    cfg = ctx.model->config;
  } else {
    try {
      cfg = ModelConfig::load(o.model_dir);
    } catch (const Error& e) {
      r.skip(fmt::format("config.json cannot be read ({})", e.what()));
      return;
    }
  }
  std::unique_ptr<Backend> test, ref;
  try {
    test = make_backend(o.backend, o.threads, o.precision);
    if (!ctx.fault.empty()) test = make_faulty_backend(std::move(test), parse_fault(ctx.fault));
    ref = make_backend("ref", o.threads);
  } catch (const Error& e) {
    r.skip(e.what());
    return;
  }
  const QuantSpec quant = parse_quant(o.quant);

  // The matrix: the chosen backend against the full operator set (ref implements all of it).
  nlohmann::json matrix = nlohmann::json::array();
  const auto ref_ops = ref->operators();
  const auto test_ops = test->operators();
  std::vector<std::string> missing;
  for (const auto& op : ref_ops) {
    auto it = std::find_if(test_ops.begin(), test_ops.end(), [&](const OperatorInfo& x) { return x.name == op.name; });
    matrix.push_back({{"operator", op.name},
                      {"implemented", it != test_ops.end()},
                      {"description", it != test_ops.end() ? it->description : std::string()},
                      {"ref_description", op.description}});
    if (it == test_ops.end()) missing.push_back(op.name);
  }
  r.data["matrix"] = matrix;
  r.data["weight_formats"] = test->weight_formats();
  r.data["backend"] = std::string(test->name());
  {
    Check c;
    c.id = "operators.matrix";
    c.name = "Operator compatibility matrix";
    c.status = missing.empty() ? Status::Pass : Status::Fail;
    c.detail = missing.empty() ? fmt::format("backend {} implements all {} operators; weight formats {}", o.backend,
                                             ref_ops.size(), fmt::join(test->weight_formats(), ", "))
                               : fmt::format("backend {} lacks {}", o.backend, fmt::join(missing, ", "));
    c.source = fmt::format("Backend::operators() of {} vs ref (as `internlm ops`)", o.backend);
    r.add(c);
  }
  if (o.backend == "ref")
    ctx.note("note: the backend under test is ref itself, so the comparison only checks determinism");

  OpCaseOptions oc;
  oc.tokens = static_cast<int64_t>(ctx.th.get(ctx.quick() ? "operators.quick_tokens" : "operators.full_tokens"));
  oc.max_head_rows = static_cast<int64_t>(ctx.th.get("operators.max_head_rows"));
  oc.attention_past = static_cast<int64_t>(ctx.th.get("operators.attention_past")) * (ctx.quick() ? 1 : 8);
  std::vector<OpCase> cases;
  try {
    cases = run_operator_cases(*test, *ref, *cfg, quant, oc, [&](const std::string& s) { ctx.note(s); });
  } catch (const Error& e) {
    Check c;
    c.id = "operators.run";
    c.name = "Operator checks";
    c.status = Status::Fail;
    c.detail = e.what();
    r.add(c);
    return;
  }
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& k : cases) {
    const double tol = ctx.th.get(fast_key(o, fmt::format("operators.{}_rel_tol", k.op)));
    const bool ok = tol > 0 ? k.err.rel <= tol : k.err.max_abs == 0;
    Check c;
    std::string slug = k.name;
    for (auto& ch : slug)
      if (ch == ' ' || ch == '=') ch = '_';
    c.id = fmt::format("operators.{}.{}", k.op, slug);
    c.name = fmt::format("{} {}", k.op, k.name);
    c.status = ok ? Status::Pass : Status::Fail;
    c.value = std::isfinite(k.err.rel) ? nlohmann::json(k.err.rel) : nlohmann::json("inf");
    c.threshold = tol;
    c.detail = fmt::format("{}: max abs error {}, relative {} (tolerance {}{})", k.shape, sci(k.err.max_abs),
                           sci(k.err.rel), sci(tol), tol > 0 ? "" : ": exact");
    c.source = fmt::format("{} vs ref on random inputs, seeded; threshold operators.{}_rel_tol", o.backend, k.op);
    r.add(c);
    rows.push_back({{"op", k.op},
                    {"case", k.name},
                    {"shape", k.shape},
                    {"max_abs", std::isfinite(k.err.max_abs) ? nlohmann::json(k.err.max_abs) : nlohmann::json()},
                    {"rel", std::isfinite(k.err.rel) ? nlohmann::json(k.err.rel) : nlohmann::json()},
                    {"tolerance", tol},
                    {"status", ok ? "pass" : "fail"}});
  }
  r.data["cases"] = rows;
  r.data["settings"] = {{"tokens", oc.tokens},
                        {"max_head_rows", oc.max_head_rows},
                        {"attention_past", oc.attention_past},
                        {"weight_dtype", std::string(dtype_name(dtype_of_config(*cfg)))},
                        {"quant", quant_name(quant)}};
}

}  // namespace ilm::validate
