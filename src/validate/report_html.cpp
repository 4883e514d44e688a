// report.html: one self-contained file (inline CSS and SVG, no external resources) with the
// same content as report.md plus the charts: latency CDFs per concurrency, throughput vs
// concurrency, decode speed and prefill time vs context length, per-operator error, and the
// logits error per position.
#include <fmt/format.h>

#include "validate/report_text.h"
#include "validate/svg_charts.h"
#include "validate/validate.h"

namespace ilm::validate {

namespace {

using nlohmann::json;

std::string h(const std::string& s) {
  std::string e = xml_escape(s);
  std::string out;
  for (char c : e) {
    if (c == '\n')
      out += "<br>";
    else
      out += c;
  }
  return out;
}

const json* stage(const json& rep, const std::string& id) {
  for (const auto& s : rep["stages"])
    if (s["id"] == id) return &s;
  return nullptr;
}

std::vector<double> nums(const json& a) {
  std::vector<double> v;
  if (a.is_array())
    for (const auto& x : a)
      if (x.is_number()) v.push_back(x.get<double>());
  return v;
}

struct Figure {
  std::string caption, svg;
};

std::vector<Figure> charts(const json& rep) {
  std::vector<Figure> out;
  const json* perf = stage(rep, "performance");
  const json serving = perf && perf->at("data").contains("serving") ? perf->at("data")["serving"] : json();
  {
    LineChart ttft{"TTFT CDF per concurrency", "time to first token (ms)", "fraction of requests", false, false, true, false, {}};
    LineChart e2el{"End-to-end latency CDF per concurrency", "end-to-end latency (ms)", "fraction of requests", false, false, true, false, {}};
    LineChart thr{"Throughput vs concurrency", "concurrency", "output tokens/s", false, false, false, true, {}};
    Series tput{"output tok/s", {}, {}};
    if (serving.is_object())
      for (const auto& l : serving["levels"]) {
        const std::string name = fmt::format("concurrency {}", l["concurrency"].get<int>());
        ttft.series.push_back(cdf_series(name, nums(l["ttft_ms_samples"])));
        e2el.series.push_back(cdf_series(name, nums(l["e2el_ms_samples"])));
        tput.x.push_back(l["concurrency"].get<double>());
        tput.y.push_back(l["output_throughput"].get<double>());
      }
    if (!tput.x.empty()) thr.series.push_back(tput);
    out.push_back({"Serving latency: TTFT CDF (bench-serve, per concurrency level)", svg_line_chart(ttft)});
    out.push_back({"Serving latency: end-to-end CDF (bench-serve, per concurrency level)", svg_line_chart(e2el)});
    out.push_back({"Output-token throughput vs concurrency (bench-serve)", svg_line_chart(thr)});
  }
  {
    LineChart dec{"Decode speed vs context length", "context length (tokens)", "decode tokens/s", true, false, false, true, {}};
    LineChart pre{"Prefill time vs context length", "context length (tokens)", "prefill time (s)", true, true, false, true, {}};
    Series ds{"decode tok/s", {}, {}}, rs{"bandwidth roofline (weights + KV)", {}, {}}, ps{"prefill s", {}, {}};
    if (perf && perf->at("data").contains("sweep"))
      for (const auto& r : perf->at("data")["sweep"]["rows"]) {
        if (r.contains("decode_tokens_per_s")) {
          ds.x.push_back(r["length"].get<double>());
          ds.y.push_back(r["decode_tokens_per_s"].get<double>());
        }
        if (r.contains("roofline_tokens_per_s")) {
          rs.x.push_back(r["length"].get<double>());
          rs.y.push_back(r["roofline_tokens_per_s"].get<double>());
        }
        if (r.contains("prefill_s")) {  // lengths decoded after a synthesised context have none
          ps.x.push_back(r["length"].get<double>());
          ps.y.push_back(r["prefill_s"].get<double>());
        }
      }
    if (!ds.x.empty()) dec.series.push_back(ds);
    if (!rs.x.empty()) dec.series.push_back(rs);
    if (!ps.x.empty()) pre.series.push_back(ps);
    out.push_back({"Context-length sweep: decode speed", svg_line_chart(dec)});
    out.push_back({"Context-length sweep: prefill time", svg_line_chart(pre)});
  }
  {
    BarChart b{"Per-operator relative error vs ref (dashes: tolerance)", "max|backend - ref| / max|ref|", true, {}, {}, {}, {}};
    const json* ops = stage(rep, "operators");
    if (ops && ops->at("data").contains("cases"))
      for (const auto& c : ops->at("data")["cases"]) {
        b.labels.push_back(fmt::format("{} {}", c["op"].get<std::string>(), c["case"].get<std::string>()));
        b.values.push_back(c["rel"].is_number() ? c["rel"].get<double>() : INFINITY);
        b.limits.push_back(c["tolerance"].get<double>());
        b.ok.push_back(c["status"] == "pass");
      }
    out.push_back({"Operators: error of each operator against the ref backend", svg_bar_chart(b)});
  }
  {
    LineChart p{"Logits relative error per position (vs ref)", "position", "max|backend - ref| / max|ref|", false, true, false, true, {}};
    const json* pr = stage(rep, "precision");
    if (pr && pr->at("data").contains("ref"))
      for (const auto& q : pr->at("data")["ref"]["prompts"]) {
        Series s{q["id"].get<std::string>(), {}, nums(q["rel_per_position"])};
        for (size_t i = 0; i < s.y.size(); ++i) s.x.push_back(static_cast<double>(i));
        p.series.push_back(s);
      }
    out.push_back({"Precision: logits error at each prompt position", svg_line_chart(p)});
  }
  return out;
}

const char* kStyle = R"(
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Noto Sans CJK SC",sans-serif;margin:24px auto;max-width:1180px;color:#222;padding:0 16px}
h1{font-size:24px}h2{font-size:19px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:10px 0 18px;font-size:13px;width:100%}
th,td{border:1px solid #ddd;padding:4px 7px;text-align:left;vertical-align:top}th{background:#f4f4f4}
td.num{text-align:right;white-space:nowrap}
.pass{color:#116611;font-weight:bold}.fail{color:#b00;font-weight:bold}.warn{color:#a60;font-weight:bold}.info{color:#456}.skip{color:#888}
.verdict{font-size:22px;padding:10px 14px;border-radius:6px;display:inline-block}
.verdict.pass{background:#e6f4e6}.verdict.fail{background:#fbe4e4}.verdict.warn{background:#fff3dd}
.charts{display:flex;flex-wrap:wrap;gap:14px}figure{margin:0;border:1px solid #e3e3e3;padding:6px;flex:1 1 520px;max-width:calc(50% - 22px)}svg.chart{width:100%;height:auto}figcaption{font-size:12px;color:#555}
code{background:#f4f4f4;padding:1px 4px;border-radius:3px;font-size:12px}
.src{font-size:12px;color:#555}
)";

const char* kScript = R"(
window.addEventListener('load',function(){var n=0;document.querySelectorAll('svg.chart').forEach(function(s){var b=s.getBBox();if(b.width>0&&b.height>0)n++;});document.body.setAttribute('data-charts-rendered',String(n));var e=document.getElementById('render-status');if(e)e.textContent=n+' charts rendered';});
)";

}  // namespace

std::string render_html(const json& rep) {
  std::string o;
  const auto& st = rep["settings"];
  const std::string verdict = rep["verdict"].get<std::string>();
  o += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n";
  o += fmt::format("<title>internlm validate: {} — {}</title>\n<style>{}</style></head>\n<body data-charts-rendered=\"0\">\n",
                   h(st["model_dir"].get<std::string>()), verdict, kStyle);
  o += fmt::format("<h1>Validation report: {}</h1>\n", h(st["model_dir"].get<std::string>()));
  std::string up = verdict;
  for (auto& ch : up) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  o += fmt::format("<p><span class=\"verdict {}\">Verdict: {}</span> &nbsp; {} passed, {} failed, {} warnings, {} "
                   "informational, {} skipped</p>\n",
                   verdict, up, rep["counts"]["pass"].get<int>(), rep["counts"]["fail"].get<int>(),
                   rep["counts"]["warn"].get<int>(), rep["counts"]["info"].get<int>(), rep["counts"]["skip"].get<int>());
  o += "<table>\n";
  o += fmt::format("<tr><th>command</th><td><code>{}</code></td></tr>\n", h(rep["command"].get<std::string>()));
  o += fmt::format("<tr><th>run</th><td>{} → {} ({:.1f} s), internlm.cpp {}</td></tr>\n", rep["started_at"].get<std::string>(),
                   rep["finished_at"].get<std::string>(), rep["duration_s"].get<double>(),
                   h(rep["engine_version"].get<std::string>()));
  o += fmt::format("<tr><th>machine</th><td>{}</td></tr>\n", h(machine_summary(rep["machine"])));
  o += fmt::format("<tr><th>settings</th><td>backend {}, weights {}, threads {}, mode {}, golden {}, prompts {}, config {}{}</td></tr>\n",
                   h(st["backend"].get<std::string>()), h(st["quant"].get<std::string>()), st["threads"].get<int>() > 0 ? std::to_string(st["threads"].get<int>()) : std::string("all"),
                   h(st["mode"].get<std::string>()),
                   st["golden_dir"].is_null() ? "none" : h(st["golden_dir"].get<std::string>()),
                   h(st["prompts_file"].get<std::string>()),
                   st["config_file"].is_null() ? "defaults" : h(st["config_file"].get<std::string>()),
                   st["fault_injection"].is_null()
                       ? ""
                       : fmt::format(", <b class=\"fail\">fault injection {}</b>", h(st["fault_injection"].get<std::string>())));
  o += "</table>\n";

  o += "<h2>Summary</h2>\n<table><tr><th>stage</th><th>verdict</th><th>checks</th><th>time</th><th>summary</th></tr>\n";
  for (const auto& s : rep["stages"])
    o += fmt::format("<tr><td><a href=\"#{}\">{}</a></td><td class=\"{}\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1f} s</td><td>{}</td></tr>\n",
                     h(s["id"].get<std::string>()), h(s["title"].get<std::string>()), s["status"].get<std::string>(),
                     status_mark(s["status"].get<std::string>()), s["checks"].size(), s["seconds"].get<double>(),
                     h(s["summary"].get<std::string>()));
  o += "</table>\n";

  o += "<h2>Charts</h2>\n<p class=\"src\" id=\"render-status\">charts not rendered (a browser renders them)</p>\n<div class=\"charts\">\n";
  for (const auto& f : charts(rep)) o += fmt::format("<figure>{}<figcaption>{}</figcaption></figure>\n", f.svg, h(f.caption));
  o += "</div>\n";

  for (const auto& s : rep["stages"]) {
    o += fmt::format("<h2 id=\"{}\">{} — <span class=\"{}\">{}</span></h2>\n", h(s["id"].get<std::string>()),
                     h(s["title"].get<std::string>()), s["status"].get<std::string>(),
                     status_mark(s["status"].get<std::string>()));
    o += "<table><tr><th></th><th>check</th><th>measured</th><th>threshold</th><th>detail</th><th>how measured</th></tr>\n";
    for (const auto& c : s["checks"])
      o += fmt::format("<tr><td class=\"{}\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"src\">{}</td></tr>\n",
                       c["status"].get<std::string>(), status_mark(c["status"].get<std::string>()),
                       h(c["name"].get<std::string>()), h(value_text(c["value"], c["unit"].get<std::string>())),
                       h(value_text(c["threshold"], c["unit"].get<std::string>())), h(c["detail"].get<std::string>()),
                       h(c["source"].get<std::string>()));
    o += "</table>\n";
    for (const auto& t : stage_tables(s)) {
      o += fmt::format("<p><b>{}</b></p>\n<table><tr>", h(t.title));
      for (const auto& hd : t.header) o += fmt::format("<th>{}</th>", h(hd));
      o += "</tr>\n";
      for (const auto& row : t.rows) {
        o += "<tr>";
        for (const auto& cell : row) o += fmt::format("<td>{}</td>", h(cell));
        o += "</tr>\n";
      }
      o += "</table>\n";
    }
  }

  o += "<h2>Thresholds and settings in force</h2>\n<table><tr><th>key</th><th>value</th><th>default</th><th>origin</th><th>meaning</th></tr>\n";
  for (const auto& [k, v] : rep["thresholds"].items())
    o += fmt::format("<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n", h(k), h(v["value"].dump()),
                     h(v["default"].dump()), h(v["origin"].get<std::string>()), h(v["help"].get<std::string>()));
  o += "</table>\n<h2>Files</h2>\n<ul>\n";
  for (const auto& a : rep["artifacts"])
    o += fmt::format("<li><a href=\"{0}\">{0}</a></li>\n", h(a.get<std::string>()));
  o += "</ul>\n<p class=\"src\">Every figure in this report was measured by the run that wrote it.</p>\n";
  o += fmt::format("<script>{}</script>\n</body></html>\n", kScript);
  return o;
}

}  // namespace ilm::validate
