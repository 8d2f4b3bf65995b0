// Dataset inspection on the client's side: a local preference file read with core/data (the
// reader training uses; no LibTorch, no server), and the report printed for people.
//
// `verdict datasets inspect FILE` and `verdict submit --validate-only --train FILE` use the
// first; `datasets inspect` prints a server's report (an uploaded dataset, token lengths) with
// the same printer.
//
// Free functions, called from main's thread.
#ifndef VERDICT_CLIENT_LOCAL_INSPECTION_H_
#define VERDICT_CLIENT_LOCAL_INSPECTION_H_

#include <cstddef>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "verdict/v1/datasets.pb.h"
#include "verdict/v1/training.pb.h"

namespace verdict::client {

struct LocalInspectionOptions {
  // As a training job would read the file (DataOptions.format and chat_format; unspecified:
  // auto and hh).
  verdict::v1::DataFormat format = verdict::v1::DATA_FORMAT_UNSPECIFIED;
  verdict::v1::ChatFormat chat_format = verdict::v1::CHAT_FORMAT_UNSPECIFIED;
  size_t max_invalid_lines = 100;
};

// Reads the whole file. Fails only when it cannot be opened (NOT_FOUND, ...); problems in the
// data are in the report, with "FILE:LINE: problem" as DatasetInspection.stopped.
absl::StatusOr<verdict::v1::DatasetInspection> InspectLocalFile(
    const std::string& path, const LocalInspectionOptions& options);

// Whether the data would train as it is: every record valid, the whole file read, at least
// one pair. (With skip_invalid, invalid records alone do not count against it.)
bool InspectionIsClean(const verdict::v1::DatasetInspection& report, bool skip_invalid);

// The report as text, `name` naming the data ("pairs.jsonl", "dataset ds-..."):
//   pairs.jsonl: jsonl, 6 pairs (explicit prompt 6), 13 lines (1 blank, 1 identical pair dropped)
//   5 invalid lines:
//     line 3: missing "rejected"
//     ...
//   tokens (model m version 1): min 12, p50 40, p95 90, max 120, mean 45.2
//     <=   16  ▏ 0
//     ...
//   over max_length 64: 3 of 6 pairs (50.0%)
void PrintInspection(const verdict::v1::DatasetInspection& report, const std::string& name,
                     std::ostream& out);

}  // namespace verdict::client

#endif  // VERDICT_CLIENT_LOCAL_INSPECTION_H_
