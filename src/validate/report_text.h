#pragma once
// Pieces shared by the Markdown and HTML renderers: value formatting and the per-stage tables
// (operator matrix, operator errors, precision per prompt, inference outputs, benchmark, serving
// levels, context sweep) built from the report JSON.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ilm::validate {

struct Table {
  std::string title;
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};

std::string value_text(const nlohmann::json& v, const std::string& unit);  // "1.23e-04", "12.5 tok/s", "–"
std::string status_mark(const std::string& status);                       // "PASS", "FAIL", ...
std::string machine_summary(const nlohmann::json& machine);
std::vector<Table> stage_tables(const nlohmann::json& stage);

}  // namespace ilm::validate
