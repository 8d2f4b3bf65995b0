#include "client/local_inspection.h"

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/data/chat_format.h"
#include "core/data/data_format.h"
#include "core/data/dataset_inspection.h"
#include "core/util/status_macros.h"
#include "server/dataset_inspection_proto.h"

namespace verdict::client {
namespace {

// An API enum value as core's name for it: DATA_FORMAT_JSONL -> "jsonl", CHAT_FORMAT_HH -> "hh"
// (the names match by design; see the enums' comments).
std::string CoreName(const std::string& proto_name, absl::string_view prefix) {
  return absl::AsciiStrToLower(absl::string_view(proto_name).substr(prefix.size()));
}

}  // namespace

absl::StatusOr<verdict::v1::DatasetInspection> InspectLocalFile(
    const std::string& path, const LocalInspectionOptions& options) {
  InspectionOptions core;
  core.max_invalid_reported = options.max_invalid_lines;
  if (options.format != verdict::v1::DATA_FORMAT_UNSPECIFIED) {
    ASSIGN_OR_RETURN(
        core.reader.format,
        ParseDataFormat(CoreName(verdict::v1::DataFormat_Name(options.format), "DATA_FORMAT_")));
  }
  if (options.chat_format != verdict::v1::CHAT_FORMAT_UNSPECIFIED) {
    ASSIGN_OR_RETURN(core.reader.chat_format,
                     ParseChatFormat(CoreName(verdict::v1::ChatFormat_Name(options.chat_format),
                                              "CHAT_FORMAT_")));
  }
  ASSIGN_OR_RETURN(DatasetInspection report, InspectPreferenceFile(path, core));
  return server::InspectionToProto(report);
}

bool InspectionIsClean(const verdict::v1::DatasetInspection& report, bool skip_invalid) {
  return report.stopped().empty() && report.pairs() > 0 &&
         (skip_invalid || report.invalid_lines() == 0);
}

void PrintInspection(const verdict::v1::DatasetInspection& report, const std::string& name,
                     std::ostream& out) {
  std::vector<std::string> layouts;
  for (const auto& layout : report.layouts()) {
    layouts.push_back(absl::StrCat(layout.layout(), " ", layout.pairs()));
  }
  std::vector<std::string> notes;
  if (report.blank_lines() > 0) notes.push_back(absl::StrCat(report.blank_lines(), " blank"));
  if (report.identical_pairs_dropped() > 0) {
    notes.push_back(absl::StrCat(report.identical_pairs_dropped(), " identical ",
                                 report.identical_pairs_dropped() == 1 ? "pair" : "pairs",
                                 " dropped"));
  }
  if (report.pairs_with_margin() > 0) {
    notes.push_back(absl::StrCat(report.pairs_with_margin(), " with a margin"));
  }
  out << name << ": " << (report.container() == "json" ? "JSON array" : "JSON Lines")
      << (report.gzip() ? " (gzip)" : "") << ", " << report.pairs()
      << (report.pairs() == 1 ? " pair" : " pairs");
  if (!layouts.empty()) out << " (" << absl::StrJoin(layouts, ", ") << ")";
  out << ", " << report.lines() << (report.lines() == 1 ? " line" : " lines");
  if (!notes.empty()) out << " (" << absl::StrJoin(notes, ", ") << ")";
  out << "\n";
  if (report.invalid_lines() > 0) {
    out << report.invalid_lines()
        << (report.invalid_lines() == 1 ? " invalid line" : " invalid lines");
    if (report.invalid_size() < report.invalid_lines()) {
      out << " (the first " << report.invalid_size() << " listed)";
    }
    out << ":\n";
    for (const auto& invalid : report.invalid()) {
      out << "  line " << invalid.line() << ": " << invalid.reason() << "\n";
    }
  } else {
    out << "no invalid lines\n";
  }
  if (!report.stopped().empty()) out << "reading stopped: " << report.stopped() << "\n";
  if (!report.has_lengths()) return;
  const verdict::v1::TokenLengths& l = report.lengths();
  out << "tokens (model " << l.model() << " version " << l.version() << "): min " << l.min_tokens()
      << ", p50 " << l.p50_tokens() << ", p95 " << l.p95_tokens() << ", max " << l.max_tokens()
      << absl::StrFormat(", mean %.1f", l.mean_tokens()) << "\n";
  int64_t most = 0;
  for (const auto& bar : l.histogram()) most = std::max(most, bar.pairs());
  constexpr int kBarWidth = 40;
  for (const auto& bar : l.histogram()) {
    const int width = most > 0 ? static_cast<int>((bar.pairs() * kBarWidth + most - 1) / most) : 0;
    out << absl::StrFormat("  <= %7d  %-*s %d\n", bar.max_tokens(), kBarWidth,
                           std::string(static_cast<size_t>(width), '#'), bar.pairs());
  }
  if (l.max_length() > 0) {
    out << "over max_length " << l.max_length() << ": " << l.truncated_pairs() << " of "
        << report.pairs() << " pairs"
        << absl::StrFormat(" (%.1f%%)", 100.0 * l.truncated_fraction()) << "\n";
  } else {
    out << "the model has no max_length: nothing is truncated\n";
  }
}

}  // namespace verdict::client
