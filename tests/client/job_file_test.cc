#include "client/job_file.h"

#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace verdict::client {
namespace {

using ::testing::HasSubstr;
using verdict::testing::ScratchDir;

TEST(JobFileTest, YamlScalarsTakeTheTypeOfTheirField) {
  auto request = ParseJobFile(
      "output_model_name: 2024   # a string field: stays \"2024\"\n"
      "preset: encoder-tiny\n"
      "tokenizer: {train: {vocab_size: 400, model_type: bpe}}\n"
      "train_data: {path: hh/train.jsonl.gz}\n"
      "eval: {eval_fraction: 0.1, split_seed: 18446744073709551615}\n"
      "data_options: {skip_invalid: yes, chat_format: chatml, format: sharegpt}\n"
      "hyperparameters:\n"
      "  learningRate: 3e-4\n"
      "  max_steps: 200\n"
      "  warmup_ratio: 0.1\n"
      "  truncation: TRUNCATION_POLICY_DROP\n"
      "  group_by_length: false\n"
      "dtype: bfloat16\n"
      "priority: -5\n",
      /*json=*/false);
  ASSERT_TRUE(request.ok()) << request.status();
  const auto& spec = request->spec();
  EXPECT_EQ(spec.output_model_name(), "2024");
  EXPECT_EQ(spec.preset(), "encoder-tiny");
  EXPECT_EQ(spec.tokenizer().train().vocab_size(), 400);
  EXPECT_EQ(spec.tokenizer().train().model_type(), verdict::v1::SENTENCE_PIECE_MODEL_TYPE_BPE);
  EXPECT_EQ(spec.train_data().path(), "hh/train.jsonl.gz");
  EXPECT_DOUBLE_EQ(spec.eval().eval_fraction(), 0.1);
  EXPECT_EQ(spec.eval().split_seed(), 18446744073709551615ull);
  EXPECT_TRUE(spec.data_options().skip_invalid());
  EXPECT_EQ(spec.data_options().chat_format(), verdict::v1::CHAT_FORMAT_CHATML);
  EXPECT_EQ(spec.data_options().format(), verdict::v1::DATA_FORMAT_SHAREGPT);
  EXPECT_DOUBLE_EQ(spec.hyperparameters().learning_rate(), 3e-4);
  EXPECT_EQ(spec.hyperparameters().max_steps(), 200);
  EXPECT_DOUBLE_EQ(spec.hyperparameters().warmup_ratio(), 0.1);
  EXPECT_EQ(spec.hyperparameters().truncation(), verdict::v1::TRUNCATION_POLICY_DROP);
  EXPECT_TRUE(spec.hyperparameters().has_group_by_length());  // explicitly false is set
  EXPECT_FALSE(spec.hyperparameters().group_by_length());
  EXPECT_EQ(spec.dtype(), verdict::v1::DTYPE_BFLOAT16);
  EXPECT_EQ(spec.priority(), -5);
  EXPECT_FALSE(request->validate_only());
}

TEST(JobFileTest, ATopLevelSpecKeyMeansASubmitRequest) {
  auto yaml = ParseJobFile(
      "spec: {preset: encoder-small}\nrequest_id: run-7\nvalidate_only: true\n", false);
  ASSERT_TRUE(yaml.ok()) << yaml.status();
  EXPECT_EQ(yaml->spec().preset(), "encoder-small");
  EXPECT_EQ(yaml->request_id(), "run-7");
  EXPECT_TRUE(yaml->validate_only());

  auto json = ParseJobFile(R"({"spec": {"preset": "encoder-tiny"}, "requestId": "k"})", true);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ(json->spec().preset(), "encoder-tiny");
  EXPECT_EQ(json->request_id(), "k");
}

TEST(JobFileTest, JsonGoesThroughProtobufsOwnParser) {
  auto request = ParseJobFile(
      R"({"outputModelName": "m", "hyperparameters": {"max_steps": "12", "learningRate": 0.001},
          "registeredModel": {"name": "base", "alias": "prod"}})",
      true);
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->spec().output_model_name(), "m");
  EXPECT_EQ(request->spec().hyperparameters().max_steps(), 12);
  EXPECT_EQ(request->spec().registered_model().alias(), "prod");
  // Protobuf's JSON parser is strict: short enum names are a YAML convenience only.
  EXPECT_FALSE(ParseJobFile(R"({"dtype": "bfloat16"})", true).ok());
  EXPECT_FALSE(ParseJobFile(R"({"nope": 1})", true).ok());
  EXPECT_THAT(ParseJobFile("{", true).status().message(), HasSubstr("not valid JSON"));
}

