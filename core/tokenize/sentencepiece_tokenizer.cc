#include "core/tokenize/sentencepiece_tokenizer.h"

#include <filesystem>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/tokenize/json_files.h"
#include "core/tokenize/sentencepiece_backend.h"
#include "core/tokenize/sentencepiece_module.h"
#include "core/tokenize/utf8.h"
#include "core/util/file_util.h"
#include "core/util/status_macros.h"

namespace verdict {
namespace {

using sentencepiece_backend::BackendStatus;
using sentencepiece_backend::EncodedPiece;
using sentencepiece_backend::SentencePieceBackend;
using sentencepiece_backend::SentencePieceModule;

std::string_view StdView(absl::string_view text) { return {text.data(), text.size()}; }

absl::Status ToAbsl(const BackendStatus& status, absl::string_view context) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.code),
                      absl::StrCat(context, ": ", status.message));
}

int32_t ValidIdOrNone(const SentencePieceBackend& backend, int id) {
  return id >= 0 && id < backend.piece_count() ? id : -1;
}

absl::StatusOr<SpecialTokens> SpecialTokensOf(const SentencePieceBackend& backend,
                                              const SentencePieceTokenizer::Options& options) {
  SpecialTokens special;
  special.unk = ValidIdOrNone(backend, backend.unk_id());
  special.bos = ValidIdOrNone(backend, backend.bos_id());
  special.eos = ValidIdOrNone(backend, backend.eos_id());
  special.pad = ValidIdOrNone(backend, backend.pad_id());
  special.cls = backend.FindPiece("[CLS]");
  special.sep = backend.FindPiece("[SEP]");
  if (options.pad_token.has_value()) {
    special.pad = backend.FindPiece(*options.pad_token);
    if (special.pad < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "pad_token \"", *options.pad_token,
          "\" is not a piece of the model (tokens added beside the model are not supported)"));
    }
  }
  special.add_bos = options.add_bos;
  special.add_eos = options.add_eos;
  if (special.add_bos && special.bos < 0) {
    return absl::InvalidArgumentError("add_bos_token is set but the model defines no BOS piece");
  }
  if (special.add_eos && special.eos < 0) {
    return absl::InvalidArgumentError("add_eos_token is set but the model defines no EOS piece");
  }
  return special;
}

// Training sentences: the lines of every text, as a sentencepiece input file would give them.
absl::StatusOr<std::vector<std::string>> TrainingSentences(
    const std::vector<std::string>& texts, int64_t max_sentences) {
  std::vector<std::string> sentences;
  for (size_t i = 0; i < texts.size(); ++i) {
    absl::Status valid = ValidateUtf8(texts[i]);
    if (!valid.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("training text ", i, ": ", valid.message()));
    }
    for (absl::string_view line : absl::StrSplit(texts[i], '\n', absl::SkipEmpty())) {
      if (absl::EndsWith(line, "\r")) line.remove_suffix(1);
      if (!line.empty()) sentences.emplace_back(line);
    }
  }
  if (sentences.empty()) return absl::InvalidArgumentError("no training text");
  if (max_sentences > 0 && sentences.size() > static_cast<size_t>(max_sentences)) {
    // Evenly spaced, so the same input always gives the same sample (sentencepiece's own
    // sampling draws at random).
    std::vector<std::string> sample;
    sample.reserve(static_cast<size_t>(max_sentences));
    const size_t total = sentences.size();
    for (int64_t i = 0; i < max_sentences; ++i) {
      sample.push_back(std::move(sentences[static_cast<size_t>(i) * total /
                                           static_cast<size_t>(max_sentences)]));
    }
    sentences = std::move(sample);
  }
  return sentences;
}

absl::Status ValidateTrainOptions(const SentencePieceTokenizer::TrainOptions& options) {
  if (options.vocab_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("vocab_size must be positive, got ", options.vocab_size));
  }
  if (!(options.character_coverage > 0.0 && options.character_coverage <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "character_coverage must be in (0, 1], got ", options.character_coverage));
  }
  if (options.max_sentence_length <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_sentence_length must be positive, got ",
                                                   options.max_sentence_length));
  }
  if (options.max_sentences < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_sentences must be >= 0, got ", options.max_sentences));
  }
  return absl::OkStatus();
}

