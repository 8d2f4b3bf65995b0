// scoring_bench: ScoreBatch throughput and latency of a real in-process verdictd over loopback,
// against the raw forward throughput of the same model in the same process.
//
// For each model (--models) and each (clients N, batch size B) of --clients x --batch_sizes,
// alternating --reps times:
//   padded  one thread runs B pre-tokenized items as one forward right-padded to the longest
//           (what ScoreEncoded did before issue 16: the A arm of the packing change);
//   raw     one thread calls ScoringModel::ScoreEncoded on B pre-tokenized items at a time
//           (packed for an encoder, length-sorted chunks for a decoder)
//           (the model loaded from the very directory the server serves, the same items);
//   int8    (--int8, encoders) the same with ModelOptions::int8_linear, after its pairwise
//           agreement with float32 on --agreement_pairs held-out hh-rlhf harmless-base pairs;
//   served  N client threads, each with its own channel and TCP connection, send ScoreBatch
//           requests of B items back to back (closed loop) for --seconds.
//   http    (--http, default) the served requests as JSON to HTTP's POST /v1/score
//           (server/http_scoring.h), a new connection per request as OpenRLHF's client
//           makes them; its items/s against served's is the http/grpc ratio.
// It prints items/s of raw and served and their ratio, request latency p50/p95/p99, and the
// mean batch the server's dynamic batcher formed (from its own /metrics: the change of
// verdict_scoring_batch_items_sum / _count over the phase) and the share of the phase its
// forwards were busy (verdict_scoring_compute_seconds_sum / phase time). Served work includes
// what raw leaves out: protobuf, loopback gRPC, tokenization and queueing; the clients run
// on the same cores as the server.
//
// Models, each trained through the server for --train_steps steps on hh-rlhf (real trained
// models, if barely trained ones): encoder-tiny / encoder-small from scratch with a tokenizer
// trained on the data; stories260k from the bundled tiny Llama (its own tokenizer, a fresh
// reward head: ImportModel refuses a causal-LM checkpoint, which has no reward head).
// Items are (prompt, chosen response) pairs of hh-rlhf helpful-base.
//
//   scoring_bench --models=encoder-tiny,stories260k --clients=1,8 --batch_sizes=8,32 --seconds=2
//
// --while_training (issue 16, scoring next to training) replaces those arms by two served
// phases per rep, alternated: `idle`, then `training` while a training job (encoder-tiny,
// batch --train_batch, on the same server) runs; it prints p50/p99 of both, their ratio, and
// the job's pairs/s during the training phase (its step count before and after). The server's
// thread budgets come from --scoring_threads, --training_threads, --blas_threads and
// --training_yield_ms (ServerConfig; -1 leaves verdictd's default):
//
//   scoring_bench --models=encoder-tiny --while_training --clients=4 --batch_sizes=8 --reps=5
#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <google/protobuf/util/json_util.h>
#include <torch/torch.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/bench_server.h"
#include "bench/bench_util.h"
#include "core/data/preference_reader.h"
#include "core/model/reward_model.h"
#include "core/score/scoring_model.h"
#include "core/util/status_macros.h"

ABSL_FLAG(std::string, data_dir, "", "Server --data_dir; default: the repository's tests/data.");
ABSL_FLAG(std::string, models, "encoder-tiny,stories260k",
          "Models to serve: encoder-tiny, encoder-small, stories260k (each trained briefly here).");
ABSL_FLAG(std::string, clients, "1,8", "Concurrent clients (N), comma-separated.");
ABSL_FLAG(std::string, batch_sizes, "8,32", "Items per request (B), comma-separated.");
ABSL_FLAG(double, seconds, 2.0, "Duration of each raw and each served phase.");
ABSL_FLAG(int, reps, 3, "Raw/served phase pairs per configuration.");
ABSL_FLAG(int, items, 256, "Distinct items (hh-rlhf prompt + chosen response) cycled through.");
ABSL_FLAG(int, max_length, 256, "max_length of the models (tokens per item).");
ABSL_FLAG(int64_t, train_steps, 10, "Training steps of each model.");
ABSL_FLAG(bool, http, true,
          "Also measure HTTP's POST /v1/score (the same requests as JSON, a connection per "
          "request) against gRPC, interleaved.");
ABSL_FLAG(int64_t, max_batch_tokens, 0, "Server's batcher token budget; 0: verdictd's default.");
ABSL_FLAG(int64_t, max_queue_delay_us, -1, "Server's batcher max queue delay; -1: verdictd's default.");
ABSL_FLAG(bool, int8, true,
          "Encoders: also measure the raw forward with int8 linear layers (ModelOptions::"
          "int8_linear), and its pairwise agreement with float32 on held-out hh-rlhf pairs.");
