// Integration tests of verdictd's ScoringService and ModelService through real gRPC channels:
// scores equal an in-process forward of the same model directory, batch composition never
// changes a score, moving an alias under load fails no request, a full queue and an expired
// deadline are refused without running, normalisation, errors naming the bad item, imports,
// health and bearer-token authentication.
//
// One server per process (SetUpTestSuite) holds
//   llama           version 1: the golden Llama reward checkpoint with stories260K's tokenizer
// and, once a test asks for them (TrainedEncoder()), trained by a job and imported:
//   enc             version 1: a tiny encoder trained on the synthetic pairs
//   imported-enc    version 1: a copy of enc's directory, imported from --model_dir
// Tests that need other server settings start their own server and import llama only.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/model/model_directory.h"
#include "core/model/reward_model.h"
#include "core/score/scoring_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/proto_conversion.h"
#include "server/server.h"
#include "tests/server/server_test_util.h"
#include "tests/testing/test_paths.h"

namespace verdict::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr double kTolerance = 1e-5;
constexpr char kScoringService[] = "verdict.v1.ScoringService";

// Texts of different lengths and kinds, so that batches pad.
std::vector<v1::ScoreItem> SampleItems() {
  std::vector<v1::ScoreItem> items;
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"\n\nHuman: What is the capital of Kenya?\n\nAssistant:", " Nairobi."},
      {"\n\nHuman: What is the capital of Kenya?\n\nAssistant:", " Figure it out yourself."},
      {"\n\nHuman: Hi! What is ten minus four?\n\nAssistant:", " Ten minus four is six."},
      {"", " A response with no prompt at all."},
      {"\n\nHuman: Tell me a story about a dragon who learned to bake bread, with a happy "
       "ending and at least three characters.\n\nAssistant:",
       " Once upon a time a dragon named Ember wanted to bake bread for her friends the miller "
       "and the fox. She burned the first loaf, and the second, but the third was perfect."},
      {"\n\nHuman: Say yes.\n\nAssistant:", " Yes."},
  };
  for (const auto& [prompt, response] : pairs) {
    v1::ScoreItem item;
    item.mutable_prompt_response()->set_prompt(prompt);
    item.mutable_prompt_response()->set_response(response);
    items.push_back(item);
  }
  v1::ScoreItem chat;
  auto* messages = chat.mutable_conversation()->mutable_messages();
  auto add = [messages](const std::string& role, const std::string& content) {
    v1::ChatMessage* m = messages->Add();
    m->set_role(role);
    m->set_content(content);
  };
  add("user", "What colour is a ripe banana?");
  add("assistant", "Yellow.");
  add("user", "And an unripe one?");
  add("assistant", "Green.");
  items.push_back(chat);
  return items;
}

v1::ModelRef Ref(const std::string& name, int64_t version = 0, const std::string& alias = "") {
  v1::ModelRef ref;
  ref.set_name(name);
  if (version > 0) ref.set_version(version);
  if (!alias.empty()) ref.set_alias(alias);
  return ref;
}

grpc::Status Score(Clients& clients, const v1::ModelRef& model, const std::vector<v1::ScoreItem>& items,
                   v1::ScoreBatchResponse* response, bool normalize = false,
                   absl::Duration timeout = absl::Seconds(60), const std::string& token = "") {
  v1::ScoreBatchRequest request;
  *request.mutable_model() = model;
  for (const auto& item : items) *request.add_items() = item;
  request.mutable_options()->set_normalize(normalize);
  auto context = NewContext(timeout, token);
  return clients.scoring->ScoreBatch(context.get(), request, response);
}

grpc::Status Import(Clients& clients, const std::string& name, const std::string& path, v1::Model* model,
                    const std::string& alias = "") {
  v1::ImportModelRequest request;
  request.set_name(name);
  request.set_path(path);
  request.set_alias(alias);
  auto context = NewContext();
  return clients.models->ImportModel(context.get(), request, model);
}

// The golden Llama reward checkpoint (vocabulary 1000) has no tokenizer; stories260K's
// SentencePiece model (512 pieces) fits inside its vocabulary.
void PrepareGoldenLlama(const fs::path& model_dir) {
  const fs::path target = model_dir / "golden-llama";
  fs::create_directories(target);
  fs::copy_file(TestDataPath("golden/llama/config.json"), target / "config.json");
  fs::copy_file(TestDataPath("golden/llama/model.safetensors"), target / "model.safetensors");
  fs::copy_file(TestDataPath("models/stories260K-hf/tokenizer.model"), target / "tokenizer.model");
}

struct SharedServer {
  fs::path root;
  server::ServerConfig config;
  std::unique_ptr<server::VerdictServer> server;
  std::unique_ptr<Clients> clients;
  std::string error;  // set when the set-up failed
  bool trained = false;        // TrainedEncoder() ran
  bool encoder_ready = false;  // ... and succeeded
};

SharedServer* shared = nullptr;

class ScoringIntegrationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    shared = new SharedServer;
    shared->root = fs::temp_directory_path() / absl::StrCat("verdict-scoring-integration-", ::getpid());
    fs::remove_all(shared->root);
    shared->config = TestServerConfig(shared->root);
    shared->config.metrics_port = 0;
    auto started = server::VerdictServer::Start(shared->config);
    if (!started.ok()) {
      shared->error = started.status().ToString();
      return;
    }
    shared->server = std::move(*started);
    shared->clients = std::make_unique<Clients>(LoopbackAddress(shared->server->port()));
    Clients& c = *shared->clients;

    PrepareGoldenLlama(shared->config.model_dir);
    v1::Model model;
    grpc::Status status = Import(c, "llama", "golden-llama", &model);
    if (!status.ok()) shared->error = "import llama: " + status.error_message();
  }

  // Trains "enc" and imports its copy as "imported-enc", once per process.
  static void TrainedEncoder() {
    if (shared->trained) return;
    shared->trained = true;
    Clients& c = *shared->clients;
    v1::Dataset dataset;
    grpc::Status status = UploadWithChecks(
        *c.datasets, FirstLines(TestDataPath("synthetic/helpful-concise.jsonl"), 300), "pairs", &dataset);
    ASSERT_TRUE(status.ok()) << "upload: " << status.error_message();
    v1::SubmitTrainingJobRequest submit;
    *submit.mutable_spec() = TinyJobSpec(dataset.id(), 10);
    submit.mutable_spec()->set_output_model_name("enc");
    v1::Job job;
    auto context = NewContext();
    status = c.training->SubmitTrainingJob(context.get(), submit, &job);
    ASSERT_TRUE(status.ok()) << "submit: " << status.error_message();
    auto done = WaitForTerminal(*c.training, job.id());
    ASSERT_TRUE(done.ok()) << done.status();
    ASSERT_EQ(done->state(), v1::JOB_STATE_SUCCEEDED) << done->error_message();
    CopyTree(StorageDir(Ref("enc", 1)), fs::path(shared->config.model_dir) / "enc-copy");
    v1::Model model;
    status = Import(c, "imported-enc", "enc-copy", &model);
    ASSERT_TRUE(status.ok()) << "import enc: " << status.error_message();
    shared->encoder_ready = true;
  }

  static void TearDownTestSuite() {
    if (shared != nullptr) {
      shared->clients.reset();
      shared->server.reset();
      fs::remove_all(shared->root);
      delete shared;
      shared = nullptr;
    }
  }

  void SetUp() override { ASSERT_TRUE(shared->error.empty()) << shared->error; }

  static v1::Model GetModel(const v1::ModelRef& ref) {
    v1::GetModelRequest request;
    *request.mutable_model() = ref;
    v1::Model model;
    auto context = NewContext();
    grpc::Status status = shared->clients->models->GetModel(context.get(), request, &model);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return model;
  }

  static fs::path StorageDir(const v1::ModelRef& ref) {
    return fs::path(shared->config.state_dir) / GetModel(ref).storage_path();
  }

  // Scores of `items` by an in-process ScoringModel loaded from the server's copy of the
  // version, one forward per item.
  static std::vector<double> InProcessScores(const v1::ModelRef& ref, const std::vector<v1::ScoreItem>& items,
                                             std::vector<int>* token_counts = nullptr) {
    auto model = ScoringModel::Load(StorageDir(ref).string(), ModelOptions{});
    EXPECT_TRUE(model.ok()) << model.status();
    if (!model.ok()) return {};
    std::vector<double> scores;
    for (const v1::ScoreItem& item : items) {
      absl::StatusOr<std::vector<int32_t>> ids;
      if (item.has_prompt_response()) {
        ids = (*model)->Encode(item.prompt_response().prompt(), item.prompt_response().response());
      } else {
        std::vector<ChatMessage> chat;
        for (const auto& m : item.conversation().messages()) {
          chat.push_back({*ParseChatRole(m.role()), m.content()});
        }
        ids = (*model)->EncodeConversation(chat);
      }
      EXPECT_TRUE(ids.ok()) << ids.status();
      if (!ids.ok()) return {};
      if (token_counts != nullptr) token_counts->push_back(static_cast<int>(ids->size()));
      auto rewards = (*model)->ScoreEncoded({*ids});
      EXPECT_TRUE(rewards.ok()) << rewards.status();
      if (!rewards.ok()) return {};
      scores.push_back((*rewards)[0]);
    }
    return scores;
  }

  static Clients& clients() { return *shared->clients; }
};

void ExpectNear(const std::vector<double>& actual, const std::vector<double>& expected, double tolerance) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    EXPECT_NEAR(actual[i], expected[i], tolerance) << "item " << i;
  }
}

std::vector<double> ScoresOf(const v1::ScoreBatchResponse& response) {
  return std::vector<double>(response.scores().begin(), response.scores().end());
}

// ---- exactness ------------------------------------------------------------------------------

TEST_F(ScoringIntegrationTest, ScoresEqualAnInProcessForwardOfTheSameDirectory) {
  ASSERT_NO_FATAL_FAILURE(TrainedEncoder());
  ASSERT_TRUE(shared->encoder_ready);
  const std::vector<v1::ScoreItem> items = SampleItems();
  for (const std::string& name : {"enc", "imported-enc", "llama"}) {
    SCOPED_TRACE(name);
    v1::ScoreBatchResponse response;
    grpc::Status status = Score(clients(), Ref(name), items, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.model().name(), name);
    EXPECT_EQ(response.model().version(), 1);
    EXPECT_FALSE(response.normalized());
    EXPECT_TRUE(response.has_queue_time());
    EXPECT_TRUE(response.has_compute_time());
    std::vector<int> token_counts;
    const std::vector<double> expected = InProcessScores(Ref(name, 1), items, &token_counts);
    ExpectNear(ScoresOf(response), expected, kTolerance);
    EXPECT_THAT(response.token_counts(), ::testing::ElementsAreArray(token_counts));
    // Not all the same number: the texts differ and so do their rewards.
    EXPECT_NE(response.scores(0), response.scores(1));
  }
  // The import is the same model as the training job's output, with the settings and reward
  // statistics the job saved beside it.
  const v1::Model trained_model = GetModel(Ref("enc"));
  const v1::Model imported_model = GetModel(Ref("imported-enc"));
  EXPECT_EQ(imported_model.max_length(), trained_model.max_length());
  EXPECT_EQ(imported_model.truncation(), trained_model.truncation());
  EXPECT_EQ(imported_model.chat_format(), trained_model.chat_format());
  EXPECT_EQ(trained_model.input_rule(), v1::INPUT_RULE_CONCAT);
  EXPECT_EQ(imported_model.input_rule(), trained_model.input_rule());
  EXPECT_EQ(imported_model.import_path(), "enc-copy");
  EXPECT_NEAR(imported_model.reward_stats().mean(), trained_model.reward_stats().mean(), 1e-6);
  EXPECT_NEAR(imported_model.reward_stats().std(), trained_model.reward_stats().std(), 1e-6);
  v1::ScoreBatchResponse trained, imported;
  ASSERT_TRUE(Score(clients(), Ref("enc"), items, &trained).ok());
  ASSERT_TRUE(Score(clients(), Ref("imported-enc"), items, &imported).ok());
  ExpectNear(ScoresOf(imported), ScoresOf(trained), kTolerance);
}

TEST_F(ScoringIntegrationTest, BatchCompositionNeverChangesAScore) {
  ASSERT_NO_FATAL_FAILURE(TrainedEncoder());
  ASSERT_TRUE(shared->encoder_ready);
  std::vector<v1::ScoreItem> items = SampleItems();
  const std::vector<v1::ScoreItem> more = SampleItems();
  items.insert(items.end(), more.begin(), more.end());  // duplicates score alike too
  for (const std::string& name : {"enc", "llama"}) {
    SCOPED_TRACE(name);
    // Each item alone.
    std::vector<double> alone;
    for (const auto& item : items) {
      v1::ScoreBatchResponse response;
      ASSERT_TRUE(Score(clients(), Ref(name), {item}, &response).ok());
      alone.push_back(response.scores(0));
    }
    // All together, and in reverse order.
    v1::ScoreBatchResponse together;
    ASSERT_TRUE(Score(clients(), Ref(name), items, &together).ok());
    ExpectNear(ScoresOf(together), alone, kTolerance);
    std::vector<v1::ScoreItem> reversed(items.rbegin(), items.rend());
    v1::ScoreBatchResponse backwards;
    ASSERT_TRUE(Score(clients(), Ref(name), reversed, &backwards).ok());
    std::vector<double> unreversed(backwards.scores().rbegin(), backwards.scores().rend());
    ExpectNear(unreversed, alone, kTolerance);
    // From six clients at once, each with a different slice, batched together by the server.
    std::vector<std::vector<double>> concurrent(6);
    std::vector<grpc::Status> statuses(6);
    std::vector<std::thread> threads;
    for (int t = 0; t < 6; ++t) {
      threads.emplace_back([&, t] {
        std::vector<v1::ScoreItem> slice(items.begin() + t, items.begin() + t + 5);
        v1::ScoreBatchResponse response;
        for (int repeat = 0; repeat < 5 && statuses[t].ok(); ++repeat) {
          statuses[t] = Score(clients(), Ref(name), slice, &response);
          if (!statuses[t].ok()) break;
          std::vector<double> scores = ScoresOf(response);
          if (!concurrent[t].empty()) {
            for (size_t i = 0; i < scores.size(); ++i) EXPECT_NEAR(scores[i], concurrent[t][i], kTolerance);
          }
          concurrent[t] = scores;
          response.Clear();
        }
      });
    }
    for (auto& thread : threads) thread.join();
    for (int t = 0; t < 6; ++t) {
      ASSERT_TRUE(statuses[t].ok()) << statuses[t].error_message();
      ExpectNear(concurrent[t], std::vector<double>(alone.begin() + t, alone.begin() + t + 5), kTolerance);
    }
  }
}

