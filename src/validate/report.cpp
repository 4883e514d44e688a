#include "validate/report.h"

#include <cmath>

#include <fmt/format.h>

#include "common/error.h"

namespace ilm::validate {

std::string_view status_name(Status s) {
  switch (s) {
    case Status::Pass: return "pass";
    case Status::Fail: return "fail";
    case Status::Warn: return "warn";
    case Status::Info: return "info";
    case Status::Skip: return "skip";
  }
  return "fail";
}

Status parse_status(std::string_view s) {
  for (Status st : {Status::Pass, Status::Fail, Status::Warn, Status::Info, Status::Skip})
    if (status_name(st) == s) return st;
  throw Error(fmt::format("unknown check status '{}'", s));
}

Check& StageResult::add(Check c) {
  checks.push_back(std::move(c));
  if (on_add) on_add(checks.back());
  return checks.back();
}

Check& StageResult::expect(bool ok, std::string check_id, std::string name, std::string detail) {
  Check c;
  c.id = std::move(check_id);
  c.name = std::move(name);
  c.status = ok ? Status::Pass : Status::Fail;
  c.detail = std::move(detail);
  return add(std::move(c));
}

void StageResult::skip(const std::string& reason) {
  status = Status::Skip;
  summary = fmt::format("skipped: {}", reason);
  Check c;
  c.id = fmt::format("{}.stage", id);
  c.name = title;
  c.status = Status::Skip;
  c.detail = fmt::format("skipped: {}", reason);
  checks.push_back(std::move(c));  // the stage line reports it: no on_add
}

size_t StageResult::count(Status s) const {
  size_t n = 0;
  for (const auto& c : checks) n += c.status == s ? 1 : 0;
  return n;
}

void StageResult::finish() {
  if (count(Status::Fail))
    status = Status::Fail;
  else if (count(Status::Warn))
    status = Status::Warn;
  else if (!checks.empty() && count(Status::Skip) == checks.size())
    status = Status::Skip;
  else
    status = Status::Pass;
  if (summary.empty() || status != Status::Skip) {
    std::string s = fmt::format("{} checks: {} passed", checks.size(), count(Status::Pass));
    if (count(Status::Fail)) s += fmt::format(", {} failed", count(Status::Fail));
    if (count(Status::Warn)) s += fmt::format(", {} warnings", count(Status::Warn));
    if (count(Status::Info)) s += fmt::format(", {} informational", count(Status::Info));
    if (count(Status::Skip)) s += fmt::format(", {} skipped", count(Status::Skip));
    if (status == Status::Fail)
      for (const auto& c : checks)
        if (c.status == Status::Fail) {
          s += fmt::format(" (first failure: {}: {})", c.name, c.detail);
          break;
        }
    summary = s;
  }
}

nlohmann::json check_json(const Check& c) {
  return {{"id", c.id},       {"name", c.name},           {"status", status_name(c.status)},
          {"detail", c.detail}, {"value", c.value},       {"threshold", c.threshold},
          {"unit", c.unit},   {"source", c.source}};
}

nlohmann::json stage_json(const StageResult& s) {
  nlohmann::json checks = nlohmann::json::array();
  for (const auto& c : s.checks) checks.push_back(check_json(c));
  return {{"id", s.id},           {"title", s.title}, {"status", status_name(s.status)},
          {"summary", s.summary}, {"seconds", s.seconds}, {"checks", checks},
          {"data", s.data}};
}

Status overall_verdict(const std::vector<StageResult>& stages) {
  bool any_run = false, warn = false;
  for (const auto& s : stages) {
    if (s.status == Status::Fail) return Status::Fail;
    if (s.status == Status::Warn) warn = true;
    if (s.status != Status::Skip) any_run = true;
  }
  if (!any_run) return Status::Fail;
  return warn ? Status::Warn : Status::Pass;
}

std::string sci(double v) {
  if (!std::isfinite(v)) return fmt::format("{}", v);
  if (v == 0) return "0";
  return fmt::format("{:.2e}", v);
}

std::string gb(double bytes) {
  if (bytes >= 1e9) return fmt::format("{:.2f} GB", bytes / 1e9);
  if (bytes >= 1e6) return fmt::format("{:.1f} MB", bytes / 1e6);
  if (bytes >= 1e3) return fmt::format("{:.1f} kB", bytes / 1e3);
  return fmt::format("{:.0f} B", bytes);
}

}  // namespace ilm::validate