ABSL_FLAG(int, agreement_pairs, 512, "Held-out pairs (hh-rlhf harmless-base) for the agreement.");
ABSL_FLAG(bool, while_training, false,
          "Measure served latency idle vs while a training job runs on the same server, "
          "alternated, instead of the raw/served/http arms.");
ABSL_FLAG(int, train_batch, 16, "--while_training: the job's per-device batch size (pairs).");
ABSL_FLAG(int, scoring_threads, -1, "Server's scoring_threads; -1: verdictd's default.");
ABSL_FLAG(int, training_threads, -1, "Server's training_threads; -1: verdictd's default.");
ABSL_FLAG(int, blas_threads, -1, "Server's blas_threads; -1: verdictd's default.");
ABSL_FLAG(int, training_nice, -1, "Server's training_nice; -1: verdictd's default.");
ABSL_FLAG(int, training_yield_ms, -1, "Server's training_yield (ms); -1: verdictd's default.");

namespace verdict::bench {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<std::vector<int>> ParseInts(const std::string& text) {
  std::vector<int> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int v = 0;
    if (!absl::SimpleAtoi(part, &v) || v <= 0) return absl::InvalidArgumentError(absl::StrCat("bad number: ", part));
    out.push_back(v);
  }
  return out;
}

// Trains the model named `which` through the server, loads it, and returns its registry entry.
absl::StatusOr<v1::Model> PrepareModel(int port, const std::string& which) {
  auto channel = NewChannel(port, false);
  auto models = v1::ModelService::NewStub(channel);
  v1::Model model;
  auto training = v1::TrainingService::NewStub(channel);
  v1::SubmitTrainingJobRequest request;
  v1::TrainingJobSpec& spec = *request.mutable_spec();
  spec.set_output_model_name(which);
  if (which == "stories260k") {
    // A causal-LM checkpoint has no reward head, so ImportModel refuses it (FAILED_PRECONDITION);
    // the supported way in is a job that starts from it (fresh head) and trains briefly.
    spec.set_base_model("stories260K-hf");
  } else {
    spec.set_preset(which);
    spec.mutable_tokenizer()->mutable_train()->set_vocab_size(4000);
  }
  spec.mutable_train_data()->set_path("hh-rlhf/helpful-base/test.jsonl.gz");
  spec.mutable_eval()->set_eval_fraction(0.05);
  spec.mutable_eval()->set_max_pairs(32);
  spec.mutable_hyperparameters()->set_per_device_train_batch_size(8);
  spec.mutable_hyperparameters()->set_max_steps(absl::GetFlag(FLAGS_train_steps));
  spec.mutable_hyperparameters()->set_max_length(absl::GetFlag(FLAGS_max_length));
  spec.set_save_steps(0);
  v1::Job job;
  {
    grpc::ClientContext context;
    RETURN_IF_ERROR(FromGrpc(training->SubmitTrainingJob(&context, request, &job), "SubmitTrainingJob"));
  }
  ASSIGN_OR_RETURN(v1::Job done, WaitForJob(*training, job.id(), absl::Minutes(10)));
  {
    grpc::ClientContext context;
    v1::GetModelRequest get;
    *get.mutable_model() = done.result_model();
    RETURN_IF_ERROR(FromGrpc(models->GetModel(&context, get, &model), "GetModel"));
  }
  grpc::ClientContext load_context;
  v1::LoadModelRequest load;
  load.mutable_model()->set_name(model.name());
  load.mutable_model()->set_version(model.version());
  RETURN_IF_ERROR(FromGrpc(models->LoadModel(&load_context, load, &model), "LoadModel"));
  return model;
}

struct RawResult {
  double items_per_second = 0;
};

// One thread, batches of `batch` items in order, for `seconds`.
absl::StatusOr<RawResult> MeasureRaw(const ScoringModel& model,
                                     const std::vector<std::vector<int32_t>>& encoded, int batch,
                                     double seconds) {
  int64_t items = 0;
  size_t next = 0;
  auto next_batch = [&] {
    std::vector<std::vector<int32_t>> rows;
    for (int i = 0; i < batch; ++i) {
      rows.push_back(encoded[next]);
      next = (next + 1) % encoded.size();
    }
    return rows;
  };
  RETURN_IF_ERROR(model.ScoreEncoded(next_batch()).status());  // warm-up
  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::Seconds(seconds);
  while (absl::Now() < end) {
    std::vector<std::vector<int32_t>> rows = next_batch();
    RETURN_IF_ERROR(model.ScoreEncoded(rows).status());
    items += batch;
  }
  RawResult r;
  r.items_per_second = items / absl::ToDoubleSeconds(absl::Now() - start);
  return r;
}

