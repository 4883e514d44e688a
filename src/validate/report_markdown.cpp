// report.md: the report JSON as Markdown — verdict, machine, settings, every check with its
// measured value, threshold and source, the stage tables, the thresholds in force.
#include <set>

#include <fmt/format.h>

#include "validate/report_text.h"
#include "validate/validate.h"

namespace ilm::validate {

namespace {

using nlohmann::json;

std::string md(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += "\\|";
    else if (c == '\n') out += "<br>";
    else if (c == '\r') continue;
    else out += c;
  }
  return out;
}

std::string code(const std::string& s) {
  return s.find('`') == std::string::npos ? fmt::format("`{}`", s) : fmt::format("`` {} ``", s);
}

}  // namespace

std::string render_markdown(const json& rep) {
  std::string o;
  const auto& st = rep["settings"];
  std::string verdict = rep["verdict"].get<std::string>();
  for (auto& ch : verdict) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  o += fmt::format("# Validation report: {}\n\n", md(st["model_dir"].get<std::string>()));
  o += fmt::format("**Verdict: {}** — {} passed, {} failed, {} warnings, {} informational, {} skipped.\n\n", verdict,
                   rep["counts"]["pass"].get<int>(), rep["counts"]["fail"].get<int>(), rep["counts"]["warn"].get<int>(),
                   rep["counts"]["info"].get<int>(), rep["counts"]["skip"].get<int>());
  o += fmt::format("- Command: {}\n", code(rep["command"].get<std::string>()));
  o += fmt::format("- Run: {} → {} ({:.1f} s), internlm.cpp {}\n", rep["started_at"].get<std::string>(),
                   rep["finished_at"].get<std::string>(), rep["duration_s"].get<double>(),
                   rep["engine_version"].get<std::string>());
  o += fmt::format("- Settings: backend {} (precision {}), weights {}, threads {}, mode {}, golden {}, prompts {}, config {}\n",
                   st["backend"].get<std::string>(), st.value("precision", std::string("exact")), st["quant"].get<std::string>(), st["threads"].get<int>() > 0 ? std::to_string(st["threads"].get<int>()) : std::string("all"),
                   st["mode"].get<std::string>(), st["golden_dir"].is_null() ? "none" : st["golden_dir"].get<std::string>(),
                   st["prompts_file"].get<std::string>(),
                   st["config_file"].is_null() ? "defaults" : st["config_file"].get<std::string>());
  if (!st["fault_injection"].is_null())
    o += fmt::format("- **Fault injection active**: INTERNLM_FAULT_INJECT={}\n", st["fault_injection"].get<std::string>());
  o += fmt::format("- Machine: {}\n\n", md(machine_summary(rep["machine"])));

  o += "| stage | verdict | checks | time | summary |\n|---|---|---|---|---|\n";
  for (const auto& s : rep["stages"])
    o += fmt::format("| {} | {} | {} | {:.1f} s | {} |\n", s["title"].get<std::string>(), s["status"].get<std::string>(),
                     s["checks"].size(), s["seconds"].get<double>(), md(s["summary"].get<std::string>()));
  o += "\n";

  for (const auto& s : rep["stages"]) {
    o += fmt::format("## {} — {}\n\n", s["title"].get<std::string>(), s["status"].get<std::string>());
    o += "| | check | measured | threshold | detail |\n|---|---|---|---|---|\n";
    std::vector<std::string> sources;
    std::set<std::string> seen;
    for (const auto& c : s["checks"]) {
      o += fmt::format("| {} | {} | {} | {} | {} |\n", status_mark(c["status"].get<std::string>()),
                       md(c["name"].get<std::string>()), md(value_text(c["value"], c["unit"].get<std::string>())),
                       md(value_text(c["threshold"], c["unit"].get<std::string>())), md(c["detail"].get<std::string>()));
      const std::string src = c["source"].get<std::string>();
      if (!src.empty() && seen.insert(src).second) sources.push_back(src);
    }
    o += "\n";
    for (const auto& t : stage_tables(s)) {
      o += fmt::format("**{}**\n\n|", t.title);
      for (const auto& h : t.header) o += fmt::format(" {} |", md(h));
      o += "\n|";
      for (size_t i = 0; i < t.header.size(); ++i) o += "---|";
      o += "\n";
      for (const auto& row : t.rows) {
        o += "|";
        for (const auto& cell : row) o += fmt::format(" {} |", md(cell));
        o += "\n";
      }
      o += "\n";
    }
    if (!sources.empty()) {
      o += "How the figures were produced:\n\n";
      for (const auto& src : sources) o += fmt::format("- {}\n", md(src));
      o += "\n";
    }
  }

  o += "## Thresholds and settings in force\n\n| key | value | default | origin |\n|---|---|---|---|\n";
  for (const auto& [k, v] : rep["thresholds"].items())
    o += fmt::format("| {} | {} | {} | {} |\n", code(k), v["value"].dump(), v["default"].dump(), v["origin"].get<std::string>());
  o += "\n## Files\n\n";
  for (const auto& a : rep["artifacts"]) o += fmt::format("- {}\n", a.get<std::string>());
  o += "\nEvery figure above was measured by the run that wrote this report.\n";
  return o;
}

}  // namespace ilm::validate
