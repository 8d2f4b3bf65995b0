#include "core/model/shared_prefix.h"

#include <algorithm>
#include <numeric>

namespace verdict {

SharedPrefixPlan PlanSharedPrefixes(absl::Span<const absl::Span<const int32_t>> sequences,
                                    int64_t min_prefix_length, int64_t max_group_rows) {
  min_prefix_length = std::max<int64_t>(1, min_prefix_length);
  const size_t n = sequences.size();
  // Sequences that share a prefix are neighbours in lexicographic order, and the prefix a run
  // of neighbours shares is the smallest common prefix of adjacent pairs.
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return std::lexicographical_compare(sequences[a].begin(), sequences[a].end(),
                                        sequences[b].begin(), sequences[b].end());
  });
  std::vector<int64_t> common(n, 0);  // common[k]: shared by order[k - 1] and order[k]
  for (size_t k = 1; k < n; ++k) {
    const auto& a = sequences[order[k - 1]];
    const auto& b = sequences[order[k]];
    const auto mismatch = std::mismatch(a.begin(), a.end(), b.begin(), b.end());
    common[k] = mismatch.first - a.begin();
  }
  // best[j]: the most tokens saved by a partition of the first j rows in order; from[j]: where
  // the last group of that partition starts, and its prefix.
  std::vector<int64_t> best(n + 1, 0), from(n + 1, 0), prefix_of(n + 1, 0);
  for (size_t j = 1; j <= n; ++j) {
    best[j] = best[j - 1];  // row j - 1 alone
    from[j] = static_cast<int64_t>(j) - 1;
    int64_t prefix = static_cast<int64_t>(sequences[order[j - 1]].size()) - 1;
    for (size_t i = j - 1; i >= 1 && static_cast<int64_t>(j - i) < max_group_rows; --i) {
      // The group order[i - 1 .. j - 1]: every row keeps a token of its own.
      prefix =
          std::min({prefix, common[i], static_cast<int64_t>(sequences[order[i - 1]].size()) - 1});
      if (prefix < min_prefix_length) break;
      const int64_t saved = best[i - 1] + static_cast<int64_t>(j - i) * prefix;
      if (saved > best[j]) {
        best[j] = saved;
        from[j] = static_cast<int64_t>(i) - 1;
        prefix_of[j] = prefix;
      }
    }
  }
  SharedPrefixPlan plan;
  for (int64_t j = static_cast<int64_t>(n); j > 0; j = from[j]) {
    if (j - from[j] == 1) {
      plan.alone.push_back(order[j - 1]);
      continue;
    }
    SharedPrefixPlan::Group group;
    group.prefix_length = prefix_of[j];
    group.rows.assign(order.begin() + from[j], order.begin() + j);
    plan.groups.push_back(std::move(group));
  }
  std::reverse(plan.groups.begin(), plan.groups.end());
  std::sort(plan.alone.begin(), plan.alone.end());
  return plan;
}

}  // namespace verdict
