#pragma once
// Cross-origin requests (browsers): which Origins may read the API's responses. With no origin
// allowed (the default) nothing is added and browsers keep their same-origin rule.
#include <string>
#include <vector>

namespace ilm::server {

class CorsPolicy {
 public:
  CorsPolicy() = default;
  // Each entry is an origin ("https://app.example.com"), "*" (any origin), or a comma-separated
  // list of them (`--allowed-origins a,b`); blanks around commas are ignored.
  explicit CorsPolicy(const std::vector<std::string>& entries);
  bool enabled() const { return any_ || !origins_.empty(); }
  // The Access-Control-Allow-Origin value for a request's Origin; empty when it is not allowed.
  std::string allow_origin(const std::string& origin) const;

  static constexpr const char* kAllowMethods = "GET, POST, OPTIONS";
  static constexpr const char* kAllowHeaders = "Authorization, Content-Type, X-Request-Id";
  static constexpr const char* kExposeHeaders = "X-Request-Id";
  static constexpr const char* kMaxAge = "600";

 private:
  bool any_ = false;
  std::vector<std::string> origins_;
};

}  // namespace ilm::server