TEST(JobFileTest, ErrorsNameTheKeyPath) {
  EXPECT_THAT(
      ParseJobFile("hyperparameters:\n  lerning_rate: 1\n", false).status().message(),
      HasSubstr("hyperparameters.lerning_rate: no such field in verdict.v1.Hyperparameters"));
  EXPECT_THAT(ParseJobFile("train_data: data.jsonl\n", false).status().message(),
              HasSubstr("train_data: expected a mapping (verdict.v1.DatasetRef)"));
  EXPECT_THAT(ParseJobFile("preset: [a, b]\n", false).status().message(),
              HasSubstr("preset: expected a single value, got a list"));
  EXPECT_THAT(ParseJobFile("data_options: {skip_invalid: perhaps}\n", false).status().message(),
              HasSubstr("data_options.skip_invalid: expected true or false, got 'perhaps'"));
  EXPECT_THAT(ParseJobFile("hyperparameters: {max_steps: many}\n", false).status().message(),
              HasSubstr("max_steps"));
  EXPECT_THAT(ParseJobFile("preset: [unclosed\n", false).status().message(), HasSubstr("line "));
}

TEST(JobFileTest, LoadJobFilePicksTheParserByExtensionAndNamesTheFile) {
  ScratchDir dir;
  std::ofstream(dir.Path("job.yaml")) << "preset: encoder-tiny\n";
  std::ofstream(dir.Path("job.json")) << R"({"preset": "decoder-tiny"})";
  EXPECT_EQ(LoadJobFile(dir.Path("job.yaml"))->spec().preset(), "encoder-tiny");
  EXPECT_EQ(LoadJobFile(dir.Path("job.json"))->spec().preset(), "decoder-tiny");
  const auto missing = LoadJobFile(dir.Path("none.yaml"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("none.yaml"));
  std::ofstream(dir.Path("bad.yaml")) << "nonsense_key: 1\n";
  EXPECT_THAT(LoadJobFile(dir.Path("bad.yaml")).status().message(),
              HasSubstr("bad.yaml: nonsense_key: no such field"));
}

TEST(JobFileTest, EnumValuesParseByShortNameFullNameOrNumber) {
  const auto& dtype = *verdict::v1::Dtype_descriptor();
  EXPECT_EQ(*ParseEnumValue(dtype, "bfloat16"), verdict::v1::DTYPE_BFLOAT16);
  EXPECT_EQ(*ParseEnumValue(dtype, "FLOAT16"), verdict::v1::DTYPE_FLOAT16);
  EXPECT_EQ(*ParseEnumValue(dtype, "DTYPE_FLOAT32"), verdict::v1::DTYPE_FLOAT32);
  EXPECT_EQ(*ParseEnumValue(dtype, "2"), verdict::v1::DTYPE_BFLOAT16);
  EXPECT_THAT(ParseEnumValue(dtype, "float8").status().message(),
              HasSubstr("expected one of float32, bfloat16, float16; got 'float8'"));
  EXPECT_EQ(*ParseEnumValue(*verdict::v1::ChatFormat_descriptor(), "llama2"),
            verdict::v1::CHAT_FORMAT_LLAMA2);
}

}  // namespace
}  // namespace verdict::client
