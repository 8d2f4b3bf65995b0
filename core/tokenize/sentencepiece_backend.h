// SentencePieceBackend: the interface between SentencePieceTokenizer and the sentencepiece
// library, which lives in a module of its own (libverdict_sentencepiece.so) loaded at run time.
//
// Why a module: Debian's libsentencepiece.so bundles its own protobuf-lite (3.14) and exports
// those symbols, while LibTorch and gRPC need the system libprotobuf (3.21). In one symbol scope
// whichever loads first takes over the other's protobuf symbols, and the process crashes in
// protobuf's static initialisation or refuses sentencepiece's models. So sentencepiece_backend.cc
// is built as a MODULE that alone links sentencepiece, exports one symbol (kModuleEntryPoint)
// and is dlopen()ed with RTLD_LOCAL | RTLD_DEEPBIND by sentencepiece_module.cc: LOCAL keeps
// sentencepiece's protobuf out of the process's global scope, DEEPBIND makes sentencepiece
// resolve its own protobuf before the process's.
//
// Under AddressSanitizer and ThreadSanitizer (VERDICT_SANITIZE builds, scripts/sanitize.sh):
// their dlopen interceptor refuses RTLD_DEEPBIND outright, because a DEEPBIND library binds
// malloc and operator new to libc and libstdc++ instead of the runtime's, and then frees blocks
// the runtime allocated or hands it blocks it never saw. Measured on this module: plain dlopen
// dies with "RTLD_DEEPBIND flag which is incompatible with sanitizer runtime"; calling libc's
// dlopen past the interceptor loads it, and the first encode then fails with ASan's
// "alloc-dealloc-mismatch (malloc vs operator delete)" (sentencepiece's operator new went to
// libstdc++, whose malloc is the runtime's, and the host freed with the runtime's delete). So a
// sanitizer build does both halves of what DEEPBIND broke, and keeps DEEPBIND for protobuf:
//   1. sentencepiece_module.cc obtains libc's dlopen with dlsym(RTLD_NEXT, "dlopen") and loads
//      the module with the same flags as always;
//   2. the module (built uninstrumented, with sentencepiece_sanitizer_allocator.cc) defines and
//      exports malloc, free, the rest of the malloc family and every operator new/delete,
//      forwarding each to the runtime's. DEEPBIND puts the module first in its own lookup
//      scope, so the module, sentencepiece and its bundled protobuf all bind to these, and the
//      whole process allocates from the one heap the sanitizer tracks, with the right kind
//      recorded for each block. Strings and vectors then cross the boundary as in a normal
//      build, and sentencepiece's tests run under the sanitizers instead of being skipped.
// Code inside the module is not instrumented (its reads and writes are not checked, and TSan
// does not see sentencepiece's own locks); the host side of every call is. Rejected: dlmopen()
// into a new namespace (a second libc and libstdc++, so every string and vector crossing the
// boundary would need a C interface and copies in both directions, and thread-local state
// and sentencepiece's training threads in a second libc are fragile); linking sentencepiece
// statically with its protobuf hidden (Debian ships no libsentencepiece.a). A normal build
// compiles none of this: the module exports its entry point only and is loaded by dlopen.
//
// Why std types only: sentencepiece_processor.h declares `namespace absl { using
// std::string_view; }`, which is ambiguous next to Debian's Abseil (absl::string_view is a class
// of its own there), so no translation unit can include both. Both sides use the same compiler
// and libstdc++, so std::string, std::vector and std::unique_ptr cross the boundary as they are;
// a SentencePieceBackend made by the module is destroyed through its virtual destructor, i.e. by
// the module's code.
//
// Internal to core/tokenize; use SentencePieceTokenizer instead.
//
// Thread safety: a loaded SentencePieceBackend is immutable; its const methods may be called
// from any number of threads at once (SentencePieceProcessor's encode/decode are const and
// keep no per-call state in the object). SentencePieceModule::train changes sentencepiece's
// process-wide log level and must not run concurrently with another training.
#ifndef VERDICT_CORE_TOKENIZE_SENTENCEPIECE_BACKEND_H_
#define VERDICT_CORE_TOKENIZE_SENTENCEPIECE_BACKEND_H_

#include <cstddef>
#include <iosfwd>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace verdict {
namespace sentencepiece_backend {

// A sentencepiece util::Status carried across the module boundary. `code` uses the canonical
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

// A loaded sentencepiece model.
class SentencePieceBackend {
 public:
  virtual ~SentencePieceBackend() = default;

  virtual BackendStatus Encode(std::string_view text, std::vector<int>* ids) const = 0;
  virtual BackendStatus EncodeWithOffsets(std::string_view text,
                                          std::vector<EncodedPiece>* pieces) const = 0;
  virtual BackendStatus Decode(const std::vector<int>& ids, std::string* text) const = 0;

  virtual int piece_count() const = 0;
  // -1 when `piece` is not in the vocabulary (sentencepiece itself answers with unk's id).
  virtual int FindPiece(std::string_view piece) const = 0;
  // Empty for an id outside the vocabulary.
  virtual std::string IdToPiece(int id) const = 0;
  virtual bool IsControl(int id) const = 0;
  virtual bool IsUnknown(int id) const = 0;
  // -1 where the model defines no such token.
  virtual int unk_id() const = 0;
  virtual int bos_id() const = 0;
  virtual int eos_id() const = 0;
  virtual int pad_id() const = 0;
  virtual std::string SerializedModel() const = 0;
};

// Raised whenever the layout of anything in this header changes, so that a stale module left
// next to a newer binary is refused instead of misread.
inline constexpr int kModuleAbiVersion = 1;

// What the module offers: its static entry points.
struct SentencePieceModule {
  int abi_version = kModuleAbiVersion;

  // Loads a serialized ModelProto (the bytes of a `.model` file) into `*backend`.
  BackendStatus (*load)(std::string_view serialized_model,
                        std::unique_ptr<SentencePieceBackend>* backend) = nullptr;

  // Trains a model in memory on `sentences` with sentencepiece's trainer flags `flags`
  // (name, value) and returns the serialized ModelProto in `*serialized_model`.
  BackendStatus (*train)(const std::vector<std::string>& sentences,
                         const std::vector<std::pair<std::string, std::string>>& flags,
                         std::string* serialized_model) = nullptr;
};

// What the host tells the module when it first asks for the module's table.
//
// The standard streams are here because of DEEPBIND: an executable that uses std::cerr
// usually holds its own copy of the object (a copy relocation), and that copy is the one
// libstdc++ constructs. A DEEPBIND module (and sentencepiece's logging inside it) would bind
// to libstdc++'s never-constructed original and crash on its first log line, so the module
// builds its view of each stream on the host's stream buffer.
struct SentencePieceHost {
  int abi_version = kModuleAbiVersion;
  std::ostream* out = nullptr;  // The host's std::cout.
  std::ostream* err = nullptr;  // The host's std::cerr.
  std::ostream* log = nullptr;  // The host's std::clog.
};

// The one symbol the module exports:
//   extern "C" const SentencePieceModule* verdict_sentencepiece_module(const SentencePieceHost*);
// It returns nullptr when `host->abi_version` is not the module's kModuleAbiVersion.
inline constexpr char kModuleEntryPoint[] = "verdict_sentencepiece_module";
using ModuleEntryPoint = const SentencePieceModule* (*)(const SentencePieceHost* host);

}  // namespace sentencepiece_backend
}  // namespace verdict

#endif  // VERDICT_CORE_TOKENIZE_SENTENCEPIECE_BACKEND_H_
