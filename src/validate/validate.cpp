// The orchestration of `internlm validate`: stages in order with live progress, then the report
// files and the pass/fail table.
#include "validate/validate.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <fstream>

#include <fmt/format.h>

#include "backend/cpu/kernels.h"
#include "common/error.h"
#include "common/utc_time.h"
#include "io/json_file.h"
#include "validate/fault_inject.h"
#include "validate/stages.h"

namespace ilm::validate {

namespace {

std::FILE* g_log = nullptr;  // OUT/validate.log: the progress lines, for the record

void out_line(const std::string& s) {
  std::fprintf(stderr, "%s\n", s.c_str());
  if (g_log) {
    std::fprintf(g_log, "%s\n", s.c_str());
    std::fflush(g_log);
  }
}

bool stderr_tty() {
  static const bool tty = isatty(2) != 0;
  return tty;
}

bool g_pending_note = false;

void clear_note() {
  if (g_pending_note) {
    std::fprintf(stderr, "\r\033[K");
    g_pending_note = false;
  }
}

std::string first_line(const std::string& s) {
  const auto nl = s.find('\n');
  return nl == std::string::npos ? s : fmt::format("{} ...", s.substr(0, nl));
}

struct StageDef {
  std::string id, title;
  void (*fn)(Context&, StageResult&);
};

const std::vector<StageDef>& stage_defs() {
  static const std::vector<StageDef> d = {
      {"environment", "Environment", stage_environment}, {"model", "Model", stage_model},
      {"operators", "Operators", stage_operators},       {"precision", "Precision", stage_precision},
      {"inference", "Inference", stage_inference},       {"api", "API", stage_api},
      {"performance", "Performance", stage_performance},
  };
  return d;
}

}  // namespace

std::string fast_key(const Options& o, const std::string& key) {
  static const char* const with_fast[] = {"operators.matmul_rel_tol", "precision.max_rel_error", "precision.max_mean_kl",
                                          "precision.golden_max_rel_error"};
  const bool fast = o.backend == "cpu" && o.precision == Precision::Fast &&
                    cpu::best_kernels(Precision::Fast).precision == Precision::Fast;
  if (!fast || std::find(std::begin(with_fast), std::end(with_fast), key) == std::end(with_fast)) return key;
  const size_t dot = key.find('.');
  return key.substr(0, dot + 1) + "fast_" + key.substr(dot + 1);
}

const std::vector<std::string>& stage_ids() {
  static const std::vector<std::string> ids = [] {
    std::vector<std::string> v;
    for (const auto& d : stage_defs()) v.push_back(d.id);
    return v;
  }();
  return ids;
}

void Progress::stage(int index, int total, const std::string& title) {
  if (!enabled_) return;
  clear_note();
  out_line(fmt::format("[{}/{}] {}", index, total, title));
}

void Progress::note(const std::string& text) {
  if (!enabled_) return;
  if (stderr_tty()) {
    clear_note();
    std::fprintf(stderr, "      ... %s", first_line(text).c_str());
    std::fflush(stderr);
    g_pending_note = true;
    if (g_log) std::fprintf(g_log, "      ... %s\n", text.c_str());
  } else {
    out_line(fmt::format("      ... {}", first_line(text)));
  }
}

void Progress::check(const Check& c) {
  if (!enabled_) return;
  clear_note();
  out_line(fmt::format("  {:<5} {}: {}", status_name(c.status), c.name, first_line(c.detail)));
}

void Progress::stage_done(const StageResult& s) {
  if (!enabled_) return;
  clear_note();
  out_line(fmt::format("  => {} ({:.1f} s): {}", status_name(s.status), s.seconds, first_line(s.summary)));
}

std::string render_table(const nlohmann::json& report) {
  std::string out = fmt::format("\n{:<13} {:<7} {:>6} {:>5} {:>5} {:>5} {:>5} {:>5} {:>8}\n", "stage", "verdict",
                                "checks", "pass", "fail", "warn", "info", "skip", "time");
  for (const auto& s : report["stages"]) {
    int n[5] = {0, 0, 0, 0, 0};
    for (const auto& c : s["checks"]) {
      const auto st = parse_status(c["status"].get<std::string>());
      ++n[static_cast<int>(st)];
    }
    out += fmt::format("{:<13} {:<7} {:>6} {:>5} {:>5} {:>5} {:>5} {:>5} {:>7.1f}s\n", s["id"].get<std::string>(),
                       s["status"].get<std::string>(), s["checks"].size(), n[0], n[1], n[2], n[3], n[4],
                       s["seconds"].get<double>());
  }
  std::vector<std::string> failed;
  for (const auto& s : report["stages"])
    for (const auto& c : s["checks"])
      if (c["status"] == "fail") failed.push_back(fmt::format("  FAIL {}: {}", c["name"].get<std::string>(),
                                                              first_line(c["detail"].get<std::string>())));
  if (!failed.empty()) out += "\nfailed checks:\n" + fmt::format("{}\n", fmt::join(failed, "\n"));
  std::string verdict = report["verdict"].get<std::string>();
  for (auto& ch : verdict) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  out += fmt::format("\nVERDICT: {} ({} checks failed) in {:.1f} s\n", verdict, failed.size(),
                     report["duration_s"].get<double>());
  return out;
}

int run_validate(Options o) {
  std::error_code ec;
  std::filesystem::create_directories(o.out_dir, ec);
  if (ec) throw Error(fmt::format("{}: cannot create the output folder: {}", o.out_dir.string(), ec.message()));
  for (const auto& s : o.stages) {
    const auto& ids = stage_ids();
    if (std::find(ids.begin(), ids.end(), s) == ids.end())
      throw Error(fmt::format("--stages: unknown stage '{}' (stages: {})", s, fmt::join(ids, ", ")));
  }
  Context ctx;
  ctx.opts = o;
  if (!o.config_file.empty()) ctx.th.load_file(o.config_file);
  if (auto f = fault_from_env()) ctx.fault = f->str();
  Progress progress(true);
  ctx.progress = &progress;
  g_log = std::fopen((o.out_dir / "validate.log").c_str(), "we");  // not inherited by children
  const std::string started = utc_timestamp();
  const double t0 = now_seconds();
  out_line(fmt::format("internlm validate: {} mode, model {}, backend {}, weights {}, report in {}", ctx.mode(),
                       o.model_dir.string(), o.backend, o.quant == "none" ? "as stored" : o.quant, o.out_dir.string()));

  std::vector<StageResult> results;
  const auto& defs = stage_defs();
  const int total = static_cast<int>(defs.size()) + 1;
  int index = 0;
  for (const auto& d : defs) {
    ++index;
    StageResult r;
    r.id = d.id;
    r.title = d.title;
    r.on_add = [&progress](const Check& c) { progress.check(c); };
    progress.stage(index, total, d.title);
    const double s0 = now_seconds();
    const bool selected = o.stages.empty() || d.id == "model" || d.id == "environment" ||
                          std::find(o.stages.begin(), o.stages.end(), d.id) != o.stages.end();
    if (!selected) {
      r.skip("not selected by --stages");
    } else {
      try {
        d.fn(ctx, r);
      } catch (const std::exception& e) {
        r.expect(false, d.id + ".error", fmt::format("{} stage", d.title), fmt::format("unexpected error: {}", e.what()));
      }
    }
    r.seconds = now_seconds() - s0;
    r.on_add = nullptr;
    if (r.status != Status::Skip || r.checks.size() != 1) r.finish();
    progress.stage_done(r);
    results.push_back(std::move(r));
  }

  // Report.
  ++index;
  progress.stage(index, total, "Report");
  nlohmann::json report;
  report["schema_version"] = 1;
  report["tool"] = "internlm validate";
  report["engine_version"] = INTERNLM_VERSION;
  report["command"] = o.command_line;
  report["started_at"] = started;
  report["finished_at"] = utc_timestamp();
  report["duration_s"] = now_seconds() - t0;
  report["verdict"] = status_name(overall_verdict(results));
  report["settings"] = {{"model_dir", o.model_dir.string()},
                        {"backend", o.backend},
                        {"quant", o.quant},
                        {"precision", std::string(precision_name(o.precision))},
                        {"threads", o.threads},
                        {"mode", ctx.mode()},
                        {"golden_dir", o.golden_dir.empty() ? nlohmann::json() : nlohmann::json(o.golden_dir.string())},
                        {"prompts_file", o.prompts_file.string()},
                        {"config_file", o.config_file.empty() ? nlohmann::json() : nlohmann::json(o.config_file.string())},
                        {"stages", o.stages.empty() ? nlohmann::json("all") : nlohmann::json(o.stages)},
                        {"out_dir", o.out_dir.string()},
                        {"fault_injection", ctx.fault.empty() ? nlohmann::json() : nlohmann::json(ctx.fault)}};
  nlohmann::json machine;
  if (!results.empty() && results[0].data.contains("machine")) {
    machine = results[0].data["machine"];
  } else {
    const MemoryInfo mem = memory_info();
    machine = {{"cpu_model", cpu_model_name()}, {"os", os_description()}, {"memory_total_bytes", mem.total_bytes},
               {"engine_version", INTERNLM_VERSION}, {"build_type", INTERNLM_BUILD_TYPE}};
  }
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) == 0) machine["hostname"] = host;
  report["machine"] = machine;
  report["thresholds"] = ctx.th.to_json();
  nlohmann::json stages = nlohmann::json::array();
  nlohmann::json counts = {{"pass", 0}, {"fail", 0}, {"warn", 0}, {"info", 0}, {"skip", 0}};
  for (const auto& r : results) {
    stages.push_back(stage_json(r));
    for (const auto& c : r.checks) counts[std::string(status_name(c.status))] = counts[std::string(status_name(c.status))].get<int>() + 1;
  }
  report["stages"] = stages;
  report["counts"] = counts;
  std::vector<std::string> artifacts = {"report.json", "report.md", "report.html", "validate.log"};
  for (const char* f : {"serve-api.log", "serve-api.stdout.log", "api-exchanges.jsonl", "serve-bench.log",
                        "serve-bench.stdout.log", "bench-serve.json", "bench-serve.log", "nvidia-smi.log"})
    if (std::filesystem::exists(o.out_dir / f, ec)) artifacts.push_back(f);
  report["artifacts"] = artifacts;

  write_json_file(o.out_dir / "report.json", report);
  {
    std::ofstream md(o.out_dir / "report.md", std::ios::binary);
    md << render_markdown(report);
    std::ofstream html(o.out_dir / "report.html", std::ios::binary);
    html << render_html(report);
    if (!md || !html) throw Error(fmt::format("{}: cannot write the report files", o.out_dir.string()));
  }
  out_line(fmt::format("  wrote {}/report.json, report.md, report.html and {} log file(s)", o.out_dir.string(),
                       artifacts.size() - 4));
  const std::string table = render_table(report);
  std::fputs(table.c_str(), stdout);
  std::fflush(stdout);
  if (g_log) {
    std::fputs(table.c_str(), g_log);
    std::fclose(g_log);
    g_log = nullptr;
  }
  return report["verdict"] == "fail" ? 1 : 0;
}

}  // namespace ilm::validate
