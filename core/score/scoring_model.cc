#include "core/score/scoring_model.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/model/shared_prefix.h"
#include "core/util/file_util.h"
#include "core/util/status_macros.h"

namespace verdict {
namespace {

// Widest padded forward (rows × longest row) ScoreEncodedSpans runs for a model without a
// packed forward: on a CPU, per-item cost rises past ~8 rows of 256 tokens, as the
// [rows, heads, seq, seq] attention scores outgrow the caches (bench/RESULTS.md, section 3).
constexpr int64_t kPaddedChunkTokens = 2048;
// Packed tokens per shared-prefix forward: its cost grows with the tokens, not their square,
// so this only bounds memory.
constexpr int64_t kSharedChunkTokens = 8192;

// Where the padded forwards of `order` (rows sorted by length, shortest first) end: the
// chunk k holds order[ends[k-1] .. ends[k]). Padded forwards cost rows × longest row (and
// attention rows × longest²): rows of similar length go together, in chunks no wider than
// the forward runs best at.
std::vector<size_t> PaddedChunkEnds(absl::Span<const absl::Span<const int32_t>> sequences,
                                    absl::Span<const uint32_t> order) {
  std::vector<size_t> ends;
  size_t begin = 0;
  int64_t chunk_real = 0;
  for (size_t k = 0; k < order.size(); ++k) {
    const int64_t length = static_cast<int64_t>(sequences[order[k]].size());
    const int64_t rows = static_cast<int64_t>(k - begin) + 1;
    // Sorted ascending, so this row is the chunk's longest: rows × length is its cost.
    const bool too_wide = rows * length > kPaddedChunkTokens;
    const bool too_padded = rows * length * 8 > (chunk_real + length) * 9;
    if (k > begin && (too_wide || too_padded)) {
      ends.push_back(k);
      begin = k;
      chunk_real = 0;
    }
    chunk_real += length;
  }
  if (!order.empty()) ends.push_back(order.size());
  return ends;
}

void SortByLength(absl::Span<const absl::Span<const int32_t>> sequences,
                  std::vector<uint32_t>& order) {
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return sequences[a].size() < sequences[b].size();
  });
}

absl::Status TorchErrorToStatus(const c10::Error& e) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e) != nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("scoring forward: ", e.what_without_backtrace()));
  }
  return absl::InternalError(absl::StrCat("scoring forward: ", e.what_without_backtrace()));
}

}  // namespace

absl::StatusOr<ScoringSettings> ReadScoringSettings(const std::string& dir) {
  ScoringSettings settings;
  ASSIGN_OR_RETURN(static_cast<EncodingSettings&>(settings), ReadEncodingSettings(dir));
  ASSIGN_OR_RETURN(settings.reward_stats, ReadRewardStats(dir));
  return settings;
}

absl::Status QuantizeLinearsForCpuScoring(RewardModel& model, const ModelOptions& options) {
  if (options.device != "cpu" || options.dtype != Dtype::kFloat32) {
    return absl::InvalidArgumentError("int8 linear layers are for float32 models on the cpu");
  }
  absl::Status quantized;
  try {
    quantized = model.QuantizeLinearsToInt8();
  } catch (const c10::Error& e) {
    quantized = absl::InternalError(absl::StrCat("quantizing: ", e.what_without_backtrace()));
  }
  if (absl::IsUnimplemented(quantized)) return absl::InvalidArgumentError(quantized.message());
  return quantized;
}

absl::StatusOr<std::shared_ptr<ScoringModel>> ScoringModel::Load(const std::string& dir,
                                                                 const ModelOptions& options) {
  ASSIGN_OR_RETURN(ScoringSettings settings, ReadScoringSettings(dir));
  ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, LoadTokenizerFromDirectory(dir));
  ASSIGN_OR_RETURN(std::unique_ptr<RewardModel> model, LoadRewardModel(dir, options));
  if (options.int8_linear) RETURN_IF_ERROR(QuantizeLinearsForCpuScoring(*model, options));
  return Create(std::move(model), std::move(tokenizer), settings);
}

