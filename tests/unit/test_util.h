#pragma once
// Helpers shared by the unit tests.
#include <unistd.h>

#include <filesystem>
#include <string>

namespace ilm::test {

// A unique directory under the system temp dir, removed (with its contents) on destruction.
// `create`: make the directory now (else only the path is reserved).
class TempDir {
 public:
  explicit TempDir(const std::string& tag, bool create = true) {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("ilm-" + tag + "-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    if (create) std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace ilm::test
