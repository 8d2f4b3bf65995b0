// Fuzzes the text side of the three tokenizers (core/tokenize) with the real tokenizers in
// tests/data: SentencePiece (llama2), WordPiece (bert-base-uncased) and tokenizer.json
// (qwen3). Any bytes, valid UTF-8 or not: each tokenizer must answer with ids or an error, and
// ids must decode. The input is split at its first NUL into the two parts of a pair.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "core/tokenize/sentencepiece_tokenizer.h"
#include "core/tokenize/tokenizer_json.h"
#include "core/tokenize/wordpiece_tokenizer.h"

namespace {

template <typename T>
std::unique_ptr<T> OrDie(absl::StatusOr<std::unique_ptr<T>> loaded) {
  if (!loaded.ok()) {
    fprintf(stderr, "%s\n", std::string(loaded.status().message()).c_str());
    abort();
  }
  return std::move(*loaded);
}

const std::vector<std::unique_ptr<verdict::Tokenizer>>& Tokenizers() {
  static const auto* const tokenizers = [] {
    auto* all = new std::vector<std::unique_ptr<verdict::Tokenizer>>;
    const std::string dir = VERDICT_TESTDATA_DIR "/tokenizers/";
    all->push_back(OrDie(verdict::SentencePieceTokenizer::Load(dir + "llama2/tokenizer.model")));
    all->push_back(OrDie(verdict::WordPieceTokenizer::Load(dir + "bert-base-uncased/vocab.txt")));
    all->push_back(OrDie(verdict::TokenizerJson::LoadFromDirectory(dir + "qwen3")));
    return all;
  }();
  return *tokenizers;
}

}  // namespace

// Loads the tokenizers before the first input: loading qwen3's tokenizer.json under ASan and
// coverage instrumentation took more than libFuzzer's -timeout=30 on a loaded 2-core machine,
// and the per-input timeout counts the first call (found: "libFuzzer: timeout" on the first
// seed, inside TokenizerJson::LoadFromDirectory).
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  (void)Tokenizers();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  for (const auto& tokenizer : Tokenizers()) {
    auto ids = tokenizer->Encode(input);
    if (ids.ok()) {
      for (int32_t id : *ids) {
        if (id < 0 || id >= tokenizer->vocab_size()) abort();
      }
      (void)tokenizer->Decode(*ids);
    }
    if (nul != absl::string_view::npos) {
      (void)tokenizer->EncodeConcatenated(input.substr(0, nul), input.substr(nul + 1));
    }
  }
  return 0;
}
