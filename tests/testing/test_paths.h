// Paths to the committed test fixtures (tests/data) and scratch directories for tests.
#ifndef VERDICT_TESTS_TESTING_TEST_PATHS_H_
#define VERDICT_TESTS_TESTING_TEST_PATHS_H_

#include <filesystem>
#include <string>

#include <unistd.h>

#include "gtest/gtest.h"

namespace verdict::testing {

// A file or folder under tests/data.
inline std::string TestDataPath(const std::string& relative) {
  return (std::filesystem::path(VERDICT_TESTDATA_DIR) / relative).string();
}

// A fresh, empty directory for the current test, removed when the object goes away.
class ScratchDir {
 public:
  ScratchDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "test";
    path_ = std::filesystem::temp_directory_path() /
            ("verdict-" + name + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string Path(const std::string& relative) const { return (path_ / relative).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace verdict::testing

#endif  // VERDICT_TESTS_TESTING_TEST_PATHS_H_