TEST_F(ScoringIntegrationTest, NormalizeUsesTheModelsRewardStats) {
  ASSERT_NO_FATAL_FAILURE(TrainedEncoder());
  ASSERT_TRUE(shared->encoder_ready);
  const std::vector<v1::ScoreItem> items = SampleItems();
  const v1::Model model = GetModel(Ref("enc"));
  ASSERT_TRUE(model.has_reward_stats());
  ASSERT_GT(model.reward_stats().std(), 0);
  v1::ScoreBatchResponse raw, normalized;
  ASSERT_TRUE(Score(clients(), Ref("enc"), items, &raw).ok());
  grpc::Status status = Score(clients(), Ref("enc"), items, &normalized, /*normalize=*/true);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(normalized.normalized());
  for (int i = 0; i < raw.scores_size(); ++i) {
    const double expected = (raw.scores(i) - model.reward_stats().mean()) / model.reward_stats().std();
    EXPECT_NEAR(normalized.scores(i), expected, 1e-4 * std::max(1.0, std::abs(expected))) << "item " << i;
  }
  // The golden checkpoint came without statistics.
  EXPECT_FALSE(GetModel(Ref("llama")).has_reward_stats());
  status = Score(clients(), Ref("llama"), items, &normalized, true);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
}

// An import records the input rule it is given (TRL's concat by default) in its registry
// entry and in its directory's encoding.json, and scores by it: the same directory under
// three rules reads three different token sequences, each the one the rule builds from the
// tokenizer's own special tokens.
TEST_F(ScoringIntegrationTest, AnImportScoresByTheInputRuleItRecords) {
  const std::string prompt = "\n\nHuman: Is the sky blue?\n\nAssistant:", response = " Yes.";
  v1::ScoreItem item;
  item.mutable_prompt_response()->set_prompt(prompt);
  item.mutable_prompt_response()->set_response(response);
  auto tokenizer = LoadTokenizerFromDirectory(TestDataPath("models/stories260K-hf"));
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  auto text_ids = (*tokenizer)->Encode(prompt + response);
  ASSERT_TRUE(text_ids.ok());
  const int32_t bos = (*tokenizer)->special_tokens().bos, eos = (*tokenizer)->special_tokens().eos;
  auto with = [&](std::vector<int32_t> before, std::vector<int32_t> ids, std::vector<int32_t> after) {
    before.insert(before.end(), ids.begin(), ids.end());
    before.insert(before.end(), after.begin(), after.end());
    return before;
  };
  auto chat_ids = (*tokenizer)->Encode("\n\nHuman: " + prompt + "\n\nAssistant: " + response);
  ASSERT_TRUE(chat_ids.ok());
  struct Case {
    v1::InputRule rule;
    const char* name;
    std::vector<int32_t> ids;  // built by hand: stories260K's tokenizer adds BOS only
  };
  const std::vector<Case> cases = {
      {v1::INPUT_RULE_UNSPECIFIED, "rule-default", with({bos}, *text_ids, {eos})},
      {v1::INPUT_RULE_PAIR, "rule-pair", with({bos}, *text_ids, {})},
      {v1::INPUT_RULE_CHAT, "rule-chat", with({bos}, *chat_ids, {eos})},
  };
  std::map<std::string, double> scores;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::ImportModelRequest request;
    request.set_name(c.name);
    request.set_path("golden-llama");
    request.set_input_rule(c.rule);
    request.set_chat_format(v1::CHAT_FORMAT_HH);
    v1::Model model;
    auto context = NewContext();
    grpc::Status status = clients().models->ImportModel(context.get(), request, &model);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(model.input_rule(), c.rule == v1::INPUT_RULE_UNSPECIFIED ? v1::INPUT_RULE_CONCAT : c.rule);
    auto recorded = ReadEncodingSettings(StorageDir(Ref(c.name)).string());
    ASSERT_TRUE(recorded.ok()) << recorded.status();
    EXPECT_EQ(server::ToProto(recorded->input_rule), model.input_rule());

    v1::ScoreBatchResponse response;
    ASSERT_TRUE(Score(clients(), Ref(c.name), {item}, &response).ok());
    ASSERT_EQ(response.token_counts_size(), 1);
    EXPECT_EQ(response.token_counts(0), static_cast<int>(c.ids.size()));
    // The score of exactly those ids, in process.
    auto in_process = ScoringModel::Load(StorageDir(Ref(c.name)).string(), ModelOptions{});
    ASSERT_TRUE(in_process.ok()) << in_process.status();
    auto expected = (*in_process)->ScoreEncoded({c.ids});
    ASSERT_TRUE(expected.ok()) << expected.status();
    EXPECT_NEAR(response.scores(0), (*expected)[0], kTolerance);
    scores[c.name] = response.scores(0);
  }
  EXPECT_NE(scores["rule-default"], scores["rule-pair"]);
  EXPECT_NE(scores["rule-default"], scores["rule-chat"]);
}

// A policy may generate nothing: an empty response is an item like any other.
TEST_F(ScoringIntegrationTest, AnEmptyResponseGetsAScore) {
  v1::ScoreItem empty;
  empty.mutable_prompt_response()->set_prompt("\n\nHuman: Say something.\n\nAssistant:");
  v1::ScoreItem empty_turn;
  auto* messages = empty_turn.mutable_conversation()->mutable_messages();
  messages->Add()->set_role("user");
  messages->Mutable(0)->set_content("Say something.");
  messages->Add()->set_role("assistant");
  v1::ScoreBatchResponse response;
  grpc::Status status = Score(clients(), Ref("llama"), {empty, empty_turn}, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.scores_size(), 2);
  EXPECT_TRUE(std::isfinite(response.scores(0)));
  EXPECT_THAT(response.token_counts(), ::testing::Each(::testing::Gt(1)));
}

