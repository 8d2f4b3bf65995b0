// Prints the Prometheus exposition of a ServerMetrics on which every method has been called,
// so that every family has a series. tests/deploy/check_metric_names.py compares the names and
// labels that the Grafana dashboard and the alert rules use against this output.
//
// Exits 1 if a family has no series: a method added to ServerMetrics but not called here.
#include <iostream>
#include <sstream>

#include "absl/time/time.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"
#include "server/server_metrics.h"

int main() {
  prometheus::Registry registry;
  verdict::ServerMetrics metrics(registry, {"0.1.0", "0000000", "cpu"});

  metrics.RecordRpc("/verdict.v1.ScoringService/ScoreBatch", absl::StatusCode::kOk,
                    absl::Milliseconds(3));
  metrics.SetScoringQueueDepth("model", 1);
  metrics.SetScoringQueueCapacity("model", 4096);
  metrics.RecordScoringQueueWait("model", "1", absl::Milliseconds(1));
  metrics.RecordScoringBatch("model", "1", 1, 64, absl::Milliseconds(5));
  metrics.RecordScoringRejected("model", "1", verdict::ScoringRejection::kQueueFull);
  metrics.SetModelLoaded("model", "1", true);
  metrics.RecordJobStateChange("", "queued");
  metrics.RecordTrainingStep("job", {1, 0.1, 0.69, 0.5, 10, 1000});
  metrics.RecordTrainingEval("job", 0.5);
  metrics.RecordCheckpoint(absl::Seconds(1));
  metrics.RecordJobFinished("succeeded", absl::Seconds(60));
  metrics.SetDeviceMemoryBytes("cuda:0", 1 << 20);

  const auto families = registry.Collect();
  int empty = 0;
  for (const auto& family : families) {
    if (family.metric.empty()) {
      std::cerr << "dump_server_metrics: " << family.name
                << " has no series; call its ServerMetrics method in " << __FILE__ << "\n";
      ++empty;
    }
  }
  prometheus::TextSerializer().Serialize(std::cout, families);
  return empty == 0 ? 0 : 1;
}
