// SentencePieceBackend: the one place that includes sentencepiece's headers.
//
// sentencepiece_processor.h declares `namespace absl { using std::string_view; }`, which is
// ambiguous next to Debian's Abseil (built with ABSL_OPTION_USE_STD_STRING_VIEW=0, so
// absl::string_view is a class of its own). A translation unit cannot include both, so this
// header speaks only standard types and sentencepiece_backend.cc is the only file that sees
// sentencepiece. SentencePieceTokenizer turns BackendStatus into absl::Status.
//
// Internal to core/tokenize; use SentencePieceTokenizer instead.
//
// Thread safety: a loaded SentencePieceBackend is immutable; its const methods may be called
// from any number of threads at once (SentencePieceProcessor's encode/decode are const and
// keep no per-call state in the object). Train() changes sentencepiece's process-wide log
// level and must not run concurrently with another Train().
#ifndef VERDICT_CORE_TOKENIZE_SENTENCEPIECE_BACKEND_H_
#define VERDICT_CORE_TOKENIZE_SENTENCEPIECE_BACKEND_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace verdict {
namespace sentencepiece_backend {

// A sentencepiece util::Status carried across the header boundary. `code` uses the canonical
// numbering that sentencepiece's StatusCode shares with absl::StatusCode.
struct BackendStatus {
  int code = 0;
  std::string message;

  bool ok() const { return code == 0; }
};

// One piece of an encoding: its id and the bytes [begin, end) of the input it covers. Byte
// fallback pieces of one character all begin where that character begins.
struct EncodedPiece {
  int id = 0;
  size_t begin = 0;
  size_t end = 0;
};

class SentencePieceBackend {
 public:
  ~SentencePieceBackend();

  // Loads a serialized ModelProto (the bytes of a `.model` file).
  static BackendStatus Load(std::string_view serialized_model,
                            std::unique_ptr<SentencePieceBackend>* backend);

  // Trains a model in memory on `sentences` with sentencepiece's trainer flags `flags`
  // (name, value) and returns the serialized ModelProto.
  static BackendStatus Train(const std::vector<std::string>& sentences,
                             const std::vector<std::pair<std::string, std::string>>& flags,
                             std::string* serialized_model);

  BackendStatus Encode(std::string_view text, std::vector<int>* ids) const;
  BackendStatus EncodeWithOffsets(std::string_view text, std::vector<EncodedPiece>* pieces) const;
  BackendStatus Decode(const std::vector<int>& ids, std::string* text) const;

  int piece_count() const;
  // -1 when `piece` is not in the vocabulary (sentencepiece itself answers with unk's id).
  int FindPiece(std::string_view piece) const;
  std::string IdToPiece(int id) const;
  bool IsControl(int id) const;
  bool IsUnknown(int id) const;
  // -1 where the model defines no such token.
  int unk_id() const;
  int bos_id() const;
  int eos_id() const;
  int pad_id() const;
  std::string SerializedModel() const;

 private:
  struct Impl;
  explicit SentencePieceBackend(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
};

}  // namespace sentencepiece_backend
}  // namespace verdict

#endif  // VERDICT_CORE_TOKENIZE_SENTENCEPIECE_BACKEND_H_
