#pragma once
// Reading JSON files with errors that name the file (and line/column on syntax errors).
#include <filesystem>
#include <string>
#include <nlohmann/json.hpp>

namespace ilm {

nlohmann::json read_json_file(const std::filesystem::path& path);
// Writes `j` pretty-printed (indent 2) with a trailing newline; throws ilm::Error on failure.
void write_json_file(const std::filesystem::path& path, const nlohmann::json& j);

// A short rendering of `v` for error messages: at most ~60 characters, nesting cut off after a
// few levels (safe on arbitrarily deep or large values), never throws.
std::string json_brief(const nlohmann::json& v);

}  // namespace ilm
