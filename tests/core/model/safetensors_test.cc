#include "core/model/safetensors.h"

#include <ATen/ATen.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/model/model_config.h"
#include "core/util/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace verdict {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::verdict::testing::ScratchDir;
using ::verdict::testing::TestDataPath;

// A safetensors file assembled by hand: the header exactly as given, then `data`.
std::string MakeFile(const std::string& header, const std::string& data = "") {
  std::string out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + header + data;
}

std::vector<int64_t> Shape(const at::Tensor& t) { return t.sizes().vec(); }

std::string Bytes(const at::Tensor& t) {
  at::Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.nbytes());
}

// Asserts that parsing `bytes` fails with InvalidArgument naming the source and `fragment`.
void ExpectRejected(const std::string& bytes, const std::string& fragment) {
  absl::StatusOr<TensorMap> parsed = ParseSafetensors(bytes, "bad.safetensors");
  ASSERT_FALSE(parsed.ok()) << "accepted a file that should fail with: " << fragment;
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << parsed.status();
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("bad.safetensors: "));
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(fragment));
}

TEST(SafetensorsTest, ReadsGoldenDistilBertWeightsWithTheShapesOfItsConfig) {
  absl::StatusOr<ModelConfig> config =
      LoadModelConfig(TestDataPath("golden/distilbert/config.json"));
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<TensorMap> weights = ReadModelWeights(TestDataPath("golden/distilbert"));
  ASSERT_TRUE(weights.ok()) << weights.status();

  EXPECT_EQ(weights->size(), 8u + 16 * config->num_layers);  // embeddings, two heads, layers
  const at::Tensor& words = weights->at("distilbert.embeddings.word_embeddings.weight");
  EXPECT_EQ(words.scalar_type(), at::kFloat);
  EXPECT_THAT(Shape(words), ElementsAre(config->vocab_size, config->hidden_size));
  EXPECT_THAT(Shape(weights->at("distilbert.embeddings.position_embeddings.weight")),
              ElementsAre(config->max_position_embeddings, config->hidden_size));
  EXPECT_THAT(Shape(weights->at("distilbert.transformer.layer.1.ffn.lin1.weight")),
              ElementsAre(config->intermediate_size, config->hidden_size));
  EXPECT_THAT(Shape(weights->at("classifier.weight")), ElementsAre(1, config->hidden_size));
  // Values read with Python's struct module from the same file.
  EXPECT_FLOAT_EQ(weights->at("classifier.bias").item<float>(), 0.083995021879673f);
  EXPECT_FLOAT_EQ(words[0][0].item<float>(), -0.02430892363190651f);
  EXPECT_FLOAT_EQ(words[-1][-1].item<float>(), -0.005369607824832201f);
}

TEST(SafetensorsTest, ReadsGoldenLlamaWeightsWithGroupedKeyValueShapes) {
  absl::StatusOr<ModelConfig> config = LoadModelConfig(TestDataPath("golden/llama/config.json"));
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<TensorMap> weights =
      ReadSafetensors(TestDataPath("golden/llama/model.safetensors"));
  ASSERT_TRUE(weights.ok()) << weights.status();

  EXPECT_EQ(weights->size(), 3u + 9 * config->num_layers);
  EXPECT_THAT(Shape(weights->at("model.embed_tokens.weight")),
              ElementsAre(config->vocab_size, config->hidden_size));
  EXPECT_THAT(Shape(weights->at("model.layers.0.self_attn.q_proj.weight")),
              ElementsAre(config->num_heads * config->head_dim, config->hidden_size));
  const at::Tensor& k_proj = weights->at("model.layers.1.self_attn.k_proj.weight");
  EXPECT_THAT(Shape(k_proj),
              ElementsAre(config->num_kv_heads * config->head_dim, config->hidden_size));
  EXPECT_THAT(Shape(weights->at("model.layers.0.mlp.down_proj.weight")),
              ElementsAre(config->hidden_size, config->intermediate_size));
  const at::Tensor& score = weights->at("score.weight");
  EXPECT_THAT(Shape(score), ElementsAre(1, config->hidden_size));
  EXPECT_FLOAT_EQ(score[0][0].item<float>(), 0.2661266028881073f);
  EXPECT_FLOAT_EQ(score[0][-1].item<float>(), -0.05990433320403099f);
  EXPECT_FLOAT_EQ(k_proj[0][0].item<float>(), 0.03528466448187828f);
  EXPECT_FLOAT_EQ(k_proj[-1][-1].item<float>(), 0.1465393751859665f);
}

