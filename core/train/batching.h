// Batching of tokenized preference pairs for training and evaluation.
//
// A batch holds B pairs; its chosen and rejected sequences are stacked into one [2B, T]
// forward pass (chosen rows first), padded on the right to the batch's longest sequence.
// Length grouping (on by default) shuffles pairs, then sorts them by length inside
// "mega-batches" of 50 batches before cutting batches and shuffling the batch order, so each
// batch holds pairs of similar length and little padding, while the order stays random.
// With a token budget, a batch is also cut before its padded size 2 * B * T would exceed
// max_batch_tokens. With shared rows (a decoder training each pair as one unpadded row,
// prefix shared: SharedPrefixLength), the budget counts the rows' tokens instead: a batch is
// cut before the sum of its pairs' SharedRowLength would exceed it. The length grouping is the
// same either way, so that a run batches its pairs alike with and without prefix sharing.
//
// Everything is a pure function of (lengths, options, epoch): a run that resumes at batch k of
// an epoch sees exactly the batches the uninterrupted run saw. Thread-compatible.
#ifndef VERDICT_CORE_TRAIN_BATCHING_H_
#define VERDICT_CORE_TRAIN_BATCHING_H_

#include <cstdint>
#include <optional>
#include <vector>

namespace verdict {

// One tokenized pair, ready for the model.
struct EncodedPair {
  std::vector<int32_t> chosen;    // full sequence (prompt + chosen response, special tokens)
  std::vector<int32_t> rejected;  // full sequence (prompt + rejected response, special tokens)
  float margin = 0.0f;
};

struct BatchingOptions {
  int64_t batch_size = 16;        // pairs per batch (upper bound)
  int64_t max_batch_tokens = 0;   // padded tokens per batch, chosen + rejected; 0 = no budget
  bool group_by_length = true;
  bool shuffle = true;            // off for evaluation
  // The budget counts each pair as one row of SharedRowLength tokens, unpadded.
  bool shared_rows = false;
  uint64_t seed = 42;
};

// The pairs of each batch of one epoch, as indices into `pairs`.
std::vector<std::vector<int64_t>> MakeBatches(const std::vector<EncodedPair>& pairs,
                                              const BatchingOptions& options, int64_t epoch);

// The tokens a pair's chosen and rejected sequences begin with, at most the shorter one's
// length less one (each side keeps a token of its own, where it is pooled): in a causal
// decoder the hidden states of these tokens are the same in both sequences.
int64_t SharedPrefixLength(const EncodedPair& pair);
// The pair as one shared row: chosen + rejected - SharedPrefixLength tokens.
int64_t SharedRowLength(const EncodedPair& pair);

// Real and padded token counts of a batch once collated.
struct PaddingStats {
  int64_t real_tokens = 0;
  int64_t padded_tokens = 0;  // rows * longest row
  double padding_fraction() const {
    return padded_tokens == 0 ? 0.0 : 1.0 - static_cast<double>(real_tokens) / padded_tokens;
  }
};
PaddingStats MeasurePadding(const std::vector<EncodedPair>& pairs,
                            const std::vector<int64_t>& batch);
// The same for shared rows: the tokens computed, which are not padded.
PaddingStats MeasureSharedRows(const std::vector<EncodedPair>& pairs,
                               const std::vector<int64_t>& batch);

}  // namespace verdict

#endif  // VERDICT_CORE_TRAIN_BATCHING_H_