// The scoring forward as it was before packing (issue 16): all `batch` rows in one forward,
// right-padded to the longest, as ScoreEncoded ran it. Same items, same loop as MeasureRaw.
absl::StatusOr<RawResult> MeasureRawPadded(const ScoringModel& model,
                                           const std::vector<std::vector<int32_t>>& encoded,
                                           int batch, double seconds) {
  size_t next = 0;
  auto forward = [&] {
    size_t width = 0;
    for (int i = 0; i < batch; ++i) width = std::max(width, encoded[(next + i) % encoded.size()].size());
    auto ids = torch::full({batch, static_cast<int64_t>(width)}, model.pad_id(), torch::kLong);
    auto mask = torch::zeros({batch, static_cast<int64_t>(width)}, torch::kLong);
    for (int i = 0; i < batch; ++i) {
      const auto& row = encoded[next];
      next = (next + 1) % encoded.size();
      std::copy(row.begin(), row.end(), ids.data_ptr<int64_t>() + i * width);
      std::fill_n(mask.data_ptr<int64_t>() + i * width, row.size(), int64_t{1});
    }
    c10::InferenceMode inference;
    return ForwardRewards(model.reward_model(), ids, mask).status();
  };
  RETURN_IF_ERROR(forward());  // warm-up
  int64_t items = 0;
  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::Seconds(seconds);
  while (absl::Now() < end) {
    RETURN_IF_ERROR(forward());
    items += batch;
  }
  RawResult r;
  r.items_per_second = items / absl::ToDoubleSeconds(absl::Now() - start);
  return r;
}