TEST(SafetensorsTest, ReadsStories260KCausalModelWithAllFortyEightTensors) {
  absl::StatusOr<TensorMap> weights = ReadModelWeights(TestDataPath("models/stories260K-hf"));
  ASSERT_TRUE(weights.ok()) << weights.status();
  EXPECT_EQ(weights->size(), 48u);
  EXPECT_THAT(Shape(weights->at("lm_head.weight")), ElementsAre(512, 64));
  EXPECT_THAT(Shape(weights->at("model.layers.4.self_attn.k_proj.weight")), ElementsAre(32, 64));
  const at::Tensor& norm = weights->at("model.norm.weight");
  EXPECT_FLOAT_EQ(norm[0].item<float>(), 2.4583089351654053f);
  EXPECT_FLOAT_EQ(norm[-1].item<float>(), 1.7077769041061401f);
  EXPECT_FLOAT_EQ(weights->at("lm_head.weight")[0][0].item<float>(), -0.29474878311157227f);
}

TEST(SafetensorsTest, RewritesGoldenWeightsWithTheReferenceDataLayout) {
  const std::string path = TestDataPath("golden/distilbert/model.safetensors");
  absl::StatusOr<std::string> original = ReadFileToString(path);
  ASSERT_TRUE(original.ok()) << original.status();
  absl::StatusOr<TensorMap> weights = ParseSafetensors(*original, path);
  ASSERT_TRUE(weights.ok()) << weights.status();
  absl::StatusOr<std::string> rewritten = SerializeSafetensors(*weights);
  ASSERT_TRUE(rewritten.ok()) << rewritten.status();

  // Same tensors in the same order give the same data section, byte for byte; only the
  // header's JSON formatting may differ.
  auto data_of = [](const std::string& file) {
    uint64_t n = 0;
    std::memcpy(&n, file.data(), 8);
    return file.substr(8 + n);
  };
  EXPECT_EQ(data_of(*rewritten), data_of(*original));
}

