// verdict watch JOB: follows a job's metrics stream to its end.
#include <algorithm>
#include <chrono>
#include <ostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "client/commands/commands.h"
#include "client/output.h"
#include "client/watch_printer.h"

namespace verdict::client {
namespace {

using verdict::v1::Job;
using verdict::v1::JobState;

bool IsTerminal(JobState state) {
  return state == verdict::v1::JOB_STATE_SUCCEEDED || state == verdict::v1::JOB_STATE_FAILED ||
         state == verdict::v1::JOB_STATE_CANCELLED;
}

// Codes after which the stream is worth reopening: the server shed the watcher (ABORTED), or
// is restarting or unreachable for now (UNAVAILABLE). The proto promises nothing is lost.
// CANCELLED too: watch never cancels its own calls, so it comes from a server that cancelled
// calls still open when its shutdown finished.
bool IsReconnectable(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::ABORTED ||
         status.error_code() == grpc::StatusCode::CANCELLED;
}

grpc::Status GetJob(Connection& connection, const std::string& job_id, Job* job) {
  verdict::v1::GetJobRequest request;
  request.set_job_id(job_id);
  std::unique_ptr<grpc::ClientContext> context = connection.NewContext();
  return connection.training().GetJob(context.get(), request, job);
}

int ExitCodeFor(JobState state) {
  switch (state) {
    case verdict::v1::JOB_STATE_SUCCEEDED:
      return kExitOk;
    case verdict::v1::JOB_STATE_CANCELLED:
      return kExitJobCancelled;
    default:
      return kExitJobFailed;
  }
}

}  // namespace

int WatchJob(Connection& connection, const std::string& job_id, const WatchArgs& watch,
             CommandEnv& env) {
  const std::string& server = env.options.server;
  WatchStyle style = WatchStyle::kLines;
  if (env.options.format() == OutputFormat::kJson) {
    style = WatchStyle::kJson;
  } else if (watch.progress_bar && env.out_is_terminal) {
    style = WatchStyle::kProgressBar;
  }
  WatchPrinter printer(*env.out, style, env.terminal_width);

  Job job;
  if (grpc::Status status = GetJob(connection, job_id, &job); !status.ok()) {
    return ReportRpcError(status, server, *env.err);
  }
  printer.SetJob(job);
  bool total_known = job.progress().total_steps() > 0;

  using Clock = std::chrono::steady_clock;
  int64_t last_sequence = 0;
  bool ended = false;
  auto last_contact = Clock::now();
  double backoff_seconds = 0.5;
  while (!ended) {
    verdict::v1::StreamMetricsRequest request;
    request.set_job_id(job_id);
    if (last_sequence > 0) {
      request.set_after_sequence(last_sequence);
    } else if (watch.from_step) {
      request.set_from_step(*watch.from_step);
    }
    std::unique_ptr<grpc::ClientContext> context = connection.NewContext(/*deadline=*/false);
    std::unique_ptr<grpc::ClientReader<verdict::v1::MetricsEvent>> reader =
        connection.training().StreamMetrics(context.get(), request);
    verdict::v1::MetricsEvent event;
    while (reader->Read(&event)) {
      last_sequence = event.sequence();
      last_contact = Clock::now();
      backoff_seconds = 0.5;
      // The total step count is known once the job is prepared; fetch it with the first
      // train event that arrives without it.
      if (!total_known && (event.has_train() || event.has_eval())) {
        Job refreshed;
        if (GetJob(connection, job_id, &refreshed).ok()) {
          printer.SetJob(refreshed);
          total_known = refreshed.progress().total_steps() > 0;
        }
      }
      printer.OnEvent(event);
      if (event.has_state_change() && IsTerminal(event.state_change().to_state())) ended = true;
    }
    const grpc::Status status = reader->Finish();
    if (ended) break;
    if (status.ok()) {
      // The stream ended without a terminal event (it should not); ask the job itself.
      if (GetJob(connection, job_id, &job).ok() && IsTerminal(job.state())) break;
    } else if (!IsReconnectable(status)) {
      return ReportRpcError(status, server, *env.err);
    }
    const double waited = std::chrono::duration<double>(Clock::now() - last_contact).count();
    if (waited > watch.reconnect_seconds) {
      *env.err << "verdict: gave up reconnecting after " << FormatSeconds(waited) << "\n";
      return ReportRpcError(status, server, *env.err);
    }
    printer.OnReconnect(status.ok() ? "stream ended early"
                                    : absl::StrCat(StatusCodeName(status.error_code()), ": ",
                                                   status.error_message()),
                        backoff_seconds);
    std::this_thread::sleep_for(std::chrono::duration<double>(backoff_seconds));
    backoff_seconds = std::min(backoff_seconds * 2, 5.0);
  }

  // The terminal event is stored before it is sent, so the job already shows its final state;
  // a brief outage right here is still worth a few retries.
  grpc::Status status;
  for (int attempt = 0; attempt < 5; ++attempt) {
    status = GetJob(connection, job_id, &job);
    if (status.ok() || !IsReconnectable(status)) break;
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  if (!status.ok()) return ReportRpcError(status, server, *env.err);
  printer.Finish(job);
  return ExitCodeFor(job.state());
}

int RunWatch(const std::vector<std::string>& args, CommandEnv& env) {
  FlagParser flags(
      "verdict watch JOB [flags]",
      "Follows a job: replays its metrics events, then shows new ones live until the job\n"
      "ends. On a terminal, a progress bar (step/total, percentage, ETA, pairs/s, loss,\n"
      "accuracy) with evaluations and state changes printed above it; otherwise one line per\n"
      "event; with --output json, one MetricsEvent per line. If the connection drops, watch\n"
      "reconnects with backoff and resumes after the last event it received.\n"
      "Exit code: 0 SUCCEEDED, 4 FAILED, 5 CANCELLED (1 server error, 3 unreachable).");
  WatchArgs watch;
  bool no_progress = false;
  flags.AddInt("from-step", &watch.from_step, "N",
               "Start the replay at step N (default: the beginning).");
  flags.AddBool("no-progress", &no_progress, "Plain lines even on a terminal.");
  flags.AddDouble("reconnect-for", &watch.reconnect_seconds, "SECONDS",
                  "Keep trying to reconnect for this long (default 300).");
  std::vector<std::string> positional;
  if (auto exit = ParseCommandArgs(flags, args, env, 1, 1, &positional)) return *exit;
  watch.progress_bar = !no_progress;
  int exit_code = kExitOk;
  std::unique_ptr<Connection> connection = Connect(env, &exit_code);
  if (connection == nullptr) return exit_code;
  return WatchJob(*connection, positional[0], watch, env);
}

}  // namespace verdict::client