// Submits a long encoder-tiny training job and returns its id once its first step is done
// (data, tokenizer and model are ready: what follows is steady-state training).
absl::StatusOr<std::string> StartBackgroundTraining(v1::TrainingService::Stub& training) {
  v1::SubmitTrainingJobRequest request;
  v1::TrainingJobSpec& spec = *request.mutable_spec();
  spec.set_output_model_name("background");
  spec.set_preset("encoder-tiny");
  spec.mutable_tokenizer()->mutable_train()->set_vocab_size(4000);
  spec.mutable_train_data()->set_path("hh-rlhf/helpful-base/test.jsonl.gz");
  spec.mutable_hyperparameters()->set_per_device_train_batch_size(absl::GetFlag(FLAGS_train_batch));
  spec.mutable_hyperparameters()->set_max_steps(100000);
  spec.mutable_hyperparameters()->set_max_length(absl::GetFlag(FLAGS_max_length));
  spec.set_save_steps(0);
  spec.set_logging_steps(1);  // progress.step moves every step
  v1::Job job;
  {
    grpc::ClientContext context;
    RETURN_IF_ERROR(FromGrpc(training.SubmitTrainingJob(&context, request, &job), "SubmitTrainingJob"));
  }
  const absl::Time give_up = absl::Now() + absl::Minutes(5);
  while (absl::Now() < give_up) {
    grpc::ClientContext context;
    v1::GetJobRequest get;
    get.set_job_id(job.id());
    v1::Job now;
    RETURN_IF_ERROR(FromGrpc(training.GetJob(&context, get, &now), "GetJob"));
    if (now.progress().step() >= 1) return job.id();
    if (now.state() != v1::JOB_STATE_QUEUED && now.state() != v1::JOB_STATE_RUNNING) {
      return absl::InternalError(absl::StrCat("background job ended: ", now.error_message()));
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  return absl::DeadlineExceededError("background job made no step in 5 minutes");
}

absl::StatusOr<int64_t> JobStep(v1::TrainingService::Stub& training, const std::string& id) {
  grpc::ClientContext context;
  v1::GetJobRequest get;
  get.set_job_id(id);
  v1::Job job;
  RETURN_IF_ERROR(FromGrpc(training.GetJob(&context, get, &job), "GetJob"));
  return job.progress().step();
}

absl::Status StopBackgroundTraining(v1::TrainingService::Stub& training, const std::string& id) {
  {
    grpc::ClientContext context;
    v1::CancelJobRequest cancel;
    cancel.set_job_id(id);
    v1::Job job;
    RETURN_IF_ERROR(FromGrpc(training.CancelJob(&context, cancel, &job), "CancelJob"));
  }
  // Wait for it to end, so that the next idle phase is idle.
  return WaitForJob(training, id, absl::Minutes(2)).status().code() == absl::StatusCode::kDeadlineExceeded
             ? absl::DeadlineExceededError("background job did not stop")
             : absl::OkStatus();
}

// Margins (chosen minus rejected score) of `pairs`, 32 items per call.
absl::StatusOr<std::vector<float>> PairMargins(const ScoringModel& model,
                                               const std::vector<PreferencePair>& pairs) {
  std::vector<std::vector<int32_t>> rows;
  for (const PreferencePair& pair : pairs) {
    ASSIGN_OR_RETURN(std::vector<int32_t> chosen, model.Encode(pair.prompt, pair.chosen));
    ASSIGN_OR_RETURN(std::vector<int32_t> rejected, model.Encode(pair.prompt, pair.rejected));
    rows.push_back(std::move(chosen));
    rows.push_back(std::move(rejected));
  }
  std::vector<float> scores;
  for (size_t i = 0; i < rows.size(); i += 32) {
    std::vector<std::vector<int32_t>> part(rows.begin() + i,
                                           rows.begin() + std::min(rows.size(), i + 32));
    ASSIGN_OR_RETURN(std::vector<float> got, model.ScoreEncoded(part));
    scores.insert(scores.end(), got.begin(), got.end());
  }
  std::vector<float> margins;
  for (size_t i = 0; i < pairs.size(); ++i) margins.push_back(scores[2 * i] - scores[2 * i + 1]);
  return margins;
}

// int8 against float32 on held-out pairs: how often the two order a pair the same way.
absl::Status ReportInt8Agreement(const ScoringModel& float32, const ScoringModel& int8,
                                 const std::string& data_dir) {
  ASSIGN_OR_RETURN(PreferenceData held_out,
                   ReadPreferenceFile(data_dir + "/hh-rlhf/harmless-base/test.jsonl.gz"));
  std::vector<PreferencePair> pairs;
  for (const PreferencePair& pair : held_out.pairs) {
    if (static_cast<int>(pairs.size()) >= absl::GetFlag(FLAGS_agreement_pairs)) break;
    if (float32.Encode(pair.prompt, pair.chosen).ok() &&
        float32.Encode(pair.prompt, pair.rejected).ok()) {
      pairs.push_back(pair);
    }
  }
  ASSIGN_OR_RETURN(std::vector<float> exact, PairMargins(float32, pairs));
  ASSIGN_OR_RETURN(std::vector<float> approximate, PairMargins(int8, pairs));
  int agree = 0, exact_right = 0, approximate_right = 0;
  double max_difference = 0;
  for (size_t i = 0; i < pairs.size(); ++i) {
    agree += (exact[i] > 0) == (approximate[i] > 0);
    exact_right += exact[i] > 0;
    approximate_right += approximate[i] > 0;
    max_difference = std::max<double>(max_difference, std::abs(exact[i] - approximate[i]));
  }
  const double n = static_cast<double>(pairs.size());
  std::cout << absl::StrFormat(
      "  int8 vs float32 on %d held-out pairs (hh-rlhf harmless-base): pairwise agreement %.4f; "
      "accuracy float32 %.4f, int8 %.4f; max |margin difference| %.4g\n",
      pairs.size(), agree / n, exact_right / n, approximate_right / n, max_difference);
  return absl::OkStatus();
}

struct ServedResult {
  double items_per_second = 0;
  double p50_ms = 0, p95_ms = 0, p99_ms = 0;
  double mean_batch_items = 0;
  double forward_busy = 0;  // share of the phase the batcher's forwards ran
  int64_t errors = 0;
  double load = 0;
};

struct ScrapedCounters {
  double batch_items_sum = 0, batch_count = 0, compute_seconds = 0;
};

absl::StatusOr<ScrapedCounters> Scrape(int metrics_port) {
  ASSIGN_OR_RETURN(std::string text, HttpGet(metrics_port, "/metrics"));
  ScrapedCounters c;
  c.batch_items_sum = SumOfSeries(text, "verdict_scoring_batch_items_sum");
  c.batch_count = SumOfSeries(text, "verdict_scoring_batch_items_count");
  c.compute_seconds = SumOfSeries(text, "verdict_scoring_compute_seconds_sum");
  return c;
}

// One client's request `k` (of its cycle): OK when every item got a score.
using SendRequest = std::function<absl::Status(int client, size_t k)>;

// `clients` threads send requests back to back (closed loop) for `seconds`, each cycling
// through its `per_client` requests.
absl::StatusOr<ServedResult> MeasureClosedLoop(int metrics_port, int clients, int batch,
                                               size_t per_client, double seconds,
                                               const SendRequest& send) {
  ServedResult r;
  r.load = LoadAverage();
  ASSIGN_OR_RETURN(ScrapedCounters before, Scrape(metrics_port));
  std::vector<std::vector<double>> latencies(clients);
  std::vector<int64_t> done(clients, 0), errors(clients, 0);
  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::Seconds(seconds);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      size_t k = 0;
      while (absl::Now() < end) {
        const absl::Time sent = absl::Now();
        const absl::Status status = send(c, k);
        const absl::Time received = absl::Now();
        k = (k + 1) % per_client;
        if (!status.ok()) {
          if (errors[c]++ == 0) std::cerr << status << "\n";
          continue;
        }
        latencies[c].push_back(absl::ToDoubleMilliseconds(received - sent));
        done[c] += batch;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  ASSIGN_OR_RETURN(ScrapedCounters after, Scrape(metrics_port));

  std::vector<double> all;
  int64_t items_done = 0;
  for (int c = 0; c < clients; ++c) {
    all.insert(all.end(), latencies[c].begin(), latencies[c].end());
    items_done += done[c];
    r.errors += errors[c];
  }
  r.items_per_second = items_done / elapsed;
  r.p50_ms = Percentile(all, 50);
  r.p95_ms = Percentile(all, 95);
  r.p99_ms = Percentile(all, 99);
  const double batches = after.batch_count - before.batch_count;
  r.mean_batch_items = batches > 0 ? (after.batch_items_sum - before.batch_items_sum) / batches : 0;
  r.forward_busy = (after.compute_seconds - before.compute_seconds) / elapsed;
  return r;
}

// Each client's requests, built before the clock starts: what is measured is the server.
std::vector<std::vector<v1::ScoreBatchRequest>> BuildRequests(
    const v1::Model& model, const std::vector<PreferencePair>& items, int clients, int batch) {
  const int per_client = std::max<int>(1, static_cast<int>(items.size()) / batch);
  std::vector<std::vector<v1::ScoreBatchRequest>> requests(clients);
  for (int c = 0; c < clients; ++c) {
    for (int k = 0; k < per_client; ++k) {
      v1::ScoreBatchRequest request;
      request.mutable_model()->set_name(model.name());
      request.mutable_model()->set_version(model.version());
      for (int i = 0; i < batch; ++i) {
        const PreferencePair& pair = items[(static_cast<size_t>(c + k * clients) * batch + i) % items.size()];
        v1::PromptResponse* pr = request.add_items()->mutable_prompt_response();
        pr->set_prompt(pair.prompt);
        pr->set_response(pair.chosen);
      }
      requests[c].push_back(std::move(request));
    }
  }
  return requests;
}

// gRPC ScoreBatch, each client on its own channel and TCP connection.
absl::StatusOr<ServedResult> MeasureServed(int port, int metrics_port, const v1::Model& model,
                                           const std::vector<PreferencePair>& items, int clients,
                                           int batch, double seconds) {
  const auto requests = BuildRequests(model, items, clients, batch);
  std::vector<std::unique_ptr<v1::ScoringService::Stub>> stubs;
  for (int c = 0; c < clients; ++c) {
    stubs.push_back(v1::ScoringService::NewStub(NewChannel(port, /*own_connection=*/true)));
    // Connect (and warm) each channel before the clock starts.
    grpc::ClientContext context;
    v1::ScoreBatchResponse response;
    RETURN_IF_ERROR(FromGrpc(stubs[c]->ScoreBatch(&context, requests[c][0], &response), "ScoreBatch"));
  }
  return MeasureClosedLoop(metrics_port, clients, batch, requests[0].size(), seconds,
                           [&](int c, size_t k) -> absl::Status {
                             grpc::ClientContext context;
                             context.set_deadline(std::chrono::system_clock::now() +
                                                  std::chrono::seconds(30));
                             v1::ScoreBatchResponse response;
                             RETURN_IF_ERROR(FromGrpc(
                                 stubs[c]->ScoreBatch(&context, requests[c][k], &response),
                                 "ScoreBatch"));
                             if (response.scores_size() != batch) {
                               return absl::InternalError("ScoreBatch: scores missing");
                             }
                             return absl::OkStatus();
                           });
}

// The same requests as JSON to HTTP's POST /v1/score, a new connection per request as
// OpenRLHF's requests.post makes them.
absl::StatusOr<ServedResult> MeasureServedHttp(int http_port, int metrics_port,
                                               const v1::Model& model,
                                               const std::vector<PreferencePair>& items,
                                               int clients, int batch, double seconds) {
  const auto requests = BuildRequests(model, items, clients, batch);
  std::vector<std::vector<std::string>> bodies(clients);
  for (int c = 0; c < clients; ++c) {
    for (const v1::ScoreBatchRequest& request : requests[c]) {
      std::string body;
      if (!google::protobuf::util::MessageToJsonString(request, &body).ok()) {
        return absl::InternalError("cannot write a request as JSON");
      }
      bodies[c].push_back(std::move(body));
    }
  }
  auto send = [&](int c, size_t k) -> absl::Status {
    ASSIGN_OR_RETURN(std::string reply, HttpPost(http_port, "/v1/score", bodies[c][k]));
    v1::ScoreBatchResponse response;
    if (!google::protobuf::util::JsonStringToMessage(reply, &response).ok() ||
        response.scores_size() != batch) {
      return absl::InternalError(absl::StrCat("POST /v1/score: ", reply.substr(0, 200)));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(send(0, 0));  // warm
  return MeasureClosedLoop(metrics_port, clients, batch, bodies[0].size(), seconds, send);
}

// --while_training: per (N, B), --reps alternations of an idle served phase and a served
// phase while a training job runs.
absl::Status MeasureNextToTraining(const server::VerdictServer& server, const v1::Model& model,
                                   const std::vector<PreferencePair>& items,
                                   const std::vector<int>& client_counts,
                                   const std::vector<int>& batch_sizes, double seconds) {
  auto training = v1::TrainingService::NewStub(NewChannel(server.port(), false));
  std::cout << "  N   B  rep  idle items/s  idle p50 ms  idle p99 ms  train items/s  train p50 ms  "
               "train p99 ms  p50 ratio  p99 ratio  job pairs/s  load\n";
  for (int clients : client_counts) {
    for (int batch : batch_sizes) {
      std::vector<double> idle_v, idle_p50, idle_p99, busy_v, busy_p50, busy_p99, ratio50, ratio99,
          pairs_v;
      for (int rep = 0; rep < absl::GetFlag(FLAGS_reps); ++rep) {
        ASSIGN_OR_RETURN(ServedResult idle, MeasureServed(server.port(), server.metrics_port(),
                                                          model, items, clients, batch, seconds));
        ASSIGN_OR_RETURN(std::string job, StartBackgroundTraining(*training));
        ASSIGN_OR_RETURN(const int64_t step_before, JobStep(*training, job));
        const absl::Time start = absl::Now();
        ASSIGN_OR_RETURN(ServedResult busy, MeasureServed(server.port(), server.metrics_port(),
                                                          model, items, clients, batch, seconds));
        ASSIGN_OR_RETURN(const int64_t step_after, JobStep(*training, job));
        const double job_pairs_per_second = (step_after - step_before) *
                                            absl::GetFlag(FLAGS_train_batch) /
                                            absl::ToDoubleSeconds(absl::Now() - start);
        RETURN_IF_ERROR(StopBackgroundTraining(*training, job));
        std::cout << absl::StrFormat(
                         "%3d %3d  %3d  %12.1f  %11.1f  %11.1f  %13.1f  %12.1f  %12.1f  %9.2f  "
                         "%9.2f  %11.1f  %.2f",
                         clients, batch, rep, idle.items_per_second, idle.p50_ms, idle.p99_ms,
                         busy.items_per_second, busy.p50_ms, busy.p99_ms,
                         busy.p50_ms / idle.p50_ms, busy.p99_ms / idle.p99_ms,
                         job_pairs_per_second, busy.load)
                  << std::endl;
        if (idle.errors + busy.errors > 0) std::cout << "  errors: " << idle.errors + busy.errors << "\n";
        idle_v.push_back(idle.items_per_second);
        idle_p50.push_back(idle.p50_ms);
        idle_p99.push_back(idle.p99_ms);
        busy_v.push_back(busy.items_per_second);
        busy_p50.push_back(busy.p50_ms);
        busy_p99.push_back(busy.p99_ms);
        ratio50.push_back(busy.p50_ms / idle.p50_ms);
        ratio99.push_back(busy.p99_ms / idle.p99_ms);
        pairs_v.push_back(job_pairs_per_second);
      }
      std::cout << absl::StrFormat(
          "%3d %3d  med  %12.1f  %11.1f  %11.1f  %13.1f  %12.1f  %12.1f  %9.2f  %9.2f  %11.1f\n",
          clients, batch, Median(idle_v), Median(idle_p50), Median(idle_p99), Median(busy_v),
          Median(busy_p50), Median(busy_p99), Median(ratio50), Median(ratio99), Median(pairs_v));
    }
  }
  return absl::OkStatus();
}

absl::Status Run() {
  std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  if (data_dir.empty()) data_dir = DefaultDataDir();
  ASSIGN_OR_RETURN(std::vector<int> client_counts, ParseInts(absl::GetFlag(FLAGS_clients)));
  ASSIGN_OR_RETURN(std::vector<int> batch_sizes, ParseInts(absl::GetFlag(FLAGS_batch_sizes)));
  const double seconds = absl::GetFlag(FLAGS_seconds);
  std::cout << "scoring_bench: " << DescribeMachine() << "\n";

  ScratchDir scratch("scoring");
  const std::string state_dir = scratch.Path("state");
  server::ServerConfig config = BenchServerConfig(state_dir, data_dir, data_dir + "/models", true);
  const bool http = absl::GetFlag(FLAGS_http);
  if (http) config.http_port = 0;
  if (absl::GetFlag(FLAGS_max_batch_tokens) > 0) config.max_batch_tokens = absl::GetFlag(FLAGS_max_batch_tokens);
  if (absl::GetFlag(FLAGS_max_queue_delay_us) >= 0) {
    config.max_queue_delay = absl::Microseconds(absl::GetFlag(FLAGS_max_queue_delay_us));
  }
  if (absl::GetFlag(FLAGS_scoring_threads) >= 0) config.scoring_threads = absl::GetFlag(FLAGS_scoring_threads);
  if (absl::GetFlag(FLAGS_training_threads) >= 0) config.training_threads = absl::GetFlag(FLAGS_training_threads);
  if (absl::GetFlag(FLAGS_blas_threads) >= 0) config.blas_threads = absl::GetFlag(FLAGS_blas_threads);
  if (absl::GetFlag(FLAGS_training_nice) >= 0) config.training_nice = absl::GetFlag(FLAGS_training_nice);
  if (absl::GetFlag(FLAGS_training_yield_ms) >= 0) {
    config.training_yield = absl::Milliseconds(absl::GetFlag(FLAGS_training_yield_ms));
  }
  const bool while_training = absl::GetFlag(FLAGS_while_training);
  if (while_training) config.http_port = -1;
  ASSIGN_OR_RETURN(auto server, server::VerdictServer::Start(config));
  std::cout << absl::StrFormat(
      "server: batcher max_batch_tokens %d, max_batch_items %d, max_queue_delay %s; "
      "%.1f s phases, %d reps\n",
      config.max_batch_tokens, config.max_batch_items, absl::FormatDuration(config.max_queue_delay),
      seconds, absl::GetFlag(FLAGS_reps));
  std::cout << absl::StrFormat(
      "threads: scoring %d, training %d, blas %d (0: default); training_nice %d, "
      "training_yield %s\n",
      config.scoring_threads, config.training_threads, config.blas_threads, config.training_nice,
      absl::FormatDuration(config.training_yield));

  ASSIGN_OR_RETURN(PreferenceData data,
                   ReadPreferenceFile(data_dir + "/hh-rlhf/helpful-base/test.jsonl.gz"));
  std::vector<PreferencePair> items(data.pairs.begin(),
                                    data.pairs.begin() + std::min<size_t>(data.pairs.size(),
                                                                          absl::GetFlag(FLAGS_items)));

  for (absl::string_view which : absl::StrSplit(absl::GetFlag(FLAGS_models), ',', absl::SkipEmpty())) {
    const absl::Time prepare_start = absl::Now();
    ASSIGN_OR_RETURN(v1::Model model, PrepareModel(server->port(), std::string(which)));
    ASSIGN_OR_RETURN(std::shared_ptr<ScoringModel> raw_model,
                     ScoringModel::Load((fs::path(state_dir) / model.storage_path()).string(), ModelOptions{}));
    if (while_training) {
      std::cout << "\n== model " << which << ": served latency idle vs while a job trains\n";
      RETURN_IF_ERROR(MeasureNextToTraining(*server, model, items, client_counts, batch_sizes,
                                            seconds));
      continue;
    }
    std::vector<std::vector<int32_t>> encoded;
    int64_t tokens = 0;
    for (const PreferencePair& pair : items) {
      ASSIGN_OR_RETURN(std::vector<int32_t> ids, raw_model->Encode(pair.prompt, pair.chosen));
      tokens += static_cast<int64_t>(ids.size());
      encoded.push_back(std::move(ids));
    }
    std::cout << absl::StrFormat(
        "\n== model %s (%s v%d, %d parameters, vocab %d, max_length %d), prepared in %.1f s; "
        "%d items, mean %.1f tokens\n",
        which, model.name(), model.version(), model.parameter_count(), model.vocab_size(),
        model.max_length(), absl::ToDoubleSeconds(absl::Now() - prepare_start), encoded.size(),
        static_cast<double>(tokens) / encoded.size());
    std::shared_ptr<ScoringModel> int8_model;
    if (absl::GetFlag(FLAGS_int8) && raw_model->family() == ModelFamily::kEncoder) {
      ModelOptions int8_options;
      int8_options.int8_linear = true;
      ASSIGN_OR_RETURN(int8_model,
                       ScoringModel::Load((fs::path(state_dir) / model.storage_path()).string(),
                                          int8_options));
      RETURN_IF_ERROR(ReportInt8Agreement(*raw_model, *int8_model, data_dir));
    }
    std::cout << "  N   B  rep  padded items/s  raw items/s  int8 items/s  served items/s  ratio   p50 ms   p95 ms   p99 ms  "
                 "mean batch  fwd busy  errors  load";
    if (http) std::cout << "  http items/s  http/grpc  http p50 ms  http p99 ms  http errors";
    std::cout << "\n";
    for (int clients : client_counts) {
      for (int batch : batch_sizes) {
        std::vector<double> padded_v, raw_v, int8_v, served_v, ratio_v, p50_v, p95_v, p99_v, mean_batch_v;
        std::vector<double> http_v, http_ratio_v, http_p50_v, http_p99_v;
        for (int rep = 0; rep < absl::GetFlag(FLAGS_reps); ++rep) {
          ASSIGN_OR_RETURN(RawResult padded, MeasureRawPadded(*raw_model, encoded, batch, seconds));
          ASSIGN_OR_RETURN(RawResult raw, MeasureRaw(*raw_model, encoded, batch, seconds));
          RawResult int8;
          if (int8_model != nullptr) {
            ASSIGN_OR_RETURN(int8, MeasureRaw(*int8_model, encoded, batch, seconds));
          }
          ASSIGN_OR_RETURN(ServedResult served, MeasureServed(server->port(), server->metrics_port(),
                                                              model, items, clients, batch, seconds));
          const double ratio = served.items_per_second / raw.items_per_second;
          std::cout << absl::StrFormat(
              "%3d %3d  %3d  %14.1f  %11.1f  %12.1f  %14.1f  %5.2f  %7.1f  %7.1f  %7.1f  %10.1f  %7.0f%%  %6d  %.2f",
              clients, batch, rep, padded.items_per_second, raw.items_per_second,
              int8.items_per_second, served.items_per_second, ratio,
              served.p50_ms, served.p95_ms, served.p99_ms, served.mean_batch_items,
              100 * served.forward_busy, served.errors, served.load);
          if (http) {
            ASSIGN_OR_RETURN(ServedResult over_http,
                             MeasureServedHttp(server->http_port(), server->metrics_port(), model,
                                               items, clients, batch, seconds));
            const double http_ratio = over_http.items_per_second / served.items_per_second;
            std::cout << absl::StrFormat("  %12.1f  %9.2f  %11.1f  %11.1f  %11d",
                                         over_http.items_per_second, http_ratio, over_http.p50_ms,
                                         over_http.p99_ms, over_http.errors);
            http_v.push_back(over_http.items_per_second);
            http_ratio_v.push_back(http_ratio);
            http_p50_v.push_back(over_http.p50_ms);
            http_p99_v.push_back(over_http.p99_ms);
          }
          std::cout << std::endl;
          padded_v.push_back(padded.items_per_second);
          raw_v.push_back(raw.items_per_second);
          int8_v.push_back(int8.items_per_second);
          served_v.push_back(served.items_per_second);
          ratio_v.push_back(ratio);
          p50_v.push_back(served.p50_ms);
          p95_v.push_back(served.p95_ms);
          p99_v.push_back(served.p99_ms);
          mean_batch_v.push_back(served.mean_batch_items);
        }
        std::cout << absl::StrFormat(
            "%3d %3d  med  %14.1f  %11.1f  %12.1f  %14.1f  %5.2f  %7.1f  %7.1f  %7.1f  %10.1f", clients,
            batch, Median(padded_v), Median(raw_v), Median(int8_v), Median(served_v), Median(ratio_v), Median(p50_v), Median(p95_v),
            Median(p99_v), Median(mean_batch_v));
        if (http) {
          std::cout << absl::StrFormat("  %33s  %12.1f  %9.2f  %11.1f  %11.1f", "",
                                       Median(http_v), Median(http_ratio_v), Median(http_p50_v),
                                       Median(http_p99_v));
        }
        std::cout << "\n";
      }
    }
  }
  std::cout << "\nafter: " << DescribeMachine() << "\n";
  server->Shutdown();
  return absl::OkStatus();
}

}  // namespace
}  // namespace verdict::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "scoring_bench: ScoreBatch items/s and latency over loopback vs the raw forward.");
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = verdict::bench::Run();
  if (!status.ok()) {
    std::cerr << "scoring_bench: " << status << "\n";
    return 1;
  }
  return 0;
}