TEST(SafetensorsTest, RoundTripsEveryDtypeBitIdentically) {
  at::manual_seed(7);
  TensorMap tensors;
  const at::ScalarType dtypes[] = {at::kFloat, at::kHalf,  at::kBFloat16, at::kDouble, at::kLong,
                                   at::kInt,   at::kShort, at::kChar,     at::kByte,   at::kBool};
  for (at::ScalarType dtype : dtypes) {
    const std::string name = c10::toString(dtype);
    const int64_t item = static_cast<int64_t>(c10::elementSize(dtype));
    // Random bit patterns (NaNs, infinities and subnormals included) for every type but
    // bool, whose only valid bytes are 0 and 1.
    at::Tensor t = dtype == at::kBool ? at::randint(0, 2, {3, 5}, at::kByte).to(at::kBool)
                                      : at::randint(0, 256, {3, 5 * item}, at::kByte).view(dtype);
    tensors[name + ".matrix"] = t;
    tensors[name + ".scalar"] = t.flatten()[4].clone();
    tensors[name + ".empty"] = at::empty({0, 4}, at::TensorOptions().dtype(dtype));
  }
  // Not contiguous: saved as its contiguous copy.
  tensors["transposed"] = at::arange(12, at::kFloat).reshape({3, 4}).t();

  ScratchDir dir;
  const std::string path = dir.Path("all.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, tensors).ok());
  absl::StatusOr<TensorMap> read = ReadSafetensors(path);
  ASSERT_TRUE(read.ok()) << read.status();

  ASSERT_EQ(read->size(), tensors.size());
  for (const auto& [name, expected] : tensors) {
    SCOPED_TRACE(name);
    ASSERT_EQ(read->count(name), 1u);
    const at::Tensor& actual = read->at(name);
    EXPECT_EQ(actual.scalar_type(), expected.scalar_type());
    EXPECT_EQ(Shape(actual), Shape(expected));
    EXPECT_EQ(Bytes(actual), Bytes(expected));
  }
  EXPECT_EQ(read->at("Float.scalar").dim(), 0);
  EXPECT_EQ(read->at("transposed")[3][2].item<float>(), 11.0f);
}

TEST(SafetensorsTest, WritesAnAlignedSpacePaddedHeaderWithPtMetadata) {
  TensorMap tensors;
  tensors["b.flag"] = at::ones({3}, at::kBool);
  tensors["a.weight"] = at::ones({2}, at::kFloat);
  tensors["c.steps"] = at::ones({1}, at::kLong);
  absl::StatusOr<std::string> bytes = SerializeSafetensors(tensors);
  ASSERT_TRUE(bytes.ok()) << bytes.status();

  uint64_t n = 0;
  std::memcpy(&n, bytes->data(), 8);
  EXPECT_EQ(n % 8, 0u);
  const std::string header = bytes->substr(8, n);
  EXPECT_EQ(header.find_first_not_of(' ', header.rfind('}') + 1), std::string::npos);
  EXPECT_THAT(header, HasSubstr(R"("__metadata__":{"format":"pt"})"));
  // Largest elements first, then by name: the int64 and float32 data stay aligned.
  EXPECT_THAT(header, HasSubstr(R"("c.steps":{"dtype":"I64","shape":[1],"data_offsets":[0,8]})"));
  EXPECT_THAT(header, HasSubstr(R"("a.weight":{"dtype":"F32","shape":[2],"data_offsets":[8,16]})"));
  EXPECT_THAT(header, HasSubstr(R"("b.flag":{"dtype":"BOOL","shape":[3],"data_offsets":[16,19]})"));
  EXPECT_EQ(bytes->size(), 8 + n + 19);
}

TEST(SafetensorsTest, WritesAndReadsAnEmptyFile) {
  absl::StatusOr<std::string> bytes = SerializeSafetensors({});
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  absl::StatusOr<TensorMap> read = ParseSafetensors(*bytes, "empty");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_TRUE(read->empty());
}

TEST(SafetensorsTest, RefusesToWriteUnsupportedDtypesAndUndefinedTensors) {
  absl::StatusOr<std::string> complex =
      SerializeSafetensors({{"z", at::zeros({2}, at::kComplexFloat)}});
  EXPECT_EQ(complex.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(complex.status().message()), HasSubstr("\"z\""));

  absl::StatusOr<std::string> undefined = SerializeSafetensors({{"u", at::Tensor()}});
  EXPECT_EQ(undefined.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(undefined.status().message()), HasSubstr("\"u\" is undefined"));

  absl::StatusOr<std::string> reserved = SerializeSafetensors({{"__metadata__", at::ones({1})}});
  EXPECT_EQ(reserved.status().code(), absl::StatusCode::kInvalidArgument);

  absl::StatusOr<std::string> not_utf8 = SerializeSafetensors({{"bad\xff", at::ones({1})}});
  EXPECT_EQ(not_utf8.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SafetensorsTest, ReadsShardedWeightsThroughTheIndex) {
  ScratchDir dir;
  TensorMap first = {{"a", at::arange(4, at::kFloat)}, {"b", at::ones({2, 2}, at::kHalf)}};
  TensorMap second = {{"c", at::full({3}, 7, at::kLong)}};
  ASSERT_TRUE(WriteSafetensors(dir.Path("model-00001-of-00002.safetensors"), first).ok());
  ASSERT_TRUE(WriteSafetensors(dir.Path("model-00002-of-00002.safetensors"), second).ok());
  ASSERT_TRUE(WriteFileAtomically(dir.Path("model.safetensors.index.json"), R"({
    "metadata": {"total_size": 48},
    "weight_map": {"a": "model-00001-of-00002.safetensors",
                   "b": "model-00001-of-00002.safetensors",
                   "c": "model-00002-of-00002.safetensors"}})")
                  .ok());

  absl::StatusOr<TensorMap> weights = ReadModelWeights(dir.path().string());
  ASSERT_TRUE(weights.ok()) << weights.status();
  ASSERT_EQ(weights->size(), 3u);
  EXPECT_TRUE(weights->at("a").equal(first["a"]));
  EXPECT_TRUE(weights->at("b").equal(first["b"]));
  EXPECT_TRUE(weights->at("c").equal(second["c"]));
}

// Writes two shards and an index as given, then reads the directory.
absl::Status ReadShards(const ScratchDir& dir, const TensorMap& first, const TensorMap& second,
                        const std::string& weight_map) {
  absl::Status status = WriteSafetensors(dir.Path("one.safetensors"), first);
  if (status.ok()) status = WriteSafetensors(dir.Path("two.safetensors"), second);
  if (status.ok()) {
    status = WriteFileAtomically(dir.Path("model.safetensors.index.json"),
                                 R"({"weight_map": )" + weight_map + "}");
  }
  if (!status.ok()) return status;
  return ReadModelWeights(dir.path().string()).status();
}

TEST(SafetensorsTest, RejectsATensorTheIndexListsButItsShardLacks) {
  ScratchDir dir;
  absl::Status status =
      ReadShards(dir, {{"a", at::ones({1})}}, {{"c", at::ones({1})}},
                 R"({"a": "one.safetensors", "b": "one.safetensors", "c": "two.safetensors"})");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("tensor \"b\" is listed in shard one.safetensors but that shard does not "
                        "hold it"));
}

