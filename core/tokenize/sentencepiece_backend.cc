// libverdict_sentencepiece.so: SentencePieceBackend on sentencepiece's SentencePieceProcessor.
// Built with hidden visibility; verdict_sentencepiece_module is the only exported symbol.
#include "core/tokenize/sentencepiece_backend.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <exception>
#include <iostream>
#include <mutex>
#include <new>
#include <unordered_map>

namespace verdict {
namespace sentencepiece_backend {
namespace {

constexpr int kInternal = 13;  // absl::StatusCode::kInternal

BackendStatus FromSentencePiece(const sentencepiece::util::Status& status) {
  if (status.ok()) return {};
  return {static_cast<int>(status.code()), status.message()};
}

class VectorSentenceIterator : public sentencepiece::SentenceIterator {
 public:
  explicit VectorSentenceIterator(const std::vector<std::string>* sentences)
      : sentences_(sentences) {}

  bool done() const override { return next_ >= sentences_->size(); }
  void Next() override { ++next_; }
  const std::string& value() const override { return (*sentences_)[next_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  const std::vector<std::string>* sentences_;
  size_t next_ = 0;
};

class ProcessorBackend final : public SentencePieceBackend {
 public:
  BackendStatus Load(std::string_view serialized_model) {
    return FromSentencePiece(processor_.LoadFromSerializedProto(serialized_model));
  }

  BackendStatus Encode(std::string_view text, std::vector<int>* ids) const override {
    return FromSentencePiece(processor_.Encode(text, ids));
  }

  BackendStatus EncodeWithOffsets(std::string_view text,
                                  std::vector<EncodedPiece>* pieces) const override {
    sentencepiece::ImmutableSentencePieceText encoded;
    BackendStatus status = FromSentencePiece(processor_.Encode(text, encoded.mutable_proto()));
    if (!status.ok()) return status;
    pieces->clear();
    pieces->reserve(encoded.pieces_size());
    for (size_t i = 0; i < encoded.pieces_size(); ++i) {
      const auto piece = encoded.pieces(static_cast<int>(i));
      pieces->push_back({static_cast<int>(piece.id()), piece.begin(), piece.end()});
    }
    return {};
  }

  BackendStatus Decode(const std::vector<int>& ids, std::string* text) const override {
    return FromSentencePiece(processor_.Decode(ids, text));
  }

  int piece_count() const override { return processor_.GetPieceSize(); }

  int FindPiece(std::string_view piece) const override {
    const int id = processor_.PieceToId(piece);
    if (id < 0 || id >= piece_count() || processor_.IdToPiece(id) != piece) return -1;
    return id;
  }

  std::string IdToPiece(int id) const override {
    // The processor indexes its proto without a bounds check.
    if (id < 0 || id >= piece_count()) return "";
    return processor_.IdToPiece(id);
  }

  bool IsControl(int id) const override {
    return id >= 0 && id < piece_count() && processor_.IsControl(id);
  }

  bool IsUnknown(int id) const override {
    return id >= 0 && id < piece_count() && processor_.IsUnknown(id);
  }

  int unk_id() const override { return processor_.unk_id(); }
  int bos_id() const override { return processor_.bos_id(); }
  int eos_id() const override { return processor_.eos_id(); }
  int pad_id() const override { return processor_.pad_id(); }

  std::string SerializedModel() const override { return processor_.serialized_model_proto(); }

 private:
  sentencepiece::SentencePieceProcessor processor_;
};

// Exceptions must not unwind into the host: a parse of a hostile file or an allocation can
// throw inside sentencepiece.
BackendStatus Load(std::string_view serialized_model,
                   std::unique_ptr<SentencePieceBackend>* backend) {
  try {
    auto loaded = std::make_unique<ProcessorBackend>();
    BackendStatus status = loaded->Load(serialized_model);
    if (!status.ok()) return status;
    *backend = std::move(loaded);
    return {};
  } catch (const std::exception& e) {
    return {kInternal, std::string("sentencepiece threw while loading: ") + e.what()};
  }
}

BackendStatus Train(const std::vector<std::string>& sentences,
                    const std::vector<std::pair<std::string, std::string>>& flags,
                    std::string* serialized_model) {
  try {
    std::unordered_map<std::string, std::string> kwargs(flags.begin(), flags.end());
    VectorSentenceIterator iterator(&sentences);
    return FromSentencePiece(
        sentencepiece::SentencePieceTrainer::Train(kwargs, &iterator, serialized_model));
  } catch (const std::exception& e) {
    return {kInternal, std::string("sentencepiece threw while training: ") + e.what()};
  }
}

// Where this module's std::cout / std::cerr / std::clog is not the host's (see
// SentencePieceHost), constructs it over the host's stream buffer. That storage belongs to
// libstdc++, which constructs the host's copy instead and never touches this one.
void AdoptHostStream(std::ostream& mine, std::ostream* host) {
  if (host == nullptr || host == &mine) return;
  auto* adopted = new (&mine) std::ostream(host->rdbuf());
  adopted->flags(host->flags());
  adopted->tie(host->tie());
}

const SentencePieceModule kModule = {kModuleAbiVersion, &Load, &Train};

const SentencePieceModule* ModuleFor(const SentencePieceHost* host) {
  if (host == nullptr || host->abi_version != kModuleAbiVersion) return nullptr;
  static std::once_flag streams_adopted;
  std::call_once(streams_adopted, [host] {
    AdoptHostStream(std::cout, host->out);
    AdoptHostStream(std::cerr, host->err);
    AdoptHostStream(std::clog, host->log);
  });
  return &kModule;
}

}  // namespace
}  // namespace sentencepiece_backend
}  // namespace verdict

// The name is kModuleEntryPoint; the type is ModuleEntryPoint.
extern "C" __attribute__((visibility("default")))
const verdict::sentencepiece_backend::SentencePieceModule* verdict_sentencepiece_module(
    const verdict::sentencepiece_backend::SentencePieceHost* host) {
  return verdict::sentencepiece_backend::ModuleFor(host);
}
