#include "server/api_keys.h"

#include <fstream>

#include <fmt/format.h>

#include "common/error.h"

namespace ilm::server {

namespace {
bool same_secret(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}
}  // namespace

ApiKeys::ApiKeys(std::vector<std::string> keys) {
  for (auto& k : keys)
    if (!k.empty()) keys_.push_back(std::move(k));
}

bool ApiKeys::accepts(const std::string& presented) const {
  bool ok = false;
  for (const auto& k : keys_) ok |= same_secret(presented, k);
  return ok;
}

std::vector<std::string> read_api_key_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(fmt::format("--api-key-file {}: cannot open the file", path));
  std::vector<std::string> keys;
  for (std::string line; std::getline(in, line);) {
    const size_t b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    keys.push_back(line.substr(b, line.find_last_not_of(" \t\r") - b + 1));
  }
  if (keys.empty()) throw Error(fmt::format("--api-key-file {}: no key in the file", path));
  return keys;
}

}  // namespace ilm::server