TEST(SafetensorsTest, RejectsATensorInAShardButNotInTheIndex) {
  ScratchDir dir;
  absl::Status status =
      ReadShards(dir, {{"a", at::ones({1})}, {"extra", at::ones({1})}}, {{"c", at::ones({1})}},
                 R"({"a": "one.safetensors", "c": "two.safetensors"})");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("tensor \"extra\" is in shard "
                                                       "one.safetensors but not in the "
                                                       "weight_map"));
}

TEST(SafetensorsTest, RejectsATensorInTwoShards) {
  ScratchDir dir;
  absl::Status status =
      ReadShards(dir, {{"a", at::ones({1})}, {"b", at::ones({1})}},
                 {{"b", at::ones({1})}, {"c", at::ones({1})}},
                 R"({"a": "one.safetensors", "b": "one.safetensors", "c": "two.safetensors"})");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("tensor \"b\" is in two shards: "
                                                       "one.safetensors and two.safetensors"));
}

TEST(SafetensorsTest, RejectsAShardPathOutsideTheDirectory) {
  ScratchDir dir;
  absl::Status status = ReadShards(dir, {{"a", at::ones({1})}}, {{"c", at::ones({1})}},
                                   R"({"a": "../one.safetensors", "c": "two.safetensors"})");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("tensor \"a\""));
}

TEST(SafetensorsTest, ReportsAModelDirectoryWithoutWeights) {
  ScratchDir dir;
  absl::StatusOr<TensorMap> weights = ReadModelWeights(dir.path().string());
  EXPECT_EQ(weights.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(weights.status().message()), HasSubstr("model.safetensors"));
}

TEST(SafetensorsTest, NamesTheFileWhenReadingFromDisk) {
  ScratchDir dir;
  const std::string path = dir.Path("broken.safetensors");
  ASSERT_TRUE(WriteFileAtomically(path, "1234").ok());
  absl::StatusOr<TensorMap> read = ReadSafetensors(path);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(read.status().message()), HasSubstr(path + ": "));
  EXPECT_EQ(ReadSafetensors(dir.Path("missing.safetensors")).status().code(),
            absl::StatusCode::kNotFound);
}

// Malformed files, one check each.

TEST(SafetensorsTest, RejectsAFileShorterThanTheHeaderLength) {
  ExpectRejected("12345", "file is 5 bytes, too short for the 8-byte header length");
}

TEST(SafetensorsTest, RejectsAHeaderLengthPastTheEndOfTheFile) {
  std::string bytes = MakeFile("{}");
  bytes[0] = 100;  // claims 100 header bytes; 2 follow
  ExpectRejected(bytes, "header length 100 runs past the end of the file (10 bytes");
}

TEST(SafetensorsTest, RejectsAHeaderThatIsNotJson) {
  ExpectRejected(MakeFile(R"({"a": {"dtype": "F32",)"), "header is not valid JSON");
}

TEST(SafetensorsTest, RejectsAHeaderThatIsNotAnObject) {
  ExpectRejected(MakeFile("[1, 2]"), "header must be a JSON object, got array");
}

TEST(SafetensorsTest, AcceptsAHeaderPaddedWithSpaces) {
  absl::StatusOr<TensorMap> parsed = ParseSafetensors(
      MakeFile(R"({"x": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}     )", "\x01\x02"),
      "padded");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->at("x")[1].item<uint8_t>(), 2);
}