// ---- versions and aliases -----------------------------------------------------------------

TEST_F(ScoringIntegrationTest, MovingAnAliasUnderLoadFailsNoRequest) {
  ASSERT_NO_FATAL_FAILURE(TrainedEncoder());
  ASSERT_TRUE(shared->encoder_ready);
  // Two versions of one name that score differently: the golden Llama and the trained encoder.
  v1::Model v1_model, v2_model;
  ASSERT_TRUE(Import(clients(), "swap", "golden-llama", &v1_model, "production").ok());
  ASSERT_TRUE(Import(clients(), "swap", "enc-copy", &v2_model).ok());
  ASSERT_EQ(v1_model.version(), 1);
  ASSERT_EQ(v2_model.version(), 2);
  EXPECT_THAT(v1_model.aliases(), ::testing::Contains("production"));
  const std::vector<v1::ScoreItem> items = SampleItems();
  std::map<int64_t, std::vector<double>> expected;
  for (int64_t version : {1, 2}) {
    v1::ScoreBatchResponse response;
    ASSERT_TRUE(Score(clients(), Ref("swap", version), items, &response).ok());
    expected[version] = ScoresOf(response);
  }
  ASSERT_GT(std::abs(expected[1][0] - expected[2][0]), 1e-3);

  std::atomic<bool> stop{false};
  std::atomic<int> requests{0};
  absl::Mutex mutex;
  std::vector<std::string> failures;
  std::map<int64_t, int> served_by;
  std::vector<std::thread> clients_threads;
  for (int t = 0; t < 8; ++t) {
    clients_threads.emplace_back([&] {
      while (!stop.load()) {
        v1::ScoreBatchResponse response;
        grpc::Status status = Score(clients(), Ref("swap", 0, "production"), items, &response);
        ++requests;
        absl::MutexLock lock(&mutex);
        if (!status.ok()) {
          failures.push_back(absl::StrCat(status.error_code(), ": ", status.error_message()));
          continue;
        }
        const int64_t version = response.model().version();
        ++served_by[version];
        auto it = expected.find(version);
        if (it == expected.end()) {
          failures.push_back(absl::StrCat("served by unknown version ", version));
          continue;
        }
        for (int i = 0; i < response.scores_size(); ++i) {
          if (std::abs(response.scores(i) - it->second[i]) > kTolerance) {
            failures.push_back(absl::StrCat("version ", version, " item ", i, " scored ", response.scores(i),
                                            ", expected ", it->second[i]));
          }
        }
      }
    });
  }
  // Each move waits for 12 more answers, so that requests resolved after the previous move (at
  // least 4 of them: 8 clients have at most 8 in flight) have been served, however slow the
  // machine is.
  auto await_answers = [&](int count) {
    const int target = requests.load() + count;
    const absl::Time give_up = absl::Now() + absl::Seconds(60);
    while (requests.load() < target && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(2));
  };
  for (int move = 0; move < 8; ++move) {
    await_answers(12);
    v1::SetModelAliasRequest request;
    request.set_name("swap");
    request.set_alias("production");
    request.set_version(move % 2 == 0 ? 2 : 1);
    v1::Model moved;
    auto context = NewContext();
    grpc::Status status = clients().models->SetModelAlias(context.get(), request, &moved);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(moved.version(), request.version());
    if (move == 4) {
      // Unloading the version the alias just left fails nothing either.
      v1::UnloadModelRequest unload;
      *unload.mutable_model() = Ref("swap", 1);  // move 4 went to version 2
      v1::Model unloaded;
      auto unload_context = NewContext();
      EXPECT_TRUE(clients().models->UnloadModel(unload_context.get(), unload, &unloaded).ok());
    }
  }
  await_answers(12);
  stop = true;
  for (auto& thread : clients_threads) thread.join();
  EXPECT_THAT(failures, ::testing::IsEmpty());
  EXPECT_GE(requests.load(), 9 * 12);
  EXPECT_GT(served_by[1], 0);
  EXPECT_GT(served_by[2], 0);

  // Aliases are listed on the version they point at; "latest" is the highest.
  const v1::Model latest = GetModel(Ref("swap", 0, "latest"));
  EXPECT_EQ(latest.version(), 2);
  const v1::Model production = GetModel(Ref("swap", 0, "production"));
  EXPECT_EQ(production.version(), 1);  // the last move (move 7) went to version 1
  EXPECT_THAT(production.aliases(), ::testing::Contains("production"));
}

// ---- bad requests -------------------------------------------------------------------------

TEST_F(ScoringIntegrationTest, BadItemsAndUnknownModelsAreNamed) {
  auto expect = [](const grpc::Status& status, grpc::StatusCode code, const std::string& text) {
    EXPECT_EQ(status.error_code(), code) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(text));
  };
  const std::vector<v1::ScoreItem> good = SampleItems();
  v1::ScoreBatchResponse response;
  expect(Score(clients(), Ref("llama"), {}, &response), grpc::StatusCode::INVALID_ARGUMENT, "items");

  std::vector<v1::ScoreItem> items = good;
  items[6].mutable_conversation()->mutable_messages(1)->set_role("robot");
  expect(Score(clients(), Ref("llama"), items, &response), grpc::StatusCode::INVALID_ARGUMENT,
         "items[6].conversation.messages[1].role");

  items = good;
  items[6].mutable_conversation()->mutable_messages()->RemoveLast();
  expect(Score(clients(), Ref("llama"), items, &response), grpc::StatusCode::INVALID_ARGUMENT,
         "items[6].conversation");

  items = good;
  items[4].Clear();
  expect(Score(clients(), Ref("llama"), items, &response), grpc::StatusCode::INVALID_ARGUMENT, "items[4]");

  items = good;
  items[1].mutable_prompt_response()->set_response(std::string(300 << 10, 'a'));
  expect(Score(clients(), Ref("llama"), items, &response), grpc::StatusCode::INVALID_ARGUMENT, "items[1]");

  items.assign(1025, good[0]);
  expect(Score(clients(), Ref("llama"), items, &response), grpc::StatusCode::INVALID_ARGUMENT, "items");

  expect(Score(clients(), Ref("ghost"), good, &response), grpc::StatusCode::NOT_FOUND, "ghost");
  expect(Score(clients(), Ref("llama", 7), good, &response), grpc::StatusCode::NOT_FOUND, "7");
  expect(Score(clients(), Ref("llama", 0, "canary"), good, &response), grpc::StatusCode::NOT_FOUND, "canary");
  expect(Score(clients(), Ref("Bad Name"), good, &response), grpc::StatusCode::INVALID_ARGUMENT, "model.name");
  expect(Score(clients(), Ref(""), good, &response), grpc::StatusCode::INVALID_ARGUMENT, "model.name");

  // None of these broke the model for others.
  ASSERT_TRUE(Score(clients(), Ref("llama"), good, &response).ok());
}