// sentencepiece reports a vocabulary the text cannot fill as an internal error; it is the
// caller's vocab_size that is wrong.
absl::Status TrainingError(const BackendStatus& status, int32_t vocab_size) {
  const std::string& message = status.message;
  if (message.find("Vocabulary size too high") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "vocab_size ", vocab_size, " is too large for the training text (sentencepiece: \"",
        message.substr(message.find("Vocabulary size too high")),
        "\"); lower vocab_size or set hard_vocab_limit to false to accept a smaller "
        "vocabulary"));
  }
  if (message.find("Vocabulary size is smaller than required_chars") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "vocab_size ", vocab_size,
        " is too small to hold the special pieces, the 256 byte pieces and the text's "
        "characters (sentencepiece: \"",
        message.substr(message.find("Vocabulary size is smaller")), "\")"));
  }
  return ToAbsl(status, "sentencepiece training failed");
}

}  // namespace

SentencePieceTokenizer::SentencePieceTokenizer(std::unique_ptr<SentencePieceBackend> backend,
                                               const Options& options,
                                               const SpecialTokens& special)
    : backend_(std::move(backend)), options_(options), special_(special) {}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::Load(
    const std::string& model_path, const Options& options) {
  ASSIGN_OR_RETURN(std::string serialized, ReadFileToString(model_path));
  auto tokenizer = FromSerializedProto(serialized, options);
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat(model_path, ": ", tokenizer.status().message()));
  }
  return tokenizer;
}

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>>
SentencePieceTokenizer::FromSerializedProto(absl::string_view serialized_model,
                                            const Options& options) {
  ASSIGN_OR_RETURN(const SentencePieceModule* module, LoadSentencePieceModule());
  std::unique_ptr<SentencePieceBackend> backend;
  BackendStatus loaded = module->load(StdView(serialized_model), &backend);
  if (!loaded.ok()) {
    // A broken file is bad input, whatever code sentencepiece picks for it.
    return absl::InvalidArgumentError(
        absl::StrCat("not a loadable sentencepiece model: ", loaded.message));
  }
  ASSIGN_OR_RETURN(SpecialTokens special, SpecialTokensOf(*backend, options));
  return std::unique_ptr<SentencePieceTokenizer>(
      new SentencePieceTokenizer(std::move(backend), options, special));
}

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::Train(
    const std::vector<std::string>& texts, const TrainOptions& options) {
  RETURN_IF_ERROR(ValidateTrainOptions(options));
  ASSIGN_OR_RETURN(std::vector<std::string> sentences,
                   TrainingSentences(texts, options.max_sentences));
  const std::vector<std::pair<std::string, std::string>> flags = {
      {"model_type", options.model_type == ModelType::kBpe ? "bpe" : "unigram"},
      {"vocab_size", absl::StrCat(options.vocab_size)},
      {"character_coverage", absl::StrCat(options.character_coverage)},
      {"max_sentence_length", absl::StrCat(options.max_sentence_length)},
      {"hard_vocab_limit", options.hard_vocab_limit ? "true" : "false"},
      // Determinism: one thread, and every sentence used (no random sampling or shuffling).
      {"num_threads", "1"},
      {"input_sentence_size", "0"},
      {"shuffle_input_sentence", "false"},
      {"pad_id", "0"},
      {"unk_id", "1"},
      {"bos_id", "2"},
      {"eos_id", "3"},
      {"pad_piece", "<pad>"},
      {"unk_piece", "<unk>"},
      {"bos_piece", "<s>"},
      {"eos_piece", "</s>"},
      {"byte_fallback", "true"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"add_dummy_prefix", "true"},
      {"minloglevel", options.verbose ? "0" : "1"},
  };
  ASSIGN_OR_RETURN(const SentencePieceModule* module, LoadSentencePieceModule());
  std::string serialized;
  BackendStatus trained = module->train(sentences, flags, &serialized);
  if (!trained.ok()) return TrainingError(trained, options.vocab_size);
  return FromSerializedProto(serialized, options.tokenizer);
}

