#include "server/proto_conversion.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace verdict::server {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using ::verdict::testing::TestDataPath;

ServerConfig TestServer() {
  ServerConfig server;
  server.state_dir = TestDataPath("");
  server.data_dir = TestDataPath("synthetic");
  server.model_dir = TestDataPath("golden");
  return server;
}

SpecResolvers NoResolvers() {
  SpecResolvers resolvers;
  resolvers.dataset_file = [](const std::string& id) -> absl::StatusOr<std::string> {
    return absl::NotFoundError(absl::StrCat("dataset_id: no dataset ", id));
  };
  resolvers.registered_model =
      [](const v1::ModelRef&) -> absl::StatusOr<std::pair<std::string, int64_t>> {
    return absl::NotFoundError("no models");
  };
  return resolvers;
}

v1::TrainingJobSpec MinimalSpec() {
  v1::TrainingJobSpec spec;
  spec.mutable_train_data()->set_path("helpful-concise.jsonl");
  return spec;
}

TEST(ProtoConversionTest, EveryEnumValueRoundTrips) {
  for (ChatFormat f : {ChatFormat::kHhRlhf, ChatFormat::kChatML, ChatFormat::kLlama2,
                       ChatFormat::kQwen3, ChatFormat::kLlama3, ChatFormat::kLlama31,
                       ChatFormat::kQwen2, ChatFormat::kQwen25}) {
    EXPECT_NE(ToProto(f), v1::CHAT_FORMAT_UNSPECIFIED) << ChatFormatName(f);
    EXPECT_EQ(*ToCore(ToProto(f)), f) << ChatFormatName(f);
  }
  for (InputRule r : {InputRule::kConcat, InputRule::kPair, InputRule::kChat}) {
    EXPECT_NE(ToProto(r), v1::INPUT_RULE_UNSPECIFIED) << InputRuleName(r);
    EXPECT_EQ(*ToCore(ToProto(r)), r) << InputRuleName(r);
  }
  for (LrScheduleKind k : {LrScheduleKind::kConstant, LrScheduleKind::kLinear,
                           LrScheduleKind::kCosine}) {
    EXPECT_EQ(*ToCore(ToProto(k)), k);
  }
  for (TruncationPolicy p : {TruncationPolicy::kTruncate, TruncationPolicy::kDrop}) {
    EXPECT_EQ(*ToCore(ToProto(p)), p);
  }
  for (Dtype d : {Dtype::kFloat32, Dtype::kBFloat16, Dtype::kFloat16}) {
    EXPECT_EQ(*ToCore(ToProto(d)), d);
  }
  for (SentencePieceModelType t : {SentencePieceModelType::kUnigram, SentencePieceModelType::kBpe}) {
    EXPECT_EQ(*ToCore(ToProto(t)), t);
  }
  EXPECT_EQ(ToProto(ModelFamily::kEncoder), v1::MODEL_FAMILY_ENCODER);
  EXPECT_EQ(ToProto(ModelFamily::kDecoder), v1::MODEL_FAMILY_DECODER);
}

TEST(ProtoConversionTest, UnspecifiedAndUnknownEnumsNameTheirField) {
  absl::StatusOr<ChatFormat> chat = ToCore(v1::CHAT_FORMAT_UNSPECIFIED);
  EXPECT_EQ(chat.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(chat.status().message()), StartsWith("chat_format: "));
  absl::StatusOr<Dtype> dtype = ToCore(static_cast<v1::Dtype>(99));
  EXPECT_THAT(std::string(dtype.status().message()), StartsWith("dtype: unknown value 99"));

  // Every data format both ways; an unknown one is named by its proto path.
  for (DataFormat format :
       {DataFormat::kAuto, DataFormat::kJsonl, DataFormat::kJson, DataFormat::kShareGpt}) {
    EXPECT_EQ(*ToCore(ToProto(format)), format);
  }
  v1::TrainingJobSpec spec = MinimalSpec();
  spec.mutable_data_options()->set_format(static_cast<v1::DataFormat>(99));
  absl::Status unknown = NormalizeTrainingJobSpec(TestServer(), NoResolvers(), &spec);
  EXPECT_THAT(std::string(unknown.message()), StartsWith("spec.data_options.format: unknown"));
}