absl::StatusOr<std::shared_ptr<ScoringModel>> ScoringModel::Create(
    std::unique_ptr<RewardModel> model, std::unique_ptr<Tokenizer> tokenizer,
    const ScoringSettings& settings) {
  if (model == nullptr) return absl::InvalidArgumentError("ScoringModel needs a model");
  if (settings.max_length < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_length must be >= 0, got ", settings.max_length));
  }
  if (tokenizer != nullptr && tokenizer->vocab_size() > model->config().vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer has ", tokenizer->vocab_size(),
                                                   " tokens but the model's vocab_size is ",
                                                   model->config().vocab_size));
  }
  if (settings.reward_stats &&
      !(std::isfinite(settings.reward_stats->mean) && settings.reward_stats->std > 0 &&
        std::isfinite(settings.reward_stats->std))) {
    return absl::InvalidArgumentError("reward_stats need a finite mean and a std > 0");
  }
  return std::shared_ptr<ScoringModel>(
      new ScoringModel(std::move(model), std::move(tokenizer), settings));
}

ScoringModel::ScoringModel(std::unique_ptr<RewardModel> model, std::unique_ptr<Tokenizer> tokenizer,
                           const ScoringSettings& settings)
    : model_(std::move(model)), tokenizer_(std::move(tokenizer)), settings_(settings) {
  const ModelConfig& config = model_->config();
  // As the trainer does.
  encoding_ = InputEncodingOf(config, settings_);
  // The trainer pads with the tokenizer's pad id, or 0 without one; the mask hides it anyway.
  if (tokenizer_ != nullptr) {
    pad_id_ = std::max<int32_t>(0, tokenizer_->special_tokens().pad);
  } else {
    pad_id_ = static_cast<int32_t>(std::max<int64_t>(0, config.pad_token_id));
  }
  for (const auto& parameter : model_->module().parameters()) {
    parameter_count_ += parameter.numel();
    device_ = parameter.device();
  }
}

absl::StatusOr<std::vector<int32_t>> ScoringModel::Encode(absl::string_view prompt,
                                                          absl::string_view response) const {
  return EncodeText(prompt, response, TextOrigin::kPlain);
}

absl::StatusOr<std::vector<int32_t>> ScoringModel::EncodeText(absl::string_view prompt,
                                                              absl::string_view response,
                                                              TextOrigin origin) const {
  if (tokenizer_ == nullptr) {
    return absl::FailedPreconditionError("this model has no tokenizer; send token ids");
  }
  absl::StatusOr<PairEncoding> encoded =
      EncodeInput(*tokenizer_, encoding_, prompt, response, origin);
  if (!encoded.ok()) {
    // OutOfRange means "this text is too long for the model": the caller's input is at fault.
    if (encoded.status().code() == absl::StatusCode::kOutOfRange) {
      return absl::InvalidArgumentError(
          absl::StrCat("text too long to score: ", encoded.status().message()));
    }
    return encoded.status();
  }
  return std::move(encoded->ids);
}

absl::StatusOr<PairEncoding> ScoringModel::EncodePairSide(absl::string_view prompt,
                                                          absl::string_view response,
                                                          TextOrigin origin) const {
  if (tokenizer_ == nullptr) {
    return absl::FailedPreconditionError("this model has no tokenizer; send token ids");
  }
  return EncodeInput(*tokenizer_, encoding_, prompt, response, origin);
}

absl::StatusOr<std::vector<int32_t>> ScoringModel::EncodeConversation(
    absl::Span<const ChatMessage> messages) const {
  if (messages.empty() || messages.back().role != ChatRole::kAssistant) {
    return absl::InvalidArgumentError(
        "a conversation to score must end with an assistant message (the response)");
  }
  return EncodeConversation(messages.subspan(0, messages.size() - 1),
                            messages.subspan(messages.size() - 1));
}

absl::StatusOr<std::vector<int32_t>> ScoringModel::EncodeConversation(
    absl::Span<const ChatMessage> prompt, absl::Span<const ChatMessage> response) const {
  ASSIGN_OR_RETURN(PromptAndResponse text,
                   RenderPromptAndResponse(prompt, response, settings_.chat_format));
  return EncodeText(text.prompt, text.response, TextOrigin::kRendered);
}