// Links that stay inside --model_dir (a Hugging Face cache's snapshot links into its blobs) are
// followed: the registry's copy holds the files themselves, never a link.
TEST_F(ScoringIntegrationTest, ImportCopiesTheFilesThatLinksInsideTheRootName) {
  const fs::path model_dir = shared->config.model_dir;
  const fs::path blobs = model_dir / "hub" / "blobs";
  const fs::path snapshot = model_dir / "hub" / "snapshots" / "0123abcd";
  PrepareGoldenLlama(blobs);
  fs::create_directories(snapshot / "sub");
  fs::create_symlink("../../blobs/golden-llama/config.json", snapshot / "config.json");
  fs::create_symlink("../../blobs/golden-llama/model.safetensors", snapshot / "model.safetensors");
  fs::create_symlink("../../../blobs/golden-llama/tokenizer.model",
                     snapshot / "sub" / "tokenizer.model");
  fs::copy_file(snapshot / "sub" / "tokenizer.model", snapshot / "tokenizer.model");
  v1::Model model;
  grpc::Status status = Import(clients(), "linked", "hub/snapshots/0123abcd", &model);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const fs::path stored = fs::path(shared->config.state_dir) / model.storage_path();
  for (const char* file :
       {"config.json", "model.safetensors", "tokenizer.model", "sub/tokenizer.model"}) {
    EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(stored / file))) << file;
  }
  EXPECT_EQ(fs::file_size(stored / "model.safetensors"),
            fs::file_size(TestDataPath("golden/llama/model.safetensors")));
}

TEST_F(ScoringIntegrationTest, ImportChecksNamesPathsAndTheRewardHead) {
  auto expect = [](const grpc::Status& status, grpc::StatusCode code, const std::string& text) {
    EXPECT_EQ(status.error_code(), code) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(text));
  };
  const fs::path model_dir = shared->config.model_dir;
  CopyTree(TestDataPath("models/stories260K-hf"), model_dir / "stories260K-hf");
  v1::Model model;
  // A language model has no reward head: train it first (as a base_model).
  expect(Import(clients(), "stories", "stories260K-hf", &model), grpc::StatusCode::FAILED_PRECONDITION,
         "reward head");
  expect(Import(clients(), "Bad Name", "golden-llama", &model), grpc::StatusCode::INVALID_ARGUMENT, "name");
  expect(Import(clients(), "x", "../golden-llama", &model), grpc::StatusCode::INVALID_ARGUMENT, "path");
  expect(Import(clients(), "x", "/etc", &model), grpc::StatusCode::INVALID_ARGUMENT, "path");
  expect(Import(clients(), "x", "not-there", &model), grpc::StatusCode::NOT_FOUND, "path");
  expect(Import(clients(), "x", "golden-llama", &model, "latest"), grpc::StatusCode::INVALID_ARGUMENT, "alias");
  // A checkpoint without a tokenizer cannot serve text.
  fs::create_directories(model_dir / "no-tokenizer");
  fs::copy_file(TestDataPath("golden/distilbert/config.json"), model_dir / "no-tokenizer" / "config.json");
  fs::copy_file(TestDataPath("golden/distilbert/model.safetensors"), model_dir / "no-tokenizer" / "model.safetensors");
  expect(Import(clients(), "x", "no-tokenizer", &model), grpc::StatusCode::INVALID_ARGUMENT, "tokenizer");
  // A link out of --model_dir.
  fs::create_directory_symlink(fs::path(TestDataPath("golden")), model_dir / "escape");
  expect(Import(clients(), "x", "escape/llama", &model), grpc::StatusCode::PERMISSION_DENIED, "path");
  // A directory inside --model_dir whose files are links to files outside it, at the top or
  // deeper: they used to be read and copied into the registry.
  PrepareGoldenLlama(model_dir / "leaky");
  fs::remove(model_dir / "leaky" / "golden-llama" / "config.json");
  fs::create_symlink(fs::path(TestDataPath("golden/llama/config.json")),
                     model_dir / "leaky" / "golden-llama" / "config.json");
  grpc::Status status = Import(clients(), "x", "leaky/golden-llama", &model);
  expect(status, grpc::StatusCode::PERMISSION_DENIED, "path: \"leaky/golden-llama/config.json\"");
  EXPECT_THAT(status.error_message(), ::testing::Not(HasSubstr(model_dir.string())));
  EXPECT_THAT(status.error_message(), ::testing::Not(HasSubstr(TestDataPath("golden"))));
  PrepareGoldenLlama(model_dir / "deep");
  fs::create_directories(model_dir / "deep" / "golden-llama" / "extra" / "more");
  fs::create_symlink(fs::path(TestDataPath("golden/llama/cases.json")),
                     model_dir / "deep" / "golden-llama" / "extra" / "more" / "notes.json");
  expect(Import(clients(), "x", "deep/golden-llama", &model), grpc::StatusCode::PERMISSION_DENIED,
         "path: \"deep/golden-llama/extra/more/notes.json\"");
  // Nothing was registered under the names tried, and no copy was left behind.
  const fs::path copies = fs::path(shared->config.state_dir) / "models" / "x";
  EXPECT_TRUE(!fs::exists(copies) || fs::is_empty(copies));
  v1::ListModelsRequest list;
  list.set_name("x");
  v1::ListModelsResponse listed;
  auto context = NewContext();
  ASSERT_TRUE(clients().models->ListModels(context.get(), list, &listed).ok());
  EXPECT_EQ(listed.models_size(), 0);
}

TEST_F(ScoringIntegrationTest, ADamagedVersionIsDataLossAndAMissingDeviceAFailedPrecondition) {
  v1::Model model;
  ASSERT_TRUE(Import(clients(), "damaged", "golden-llama", &model).ok());
  // The registry's copy loses its tail after the import checked it.
  const fs::path weights = fs::path(shared->config.state_dir) / model.storage_path() / "model.safetensors";
  fs::resize_file(weights, fs::file_size(weights) / 2);
  v1::ScoreBatchResponse response;
  grpc::Status status = Score(clients(), Ref("damaged"), SampleItems(), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("damaged"));

  v1::LoadModelRequest load;
  *load.mutable_model() = Ref("llama");
  load.set_device("cuda:7");
  auto context = NewContext();
  status = clients().models->LoadModel(context.get(), load, &model);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("cuda:7"));
  load.set_device("gpu");
  context = NewContext();
  status = clients().models->LoadModel(context.get(), load, &model);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("device"));
  // The version still serves on the CPU.
  ASSERT_TRUE(Score(clients(), Ref("llama"), SampleItems(), &response).ok());
}

// ---- servers with their own settings ------------------------------------------------------

