#include "server/dataset_inspection_proto.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "core/data/preference_reader.h"

namespace verdict::server {

std::string WithoutFileName(const std::string& message, const std::string& name) {
  const std::string prefix = name + ":";
  if (message.rfind(prefix, 0) != 0) return message;
  std::string rest = message.substr(prefix.size());
  if (!rest.empty() && absl::ascii_isdigit(rest[0])) return "line " + rest;
  return std::string(absl::StripLeadingAsciiWhitespace(rest));
}

v1::DatasetInspection InspectionToProto(const DatasetInspection& report) {
  v1::DatasetInspection out;
  const ReadStats& stats = report.stats;
  out.set_container(stats.json_array ? "json" : "jsonl");
  out.set_gzip(report.gzip);
  out.set_lines(stats.lines);
  out.set_blank_lines(stats.blank_lines);
  out.set_pairs(stats.pairs);
  out.set_identical_pairs_dropped(stats.identical_dropped);
  out.set_pairs_with_margin(report.pairs_with_margin);
  std::vector<std::pair<int64_t, int>> layouts;
  for (int i = 0; i < kPreferenceLayoutCount; ++i) {
    if (stats.pairs_by_layout[i] > 0) layouts.push_back({stats.pairs_by_layout[i], i});
  }
  std::stable_sort(layouts.begin(), layouts.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (const auto& [pairs, layout] : layouts) {
    auto* count = out.add_layouts();
    count->set_layout(std::string(PreferenceLayoutName(static_cast<PreferenceLayout>(layout))));
    count->set_pairs(pairs);
  }
  out.set_invalid_lines(stats.invalid_lines);
  for (const InvalidLine& invalid : stats.first_invalid) {
    auto* line = out.add_invalid();
    line->set_line(invalid.line);
    line->set_reason(invalid.reason);
  }
  out.set_stopped(report.stopped);
  if (report.lengths.has_value()) {
    const TokenLengthStats& l = *report.lengths;
    v1::TokenLengths* lengths = out.mutable_lengths();
    lengths->set_max_length(l.max_length);
    lengths->set_min_tokens(l.min_tokens);
    lengths->set_max_tokens(l.max_tokens);
    lengths->set_mean_tokens(l.mean_tokens);
    lengths->set_p50_tokens(l.p50_tokens);
    lengths->set_p95_tokens(l.p95_tokens);
    for (const LengthBucket& bar : l.histogram) {
      auto* bucket = lengths->add_histogram();
      bucket->set_max_tokens(bar.max_tokens);
      bucket->set_pairs(bar.pairs);
    }
    lengths->set_truncated_pairs(l.truncated_pairs);
    lengths->set_truncated_fraction(
        l.pairs > 0 ? static_cast<double>(l.truncated_pairs) / static_cast<double>(l.pairs) : 0);
  }
  return out;
}

}  // namespace verdict::server
