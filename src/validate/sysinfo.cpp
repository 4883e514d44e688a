// Machine facts read from the OS: memory, disk, CPU model, OS release.
#include <sys/statvfs.h>
#include <sys/utsname.h>

#include <chrono>
#include <ctime>
#include <fstream>
#include <string>

#include <fmt/format.h>

#include "validate/stages.h"

namespace ilm::validate {

MemoryInfo memory_info() {
  MemoryInfo m;
  std::ifstream f("/proc/meminfo");
  std::string key;
  double kb = 0;
  std::string unit;
  while (f >> key >> kb) {
    std::getline(f, unit);
    if (key == "MemTotal:") m.total_bytes = kb * 1024;
    if (key == "MemAvailable:") m.available_bytes = kb * 1024;
  }
  return m;
}

double free_disk_bytes(const std::filesystem::path& dir) {
  std::filesystem::path p = dir.empty() ? std::filesystem::path(".") : dir;
  std::error_code ec;
  while (!std::filesystem::exists(p, ec) && p.has_parent_path() && p != p.parent_path()) p = p.parent_path();
  struct statvfs s {};
  if (statvfs(p.c_str(), &s) != 0) return -1;
  return static_cast<double>(s.f_bavail) * static_cast<double>(s.f_frsize);
}

std::string cpu_model_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0 || line.rfind("Model", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) {
        auto v = line.substr(colon + 1);
        while (!v.empty() && v.front() == ' ') v.erase(v.begin());
        return v;
      }
    }
  }
  return "unknown";
}

std::string os_description() {
  std::string pretty = "unknown OS";
  std::ifstream f("/etc/os-release");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("PRETTY_NAME=", 0) == 0) {
      pretty = line.substr(12);
      if (pretty.size() >= 2 && pretty.front() == '"') pretty = pretty.substr(1, pretty.size() - 2);
    }
  struct utsname u {};
  if (uname(&u) == 0) return fmt::format("{}; {} {} {}", pretty, u.sysname, u.release, u.machine);
  return pretty;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace ilm::validate
