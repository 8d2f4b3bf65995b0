#include "client/watch_printer.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/output.h"

namespace verdict::client {
namespace {

using verdict::v1::Job;
using verdict::v1::JobState;
using verdict::v1::MetricsEvent;

double Seconds(const google::protobuf::Timestamp& time) {
  return static_cast<double>(time.seconds()) + time.nanos() * 1e-9;
}

constexpr absl::string_view kClearLine = "\r\033[K";

}  // namespace

std::string RenderBar(int64_t step, int64_t total, int width) {
  const int inner = std::max(width - 2, 1);
  int filled = 0;
  if (total > 0) {
    filled = static_cast<int>(std::clamp<int64_t>(step * inner / total, 0, inner));
  }
  return absl::StrCat("[", std::string(filled, '#'), std::string(inner - filled, '.'), "]");
}

WatchPrinter::WatchPrinter(std::ostream& out, WatchStyle style, int width)
    : out_(out), style_(style), width_(std::max(width, 40)) {}

void WatchPrinter::SetJob(const Job& job) {
  job_id_ = job.id();
  if (job.progress().total_steps() > 0) total_steps_ = job.progress().total_steps();
  step_ = std::max(step_, job.progress().step());
  if (job.progress().has_estimated_remaining()) {
    server_eta_seconds_ = job.progress().estimated_remaining().seconds() +
                          job.progress().estimated_remaining().nanos() * 1e-9;
  }
  if (job.state() == verdict::v1::JOB_STATE_RUNNING) {
    phase_text_ = absl::AsciiStrToLower(PhaseName(job.progress().phase()));
  } else {
    phase_text_ = absl::AsciiStrToLower(JobStateName(job.state()));
  }
}

std::optional<double> WatchPrinter::EstimatedSecondsLeft() const {
  if (total_steps_ > 0 && first_train_ && latest_train_ &&
      latest_train_->second > first_train_->second) {
    const double per_step = (latest_train_->first - first_train_->first) /
                            static_cast<double>(latest_train_->second - first_train_->second);
    return std::max<double>(0, per_step * static_cast<double>(total_steps_ - step_));
  }
  return server_eta_seconds_;
}

std::string WatchPrinter::StatusLine() const {
  std::string line;
  if (total_steps_ > 0) {
    const double percent = 100.0 * static_cast<double>(step_) / static_cast<double>(total_steps_);
    line = absl::StrFormat("%s %d/%d %3.0f%%", RenderBar(step_, total_steps_, 24), step_,
                           total_steps_, percent);
  } else {
    line = absl::StrCat(RenderBar(0, 0, 24), " ", phase_text_);
  }
  if (std::optional<double> eta = EstimatedSecondsLeft(); eta && step_ < total_steps_) {
    absl::StrAppend(&line, "  ETA ", FormatSeconds(*eta));
  }
  if (last_train_) {
    absl::StrAppend(&line, absl::StrFormat("  %.1f pairs/s  loss %.4f  acc %.3f",
                                           last_train_->pairs_per_second(), last_train_->loss(),
                                           last_train_->accuracy()));
  }
  if (static_cast<int>(line.size()) >= width_) line.resize(width_ - 1);
  return line;
}

void WatchPrinter::DrawBar() {
  if (style_ != WatchStyle::kProgressBar) return;
  out_ << kClearLine << StatusLine() << std::flush;
  bar_drawn_ = true;
}

void WatchPrinter::PrintLine(const std::string& line) {
  if (style_ == WatchStyle::kProgressBar) {
    out_ << kClearLine << line << "\n";
    DrawBar();
  } else {
    out_ << line << "\n" << std::flush;
  }
}

std::string WatchPrinter::TrainLine(const MetricsEvent& event) const {
  const auto& m = event.train();
  std::string line = absl::StrFormat("step %d", event.step());
  if (total_steps_ > 0) absl::StrAppend(&line, "/", total_steps_);
  absl::StrAppend(
      &line, absl::StrFormat("  loss %.4f  acc %.3f  margin %.3f  lr %.2e  %.1f pairs/s", m.loss(),
                             m.accuracy(), m.margin(), m.learning_rate(), m.pairs_per_second()));
  if (std::optional<double> eta = EstimatedSecondsLeft(); eta && step_ < total_steps_) {
    absl::StrAppend(&line, "  ETA ", FormatSeconds(*eta));
  }
  return line;
}

std::string WatchPrinter::EvalLine(const MetricsEvent& event) const {
  const auto& m = event.eval();
  return absl::StrFormat(
      "eval @ step %d: loss %.4f  accuracy %.3f  margin %.3f  reward %.3f ± %.3f  (%d pairs, %s)",
      event.step(), m.loss(), m.accuracy(), m.margin(), m.reward_mean(), m.reward_std(), m.pairs(),
      FormatDuration(m.duration()));
}

std::string WatchPrinter::StateLine(const verdict::v1::StateChange& change) const {
  std::string line = change.from_state() == verdict::v1::JOB_STATE_UNSPECIFIED
                         ? absl::StrCat("job ", job_id_, " ", JobStateName(change.to_state()))
                         : absl::StrCat("job ", job_id_, " ", JobStateName(change.from_state()),
                                        " -> ", JobStateName(change.to_state()));
  if (!change.message().empty()) absl::StrAppend(&line, ": ", change.message());
  return line;
}

void WatchPrinter::OnEvent(const MetricsEvent& event) {
  if (style_ == WatchStyle::kJson) {
    out_ << ToJson(event) << "\n" << std::flush;
    return;
  }
  step_ = std::max(step_, event.step());
  switch (event.event_case()) {
    case MetricsEvent::kTrain: {
      const std::pair<double, int64_t> point{Seconds(event.time()), event.step()};
      // A resumed job replays from an earlier step: restart the pace from there.
      if (!first_train_ || point.second < latest_train_->second) first_train_ = point;
      latest_train_ = point;
      last_train_ = event.train();
      phase_text_ = "training";
      if (style_ == WatchStyle::kLines) {
        PrintLine(TrainLine(event));
      } else {
        DrawBar();
      }
      break;
    }
    case MetricsEvent::kEval:
      PrintLine(EvalLine(event));
      break;
    case MetricsEvent::kStateChange:
      // A job that starts running first prepares (data, tokenizer) before its first step.
      phase_text_ = event.state_change().to_state() == verdict::v1::JOB_STATE_RUNNING
                        ? "preparing"
                        : absl::AsciiStrToLower(JobStateName(event.state_change().to_state()));
      PrintLine(StateLine(event.state_change()));
      break;
    case MetricsEvent::kLog:
      PrintLine(absl::StrCat("[",
                             absl::AsciiStrToLower(EnumName(
                                 verdict::v1::LogLine::Level_descriptor(), event.log().level())),
                             "] ", event.log().text()));
      break;
    default:
      break;
  }
}

void WatchPrinter::OnReconnect(absl::string_view why, double wait_seconds) {
  if (style_ == WatchStyle::kJson) return;
  PrintLine(
      absl::StrCat("connection lost (", why, "); reconnecting in ", FormatSeconds(wait_seconds)));
}

void WatchPrinter::Finish(const Job& job) {
  if (style_ == WatchStyle::kJson) return;
  if (bar_drawn_) {
    SetJob(job);
    out_ << kClearLine << StatusLine() << "\n";
    bar_drawn_ = false;
  }
  std::string line = absl::StrCat("job ", job.id(), " ", JobStateName(job.state()));
  if (job.has_start_time() && job.has_end_time()) {
    absl::StrAppend(&line, " in ",
                    FormatSeconds(Seconds(job.end_time()) - Seconds(job.start_time())));
  }
  switch (job.state()) {
    case verdict::v1::JOB_STATE_SUCCEEDED:
      if (job.has_evaluation_spec()) {  // an evaluation job: it registers no model
        absl::StrAppend(&line, ": evaluated ", job.evaluation_spec().model().name(), " version ",
                        job.evaluation_spec().model().version());
      } else {
        absl::StrAppend(&line, ": model ", job.result_model().name(), " version ",
                        job.result_model().version());
      }
      if (job.progress().has_last_eval_metrics()) {
        absl::StrAppend(&line, absl::StrFormat(", eval accuracy %.3f",
                                               job.progress().last_eval_metrics().accuracy()));
      }
      break;
    case verdict::v1::JOB_STATE_FAILED:
      absl::StrAppend(&line, ": ", StatusCodeName(static_cast<grpc::StatusCode>(job.error_code())),
                      ": ", job.error_message());
      break;
    default:
      break;
  }
  out_ << line << "\n" << std::flush;
}

}  // namespace verdict::client
