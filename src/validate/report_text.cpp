#include "validate/report_text.h"

#include <cmath>

#include <fmt/format.h>

#include "validate/report.h"

namespace ilm::validate {

using nlohmann::json;

namespace {

std::string f(const json& v, const char* spec = "{:.2f}") {
  if (!v.is_number()) return v.is_null() ? "–" : v.is_string() ? v.get<std::string>() : v.dump();
  return fmt::format(fmt::runtime(spec), v.get<double>());
}

std::string short_text(std::string s, size_t n) {
  if (s.size() > n) {
    size_t cut = n;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;  // whole UTF-8 characters
    s = fmt::format("{}…", s.substr(0, cut));
  }
  return s;
}

const json& get(const json& j, const char* k) {
  static const json null;
  return j.is_object() && j.contains(k) ? j[k] : null;
}

}  // namespace

std::string value_text(const json& v, const std::string& unit) {
  if (v.is_null()) return "–";
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_string()) return unit.empty() ? v.get<std::string>() : fmt::format("{} {}", v.get<std::string>(), unit);
  if (!v.is_number()) return v.dump();
  const double d = v.get<double>();
  std::string s;
  const double a = std::fabs(d);
  if (d == 0)
    s = "0";
  else if (a < 1e-2 || a >= 1e7)
    s = sci(d);
  else if (a >= 100)
    s = fmt::format("{:.1f}", d);
  else
    s = fmt::format("{:.3g}", d);
  return unit.empty() ? s : fmt::format("{} {}", s, unit);
}

std::string status_mark(const std::string& s) {
  if (s == "pass") return "PASS";
  if (s == "fail") return "FAIL";
  if (s == "warn") return "WARN";
  if (s == "info") return "info";
  return "skip";
}

std::string machine_summary(const json& m) {
  std::string s = fmt::format("{}", m.value("cpu_model", std::string("unknown CPU")));
  if (m.contains("hardware_threads")) s += fmt::format(", {} threads", m["hardware_threads"].get<int>());
  if (m.contains("memory_total_bytes")) s += fmt::format(", {} RAM", gb(m["memory_total_bytes"].get<double>()));
  if (m.contains("os")) s += fmt::format("; {}", m["os"].get<std::string>());
  if (m.contains("compiler")) s += fmt::format("; {}", m["compiler"].get<std::string>());
  if (m.contains("hostname")) s += fmt::format("; host {}", m["hostname"].get<std::string>());
  return s;
}

