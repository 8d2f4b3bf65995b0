#include "core/tokenize/sentencepiece_backend.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <unordered_map>

namespace verdict {
namespace sentencepiece_backend {
namespace {

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

}  // namespace

struct SentencePieceBackend::Impl {
  sentencepiece::SentencePieceProcessor processor;
};

SentencePieceBackend::SentencePieceBackend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SentencePieceBackend::~SentencePieceBackend() = default;

BackendStatus SentencePieceBackend::Load(std::string_view serialized_model,
                                         std::unique_ptr<SentencePieceBackend>* backend) {
  auto impl = std::make_unique<Impl>();
  BackendStatus status =
      FromSentencePiece(impl->processor.LoadFromSerializedProto(serialized_model));
  if (!status.ok()) return status;
  backend->reset(new SentencePieceBackend(std::move(impl)));
  return {};
}

BackendStatus SentencePieceBackend::Train(
    const std::vector<std::string>& sentences,
    const std::vector<std::pair<std::string, std::string>>& flags,
    std::string* serialized_model) {
  std::unordered_map<std::string, std::string> kwargs(flags.begin(), flags.end());
  VectorSentenceIterator iterator(&sentences);
  return FromSentencePiece(
      sentencepiece::SentencePieceTrainer::Train(kwargs, &iterator, serialized_model));
}

BackendStatus SentencePieceBackend::Encode(std::string_view text, std::vector<int>* ids) const {
  return FromSentencePiece(impl_->processor.Encode(text, ids));
}

BackendStatus SentencePieceBackend::EncodeWithOffsets(std::string_view text,
                                                      std::vector<EncodedPiece>* pieces) const {
  sentencepiece::ImmutableSentencePieceText encoded;
  BackendStatus status =
      FromSentencePiece(impl_->processor.Encode(text, encoded.mutable_proto()));
  if (!status.ok()) return status;
  pieces->clear();
  pieces->reserve(encoded.pieces_size());
  for (size_t i = 0; i < encoded.pieces_size(); ++i) {
    const auto piece = encoded.pieces(static_cast<int>(i));
    pieces->push_back({static_cast<int>(piece.id()), piece.begin(), piece.end()});
  }
  return {};
}

BackendStatus SentencePieceBackend::Decode(const std::vector<int>& ids, std::string* text) const {
  return FromSentencePiece(impl_->processor.Decode(ids, text));
}

int SentencePieceBackend::piece_count() const { return impl_->processor.GetPieceSize(); }

int SentencePieceBackend::FindPiece(std::string_view piece) const {
  const int id = impl_->processor.PieceToId(piece);
  if (id < 0 || id >= piece_count() || impl_->processor.IdToPiece(id) != piece) return -1;
  return id;
}

std::string SentencePieceBackend::IdToPiece(int id) const {
  // The processor indexes its proto without a bounds check.
  if (id < 0 || id >= piece_count()) return "";
  return impl_->processor.IdToPiece(id);
}

bool SentencePieceBackend::IsControl(int id) const {
  return id >= 0 && id < piece_count() && impl_->processor.IsControl(id);
}

bool SentencePieceBackend::IsUnknown(int id) const {
  return id >= 0 && id < piece_count() && impl_->processor.IsUnknown(id);
}

int SentencePieceBackend::unk_id() const { return impl_->processor.unk_id(); }
int SentencePieceBackend::bos_id() const { return impl_->processor.bos_id(); }
int SentencePieceBackend::eos_id() const { return impl_->processor.eos_id(); }
int SentencePieceBackend::pad_id() const { return impl_->processor.pad_id(); }

std::string SentencePieceBackend::SerializedModel() const {
  return impl_->processor.serialized_model_proto();
}

}  // namespace sentencepiece_backend
}  // namespace verdict