class ScoringServerTest : public ::testing::Test {
 protected:
  // Starts a server with `config`, imports the golden Llama as "llama" version 1.
  void Start(server::ServerConfig config) {
    auto server = server::VerdictServer::Start(config);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    clients_ = std::make_unique<Clients>(LoopbackAddress(server_->port()));
    PrepareGoldenLlama(config.model_dir);
    v1::ImportModelRequest request;
    request.set_name("llama");
    request.set_path("golden-llama");
    v1::Model model;
    auto context = NewContext(absl::Seconds(60), config.api_token);
    grpc::Status status = clients_->models->ImportModel(context.get(), request, &model);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  void Load(const std::string& name) {
    v1::LoadModelRequest request;
    *request.mutable_model() = Ref(name);
    v1::Model model;
    auto context = NewContext();
    grpc::Status status = clients_->models->LoadModel(context.get(), request, &model);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_TRUE(model.loaded());
    EXPECT_EQ(model.device(), "cpu");
  }

  ScratchDir scratch_;
  std::unique_ptr<server::VerdictServer> server_;
  std::unique_ptr<Clients> clients_;
};

TEST_F(ScoringServerTest, HealthReportsScoringServingOnlyWhileAModelIsLoaded) {
  ASSERT_NO_FATAL_FAILURE(Start(TestServerConfig(scratch_.path())));
  auto health = [&](const std::string& service) {
    auto status = CheckHealth(clients_->channel, service);
    EXPECT_TRUE(status.ok()) << status.status();
    return status.value_or(-1);
  };
  EXPECT_EQ(health(""), kServing);
  EXPECT_EQ(health("verdict.v1.TrainingService"), kServing);
  EXPECT_EQ(health("verdict.v1.ModelService"), kServing);
  // Imported, not loaded.
  EXPECT_EQ(health(kScoringService), kNotServing);
  EXPECT_EQ(CheckHealth(clients_->channel, "no.such.Service").status().code(), absl::StatusCode::kNotFound);

  ASSERT_NO_FATAL_FAILURE(Load("llama"));
  EXPECT_EQ(health(kScoringService), kServing);
  v1::ListModelsRequest list;
  list.set_loaded_only(true);
  v1::ListModelsResponse listed;
  auto context = NewContext();
  ASSERT_TRUE(clients_->models->ListModels(context.get(), list, &listed).ok());
  ASSERT_EQ(listed.models_size(), 1);
  EXPECT_TRUE(listed.models(0).loaded());

  v1::UnloadModelRequest unload;
  *unload.mutable_model() = Ref("llama", 1);
  v1::Model model;
  context = NewContext();
  ASSERT_TRUE(clients_->models->UnloadModel(context.get(), unload, &model).ok());
  EXPECT_EQ(health(kScoringService), kNotServing);

  // A score loads the version on first use.
  v1::ScoreBatchResponse response;
  grpc::Status status = Score(*clients_, Ref("llama"), SampleItems(), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(health(kScoringService), kServing);

  // Shutting down: nothing is serving any more.
  server_->Shutdown();
  auto after = CheckHealth(clients_->channel, "");
  EXPECT_TRUE(!after.ok() || *after == kNotServing);
}

// --scoring_quantization=int8 quantizes encoders only: a decoder loads and scores as before.
// A value other than none or int8, a negative thread count and a nice outside [0, 19] are
// refused at start, naming the flag.
TEST_F(ScoringServerTest, Int8QuantizationLeavesDecodersAsTheyAreAndBadBudgetsAreRefused) {
  server::ServerConfig config = TestServerConfig(scratch_.path());
  for (const auto& [flag, edit] :
       std::vector<std::pair<std::string, std::function<void(server::ServerConfig&)>>>{
           {"--scoring_quantization", [](auto& c) { c.scoring_quantization = "int4"; }},
           {"--training_threads", [](auto& c) { c.training_threads = -1; }},
           {"--blas_threads", [](auto& c) { c.blas_threads = -1; }},
           {"--training_nice", [](auto& c) { c.training_nice = 20; }},
           {"--training_yield_ms", [](auto& c) { c.training_yield = -absl::Milliseconds(1); }}}) {
    server::ServerConfig bad = config;
    edit(bad);
    auto refused = server::VerdictServer::Start(bad);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << flag;
    EXPECT_THAT(refused.status().message(), HasSubstr(flag));
  }
  config.scoring_quantization = "int8";
  config.blas_threads = 1;
  config.training_threads = 1;
  config.training_nice = 19;
  ASSERT_NO_FATAL_FAILURE(Start(config));
  ASSERT_NO_FATAL_FAILURE(Load("llama"));
  v1::ScoreBatchResponse response;
  ASSERT_TRUE(Score(*clients_, Ref("llama"), SampleItems(), &response).ok());
  EXPECT_EQ(response.scores_size(), static_cast<int>(SampleItems().size()));
}

TEST_F(ScoringServerTest, AFullQueueIsResourceExhausted) {
  server::ServerConfig config = TestServerConfig(scratch_.path());
  config.max_queued_items = 8;
  config.max_queue_delay = absl::Milliseconds(1500);  // the first request holds the queue
  ASSERT_NO_FATAL_FAILURE(Start(config));
  ASSERT_NO_FATAL_FAILURE(Load("llama"));
  std::vector<v1::ScoreItem> items = SampleItems();
  items.resize(4);
  constexpr int kClients = 6;
  std::vector<grpc::Status> statuses(kClients);
  std::vector<v1::ScoreBatchResponse> responses(kClients);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] { statuses[i] = Score(*clients_, Ref("llama"), items, &responses[i]); });
  }
  for (auto& thread : threads) thread.join();
  int ok = 0, exhausted = 0;
  for (int i = 0; i < kClients; ++i) {
    if (statuses[i].ok()) {
      ++ok;
      EXPECT_EQ(responses[i].scores_size(), 4);
    } else {
      EXPECT_EQ(statuses[i].error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << statuses[i].error_message();
      ++exhausted;
    }
  }
  EXPECT_GE(ok, 1);
  EXPECT_GE(exhausted, 1);
  EXPECT_EQ(ok + exhausted, kClients);
  // A request larger than the whole queue can never fit: retrying cannot help, so it is
  // INVALID_ARGUMENT (asking to split it), not RESOURCE_EXHAUSTED.
  std::vector<v1::ScoreItem> too_many(9, items[0]);
  v1::ScoreBatchResponse response;
  grpc::Status status = Score(*clients_, Ref("llama"), too_many, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("split"));
}

