#include "server/cors.h"

#include <algorithm>

namespace ilm::server {

namespace {
std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}
}  // namespace

CorsPolicy::CorsPolicy(const std::vector<std::string>& entries) {
  for (const auto& e : entries) {
    size_t p = 0;
    while (p <= e.size()) {
      size_t c = e.find(',', p);
      if (c == std::string::npos) c = e.size();
      std::string o = trim(e.substr(p, c - p));
      while (!o.empty() && o.back() == '/') o.pop_back();  // "https://a.example/" names the origin too
      if (o == "*") any_ = true;
      else if (!o.empty()) origins_.push_back(std::move(o));
      p = c + 1;
    }
  }
}

std::string CorsPolicy::allow_origin(const std::string& origin) const {
  if (origin.empty()) return {};
  if (any_) return "*";
  return std::find(origins_.begin(), origins_.end(), origin) != origins_.end() ? origin : std::string();
}

}  // namespace ilm::server