absl::StatusOr<std::vector<int32_t>> ScoringModel::EncodeJoined(absl::string_view text) const {
  if (encoding_.rule == InputRule::kPair && encoding_.encoder) {
    return absl::FailedPreconditionError(
        "this model reads a prompt and a response as a text pair (input rule pair); a joined "
        "text cannot be split into them: send a prompt_response item");
  }
  return EncodeText("", text, TextOrigin::kRendered);
}

absl::Status ScoringModel::ValidateSequence(absl::Span<const int32_t> ids) const {
  if (ids.empty()) return absl::InvalidArgumentError("empty token sequence");
  const int64_t limit = max_sequence_length();
  if (limit > 0 && static_cast<int64_t>(ids.size()) > limit) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sequence of ", ids.size(), " tokens is longer than the model's ", limit, " positions"));
  }
  const int64_t vocab = config().vocab_size;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token id ", ids[i], " at position ", i, " is outside the vocabulary [0, ", vocab, ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> ScoringModel::ScoreEncodedSpans(
    absl::Span<const absl::Span<const int32_t>> sequences) const {
  if (sequences.empty()) return std::vector<float>();
  try {
    c10::InferenceMode inference;
    if (model_->packs_sequences()) return ScorePacked(sequences);
    std::vector<float> scores(sequences.size());
    std::vector<uint32_t> order(sequences.size());
    std::iota(order.begin(), order.end(), 0u);
    if (settings_.share_prefixes && model_->shares_prefixes()) {
      RETURN_IF_ERROR(ScoreSharedPrefixes(sequences, scores, order));
      if (order.empty()) return scores;
    }
    SortByLength(sequences, order);
    size_t begin = 0;
    for (size_t end : PaddedChunkEnds(sequences, order)) {
      RETURN_IF_ERROR(ScorePaddedChunk(
          sequences, absl::MakeConstSpan(order).subspan(begin, end - begin), scores));
      begin = end;
    }
    return scores;
  } catch (const c10::Error& e) {
    return TorchErrorToStatus(e);
  }
}

int64_t ScoringModel::ForwardTokens(absl::Span<const absl::Span<const int32_t>> sequences) const {
  int64_t tokens = 0;
  if (model_->packs_sequences()) {
    for (const auto& sequence : sequences) tokens += static_cast<int64_t>(sequence.size());
    return tokens;
  }
  std::vector<uint32_t> rest(sequences.size());
  std::iota(rest.begin(), rest.end(), 0u);
  if (settings_.share_prefixes && model_->shares_prefixes()) {
    SharedPrefixPlan plan = PlanSharedPrefixes(sequences, kMinSharedPrefix);
    for (const SharedPrefixPlan::Group& group : plan.groups) {
      tokens += group.prefix_length;
      for (uint32_t row : group.rows) {
        tokens += static_cast<int64_t>(sequences[row].size()) - group.prefix_length;
      }
    }
    rest = std::move(plan.alone);
  }
  SortByLength(sequences, rest);
  size_t begin = 0;
  for (size_t end : PaddedChunkEnds(sequences, rest)) {
    // Sorted ascending: the chunk's last row is its longest.
    tokens +=
        static_cast<int64_t>(end - begin) * static_cast<int64_t>(sequences[rest[end - 1]].size());
    begin = end;
  }
  return tokens;
}

absl::StatusOr<std::vector<float>> ScoringModel::ScorePacked(
    absl::Span<const absl::Span<const int32_t>> sequences) const {
  std::vector<int64_t> lengths;
  lengths.reserve(sequences.size());
  int64_t total = 0;
  for (const auto& sequence : sequences) {
    lengths.push_back(static_cast<int64_t>(sequence.size()));
    total += lengths.back();
  }
  auto ids = torch::empty({total}, torch::kLong);
  int64_t* data = ids.data_ptr<int64_t>();
  for (const auto& sequence : sequences) data = std::copy(sequence.begin(), sequence.end(), data);
  at::Tensor rewards = model_->ForwardPacked(ids, lengths).to(torch::kCPU, torch::kFloat32)
                           .contiguous();
  const float* out = rewards.data_ptr<float>();
  return std::vector<float>(out, out + sequences.size());
}

