#pragma once
// The results of `internlm validate`: checks grouped in stages, each check with its verdict,
// the measured value, the threshold it was held to and how the figure was produced. The report
// files (JSON, Markdown, HTML) are all rendered from the JSON form, so they say the same thing.
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace ilm::validate {

// pass / fail: held to a threshold. warn: worth a look, does not fail the run. info: a measured
// figure with no threshold set. skip: not run, with the reason.
enum class Status { Pass, Fail, Warn, Info, Skip };
std::string_view status_name(Status s);
Status parse_status(std::string_view s);

struct Check {
  std::string id;      // "operators.matmul.wqkv.t1", unique in the report
  std::string name;    // human-readable
  Status status = Status::Pass;
  std::string detail;  // the measurement or the reason, one sentence
  nlohmann::json value;      // measured number (or string / bool), null when not measured
  nlohmann::json threshold;  // the limit it was held to, null when none
  std::string unit;
  std::string source;  // how the figure was produced (command, settings)
};

struct StageResult {
  std::string id, title;
  Status status = Status::Pass;
  std::string summary;
  double seconds = 0;
  std::vector<Check> checks;
  nlohmann::json data = nlohmann::json::object();  // raw measurements (tables, charts)
  std::function<void(const Check&)> on_add;  // called for each check as it is added (live progress)

  Check& add(Check c);
  // A check that passes when `ok`, else fails.
  Check& expect(bool ok, std::string id, std::string name, std::string detail);
  // The whole stage was not run.
  void skip(const std::string& reason);
  // Stage status from its checks: fail if any failed, else warn if any warned, else skip when
  // every check was skipped, else pass.
  void finish();
  size_t count(Status s) const;
};

nlohmann::json check_json(const Check& c);
nlohmann::json stage_json(const StageResult& s);
// Worst status over stages (fail > warn > pass); a run whose stages were all skipped is "fail".
Status overall_verdict(const std::vector<StageResult>& stages);

// fmt helpers used across stages: "1.23e-04", a byte count as "15.48 GB".
std::string sci(double v);
std::string gb(double bytes);

}  // namespace ilm::validate
