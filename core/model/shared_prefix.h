// PlanSharedPrefixes: which of a list of token sequences share a prompt, so that a decoder
// (RewardModel::ForwardShared) computes each prompt once for all the continuations that
// follow it — the G completions of a GRPO group, the chosen and rejected sides of a pair.
//
// The plan works on token ids alone: whatever their text, sequences that begin with the same
// ids have, in a causal decoder, the same hidden states over those ids, so any shared run of
// ids may be computed once and the rewards stay those of each sequence alone.
//
// Thread safety: a pure function.
//
// Example:
//   SharedPrefixPlan plan = PlanSharedPrefixes(sequences, /*min_prefix_length=*/16);
//   for (const SharedPrefixPlan::Group& group : plan.groups) { ... group.rows ... }
//   for (uint32_t row : plan.alone) { ... scored whole ... }
#ifndef VERDICT_CORE_MODEL_SHARED_PREFIX_H_
#define VERDICT_CORE_MODEL_SHARED_PREFIX_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace verdict {

struct SharedPrefixPlan {
  struct Group {
    // Tokens every row of the group begins with; each row is longer (its continuation has at
    // least one token, where it is pooled).
    int64_t prefix_length = 0;
    std::vector<uint32_t> rows;  // indices into the sequences, two or more
  };
  std::vector<Group> groups;
  std::vector<uint32_t> alone;  // rows in no group, ascending
};

// Groups rows so that the tokens computed once are as many as a partition of the rows, taken
// in lexicographic order, allows: a group's saving is (rows - 1) × prefix_length. A group
// needs a prefix of at least `min_prefix_length` (>= 1) tokens; groups hold at most
// `max_group_rows` rows. O(n log n) for the sort plus O(n × max_group_rows).
SharedPrefixPlan PlanSharedPrefixes(absl::Span<const absl::Span<const int32_t>> sequences,
                                    int64_t min_prefix_length, int64_t max_group_rows = 256);

}  // namespace verdict

#endif  // VERDICT_CORE_MODEL_SHARED_PREFIX_H_
