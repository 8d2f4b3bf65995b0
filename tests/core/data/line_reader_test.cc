#include "core/data/line_reader.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/data/gzip_for_test.h"
#include "tests/testing/test_paths.h"

namespace verdict {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::verdict::testing::Gzip;
using ::verdict::testing::ScratchDir;
using ::verdict::testing::TestDataPath;
using ::verdict::testing::WriteBytes;

// Every line of `reader`, "<too long>" standing for a skipped one; stops at the first error.
absl::StatusOr<std::vector<std::string>> AllLines(LineReader& reader) {
  std::vector<std::string> lines;
  TextLine line;
  while (true) {
    absl::StatusOr<bool> more = reader.Next(&line);
    if (!more.ok()) return more.status();
    if (!*more) return lines;
    EXPECT_EQ(line.number, static_cast<int64_t>(lines.size()) + 1);
    lines.push_back(line.too_long ? "<too long>" : std::string(line.text));
  }
}

absl::StatusOr<std::vector<std::string>> LinesOf(std::string bytes,
                                                 size_t max_line_bytes = 1 << 20) {
  return AllLines(*LineReader::FromString(std::move(bytes), "mem", max_line_bytes));
}

TEST(LineReaderTest, SplitsAtNewlinesAndDropsCarriageReturns) {
  EXPECT_THAT(*LinesOf("a\nb\r\n\nlast"), ElementsAre("a", "b", "", "last"));
}

TEST(LineReaderTest, AFinalNewlineEndsTheLastLineWithoutStartingAnother) {
  EXPECT_THAT(*LinesOf("a\n"), ElementsAre("a"));
  EXPECT_THAT(*LinesOf("\n"), ElementsAre(""));
  EXPECT_THAT(*LinesOf(""), ElementsAre());
}

TEST(LineReaderTest, ReadsGzipBytesLikeThePlainText) {
  const std::string text = "first\nsecond\r\nthird";
  EXPECT_THAT(*LinesOf(Gzip(text)), ElementsAre("first", "second", "third"));
  EXPECT_THAT(*LinesOf(Gzip("")), ElementsAre());
}

TEST(LineReaderTest, ReadsConcatenatedGzipMembersAsOneStream) {
  EXPECT_THAT(*LinesOf(Gzip("a\nb") + Gzip("c\n") + Gzip("d")), ElementsAre("a", "bc", "d"));
}

TEST(LineReaderTest, KeepsLinesLongerThanItsReadBufferWhole) {
  const std::string long_line(300000, 'x');
  const std::string text = "short\n" + long_line + "\nend";
  EXPECT_THAT(*LinesOf(text), ElementsAre("short", long_line, "end"));
  EXPECT_THAT(*LinesOf(Gzip(text)), ElementsAre("short", long_line, "end"));
}

TEST(LineReaderTest, SkipsATooLongLineAndGoesOn) {
  const std::string text = "short\n" + std::string(100, 'x') + "\nnext\n" + std::string(11, 'y');
  EXPECT_THAT(*LinesOf(text, 10), ElementsAre("short", "<too long>", "next", "<too long>"));
  EXPECT_THAT(*LinesOf(std::string(10, 'z'), 10), ElementsAre(std::string(10, 'z')));
}

TEST(LineReaderTest, ReportsTruncatedGzipAsInvalidArgumentAtTheLineBeingRead) {
  std::string text;
  for (int i = 0; i < 2000; ++i) text += "line " + std::to_string(i) + "\n";
  const std::string gzip = Gzip(text);
  auto reader = LineReader::FromString(gzip.substr(0, gzip.size() - 20), "cut.gz");
  absl::StatusOr<std::vector<std::string>> lines = AllLines(*reader);
  ASSERT_FALSE(lines.ok());
  EXPECT_EQ(lines.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(lines.status().message(), HasSubstr("cut.gz:"));
  EXPECT_THAT(lines.status().message(), HasSubstr("truncated"));
  // The failure sticks.
  TextLine line;
  EXPECT_EQ(reader->Next(&line).status(), lines.status());
}

TEST(LineReaderTest, ReportsAChecksumMismatchAsCorruptGzip) {
  std::string gzip = Gzip("a\nb\nc\n");
  gzip[gzip.size() - 6] ^= 0x01;  // inside the CRC-32 of the trailer
  absl::StatusOr<std::vector<std::string>> lines = LinesOf(gzip);
  ASSERT_FALSE(lines.ok());
  EXPECT_EQ(lines.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(lines.status().message(), HasSubstr("corrupt gzip data"));
}

TEST(LineReaderTest, RejectsBytesAfterTheLastGzipMember) {
  absl::StatusOr<std::vector<std::string>> lines = LinesOf(Gzip("a\nb\n") + "extra");
  ASSERT_FALSE(lines.ok());
  EXPECT_EQ(lines.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(lines.status().message(), HasSubstr("mem:3: unexpected bytes after the end"));
}

TEST(LineReaderTest, TellsGzipByItsContentNotItsName) {
  ScratchDir dir;
  WriteBytes(dir.Path("really-gzip.jsonl"), Gzip("x\ny\n"));
  WriteBytes(dir.Path("really-plain.jsonl.gz"), "x\ny\n");
  WriteBytes(dir.Path("one-byte"), "\x1f");
  for (const char* name : {"really-gzip.jsonl", "really-plain.jsonl.gz"}) {
    absl::StatusOr<std::unique_ptr<LineReader>> reader = LineReader::OpenFile(dir.Path(name));
    ASSERT_TRUE(reader.ok()) << reader.status();
    EXPECT_THAT(*AllLines(**reader), ElementsAre("x", "y")) << name;
  }
  EXPECT_THAT(*AllLines(**LineReader::OpenFile(dir.Path("one-byte"))), ElementsAre("\x1f"));
}

TEST(LineReaderTest, SkipsLeadingSpaceCountingItsLinesThenReadsLines) {
  for (bool gzip : {false, true}) {
    const std::string text = "\n \t\r\n  {\"a\": 1}\nnext";
    auto reader = LineReader::FromString(gzip ? Gzip(text) : text, "mem");
    absl::StatusOr<int> first = reader->SkipLeadingSpace();
    ASSERT_TRUE(first.ok()) << first.status();
    EXPECT_EQ(*first, '{');
    EXPECT_EQ(reader->line_number(), 2);
    TextLine line;
    ASSERT_TRUE(*reader->Next(&line));
    EXPECT_EQ(line.text, "{\"a\": 1}");
    EXPECT_EQ(line.number, 3);
    ASSERT_TRUE(*reader->Next(&line));
    EXPECT_EQ(line.number, 4);
    EXPECT_FALSE(*reader->Next(&line));
  }
  EXPECT_EQ(*LineReader::FromString(" \n\t", "mem")->SkipLeadingSpace(), -1);
}

TEST(LineReaderTest, HandsOutEveryByteAfterTheLeadingSpace) {
  std::string text = "\n\n[";
  for (int i = 0; i < 100000; ++i) text += "1,";
  text += "2]";
  for (bool gzip : {false, true}) {
    auto reader = LineReader::FromString(gzip ? Gzip(text) : text, "mem");
    ASSERT_EQ(*reader->SkipLeadingSpace(), '[');
    std::string bytes;
    while (true) {
      absl::StatusOr<absl::string_view> chunk = reader->NextBytes();
      ASSERT_TRUE(chunk.ok()) << chunk.status();
      if (chunk->empty()) break;
      bytes.append(chunk->data(), chunk->size());
    }
    EXPECT_EQ(bytes, text.substr(2));
  }
}

TEST(LineReaderTest, ReportsMissingFilesAndDirectories) {
  ScratchDir dir;
  EXPECT_EQ(LineReader::OpenFile(dir.Path("absent.jsonl")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(LineReader::OpenFile(dir.Path("")).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LineReaderTest, ReadsEveryLineOfTheBundledHhRlhfSplit) {
  auto reader = LineReader::OpenFile(TestDataPath("hh-rlhf/helpful-base/test.jsonl.gz"));
  ASSERT_TRUE(reader.ok()) << reader.status();
  absl::StatusOr<std::vector<std::string>> lines = AllLines(**reader);
  ASSERT_TRUE(lines.ok()) << lines.status();
  ASSERT_EQ(lines->size(), 2354u);
  EXPECT_THAT(lines->front(), ::testing::StartsWith("{\"chosen\": \"\\n\\nHuman: Do you know why"));
  EXPECT_THAT(lines->back(), ::testing::EndsWith("}"));
}

}  // namespace
}  // namespace verdict
