#pragma once
// Reading JSON files with errors that name the file (and line/column on syntax errors).
#include <filesystem>
#include <nlohmann/json.hpp>

namespace ilm {

nlohmann::json read_json_file(const std::filesystem::path& path);
// Writes `j` pretty-printed (indent 2) with a trailing newline; throws ilm::Error on failure.
void write_json_file(const std::filesystem::path& path, const nlohmann::json& j);

}  // namespace ilm