TEST(ProtoConversionTest, NormalizingFillsEveryDefaultFromCoresTrainingConfig) {
  v1::TrainingJobSpec spec = MinimalSpec();
  ASSERT_TRUE(NormalizeTrainingJobSpec(TestServer(), NoResolvers(), &spec).ok());
  const TrainingConfig defaults;
  const v1::Hyperparameters& h = spec.hyperparameters();
  EXPECT_EQ(spec.preset(), defaults.preset);
  EXPECT_EQ(spec.tokenizer().train().vocab_size(), defaults.vocab_size);
  EXPECT_EQ(h.learning_rate(), defaults.learning_rate);
  EXPECT_EQ(h.per_device_train_batch_size(), defaults.batch_size);
  EXPECT_EQ(h.gradient_accumulation_steps(), defaults.gradient_accumulation_steps);
  // The default max_length, capped at the preset encoder's learned positions.
  const absl::StatusOr<ModelConfig> preset =
      PresetModelConfig(defaults.preset, defaults.vocab_size, 0);
  ASSERT_TRUE(preset.ok());
  EXPECT_EQ(h.max_length(), EffectiveMaxLength(*preset, defaults.max_length));
  EXPECT_EQ(h.min_lr_ratio(), defaults.min_lr_ratio);
  ASSERT_TRUE(h.has_prefix_sharing());
  EXPECT_EQ(h.prefix_sharing(), defaults.prefix_sharing);
  EXPECT_EQ(*ToCore(h.truncation()), defaults.truncation);
  EXPECT_EQ(*ToCore(h.lr_scheduler()), defaults.lr_scheduler);
  EXPECT_EQ(*ToCore(spec.data_options().chat_format()), defaults.chat_format);
  EXPECT_EQ(spec.data_options().input_rule(), v1::INPUT_RULE_CONCAT);
  EXPECT_EQ(*ToCore(spec.data_options().input_rule()), defaults.input_rule);
  EXPECT_EQ(spec.data_options().format(), v1::DATA_FORMAT_AUTO);
  EXPECT_EQ(*ToCore(spec.data_options().format()), defaults.data_format);
  EXPECT_EQ(*ToCore(spec.dtype()), defaults.dtype);
  EXPECT_EQ(spec.save_steps(), defaults.save_steps);
  EXPECT_EQ(spec.eval().eval_fraction(), defaults.eval_fraction);
  EXPECT_EQ(h.lora_alpha(), defaults.lora_alpha);
  EXPECT_EQ(h.lora_rank(), defaults.lora_rank);
  EXPECT_EQ(h.gradient_checkpointing(), defaults.gradient_checkpointing);

  // A normalized spec is a fixed point: normalizing again changes nothing.
  v1::TrainingJobSpec again = spec;
  ASSERT_TRUE(NormalizeTrainingJobSpec(TestServer(), NoResolvers(), &again).ok());
  EXPECT_EQ(again.SerializeAsString(), spec.SerializeAsString());
}

TEST(ProtoConversionTest, CoreRangeErrorsComeBackWithTheProtoPath) {
  v1::TrainingJobSpec spec = MinimalSpec();
  spec.mutable_hyperparameters()->set_learning_rate(2);
  absl::Status status = NormalizeTrainingJobSpec(TestServer(), NoResolvers(), &spec);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()),
              StartsWith("spec.hyperparameters.learning_rate: must be in (0, 1]"));

  spec = MinimalSpec();
  spec.mutable_hyperparameters()->set_min_lr_ratio(1.5);
  status = NormalizeTrainingJobSpec(TestServer(), NoResolvers(), &spec);
  EXPECT_THAT(std::string(status.message()), StartsWith("spec.hyperparameters.min_lr_ratio: "));

  spec = MinimalSpec();
  spec.set_save_total_limit(0);
  status = NormalizeTrainingJobSpec(TestServer(), NoResolvers(), &spec);
  EXPECT_THAT(std::string(status.message()), StartsWith("spec.save_total_limit: "));
}

