#include "server/path_resolver.h"

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace verdict::server {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using ::verdict::testing::ScratchDir;

class PathResolverTest : public ::testing::Test {
 protected:
  PathResolverTest() : root_(scratch_.Path("root")) {
    fs::create_directories(fs::path(root_) / "sets");
    std::ofstream(fs::path(root_) / "sets" / "train.jsonl") << "{}\n";
    std::ofstream(scratch_.Path("secret.txt")) << "outside\n";
  }

  ScratchDir scratch_;
  const std::string root_;
};

TEST_F(PathResolverTest, ResolvesAFileUnderTheRootToItsCanonicalPath) {
  auto resolved = ResolveUnderRoot(root_, "sets/./train.jsonl", "spec.train_data.path");
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(*resolved, fs::canonical(fs::path(root_) / "sets" / "train.jsonl").string());
}

TEST_F(PathResolverTest, RefusesMalformedPathsNamingTheField) {
  for (const std::string bad : {std::string(""), std::string("/etc/passwd"),
                                std::string("sets/../../secret.txt"), std::string("a\0b", 3),
                                std::string(1025, 'a')}) {
    auto resolved = ResolveUnderRoot(root_, bad, "spec.train_data.path");
    EXPECT_EQ(resolved.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(resolved.status().message()), StartsWith("spec.train_data.path: ")) << bad;
  }
}

TEST_F(PathResolverTest, AMissingFileIsNotFound) {
  auto resolved = ResolveUnderRoot(root_, "sets/missing.jsonl", "field");
  EXPECT_EQ(resolved.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(resolved.status().message()), HasSubstr("sets/missing.jsonl"));
}

TEST_F(PathResolverTest, ASymlinkLeavingTheRootIsPermissionDenied) {
  fs::create_symlink(scratch_.Path("secret.txt"), fs::path(root_) / "sets" / "escape.jsonl");
  auto resolved = ResolveUnderRoot(root_, "sets/escape.jsonl", "field");
  EXPECT_EQ(resolved.status().code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(PathResolverTest, ASiblingDirectoryWithTheRootAsPrefixIsOutside) {
  // "<scratch>/root-other" starts with the characters of "<scratch>/root" but is not under it.
  fs::create_directories(scratch_.Path("root-other"));
  std::ofstream(scratch_.Path("root-other/x.jsonl")) << "{}\n";
  fs::create_symlink(scratch_.Path("root-other/x.jsonl"), fs::path(root_) / "x.jsonl");
  EXPECT_EQ(ResolveUnderRoot(root_, "x.jsonl", "field").status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(PathResolverTest, ARootGivenWithATrailingSlashWorks) {
  auto resolved = ResolveUnderRoot(root_ + "/", "sets/train.jsonl", "field");
  EXPECT_TRUE(resolved.ok()) << resolved.status();
}

}  // namespace
}  // namespace verdict::server