TEST(SafetensorsTest, RejectsAnEntryWithAMissingField) {
  ExpectRejected(MakeFile(R"({"w": {"dtype": "F32", "shape": [1]}})", "1234"),
                 "tensor \"w\": missing field \"data_offsets\"");
}

TEST(SafetensorsTest, RejectsAFieldOfTheWrongType) {
  ExpectRejected(
      MakeFile(R"({"w": {"dtype": "F32", "shape": "1", "data_offsets": [0, 4]}})", "1234"),
      "tensor \"w\": field \"shape\" must be an array, got string");
  ExpectRejected(MakeFile(R"({"w": {"dtype": 1, "shape": [1], "data_offsets": [0, 4]}})", "1234"),
                 "tensor \"w\": field \"dtype\" must be a string, got number");
  ExpectRejected(
      MakeFile(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0.0, 4]}})", "1234"),
      "tensor \"w\": field \"data_offsets\" must be [begin, end]");
}

TEST(SafetensorsTest, RejectsMetadataThatIsNotAStringMap) {
  ExpectRejected(MakeFile(R"({"__metadata__": {"format": 1}})"),
                 "\"__metadata__\" value \"format\" must be a string, got number");
}

TEST(SafetensorsTest, RejectsAnUnsupportedDtypeByName) {
  ExpectRejected(
      MakeFile(R"({"w": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}})", "1234"),
      "tensor \"w\": unsupported dtype \"F8_E4M3\"");
}

TEST(SafetensorsTest, RejectsANegativeDimension) {
  ExpectRejected(
      MakeFile(R"({"w": {"dtype": "U8", "shape": [-2, -2], "data_offsets": [0, 4]}})", "1234"),
      "tensor \"w\": negative dimension -2");
}

TEST(SafetensorsTest, RejectsAShapeThatDoesNotMatchTheByteRange) {
  ExpectRejected(
      MakeFile(R"({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 8]}})", "12345678"),
      "tensor \"w\": shape [2,3] of F32 needs 24 bytes but data_offsets [0, 8] hold 8");
}

TEST(SafetensorsTest, RejectsAShapeWhoseSizeOverflows) {
  ExpectRejected(
      MakeFile(
          R"({"w": {"dtype": "F64", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})"),
      "needs more than 2^64 bytes");
}

TEST(SafetensorsTest, RejectsOffsetsPastTheEndOfTheData) {
  ExpectRejected(
      MakeFile(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", "1234"),
      "tensor \"w\": data_offsets [0, 8] run past the end of the data (4 bytes)");
}

TEST(SafetensorsTest, RejectsABeginPastTheEnd) {
  ExpectRejected(
      MakeFile(R"({"w": {"dtype": "U8", "shape": [0], "data_offsets": [4, 0]}})", "1234"),
      "tensor \"w\": data_offsets begin 4 is past end 0");
}

TEST(SafetensorsTest, RejectsOverlappingOffsets) {
  ExpectRejected(MakeFile(R"({"a": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]},
                               "b": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]}})",
                          "1234"),
                 "tensor \"b\": data_offsets [2, 4] overlap tensor \"a\" [0, 3]");
}

TEST(SafetensorsTest, RejectsAGapBetweenTensors) {
  ExpectRejected(MakeFile(R"({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                               "b": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]}})",
                          "1234"),
                 "tensor \"b\": data_offsets [2, 4] leave a gap: bytes [1, 2)");
}

TEST(SafetensorsTest, RejectsDataThatNoTensorIndexes) {
  ExpectRejected(
      MakeFile(R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}})", "1234"),
      "bytes [2, 4) of the data belong to no tensor");
}

TEST(SafetensorsTest, AcceptsEmptyTensorsSharingAnOffset) {
  absl::StatusOr<TensorMap> parsed =
      ParseSafetensors(MakeFile(R"({"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
                   "b": {"dtype": "I64", "shape": [0, 3], "data_offsets": [0, 0]},
                   "c": {"dtype": "U8", "shape": [], "data_offsets": [0, 1]}})",
                                "\x2a"),
                       "empties");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(Shape(parsed->at("b")), ElementsAre(0, 3));
  EXPECT_EQ(parsed->at("c").dim(), 0);
  EXPECT_EQ(parsed->at("c").item<uint8_t>(), 42);
}

}  // namespace
}  // namespace verdict
