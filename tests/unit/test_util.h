#pragma once
// Helpers shared by the unit tests.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"

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

// A fixture whose tests share one tokenizer loaded from the real InternLM2 tokenizer files.
class TokenizerFixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { tok_ = std::make_unique<Tokenizer>(Tokenizer::load(INTERNLM_TEST_TOKENIZER_DIR)); }
  static void TearDownTestSuite() { tok_.reset(); }
  static const Tokenizer& tok() { return *tok_; }

 private:
  static inline std::unique_ptr<Tokenizer> tok_;
};

}  // namespace ilm::test