absl::Status ScoringModel::ScoreSharedPrefixes(
    absl::Span<const absl::Span<const int32_t>> sequences, std::vector<float>& scores,
    std::vector<uint32_t>& rest) const {
  SharedPrefixPlan plan = PlanSharedPrefixes(sequences, kMinSharedPrefix);
  rest = std::move(plan.alone);
  // Groups go into forwards of up to kSharedChunkTokens packed tokens (a bigger group alone).
  size_t begin = 0;
  while (begin < plan.groups.size()) {
    std::vector<int64_t> ids;
    std::vector<SharedPrefixGroup> groups;
    std::vector<uint32_t> rows;
    for (; begin < plan.groups.size(); ++begin) {
      const SharedPrefixPlan::Group& group = plan.groups[begin];
      int64_t tokens = group.prefix_length;
      for (uint32_t row : group.rows) {
        tokens += static_cast<int64_t>(sequences[row].size()) - group.prefix_length;
      }
      if (!groups.empty() && static_cast<int64_t>(ids.size()) + tokens > kSharedChunkTokens) {
        break;
      }
      const auto& first = sequences[group.rows.front()];
      ids.insert(ids.end(), first.begin(), first.begin() + group.prefix_length);
      SharedPrefixGroup shared{group.prefix_length, {}};
      for (uint32_t row : group.rows) {
        const auto& sequence = sequences[row];
        ids.insert(ids.end(), sequence.begin() + group.prefix_length, sequence.end());
        shared.continuation_lengths.push_back(static_cast<int64_t>(sequence.size()) -
                                              group.prefix_length);
        rows.push_back(row);
      }
      groups.push_back(std::move(shared));
    }
    at::Tensor rewards = model_->ForwardShared(torch::tensor(ids, torch::kLong), groups)
                             .to(torch::kCPU, torch::kFloat32)
                             .contiguous();
    const float* data = rewards.data_ptr<float>();
    for (size_t k = 0; k < rows.size(); ++k) scores[rows[k]] = data[k];
  }
  return absl::OkStatus();
}

absl::Status ScoringModel::ScorePaddedChunk(absl::Span<const absl::Span<const int32_t>> sequences,
                                            absl::Span<const uint32_t> rows_of_chunk,
                                            std::vector<float>& scores) const {
  size_t width = 0;
  for (uint32_t index : rows_of_chunk) width = std::max(width, sequences[index].size());
  const int64_t rows = static_cast<int64_t>(rows_of_chunk.size());
  auto ids = torch::full({rows, static_cast<int64_t>(width)}, pad_id_, torch::kLong);
  auto mask = torch::zeros({rows, static_cast<int64_t>(width)}, torch::kLong);
  int64_t* ids_data = ids.data_ptr<int64_t>();
  int64_t* mask_data = mask.data_ptr<int64_t>();
  for (int64_t row = 0; row < rows; ++row) {
    const auto& sequence = sequences[rows_of_chunk[row]];
    std::copy(sequence.begin(), sequence.end(), ids_data + row * width);
    std::fill_n(mask_data + row * width, sequence.size(), int64_t{1});
  }
  at::Tensor device_ids = ids, device_mask = mask;
  if (!device_.is_cpu()) {
    device_ids = ids.to(device_);
    device_mask = mask.to(device_);
  }
  ASSIGN_OR_RETURN(at::Tensor forward, ForwardRewards(*model_, device_ids, device_mask));
  at::Tensor rewards = forward.to(torch::kCPU, torch::kFloat32).contiguous();
  const float* data = rewards.data_ptr<float>();
  for (int64_t row = 0; row < rows; ++row) scores[rows_of_chunk[row]] = data[row];
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> ScoringModel::ScoreEncoded(
    const std::vector<std::vector<int32_t>>& sequences) const {
  std::vector<absl::Span<const int32_t>> spans(sequences.begin(), sequences.end());
  return ScoreEncodedSpans(spans);
}

absl::StatusOr<std::vector<float>> ScoringModel::Normalize(absl::Span<const float> raw) const {
  if (!settings_.reward_stats) {
    return absl::FailedPreconditionError(
        "this model has no reward statistics (reward_stats.json): ask for raw scores");
  }
  const double mean = settings_.reward_stats->mean, std = settings_.reward_stats->std;
  std::vector<float> normalised(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    normalised[i] = static_cast<float>((raw[i] - mean) / std);
  }
  return normalised;
}

}  // namespace verdict
