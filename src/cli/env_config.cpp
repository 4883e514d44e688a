#include "cli/env_config.h"

#include <CLI/CLI.hpp>
#include <cctype>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace ilm::cli {

std::string env_name_of(const std::string& long_name) {
  std::string out = "INTERNLM_";
  for (char c : long_name) out += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

namespace {

bool env_set(const std::string& name) {
  const char* v = std::getenv(name.c_str());
  return v != nullptr && *v != '\0';  // CLI11 ignores empty variables too
}

std::string dashed(std::string name) {
  for (char& c : name)
    if (c == '_') c = '-';
  return name;
}

// CLI11's TOML reader, with three changes: keys may be written with '_' for '-'; a key outside
// any section belongs to the subcommand being run (dropped when that subcommand lacks the flag
// but another has it, so one file can serve several commands); and a key whose environment
// variable is set is dropped, so the environment wins over the file.
class FlagsFile : public CLI::ConfigTOML {
 public:
  explicit FlagsFile(const CLI::App& root) : root_(root) {}

  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override {
    std::vector<CLI::ConfigItem> out;
    const std::vector<CLI::App*> running = root_.get_subcommands();
    for (CLI::ConfigItem item : CLI::ConfigTOML::from_config(input)) {
      const CLI::App* section = item.parents.empty() ? nullptr : subcommand(item.parents.front());
      if (item.name == "++" || item.name == "--") {  // section markers
        out.push_back(std::move(item));
        continue;
      }
      item.name = dashed(item.name);
      if (section != nullptr && (item.parents.size() > 1 || section->get_option_no_throw("--" + item.name) == nullptr))
        throw CLI::ConfigError("--config: " + item.fullname() + ": `" + section->get_name() + "` has no flag --" +
                               item.name);
      if (env_set(env_name_of(item.name))) continue;
      if (item.parents.empty()) {
        if (!running.empty() && running.front()->get_option_no_throw("--" + item.name) != nullptr) {
          item.parents = {running.front()->get_name()};
        } else if (any_subcommand_has(item.name)) {
          continue;
        } else {
          throw CLI::ConfigError("--config: no subcommand has a flag --" + item.name);
        }
      }
      out.push_back(std::move(item));
    }
    return out;
  }

 private:
  // The subcommand a [section] names; an unknown section is an error.
  const CLI::App* subcommand(const std::string& name) const {
    for (const CLI::App* sub : root_.get_subcommands([](const CLI::App*) { return true; }))
      if (sub->get_name() == name) return sub;
    throw CLI::ConfigError("--config: [" + name + "]: no such subcommand");
  }
  bool any_subcommand_has(const std::string& name) const {
    for (const CLI::App* sub : root_.get_subcommands([](const CLI::App*) { return true; }))
      if (sub->get_option_no_throw("--" + name) != nullptr) return true;
    return false;
  }
  const CLI::App& root_;
};

}  // namespace

void add_env_and_config(CLI::App& app) {
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    sub->fallthrough();  // `internlm run --config f.toml` reaches the root's --config
    // Only the subcommand being run reads the environment: CLI11 converts every subcommand's
    // values, and INTERNLM_JSON=out.json (bench-serve's file) must not break `bench --json`.
    sub->preparse_callback([sub](std::size_t) {
      for (CLI::Option* opt : sub->get_options()) {
        if (opt == sub->get_help_ptr() || opt == sub->get_help_all_ptr() || opt->get_lnames().empty()) continue;
        opt->envname(env_name_of(opt->get_lnames().front()));
      }
    });
  }
  app.set_config("--config", "", "Flags file (TOML: `flag-name = value`, `[subcommand]` sections)");
  app.config_formatter(std::make_shared<FlagsFile>(app));
  app.allow_config_extras(CLI::config_extras_mode::error);
}

}  // namespace ilm::cli