absl::StatusOr<std::vector<int32_t>> SentencePieceTokenizer::Encode(absl::string_view text) const {
  RETURN_IF_ERROR(ValidateUtf8(text));
  std::vector<int> ids;
  RETURN_IF_ERROR(ToAbsl(backend_->Encode(StdView(text), &ids), "sentencepiece encode"));
  return std::vector<int32_t>(ids.begin(), ids.end());
}

absl::StatusOr<SplitEncoding> SentencePieceTokenizer::EncodeConcatenated(
    absl::string_view first, absl::string_view second) const {
  RETURN_IF_ERROR(ValidateUtf8(first));
  RETURN_IF_ERROR(ValidateUtf8(second));
  const std::string joined = absl::StrCat(first, second);
  std::vector<EncodedPiece> pieces;
  RETURN_IF_ERROR(
      ToAbsl(backend_->EncodeWithOffsets(joined, &pieces), "sentencepiece encode"));
  SplitEncoding out;
  out.ids.reserve(pieces.size());
  for (const EncodedPiece& piece : pieces) {
    out.ids.push_back(piece.id);
    // A piece that starts inside `first` belongs to it, even when it runs on into `second`.
    if (piece.begin < first.size()) out.first_length = out.ids.size();
  }
  return out;
}

std::string SentencePieceTokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::vector<int> kept;
  kept.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= backend_->piece_count()) continue;
    if (id == special_.bos || id == special_.eos || id == special_.unk || id == special_.pad) {
      continue;
    }
    if (backend_->IsControl(id)) continue;
    kept.push_back(id);
  }
  std::string text;
  // With every id inside the vocabulary sentencepiece's decoder cannot fail; if it ever does,
  // the empty text is the honest answer this signature allows.
  if (!backend_->Decode(kept, &text).ok()) return "";
  return text;
}

int64_t SentencePieceTokenizer::vocab_size() const { return backend_->piece_count(); }

SequenceFrame SentencePieceTokenizer::single_sequence_frame() const {
  SequenceFrame frame;
  if (special_.add_bos) frame.prefix.push_back(special_.bos);
  if (special_.add_eos) frame.suffix.push_back(special_.eos);
  return frame;
}

std::string SentencePieceTokenizer::IdToPiece(int32_t id) const { return backend_->IdToPiece(id); }

std::string SentencePieceTokenizer::SerializedModel() const { return backend_->SerializedModel(); }

absl::Status SentencePieceTokenizer::SaveToDirectory(const std::string& dir) const {
  RETURN_IF_ERROR(CreateDirectories(dir));
  const std::filesystem::path root(dir);
  RETURN_IF_ERROR(
      WriteFileAtomically((root / kSentencePieceModelFile).string(), backend_->SerializedModel()));

  nlohmann::json special_map = nlohmann::json::object();
  const std::pair<const char*, int32_t> named[] = {
      {"bos_token", special_.bos},
      {"eos_token", special_.eos},
      {"unk_token", special_.unk},
      {"pad_token", special_.pad},
  };
  nlohmann::json config = {
      {"tokenizer_class", "LlamaTokenizer"},
      {"add_bos_token", special_.add_bos},
      {"add_eos_token", special_.add_eos},
      // legacy: encode exactly as sentencepiece does (what this class does).
      {"legacy", true},
      {"clean_up_tokenization_spaces", false},
      {"sp_model_kwargs", nlohmann::json::object()},
  };
  for (const auto& [name, id] : named) {
    if (id >= 0) {
      config[name] = backend_->IdToPiece(id);
      special_map[name] = backend_->IdToPiece(id);
    } else {
      config[name] = nullptr;
    }
  }
  if (options_.model_max_length > 0) config["model_max_length"] = options_.model_max_length;
  RETURN_IF_ERROR(WriteJsonFile((root / kTokenizerConfigFile).string(), config));
  return WriteJsonFile((root / kSpecialTokensMapFile).string(), special_map);
}

}  // namespace verdict
