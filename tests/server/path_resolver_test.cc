#include "server/path_resolver.h"

#include <sys/stat.h>

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

// ---- directories: every file at any depth ---------------------------------------------------

TEST_F(PathResolverTest, AFileFieldRefusesADirectory) {
  auto resolved = ResolveFileUnderRoot(root_, "sets", "spec.train_data.path");
  EXPECT_EQ(resolved.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(resolved.status().message()),
              StartsWith("spec.train_data.path: \"sets\" is a directory"));
  EXPECT_TRUE(ResolveFileUnderRoot(root_, "sets/train.jsonl", "spec.train_data.path").ok());
}

TEST_F(PathResolverTest, ATreeListsEveryFileFollowingLinksThatStayInside) {
  // A Hugging Face cache: the snapshot's files are links into its blobs.
  const fs::path model = fs::path(root_) / "hub" / "snapshots" / "abc";
  fs::create_directories(model / "sub");
  fs::create_directories(fs::path(root_) / "hub" / "blobs");
  std::ofstream(fs::path(root_) / "hub" / "blobs" / "1234") << "{}";
  fs::create_symlink("../../blobs/1234", model / "config.json");
  std::ofstream(model / "sub" / "weights.bin") << "w";
  auto files = ListTreeUnderRoot(root_, "hub/snapshots/abc", "path");
  ASSERT_TRUE(files.ok()) << files.status();
  ASSERT_EQ(files->size(), 2u);
  EXPECT_EQ((*files)[0].relative, "config.json");
  EXPECT_EQ((*files)[0].resolved,
            fs::canonical(fs::path(root_) / "hub" / "blobs" / "1234").string());
  EXPECT_EQ((*files)[1].relative, "sub/weights.bin");
}

TEST_F(PathResolverTest, ALinkAtAnyDepthLeavingTheRootIsRefusedByItsRelativePath) {
  const fs::path model = fs::path(root_) / "model";
  fs::create_directories(model / "a" / "b");
  std::ofstream(model / "config.json") << "{}";
  fs::create_symlink(scratch_.Path("secret.txt"), model / "a" / "b" / "tokenizer.model");
  auto files = ListTreeUnderRoot(root_, "model", "spec.base_model");
  EXPECT_EQ(files.status().code(), absl::StatusCode::kPermissionDenied);
  const std::string message(files.status().message());
  EXPECT_THAT(message, StartsWith("spec.base_model: \"model/a/b/tokenizer.model\""));
  EXPECT_THAT(message, ::testing::Not(HasSubstr(scratch_.path().string())));
  // A directory link out is refused the same way.
  fs::remove(model / "a" / "b" / "tokenizer.model");
  fs::create_directory_symlink(scratch_.path(), model / "a" / "up");
  files = ListTreeUnderRoot(root_, "model", "path");
  EXPECT_EQ(files.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(files.status().message()), HasSubstr("\"model/a/up\""));
}

TEST_F(PathResolverTest, DanglingLinksLoopsAndFifosAreRefused) {
  const fs::path model = fs::path(root_) / "model";
  fs::create_directories(model);
  fs::create_symlink(model / "nothing", model / "dangling");
  EXPECT_EQ(ListTreeUnderRoot(root_, "model", "path").status().code(), absl::StatusCode::kNotFound);
  fs::remove(model / "dangling");
  fs::create_directory_symlink(model, model / "loop");
  auto files = ListTreeUnderRoot(root_, "model", "path");
  EXPECT_EQ(files.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(files.status().message()), HasSubstr("model/loop"));
  fs::remove(model / "loop");
  ASSERT_EQ(mkfifo((model / "pipe").c_str(), 0600), 0);
  files = ListTreeUnderRoot(root_, "model", "path");
  EXPECT_EQ(files.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(files.status().message()), HasSubstr("model/pipe"));
  // A file is not a tree.
  EXPECT_EQ(ListTreeUnderRoot(root_, "sets/train.jsonl", "path").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace verdict::server