TEST_F(ScoringServerTest, ARequestWhoseDeadlinePassedIsNeverRun) {
  server::ServerConfig config = TestServerConfig(scratch_.path());
  config.metrics_port = 0;
  config.max_queue_delay = absl::Milliseconds(1000);  // the request waits in the queue
  ASSERT_NO_FATAL_FAILURE(Start(config));
  ASSERT_NO_FATAL_FAILURE(Load("llama"));
  const std::vector<v1::ScoreItem> items = SampleItems();
  v1::ScoreBatchResponse response;
  grpc::Status status = Score(*clients_, Ref("llama"), items, &response, false, absl::Milliseconds(300));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  absl::SleepFor(absl::Milliseconds(1500));  // past the queue delay: the batcher has looked at it

  auto metrics = ScrapeMetrics(server_->metrics_port());
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  // The server holds one model, so the sums over every model label are that model's.
  EXPECT_EQ(MetricSum(*metrics, "verdict_scoring_items_total"), 0) << *metrics;
  EXPECT_GE(MetricSum(*metrics, "verdict_scoring_rejected_total"), 1) << *metrics;

  // A request with time to spare is scored, and only its items ever ran.
  status = Score(*clients_, Ref("llama"), items, &response, false, absl::Seconds(30));
  ASSERT_TRUE(status.ok()) << status.error_message();
  metrics = ScrapeMetrics(server_->metrics_port());
  ASSERT_TRUE(metrics.ok());
  EXPECT_EQ(MetricSum(*metrics, "verdict_scoring_items_total"), static_cast<double>(items.size()));
}

