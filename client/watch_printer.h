// WatchPrinter: how `verdict watch` shows a job's metrics events.
//
// Three styles:
//   kProgressBar  for a terminal: one line redrawn in place (bar, step/total, percentage, ETA,
//                 pairs/s, latest loss and accuracy), with evaluations, state changes and log
//                 lines printed above it as they arrive.
//   kLines        for pipes and files: one plain line per event.
//   kJson         one MetricsEvent per line in the proto3 JSON mapping.
// The printer only formats; the caller feeds it events (and the Job, for the total step count
// and the outcome) from the stream, so a reconnect is invisible to it.
//
// Not thread-safe: one thread feeds one printer.
//
// Example:
//   WatchPrinter printer(std::cout, WatchStyle::kLines);
//   printer.SetJob(job);
//   for (const MetricsEvent& e : events) printer.OnEvent(e);
//   printer.Finish(final_job);
#ifndef VERDICT_CLIENT_WATCH_PRINTER_H_
#define VERDICT_CLIENT_WATCH_PRINTER_H_

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>

#include "absl/strings/string_view.h"
#include "verdict/v1/training.pb.h"

namespace verdict::client {

enum class WatchStyle { kProgressBar, kLines, kJson };

// "[#########...........]": `width` characters in all, filled in proportion to step / total
// (empty when total is 0).
std::string RenderBar(int64_t step, int64_t total, int width);

class WatchPrinter {
 public:
  // `width` is the terminal's width in columns (kProgressBar keeps its line shorter than it).
  WatchPrinter(std::ostream& out, WatchStyle style, int width = 80);

  // Takes the job's total step count (known once it is prepared) and the server's own ETA.
  void SetJob(const verdict::v1::Job& job);
  void OnEvent(const verdict::v1::MetricsEvent& event);
  // Notes a dropped stream and how long the watcher waits before reconnecting.
  void OnReconnect(absl::string_view why, double wait_seconds);
  // Clears the bar and prints how the job ended (nothing in kJson style).
  void Finish(const verdict::v1::Job& job);

  // The ETA in seconds at the pace of the train events seen so far; nullopt when unknown.
  std::optional<double> EstimatedSecondsLeft() const;
  // The line kProgressBar draws now (exposed for tests).
  std::string StatusLine() const;

 private:
  void PrintLine(const std::string& line);  // above the bar, which is then redrawn
  void DrawBar();
  std::string TrainLine(const verdict::v1::MetricsEvent& event) const;
  std::string EvalLine(const verdict::v1::MetricsEvent& event) const;
  std::string StateLine(const verdict::v1::StateChange& change) const;

  std::ostream& out_;
  const WatchStyle style_;
  const int width_;
  bool bar_drawn_ = false;

  std::string job_id_;
  int64_t total_steps_ = 0;
  int64_t step_ = 0;
  std::optional<double> server_eta_seconds_;
  std::optional<verdict::v1::TrainStepMetrics> last_train_;
  std::string phase_text_ = "waiting";
  // Pace: the first and the latest train event (event time in seconds, step).
  std::optional<std::pair<double, int64_t>> first_train_;
  std::optional<std::pair<double, int64_t>> latest_train_;
};

}  // namespace verdict::client

#endif  // VERDICT_CLIENT_WATCH_PRINTER_H_
