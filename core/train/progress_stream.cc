#include "core/train/progress_stream.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace verdict {
namespace {

using nlohmann::json;

// Each struct's fields, both ways, listed once.
#define VERDICT_FIELDS_TO_JSON(j, s, field) j[#field] = s.field;
#define VERDICT_FIELDS_FROM_JSON(j, s, field) \
  if (auto it = j.find(#field); it != j.end() && it->is_number()) it->get_to(s.field);

#define VERDICT_STEP_FIELDS(X, j, s)                                                             \
  X(j, s, step) X(j, s, total_steps) X(j, s, epoch) X(j, s, loss) X(j, s, accuracy)             \
  X(j, s, margin) X(j, s, reward_mean) X(j, s, chosen_reward_mean) X(j, s, rejected_reward_mean) \
  X(j, s, reward_min) X(j, s, reward_max) X(j, s, learning_rate) X(j, s, grad_norm)             \
  X(j, s, tokens) X(j, s, pairs) X(j, s, pairs_per_second) X(j, s, tokens_per_second)           \
  X(j, s, padding_fraction) X(j, s, window_seconds) X(j, s, sync_seconds)
#define VERDICT_EVAL_FIELDS(X, j, s)                                                   \
  X(j, s, step) X(j, s, loss) X(j, s, accuracy) X(j, s, margin) X(j, s, reward_mean) \
  X(j, s, reward_std) X(j, s, pairs) X(j, s, seconds)
#define VERDICT_SUMMARY_FIELDS(X, j, s)                                                      \
  X(j, s, train_pairs) X(j, s, eval_pairs) X(j, s, invalid_lines) X(j, s, identical_dropped) \
  X(j, s, too_long_dropped) X(j, s, truncated) X(j, s, vocab_size) X(j, s, parameters)       \
  X(j, s, total_steps) X(j, s, resumed_from_step)

json EvalJson(const EvalMetrics& m) {
  json j;
  VERDICT_EVAL_FIELDS(VERDICT_FIELDS_TO_JSON, j, m)
  return j;
}

EvalMetrics EvalFromJson(const json& j) {
  EvalMetrics m;
  VERDICT_EVAL_FIELDS(VERDICT_FIELDS_FROM_JSON, j, m)
  return m;
}

void WriteLine(std::ostream& out, const char* event, json j) {
  j["event"] = event;
  out << j.dump() << "\n";
  out.flush();
}

}  // namespace

TrainerCallbacks ProgressLineCallbacks(std::ostream& out) {
  TrainerCallbacks callbacks;
  callbacks.on_start = [&out](const DataSummary& s) {
    json j;
    VERDICT_SUMMARY_FIELDS(VERDICT_FIELDS_TO_JSON, j, s)
    WriteLine(out, "start", std::move(j));
  };
  callbacks.on_step = [&out](const TrainStepMetrics& m) {
    json j;
    VERDICT_STEP_FIELDS(VERDICT_FIELDS_TO_JSON, j, m)
    WriteLine(out, "step", std::move(j));
  };
  callbacks.on_eval = [&out](const EvalMetrics& m) { WriteLine(out, "eval", EvalJson(m)); };
  callbacks.on_checkpoint_started = [&out](int64_t step) {
    WriteLine(out, "checkpoint_started", json{{"step", step}});
  };
  callbacks.on_checkpoint = [&out](int64_t step, const std::string& path) {
    WriteLine(out, "checkpoint", json{{"step", step}, {"path", path}});
  };
  callbacks.on_log = [&out](const std::string& line) {
    WriteLine(out, "log", json{{"text", line}});
  };
  return callbacks;
}

std::string ProgressResultLine(const TrainingResult& result) {
  json j = {{"event", "result"},
            {"output_dir", result.output_dir},
            {"steps", result.steps},
            {"final_eval", EvalJson(result.final_eval)},
            {"reward_mean", result.reward_mean},
            {"reward_std", result.reward_std}};
  return j.dump();
}

std::string ProgressErrorLine(const absl::Status& error) {
  json j = {{"event", "error"},
            {"code", static_cast<int>(error.code())},
            {"message", std::string(error.message())}};
  return j.dump();
}

absl::Status ReadProgressLine(absl::string_view line, const TrainerCallbacks& callbacks,
                              ProgressEnd& end) {
  const json j = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  auto event = j.is_object() ? j.find("event") : j.end();
  if (!j.is_object() || event == j.end() || !event->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("not a progress line: ", line.substr(0, 200)));
  }
  const std::string name = event->get<std::string>();
  auto integer = [&j](const char* key) -> int64_t {
    auto it = j.find(key);
    return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
  };
  auto text = [&j](const char* key) -> std::string {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  if (name == "start") {
    DataSummary s;
    VERDICT_SUMMARY_FIELDS(VERDICT_FIELDS_FROM_JSON, j, s)
    if (callbacks.on_start) callbacks.on_start(s);
  } else if (name == "step") {
    TrainStepMetrics m;
    VERDICT_STEP_FIELDS(VERDICT_FIELDS_FROM_JSON, j, m)
    if (callbacks.on_step) callbacks.on_step(m);
  } else if (name == "eval") {
    if (callbacks.on_eval) callbacks.on_eval(EvalFromJson(j));
  } else if (name == "checkpoint_started") {
    if (callbacks.on_checkpoint_started) callbacks.on_checkpoint_started(integer("step"));
  } else if (name == "checkpoint") {
    if (callbacks.on_checkpoint) callbacks.on_checkpoint(integer("step"), text("path"));
  } else if (name == "log") {
    if (callbacks.on_log) callbacks.on_log(text("text"));
  } else if (name == "result") {
    TrainingResult r;
    r.output_dir = text("output_dir");
    r.steps = integer("steps");
    if (auto it = j.find("final_eval"); it != j.end() && it->is_object()) {
      r.final_eval = EvalFromJson(*it);
    }
    if (auto it = j.find("reward_mean"); it != j.end() && it->is_number()) it->get_to(r.reward_mean);
    if (auto it = j.find("reward_std"); it != j.end() && it->is_number()) it->get_to(r.reward_std);
    end.result = std::move(r);
  } else if (name == "error") {
    const int64_t code = integer("code");
    end.error = absl::Status(
        code > 0 && code <= static_cast<int64_t>(absl::StatusCode::kUnauthenticated)
            ? static_cast<absl::StatusCode>(code)
            : absl::StatusCode::kUnknown,
        text("message"));
    if (end.error.ok()) end.error = absl::UnknownError("a rank failed without a message");
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown progress event \"", name, "\""));
  }
  return absl::OkStatus();
}

}  // namespace verdict