TEST(ProtoConversionTest, ServerOnlyRulesNameTheirFields) {
  v1::TrainingJobSpec spec = MinimalSpec();
  spec.mutable_train_data()->set_path("../secrets.jsonl");
  EXPECT_THAT(std::string(NormalizeTrainingJobSpec(TestServer(), NoResolvers(), &spec).message()),
              StartsWith("spec.train_data.path: "));
  spec = MinimalSpec();
  spec.set_dtype(v1::DTYPE_FLOAT16);
  EXPECT_THAT(std::string(NormalizeTrainingJobSpec(TestServer(), NoResolvers(), &spec).message()),
              StartsWith("spec.dtype: "));
  spec = MinimalSpec();
  spec.mutable_hyperparameters()->set_max_length(100000);  // encoder-small has 512 positions
  EXPECT_THAT(std::string(NormalizeTrainingJobSpec(TestServer(), NoResolvers(), &spec).message()),
              HasSubstr("spec.hyperparameters.max_length: must be in [8, "));
  spec = MinimalSpec();  // an encoder preset: q_proj is a decoder's layer
  spec.mutable_hyperparameters()->set_lora_rank(8);
  spec.mutable_hyperparameters()->add_lora_target_modules("q_proj");
  EXPECT_THAT(std::string(NormalizeTrainingJobSpec(TestServer(), NoResolvers(), &spec).message()),
              StartsWith("spec.hyperparameters.lora_target_modules: \"q_proj\" is not"));
}

TEST(ProtoConversionTest, ANormalizedSpecBecomesTheTrainerConfig) {
  v1::TrainingJobSpec spec = MinimalSpec();
  spec.mutable_hyperparameters()->set_min_lr_ratio(0.1);
  spec.mutable_hyperparameters()->set_lr_scheduler(v1::LR_SCHEDULER_COSINE);
  spec.mutable_data_options()->set_chat_format(v1::CHAT_FORMAT_QWEN3);
  spec.mutable_data_options()->set_format(v1::DATA_FORMAT_SHAREGPT);
  spec.set_dtype(v1::DTYPE_BFLOAT16);
  spec.mutable_hyperparameters()->set_prefix_sharing(false);
  spec.mutable_hyperparameters()->set_gradient_checkpointing(true);
  spec.mutable_hyperparameters()->set_lora_rank(16);
  spec.mutable_hyperparameters()->set_lora_alpha(32);
  spec.mutable_hyperparameters()->add_lora_target_modules("q_lin");
  spec.mutable_hyperparameters()->add_lora_target_modules("v_lin");
  ASSERT_TRUE(NormalizeTrainingJobSpec(TestServer(), NoResolvers(), &spec).ok());
  absl::StatusOr<TrainingConfig> config =
      ToTrainingConfig(TestServer(), NoResolvers(), spec, "/tmp/run", "/tmp/out");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->min_lr_ratio, 0.1);
  EXPECT_EQ(config->lr_scheduler, LrScheduleKind::kCosine);
  EXPECT_EQ(config->chat_format, ChatFormat::kQwen3);
  EXPECT_EQ(config->data_format, DataFormat::kShareGpt);
  EXPECT_EQ(config->dtype, Dtype::kBFloat16);
  EXPECT_FALSE(config->prefix_sharing);
  EXPECT_TRUE(config->gradient_checkpointing);
  EXPECT_EQ(config->lora_rank, 16);
  EXPECT_EQ(config->lora_alpha, 32);
  EXPECT_EQ(config->lora_target_modules, (std::vector<std::string>{"q_lin", "v_lin"}));
  EXPECT_EQ(config->train_path, TestDataPath("synthetic/helpful-concise.jsonl"));
  EXPECT_EQ(config->run_dir, "/tmp/run");
  EXPECT_EQ(config->output_dir, "/tmp/out");
}

TEST(ProtoConversionTest, TrainingMetricsCopyEveryField) {
  TrainStepMetrics m;
  m.loss = 0.5;
  m.accuracy = 0.75;
  m.grad_norm = 2.5;
  m.tokens = 1234;
  m.epoch = 0.25;
  v1::TrainStepMetrics out;
  ToProto(m, &out);
  EXPECT_EQ(out.loss(), 0.5);
  EXPECT_EQ(out.accuracy(), 0.75);
  EXPECT_EQ(out.grad_norm(), 2.5);
  EXPECT_EQ(out.tokens(), 1234);
  EXPECT_EQ(out.epoch(), 0.25);

  EvalMetrics eval;
  eval.accuracy = 0.9;
  eval.pairs = 40;
  eval.seconds = 1.5;
  v1::EvalMetrics eval_out;
  ToProto(eval, &eval_out);
  EXPECT_EQ(eval_out.accuracy(), 0.9);
  EXPECT_EQ(eval_out.pairs(), 40);
  EXPECT_EQ(eval_out.duration().seconds(), 1);
  EXPECT_EQ(eval_out.duration().nanos(), 500000000);
}