// The queue gauges carry the model name (as verdict_models_loaded does), appear with a loaded
// version (not with the import's check that the directory loads), follow what waits in the
// queue, and read 0 once the version is unloaded, even while a request still finishes on it.
TEST_F(ScoringServerTest, QueueGaugesFollowTheLoadedVersionByName) {
  server::ServerConfig config = TestServerConfig(scratch_.path());
  config.metrics_port = 0;
  config.max_queued_items = 64;
  config.max_queue_delay = absl::Milliseconds(1500);  // a lone request waits in the queue
  ASSERT_NO_FATAL_FAILURE(Start(config));
  auto scrape = [&] {
    auto metrics = ScrapeMetrics(server_->metrics_port());
    EXPECT_TRUE(metrics.ok()) << metrics.status();
    return metrics.value_or("");
  };
  const std::map<std::string, std::string> llama = {{"model", "llama"}};
  EXPECT_FALSE(absl::StrContains(scrape(), "verdict_scoring_queue_capacity{"))
      << "the import's check load shows up in the metrics";

  ASSERT_NO_FATAL_FAILURE(Load("llama"));
  std::string metrics = scrape();
  EXPECT_EQ(MetricSum(metrics, "verdict_scoring_queue_capacity", llama), 64) << metrics;
  EXPECT_EQ(MetricSum(metrics, "verdict_scoring_queue_depth", llama), 0) << metrics;

  const std::vector<v1::ScoreItem> items = SampleItems();
  grpc::Status status;
  v1::ScoreBatchResponse response;
  std::thread caller([&] { status = Score(*clients_, Ref("llama"), items, &response); });
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  double depth = 0;
  while (depth == 0 && absl::Now() < give_up) {
    depth = MetricSum(scrape(), "verdict_scoring_queue_depth", llama);
    if (depth == 0) absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(depth, static_cast<double>(items.size())) << "the queued request never showed";

  v1::UnloadModelRequest unload;
  *unload.mutable_model() = Ref("llama", 1);
  v1::Model model;
  auto context = NewContext();
  ASSERT_TRUE(clients_->models->UnloadModel(context.get(), unload, &model).ok());
  EXPECT_EQ(MetricSum(scrape(), "verdict_scoring_queue_depth", llama), 0);
  caller.join();
  ASSERT_TRUE(status.ok()) << status.error_message();  // finished on the unloaded version
  metrics = scrape();
  EXPECT_EQ(MetricSum(metrics, "verdict_scoring_queue_depth", llama), 0) << metrics;
  // Every scoring series names the model as verdict_models_loaded does, never "llama:1".
  EXPECT_FALSE(absl::StrContains(metrics, "model=\"llama:")) << metrics;
  // Once the unloaded version's last request is done, its {model, version} series go (the
  // name's queue gauges stay): series stay bounded by the versions loaded.
  const absl::Time series_give_up = absl::Now() + absl::Seconds(10);
  while (absl::StrContains(metrics, "version=\"1\"") && absl::Now() < series_give_up) {
    absl::SleepFor(absl::Milliseconds(20));
    metrics = scrape();
  }
  EXPECT_FALSE(absl::StrContains(metrics, "verdict_scoring_items_total{")) << metrics;
  EXPECT_EQ(MetricSum(metrics, "verdict_scoring_queue_capacity", llama), 64) << metrics;
}

// A hot swap shows in the scoring series: each carries the version that served.
TEST_F(ScoringServerTest, ScoringSeriesCarryTheVersionThatServed) {
  server::ServerConfig config = TestServerConfig(scratch_.path());
  config.metrics_port = 0;
  ASSERT_NO_FATAL_FAILURE(Start(config));
  v1::ImportModelRequest second;
  second.set_name("llama");
  second.set_path("golden-llama");
  v1::Model model;
  auto context = NewContext();
  ASSERT_TRUE(clients_->models->ImportModel(context.get(), second, &model).ok());
  ASSERT_EQ(model.version(), 2);
  const std::vector<v1::ScoreItem> items = SampleItems();
  v1::ScoreBatchResponse response;
  ASSERT_TRUE(Score(*clients_, Ref("llama", 1), items, &response).ok());
  ASSERT_TRUE(Score(*clients_, Ref("llama", 2), items, &response).ok());
  ASSERT_TRUE(Score(*clients_, Ref("llama", 2), items, &response).ok());
  auto metrics = ScrapeMetrics(server_->metrics_port());
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  const double n = static_cast<double>(items.size());
  EXPECT_EQ(
      MetricSum(*metrics, "verdict_scoring_items_total", {{"model", "llama"}, {"version", "1"}}), n)
      << *metrics;
  EXPECT_EQ(
      MetricSum(*metrics, "verdict_scoring_items_total", {{"model", "llama"}, {"version", "2"}}),
      2 * n)
      << *metrics;
  EXPECT_GE(MetricSum(*metrics, "verdict_scoring_compute_seconds_count", {{"version", "2"}}), 1)
      << *metrics;
  EXPECT_GE(MetricSum(*metrics, "verdict_scoring_queue_seconds_count", {{"version", "1"}}), 1)
      << *metrics;
  // The queue gauges stay by name: one series for both versions.
  EXPECT_FALSE(absl::StrContains(*metrics, "verdict_scoring_queue_depth{model=\"llama\",version"))
      << *metrics;
  // A CPU-only server exports no device memory series (the dashboard panel is then empty).
  EXPECT_FALSE(absl::StrContains(*metrics, "verdict_device_memory_bytes{")) << *metrics;
}

// Requests ScoringService refuses itself, before any batcher, are counted too, each under its
// own reason; labels never take a value the client made up.
TEST_F(ScoringServerTest, RequestsRefusedBeforeTheBatcherAreCounted) {
  server::ServerConfig config = TestServerConfig(scratch_.path());
  config.metrics_port = 0;
  config.api_token = "s3cret-token";
  ASSERT_NO_FATAL_FAILURE(Start(config));
  const std::vector<v1::ScoreItem> good = SampleItems();
  const std::string token = config.api_token;
  v1::ScoreBatchResponse response;
  auto score = [&](const v1::ModelRef& ref, const std::vector<v1::ScoreItem>& items,
                   const std::string& t) {
    return Score(*clients_, ref, items, &response, false, absl::Seconds(60), t).error_code();
  };
  EXPECT_EQ(score(Ref("llama"), good, ""), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(score(Ref("llama"), {}, token), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(score(Ref("Bad Name"), good, token), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(score(Ref("made-up-name"), good, token), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(score(Ref("llama", 9), good, token), grpc::StatusCode::NOT_FOUND);
  std::vector<v1::ScoreItem> bad = good;
  bad[0].Clear();
  EXPECT_EQ(score(Ref("llama"), bad, token), grpc::StatusCode::INVALID_ARGUMENT);  // after loading
  EXPECT_EQ(score(Ref("llama"), good, token), grpc::StatusCode::OK);

  auto metrics = ScrapeMetrics(server_->metrics_port());
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  const std::string rejected = "verdict_scoring_rejected_total";
  EXPECT_EQ(MetricSum(*metrics, rejected, {{"reason", "unauthenticated"}, {"model", ""}}), 1)
      << *metrics;
  EXPECT_EQ(MetricSum(*metrics, rejected, {{"reason", "invalid"}, {"model", ""}}), 2) << *metrics;
  EXPECT_EQ(MetricSum(*metrics, rejected, {{"reason", "model_not_found"}, {"model", ""}}), 2)
      << *metrics;
  EXPECT_EQ(
      MetricSum(*metrics, rejected, {{"reason", "invalid"}, {"model", "llama"}, {"version", "1"}}),
      1)
      << *metrics;
  EXPECT_FALSE(absl::StrContains(*metrics, "made-up-name")) << *metrics;
  EXPECT_EQ(MetricSum(*metrics, "verdict_scoring_items_total", {{"model", "llama"}}),
            static_cast<double>(good.size()));
}

// What a batcher would refuse at the first ScoreBatch, the server refuses at start, naming the
// flag (verdictd --max_batch_tokens=0 used to start SERVING and fail every first request).
TEST(ScoringConfigTest, BadBatcherSettingsAreRefusedAtStartNamingTheFlag) {
  ScratchDir scratch;
  struct Case {
    std::string flag;
    std::function<void(server::ServerConfig&)> set;
  };
  const std::vector<Case> cases = {
      {"--max_batch_tokens", [](server::ServerConfig& c) { c.max_batch_tokens = 0; }},
      {"--max_batch_tokens", [](server::ServerConfig& c) { c.max_batch_tokens = -5; }},
      {"--max_batch_items", [](server::ServerConfig& c) { c.max_batch_items = 0; }},
      {"--max_queued_items", [](server::ServerConfig& c) { c.max_queued_items = 0; }},
      {"--max_queue_delay_ms",
       [](server::ServerConfig& c) { c.max_queue_delay = absl::Milliseconds(-1); }},
      {"--max_queue_delay_ms",
       [](server::ServerConfig& c) { c.max_queue_delay = absl::InfiniteDuration(); }},
      {"--max_items_per_request", [](server::ServerConfig& c) { c.max_items_per_request = 0; }},
      {"--max_item_bytes", [](server::ServerConfig& c) { c.max_item_bytes = 0; }},
      {"--http_port", [](server::ServerConfig& c) { c.http_port = 70000; }},
      {"--http_threads", [](server::ServerConfig& c) { c.http_threads = 0; }},
      {"--http_model", [](server::ServerConfig& c) { c.http_model = "Bad Name"; }},
      // Plain HTTP off loopback next to TLS on gRPC would send tokens in the clear.
      {"--http_port",
       [](server::ServerConfig& c) {
         c.http_port = 0;
         c.http_host = "0.0.0.0";
         c.tls_cert_file = "cert.pem";
         c.tls_key_file = "key.pem";
       }},
  };
  for (const Case& c : cases) {
    server::ServerConfig config = TestServerConfig(scratch.path());
    c.set(config);
    auto server = server::VerdictServer::Start(config);
    ASSERT_FALSE(server.ok()) << c.flag << ": the server started";
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << server.status();
    EXPECT_THAT(std::string(server.status().message()), HasSubstr(c.flag)) << server.status();
  }
  // The smallest values the batcher accepts start.
  server::ServerConfig config = TestServerConfig(scratch.path());
  config.max_batch_tokens = 1;
  config.max_batch_items = 1;
  config.max_queued_items = 1;
  config.max_queue_delay = absl::ZeroDuration();
  config.max_items_per_request = 1;
  config.max_item_bytes = 1;
  auto server = server::VerdictServer::Start(config);
  EXPECT_TRUE(server.ok()) << server.status();
}

TEST_F(ScoringServerTest, EveryServiceRequiresTheBearerToken) {
  server::ServerConfig config = TestServerConfig(scratch_.path());
  config.api_token = "s3cret-token";
  ASSERT_NO_FATAL_FAILURE(Start(config));
  const std::vector<v1::ScoreItem> items = SampleItems();
  v1::ScoreBatchResponse response;
  grpc::Status status = Score(*clients_, Ref("llama"), items, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  status = Score(*clients_, Ref("llama"), items, &response, false, absl::Seconds(60), "wrong");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  status = Score(*clients_, Ref("llama"), items, &response, false, absl::Seconds(60), "s3cret-token");
  EXPECT_TRUE(status.ok()) << status.error_message();

  {
    v1::ListModelsResponse listed;
    auto context = NewContext();
    EXPECT_EQ(clients_->models->ListModels(context.get(), v1::ListModelsRequest(), &listed).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    v1::ListJobsResponse listed;
    auto context = NewContext();
    EXPECT_EQ(clients_->training->ListJobs(context.get(), v1::ListJobsRequest(), &listed).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    v1::StreamMetricsRequest request;
    request.set_job_id("job-0123456789abcdef");
    EXPECT_EQ(ReadMetrics(*clients_->training, request).status.error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    v1::UploadDatasetMetadata metadata;
    metadata.set_name("x");
    v1::Dataset dataset;
    EXPECT_EQ(UploadBytes(*clients_->datasets, FirstLines(TestDataPath("synthetic/helpful-concise.jsonl"), 5),
                          metadata, 1000, &dataset)
                  .error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  // Probes need no token.
  auto health = CheckHealth(clients_->channel, "");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, kServing);
}

}  // namespace
}  // namespace verdict::testing