std::vector<Table> stage_tables(const json& st) {
  std::vector<Table> out;
  const std::string id = st["id"].get<std::string>();
  const json& d = st["data"];
  if (id == "environment" && d.contains("machine")) {
    Table t{"Machine and build", {"item", "value"}, {}};
    for (const auto& [k, v] : d["machine"].items())
      t.rows.push_back({k, v.is_string() ? v.get<std::string>() : v.dump()});
    out.push_back(t);
  }
  if (id == "model" && d.contains("footprint")) {
    Table t{"Weights per format", {"format", "bytes"}, {}};
    for (const auto& [k, v] : d["footprint"]["bytes_per_format"].items()) t.rows.push_back({k, gb(v.get<double>())});
    out.push_back(t);
  }
  if (id == "operators" && d.contains("matrix")) {
    Table t{fmt::format("Operator compatibility matrix ({})", get(d, "backend").is_string() ? d["backend"].get<std::string>() : "?"),
            {"operator", "implemented", "kernel"}, {}};
    for (const auto& r : d["matrix"])
      t.rows.push_back({r["operator"].get<std::string>(), r["implemented"].get<bool>() ? "yes" : "NO",
                        r["description"].get<std::string>()});
    out.push_back(t);
  }
  if (id == "operators" && d.contains("cases")) {
    Table t{"Per-operator error vs ref", {"operator", "case", "shape", "max abs", "relative", "tolerance", "verdict"}, {}};
    for (const auto& r : d["cases"])
      t.rows.push_back({r["op"].get<std::string>(), r["case"].get<std::string>(), r["shape"].get<std::string>(),
                        value_text(r["max_abs"], ""), value_text(r["rel"], ""), value_text(r["tolerance"], ""),
                        r["status"].get<std::string>()});
    out.push_back(t);
  }
  if (id == "precision" && d.contains("ref")) {
    Table t{"Backend vs ref, per prompt",
            {"prompt", "tokens", "max rel", "max abs", "mean KL", "top-1", "greedy"}, {}};
    for (const auto& p : d["ref"]["prompts"])
      t.rows.push_back({p["id"].get<std::string>(), f(p["tokens"], "{:.0f}"), value_text(p["max_rel"], ""),
                        value_text(p["max_abs"], ""), value_text(p["mean_kl"], ""),
                        fmt::format("{}/{}", p["top1_agree"].get<int64_t>(), p["positions"].get<int64_t>()),
                        p["greedy"]["note"].get<std::string>()});
    out.push_back(t);
  }
  if (id == "precision" && d.contains("golden")) {
    Table t{"Backend vs golden logits", {"file", "source", "positions", "max rel", "mean KL", "top-1"}, {}};
    for (const auto& p : d["golden"]["files"])
      t.rows.push_back({p["file"].get<std::string>(), p["source"].get<std::string>(), f(p["positions"], "{:.0f}"),
                        value_text(p["max_rel"], ""), value_text(p["mean_kl"], ""),
                        fmt::format("{}/{}", p["top1_agree"].get<int64_t>(), p["positions"].get<int64_t>())});
    out.push_back(t);
  }
  if (id == "inference" && d.contains("prompts")) {
    Table t{"Outputs at temperature 0 (first run)",
            {"prompt", "prompt tok", "completion tok", "finish", "latency (s)", "identical", "output"}, {}};
    for (const auto& p : d["prompts"]) {
      if (p.contains("error")) {
        t.rows.push_back({p["id"].get<std::string>(), "", "", "error", "", "", p["error"].get<std::string>()});
        continue;
      }
      t.rows.push_back({p["id"].get<std::string>(), f(p["prompt_tokens"], "{:.0f}"), f(p["completion_tokens"], "{:.0f}"),
                        p["finish_reason"].get<std::string>(),
                        fmt::format("{:.3f} / {:.3f}", p["latency_s"][0].get<double>(), p["latency_s"][1].get<double>()),
                        p["deterministic"].get<bool>() ? "yes" : "NO", short_text(p["output"].get<std::string>(), 160)});
    }
    out.push_back(t);
  }
  if (id == "performance" && d.contains("bench")) {
    const json& b = d["bench"];
    Table t{"Throughput (model_bench)", {"figure", "value"}, {}};
    t.rows.push_back({"prefill tok/s", fmt::format("{:.2f} ± {:.2f} (pp{})", b["pp_tokens_per_s"]["mean"].get<double>(),
                                                   b["pp_tokens_per_s"]["stddev"].get<double>(),
                                                   b["settings"]["pp_tokens"].get<int64_t>())});
    t.rows.push_back({"decode tok/s", fmt::format("{:.2f} ± {:.2f} (tg{})", b["tg_tokens_per_s"]["mean"].get<double>(),
                                                  b["tg_tokens_per_s"]["stddev"].get<double>(),
                                                  b["settings"]["tg_tokens"].get<int64_t>())});
    t.rows.push_back({"decode bytes / token", gb(b["decode_bytes_per_token"].get<double>())});
    auto list = [](const json& a) {
      std::vector<std::string> v;
      for (double x : a.get<std::vector<double>>()) v.push_back(fmt::format("{:.1f}", x));
      return fmt::format("{}", fmt::join(v, ", "));
    };
    t.rows.push_back({"read bandwidth before / after each decode run (GB/s)",
                      fmt::format("{} / {}", list(b["bandwidth_before_gbps"]), list(b["bandwidth_after_gbps"]))});
    t.rows.push_back({"decode vs roofline", fmt::format("{:.1f}% – {:.1f}%",
                                                        100 * b["tg_roofline_ratio"]["vs_highest_bandwidth"].get<double>(),
                                                        100 * b["tg_roofline_ratio"]["vs_lowest_bandwidth"].get<double>())});
    t.rows.push_back({"prefill GFLOP/s / f32 FMA peak", fmt::format("{:.1f} / {:.1f}", b["pp_gflops"].get<double>(),
                                                                     b["fma_peak_gflops"].get<double>())});
    if (b.contains("bf16_dot_peak_gflops"))
      t.rows.push_back({"bf16 dot peak GFLOP/s", f(b["bf16_dot_peak_gflops"], "{:.1f}")});
    t.rows.push_back({"peak RSS", gb(b["peak_rss_bytes"].get<double>())});
    out.push_back(t);
  }
  if (id == "performance" && d.contains("serving")) {
    Table t{"Serving (bench-serve)",
            {"concurrency", "ok / failed", "TTFT p50/p90/p99 ms", "TPOT p50/p90/p99 ms", "ITL p50/p90/p99 ms",
             "E2EL p50/p90/p99 ms", "output tok/s", "req/s"},
            {}};
    auto pct = [](const json& s) {
      if (!s.is_object()) return std::string("–");
      return fmt::format("{:.1f} / {:.1f} / {:.1f}", s.value("median", NAN), s.value("p90", NAN), s.value("p99", NAN));
    };
    for (const auto& l : d["serving"]["levels"])
      t.rows.push_back({f(l["concurrency"], "{:.0f}"),
                        fmt::format("{} / {}", l["completed"].dump(), l["failed"].dump()), pct(l["ttft_ms"]),
                        pct(l["tpot_ms"]), pct(l["itl_ms"]), pct(l["e2el_ms"]), f(l["output_throughput"], "{:.1f}"),
                        f(l["request_throughput"], "{:.2f}")});
    out.push_back(t);
  }
  if (id == "performance" && d.contains("sweep")) {
    Table t{"Context-length sweep",
            {"context", "prefill (s)", "prefill tok/s", "decode tok/s", "roofline tok/s", "of roofline", "note"},
            {}};
    for (const auto& r : d["sweep"]["rows"]) {
      const json ratio = r.contains("roofline_ratio") ? r["roofline_ratio"]["vs_highest_bandwidth"] : json();
      std::string note = r.contains("skipped") ? fmt::format("skipped: {}", r["skipped"].get<std::string>())
                         : r.contains("prefill_skipped")
                             ? fmt::format("synthesised context; prefill not run: {}", r["prefill_skipped"].get<std::string>())
                             : std::string();
      t.rows.push_back({f(r["length"], "{:.0f}"), f(get(r, "prefill_s"), "{:.3f}"), f(get(r, "prefill_tokens_per_s"), "{:.1f}"),
                        f(get(r, "decode_tokens_per_s"), "{:.2f}"), f(get(r, "roofline_tokens_per_s"), "{:.2f}"),
                        ratio.is_number() ? fmt::format("{:.0f}%", 100 * ratio.get<double>()) : std::string("-"),
                        std::move(note)});
    }
    out.push_back(t);
  }
  return out;
}

}  // namespace ilm::validate