TEST(ProtoConversionTest, AModelDescriptionRoundTripsItsEncodingSettings) {
  EncodingSettings settings;
  settings.max_length = 300;
  settings.truncation = TruncationPolicy::kDrop;
  settings.chat_format = ChatFormat::kLlama3;
  settings.input_rule = InputRule::kChat;
  v1::Model model;
  DescribeEncoding(settings, &model);
  model.mutable_reward_stats()->set_mean(0.5);
  model.mutable_reward_stats()->set_std(2.0);
  absl::StatusOr<ScoringSettings> back = ScoringSettingsOf(model);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->max_length, 300);
  EXPECT_EQ(back->truncation, TruncationPolicy::kDrop);
  EXPECT_EQ(back->chat_format, ChatFormat::kLlama3);
  EXPECT_EQ(back->input_rule, InputRule::kChat);
  ASSERT_TRUE(back->reward_stats.has_value());
  EXPECT_EQ(back->reward_stats->std, 2.0);
  // A version registered before input rules existed was scored by the pair rule, and still is.
  model.clear_input_rule();
  EXPECT_EQ(ScoringSettingsOf(model)->input_rule, InputRule::kPair);

  model.mutable_reward_stats()->set_std(0);  // no spread: nothing to normalize with
  EXPECT_FALSE(ScoringSettingsOf(model)->reward_stats.has_value());
}

// A CUDA device this server lacks is refused at submit (before, the job failed when it ran).
TEST(ProtoConversionTest, ADeviceTheServerLacksIsAFailedPreconditionAtSubmit) {
  for (const char* device : {"cuda:64", "cuda"}) {
    v1::TrainingJobSpec spec = MinimalSpec();
    spec.set_device(device);
    const absl::Status status = NormalizeTrainingJobSpec(TestServer(), NoResolvers(), &spec);
    if (CheckDeviceAvailable(*ParseDeviceName(device)).ok()) continue;  // a GPU machine
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << device;
    EXPECT_THAT(std::string(status.message()), StartsWith("spec.device: ")) << device;
  }
  v1::TrainingJobSpec spec = MinimalSpec();
  spec.set_device("gpu");
  EXPECT_THAT(std::string(NormalizeTrainingJobSpec(TestServer(), NoResolvers(), &spec).message()),
              StartsWith("spec.device: "));
}

// A job from a base model renders conversations with the base model's own chat template, as
// TRL does; a template verdict does not know is refused, naming the field and not the
// server's path.
TEST(ProtoConversionTest, ABaseModelsChatTemplateChoosesTheChatFormat) {
  ::verdict::testing::ScratchDir models;
  ServerConfig server = TestServer();
  server.model_dir = models.Path("");
  for (const char* name : {"qwen3-base", "odd-base"}) {
    const std::filesystem::path dir = models.Path(name);
    std::filesystem::create_directories(dir);
    std::filesystem::copy_file(TestDataPath("golden/qwen3/config.json"), dir / "config.json");
  }
  std::filesystem::copy_file(TestDataPath("tokenizers/qwen3/tokenizer_config.json"),
                             models.Path("qwen3-base/tokenizer_config.json"));
  std::ofstream(models.Path("odd-base/tokenizer_config.json"))
      << R"({"chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"})";

  v1::TrainingJobSpec spec = MinimalSpec();
  spec.set_base_model("qwen3-base");
  ASSERT_TRUE(NormalizeTrainingJobSpec(server, NoResolvers(), &spec).ok());
  EXPECT_EQ(spec.data_options().chat_format(), v1::CHAT_FORMAT_QWEN3);

  spec = MinimalSpec();
  spec.set_base_model("odd-base");
  absl::Status odd = NormalizeTrainingJobSpec(server, NoResolvers(), &spec);
  EXPECT_EQ(odd.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(odd.message()), StartsWith("spec.data_options.chat_format: "));
  EXPECT_THAT(std::string(odd.message()), ::testing::Not(HasSubstr(models.Path(""))));
  // Named, it is what the job uses.
  spec = MinimalSpec();
  spec.set_base_model("odd-base");
  spec.mutable_data_options()->set_chat_format(v1::CHAT_FORMAT_HH);
  EXPECT_TRUE(NormalizeTrainingJobSpec(server, NoResolvers(), &spec).ok());
}

}  // namespace
}  // namespace verdict::server
