// `internlm ops`: the operator set and, per compiled backend, what it implements — the
// operator compatibility matrix — plus the CPU features the kernels were chosen from.
#include <CLI/CLI.hpp>
#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "cli/commands.h"

namespace ilm::cli {

namespace {

nlohmann::json matrix() {
  nlohmann::json j;
  j["cpu_features"] = cpu::cpu_features();
  j["cpu_isas"] = cpu::supported_isas();
  j["cpu_isa_selected"] = cpu::best_kernels(Precision::Fast).isa;
  j["cpu_isa_exact"] = cpu::best_kernels(Precision::Exact).isa;
  nlohmann::json backends = nlohmann::json::array();
  for (const auto& name : backend_names()) {
    auto be = make_backend(name, 1);
    nlohmann::json ops = nlohmann::json::object();
    for (const auto& op : be->operators()) ops[op.name] = op.description;
    backends.push_back({{"name", name}, {"operators", ops}, {"weight_formats", be->weight_formats()}});
  }
  j["backends"] = backends;
  return j;
}

void print(const nlohmann::json& j) {
  fmt::print("cpu features: {}\n", fmt::join(j["cpu_features"].get<std::vector<std::string>>(), " "));
  fmt::print("cpu kernels:  {} with --precision fast (default), {} with --precision exact (exact sets available: {})\n\n",
             j["cpu_isa_selected"].get<std::string>(), j["cpu_isa_exact"].get<std::string>(),
             fmt::join(j["cpu_isas"].get<std::vector<std::string>>(), ", "));
  std::set<std::string> ops, formats;
  for (const auto& b : j["backends"]) {
    for (const auto& [k, v] : b["operators"].items()) ops.insert(k);
    for (const auto& f : b["weight_formats"]) formats.insert(f.get<std::string>());
  }
  fmt::print("{:<14}", "operator");
  for (const auto& b : j["backends"]) fmt::print("{:>8}", b["name"].get<std::string>());
  fmt::print("\n");
  for (const auto& op : ops) {
    fmt::print("{:<14}", op);
    for (const auto& b : j["backends"]) fmt::print("{:>8}", b["operators"].contains(op) ? "yes" : "-");
    fmt::print("\n");
  }
  for (const auto& f : formats) {
    fmt::print("{:<14}", "weights " + f);
    for (const auto& b : j["backends"]) {
      const auto& wf = b["weight_formats"];
      fmt::print("{:>8}", std::find(wf.begin(), wf.end(), f) != wf.end() ? "yes" : "-");
    }
    fmt::print("\n");
  }
  fmt::print("\n");
  for (const auto& b : j["backends"]) {
    fmt::print("{}:\n", b["name"].get<std::string>());
    for (const auto& [k, v] : b["operators"].items()) fmt::print("  {:<12} {}\n", k, v.get<std::string>());
  }
}

}  // namespace

void add_ops_command(CLI::App& app) {
  auto json = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand("ops", "Operator compatibility matrix of the compiled backends");
  cmd->add_flag("--json", *json, "Print JSON");
  cmd->callback([json] {
    const auto j = matrix();
    if (*json)
      fmt::print("{}\n", j.dump(2));
    else
      print(j);
  });
}

}  // namespace ilm::cli
