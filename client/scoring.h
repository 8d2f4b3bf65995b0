// Scoring from the command line: model references, JSON-lines input, and a batched, parallel,
// order-preserving ScoreBatch driver.
//
// JSON lines (`verdict score --input`): each line is an object in one of these layouts, and
// comes back with every key it had plus the score(s):
//   {"prompt": str, "response": str}           -> adds "score"
//   {"messages": [{"role", "content"}, ...]}   -> adds "score" (rendered with the model's
//                                                 chat format; the last message is scored)
//   {"chosen": ..., "rejected": ...}           -> adds "chosen_score" and "rejected_score"
// A pair line is any preference layout a training file may hold (common.proto, "Preference
// data"): an explicit string "prompt" with string responses; two whole transcripts (hh-rlhf),
// split at the last "\n\nAssistant:" they share exactly as training splits them; or message
// lists, with an optional "prompt" list before them. Blank lines are kept as they are.
//
// ScoreItems is safe to call from one thread; it runs its requests on its own threads.
#ifndef VERDICT_CLIENT_SCORING_H_
#define VERDICT_CLIENT_SCORING_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "client/connection.h"
#include "verdict/v1/common.pb.h"
#include "verdict/v1/scoring.pb.h"

namespace verdict::client {

// "name" (latest), "name:3" (version 3), "name:production" (alias). INVALID_ARGUMENT for an
// empty name or version 0.
absl::StatusOr<verdict::v1::ModelRef> ParseModelRef(absl::string_view text);
// The inverse: "name", "name:3", "name:production".
std::string ModelRefToString(const verdict::v1::ModelRef& model);

// One line of JSON-lines input and what it asks to score.
struct ScoreLine {
  enum class Kind { kBlank, kSingle, kPair };
  Kind kind = Kind::kBlank;
  nlohmann::ordered_json object;              // the line as read, keys in their order
  std::vector<verdict::v1::ScoreItem> items;  // kSingle: 1; kPair: chosen, rejected
};

// Parses one line. INVALID_ARGUMENT naming the key for anything that is not one of the layouts
// above (the caller adds the line number).
absl::StatusOr<ScoreLine> ParseScoreLine(absl::string_view text);

// The line with its scores added (`scores` holds line.items.size() values), as one line of JSON
// without the newline; a blank line stays empty.
std::string RenderScoredLine(const ScoreLine& line, absl::Span<const double> scores);

// The hh-rlhf split of two transcripts: the prompt is their common prefix up to and including
// the last "\n\nAssistant:" in it (empty if there is none); the rest of each is its response.
struct SplitPair {
  std::string prompt, chosen, rejected;
};
SplitPair SplitImplicitPrompt(absl::string_view chosen, absl::string_view rejected);

struct ScoreOptions {
  verdict::v1::ModelRef model;
  bool normalize = false;
  int items_per_request = 64;  // items in one ScoreBatch request
  int parallel = 4;            // requests in flight at once
  int max_attempts = 6;        // per request, for RESOURCE_EXHAUSTED and UNAVAILABLE
};

// Scores `items` in order: splits them into requests of items_per_request, runs up to
// `parallel` at once, and retries a request refused with RESOURCE_EXHAUSTED or UNAVAILABLE with
// exponential backoff (0.1 s doubling, at most 5 s). The first other error ends the run and is
// returned with its gRPC code (requests still in flight finish first). `version_used`, when
// given, receives the version the server resolved.
absl::StatusOr<std::vector<double>> ScoreItems(Connection& connection,
                                               const std::vector<verdict::v1::ScoreItem>& items,
                                               const ScoreOptions& options,
                                               verdict::v1::ModelRef* version_used = nullptr);

}  // namespace verdict::client

#endif  // VERDICT_CLIENT_SCORING_H_
