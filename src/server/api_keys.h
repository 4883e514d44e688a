#pragma once
// API keys of `internlm serve`: from --api-key (repeatable), --api-key-file (one per line) and
// INTERNLM_API_KEY, checked in constant time per key. Keys are never printed.
#include <string>
#include <vector>

namespace ilm::server {

class ApiKeys {
 public:
  ApiKeys() = default;
  explicit ApiKeys(std::vector<std::string> keys);
  bool required() const { return !keys_.empty(); }
  size_t size() const { return keys_.size(); }
  // True if `presented` equals one of the keys. Every key is compared without an early exit,
  // so the time taken reveals neither which key matched nor how much of one did (only lengths).
  bool accepts(const std::string& presented) const;

 private:
  std::vector<std::string> keys_;
};

// The keys of a key file: one per line; blank lines and lines starting with '#' are skipped,
// surrounding blanks and a trailing CR removed. Throws ilm::Error if the file cannot be read
// (naming the file, never its contents).
std::vector<std::string> read_api_key_file(const std::string& path);

}  // namespace ilm::server
