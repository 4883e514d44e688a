#pragma once
// The limits and budgets `internlm validate` holds a deployment to. Every key has a documented
// default (defs(); docs/VALIDATION.md lists them, `internlm validate --print-config` prints
// them); `--config FILE` overrides any of them with a TOML file (parsed by toml++), e.g.:
//
//   # comment
//   [precision]                 # section: keys below are "precision.<key>"
//   max_rel_error = 1e-3        # number
//   require_deterministic = true  # true / false = 1 / 0
//   [sweep]
//   full_lengths = [1024, 4096] # list of numbers
//
// Keys may also be dotted (`precision.max_rel_error = 1e-3`). A TOML syntax error names the
// file, line and column; an unknown key or a value of the wrong kind names the file and line. A value of 0 for a "min_*" / "max_*" performance limit turns that check off (the
// figure is still measured and reported as "info").
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ilm::validate {

struct ThresholdDef {
  std::string key;
  std::vector<double> value;  // default; one element for a scalar
  bool list = false;
  std::string unit;
  std::string help;
};

class Thresholds {
 public:
  static const std::vector<ThresholdDef>& defs();
  Thresholds();  // every default

  void load_file(const std::filesystem::path& path);
  // Parses `text` as if it were the file `source`.
  void load_text(const std::string& text, const std::string& source);
  void set(const std::string& key, std::vector<double> value, const std::string& origin);

  double get(const std::string& key) const;                  // scalar; throws for unknown keys
  const std::vector<double>& list(const std::string& key) const;
  // {key: {"value", "default", "origin": "default" | "FILE:LINE", "unit", "help"}}
  nlohmann::json to_json() const;
  // The keys and defaults as a commented TOML file (what --print-config prints).
  static std::string defaults_toml();

 private:
  struct Entry {
    std::vector<double> value;
    std::string origin = "default";
  };
  std::map<std::string, Entry> values_;
  const ThresholdDef& def(const std::string& key) const;
};

}  // namespace ilm::validate
