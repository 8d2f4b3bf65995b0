// Tests of ModelDirectoryWriter, the verification `verdict export` runs on every chunk of a
// DownloadModel stream: intact streams are written byte for byte; a tampered chunk, a wrong
// file checksum or size, a gap, a path leaving the directory and a truncated stream are each
// refused with an error naming the file.
#include "client/model_download.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::client {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// The chunks a server sends for one file, `chunk_bytes` of data each.
std::vector<v1::ModelChunk> Chunks(const std::string& path, const std::string& bytes,
                                   size_t chunk_bytes) {
  std::vector<v1::ModelChunk> chunks;
  size_t offset = 0;
  do {
    v1::ModelChunk chunk;
    chunk.set_path(path);
    chunk.set_offset(offset);
    chunk.set_data(bytes.substr(offset, chunk_bytes));
    chunk.set_sha256(Sha256Hex(chunk.data()));
    offset += chunk.data().size();
    if (offset == bytes.size()) {
      chunk.set_last_chunk(true);
      chunk.set_file_size_bytes(bytes.size());
      chunk.set_file_sha256(Sha256Hex(bytes));
    }
    chunks.push_back(chunk);
  } while (offset < bytes.size());
  return chunks;
}

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

class ModelDirectoryWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           absl::StrCat("verdict-download-test-", getpid(), "-",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
  // Not a multiple of the chunk size, so the last chunk is short.
  const std::string weights_ = std::string(10000, 'w') + "tail";
};

TEST_F(ModelDirectoryWriterTest, WritesAnIntactStreamByteForByte) {
  const std::string config = "{\"model_type\": \"llama\"}";
  ModelDirectoryWriter writer(dir_.string());
  for (const auto& chunk : Chunks("config.json", config, 4096)) {
    ASSERT_TRUE(writer.Write(chunk).ok());
  }
  for (const auto& chunk : Chunks("model.safetensors", weights_, 4096)) {
    ASSERT_TRUE(writer.Write(chunk).ok());
  }
  for (const auto& chunk : Chunks("sub/empty.txt", "", 4096)) ASSERT_TRUE(writer.Write(chunk).ok());
  ASSERT_TRUE(writer.Finish().ok());
  EXPECT_EQ(writer.files(), 3);
  EXPECT_EQ(writer.bytes(), static_cast<int64_t>(weights_.size() + config.size()));
  EXPECT_EQ(ReadAll(dir_ / "model.safetensors"), weights_);
  EXPECT_EQ(ReadAll(dir_ / "config.json"), config);
  EXPECT_TRUE(fs::is_regular_file(dir_ / "sub/empty.txt"));
}

TEST_F(ModelDirectoryWriterTest, ATamperedChunkFailsItsChecksum) {
  std::vector<v1::ModelChunk> chunks = Chunks("model.safetensors", weights_, 4096);
  ASSERT_EQ(chunks.size(), 3u);
  // One bit flipped in transit or on the server's disk after hashing.
  chunks[1].mutable_data()->at(100) ^= 0x01;
  ModelDirectoryWriter writer(dir_.string());
  ASSERT_TRUE(writer.Write(chunks[0]).ok());
  absl::Status status = writer.Write(chunks[1]);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_THAT(status.message(),
              HasSubstr("checksum mismatch in the chunk of model.safetensors at offset 4096"));
}

TEST_F(ModelDirectoryWriterTest, AWrongFileChecksumOrSizeIsDetectedOnTheLastChunk) {
  std::vector<v1::ModelChunk> chunks = Chunks("model.safetensors", weights_, 4096);
  chunks.back().set_file_sha256(Sha256Hex("something else"));
  ModelDirectoryWriter writer(dir_.string());
  absl::Status status;
  for (const auto& chunk : chunks) {
    status = writer.Write(chunk);
    if (!status.ok()) break;
  }
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_THAT(status.message(), HasSubstr("checksum mismatch in model.safetensors"));

  chunks = Chunks("config.json", "{}", 4096);
  chunks.back().set_file_size_bytes(3);
  ModelDirectoryWriter second(dir_.string());
  status = second.Write(chunks.back());
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_THAT(status.message(), HasSubstr("config.json: received 2 bytes"));
}

TEST_F(ModelDirectoryWriterTest, AGapOrAFileLeftUnfinishedIsRefused) {
  std::vector<v1::ModelChunk> chunks = Chunks("model.safetensors", weights_, 4096);
  ModelDirectoryWriter gap(dir_.string());
  ASSERT_TRUE(gap.Write(chunks[0]).ok());
  absl::Status status = gap.Write(chunks[2]);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_THAT(status.message(), HasSubstr("out of order: expected offset 4096"));

  fs::remove_all(dir_);
  fs::create_directories(dir_);
  ModelDirectoryWriter truncated(dir_.string());
  ASSERT_TRUE(truncated.Write(chunks[0]).ok());
  status = truncated.Finish();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_THAT(status.message(), HasSubstr("ended in the middle of model.safetensors"));

  ModelDirectoryWriter empty(dir_.string());
  EXPECT_EQ(empty.Finish().code(), absl::StatusCode::kDataLoss);
}

TEST_F(ModelDirectoryWriterTest, PathsOutsideTheDirectoryAreRefused) {
  for (const std::string path : {"../escape", "/etc/passwd", "a/../../b", "a//b", "./x", ""}) {
    SCOPED_TRACE(path);
    EXPECT_EQ(CheckDownloadPath(path).code(), absl::StatusCode::kInvalidArgument);
    ModelDirectoryWriter writer(dir_.string());
    EXPECT_EQ(writer.Write(Chunks(path, "x", 4096)[0]).code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_FALSE(fs::exists(dir_.parent_path() / "escape"));
  EXPECT_TRUE(CheckDownloadPath("tokenizer/vocab.txt").ok());
}

TEST_F(ModelDirectoryWriterTest, AFileSentTwiceOrALinkInTheWayIsNotWrittenThrough) {
  fs::create_symlink("/tmp", dir_ / "link");
  ModelDirectoryWriter writer(dir_.string());
  EXPECT_FALSE(writer.Write(Chunks("link", "x", 4096)[0]).ok());
  ModelDirectoryWriter twice(dir_.string());
  ASSERT_TRUE(twice.Write(Chunks("a.txt", "x", 4096)[0]).ok());
  EXPECT_FALSE(twice.Write(Chunks("a.txt", "y", 4096)[0]).ok());
  EXPECT_EQ(ReadAll(dir_ / "a.txt"), "x");
}

}  // namespace
}  // namespace verdict::client
