#include "core/tokenize/tokenizer_json.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <queue>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/tokenize/json_files.h"
#include "core/tokenize/utf8.h"
#include "core/util/file_util.h"
#include "core/util/status_macros.h"

namespace verdict {
namespace {

using Json = nlohmann::json;


// GPT-2's pre-tokenizer regex, which the ByteLevel pre-tokenizer runs when use_regex is true.
constexpr char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// GPT-2's bytes_to_unicode(): every byte as a printable character, so that BPE never sees a
// space or a control character. Printable Latin-1 bytes stand for themselves; the other 68
// bytes are mapped, in order, to U+0100 onwards.
struct ByteAlphabet {
  std::string byte_to_utf8[256];
  absl::flat_hash_map<char32_t, uint8_t> char_to_byte;
};

const ByteAlphabet& Alphabet() {
  static const ByteAlphabet* alphabet = [] {
    auto* result = new ByteAlphabet;
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable =
          (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const char32_t c = printable ? static_cast<char32_t>(b) : next++;
      AppendUtf8(c, &result->byte_to_utf8[b]);
      result->char_to_byte[c] = static_cast<uint8_t>(b);
    }
    return result;
  }();
  return *alphabet;
}

// Rust's char::is_whitespace (the White_Space property), which added tokens' lstrip / rstrip
// use.
bool IsWhiteSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

bool IsWordChar(char32_t c) {
  if (c == U'_') return true;
  const utf8proc_category_t category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return (category >= UTF8PROC_CATEGORY_LU && category <= UTF8PROC_CATEGORY_LO) ||
         (category >= UTF8PROC_CATEGORY_ND && category <= UTF8PROC_CATEGORY_NO);
}

// The code point that starts at `text[i]` (valid UTF-8), and its length in bytes.
char32_t CodePointAt(absl::string_view text, size_t i, size_t* length) {
  utf8proc_int32_t c = 0;
  utf8proc_ssize_t n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + i),
                                        static_cast<utf8proc_ssize_t>(text.size() - i), &c);
  *length = n > 0 ? static_cast<size_t>(n) : 1;
  return n > 0 ? static_cast<char32_t>(c) : 0xFFFD;
}

// The start of the code point that ends at `text[end]` (exclusive).
size_t PreviousCodePointStart(absl::string_view text, size_t end) {
  size_t i = end - 1;
  while (i > 0 && (static_cast<uint8_t>(text[i]) & 0xC0) == 0x80) --i;
  return i;
}

// Rust's String::from_utf8_lossy: each maximal invalid subsequence becomes one U+FFFD.
std::string Utf8Lossy(absl::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  const auto at = [&](size_t k) { return static_cast<uint8_t>(bytes[k]); };
  while (i < bytes.size()) {
    const uint8_t lead = at(i);
    if (lead < 0x80) {
      out.push_back(static_cast<char>(lead));
      ++i;
      continue;
    }
    size_t need = 0;
    uint8_t low = 0x80, high = 0xBF;  // range of the second byte
    if (lead >= 0xC2 && lead <= 0xDF) {
      need = 1;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      need = 2;
      if (lead == 0xE0) low = 0xA0;
      if (lead == 0xED) high = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      need = 3;
      if (lead == 0xF0) low = 0x90;
      if (lead == 0xF4) high = 0x8F;
    }
    size_t j = i + 1;
    bool complete = need > 0;
    for (size_t k = 0; k < need; ++k, ++j) {
      const uint8_t lo = k == 0 ? low : 0x80, hi = k == 0 ? high : 0xBF;
      if (j >= bytes.size() || at(j) < lo || at(j) > hi) {
        complete = false;
        break;
      }
    }
    if (complete) {
      out.append(bytes.data() + i, j - i);
    } else {
      out.append("\xEF\xBF\xBD");
    }
    i = j;
  }
  return out;
}

enum class NormalForm { kNfc, kNfd, kNfkc, kNfkd };

std::string Normalize(absl::string_view text, const std::vector<NormalForm>& forms) {
  std::string result(text);
  if (forms.empty()) return result;
  bool ascii = true;
  for (char c : text) ascii = ascii && static_cast<uint8_t>(c) < 0x80;
  if (ascii) return result;  // every normal form of ASCII is itself
  for (NormalForm form : forms) {
    int options = UTF8PROC_STABLE;
    switch (form) {
      case NormalForm::kNfc:
        options |= UTF8PROC_COMPOSE;
        break;
      case NormalForm::kNfd:
        options |= UTF8PROC_DECOMPOSE;
        break;
      case NormalForm::kNfkc:
        options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
        break;
      case NormalForm::kNfkd:
        options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
        break;
    }
    utf8proc_uint8_t* mapped = nullptr;
    const utf8proc_ssize_t length =
        utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(result.data()),
                     static_cast<utf8proc_ssize_t>(result.size()), &mapped,
                     static_cast<utf8proc_option_t>(options));
    // The input is valid UTF-8, so utf8proc does not fail; keep the text if it ever did.
    if (length >= 0) result.assign(reinterpret_cast<const char*>(mapped), length);
    std::free(mapped);
  }
  return result;
}

// A compiled PCRE2 pattern in UTF + UCP mode (Unicode classes for \s, \w, \d and \p{..}),
// JIT-compiled where PCRE2 supports it.
class Regex {
 public:
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(const std::string& pattern, bool literal) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    uint32_t options = PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK;
    if (literal) options |= PCRE2_LITERAL;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     options, &error, &offset, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof(message));
      return absl::InvalidArgumentError(absl::StrCat("pre-tokenizer regex \"", pattern,
                                                     "\" does not compile at offset ", offset, ": ",
                                                     reinterpret_cast<char*>(message)));
    }
    auto regex = std::unique_ptr<Regex>(new Regex(code));
    regex->jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    return regex;
  }

  ~Regex() { pcre2_code_free(code_); }

  // The [begin, end) of every non-empty match in `text` (valid UTF-8), left to right.
  absl::Status FindAll(absl::string_view text,
                       std::vector<std::pair<size_t, size_t>>* matches) const {
    pcre2_match_data* data = pcre2_match_data_create_from_pattern(code_, nullptr);
    if (data == nullptr) return absl::ResourceExhaustedError("pcre2: out of memory");
    const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t start = 0;
    absl::Status status;
    while (start < text.size()) {
      int rc = pcre2_match(code_, subject, text.size(), start, PCRE2_NO_UTF_CHECK, data, nullptr);
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
        // A long run of whitespace can outgrow the JIT's stack; the interpreter has none.
        rc = pcre2_match(code_, subject, text.size(), start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                         data, nullptr);
      }
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(rc, message, sizeof(message));
        status = absl::InternalError(
            absl::StrCat("pre-tokenizer regex failed: ", reinterpret_cast<char*>(message)));
        break;
      }
      const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
      const size_t begin = ovector[0], end = ovector[1];
      if (end > begin) {
        matches->emplace_back(begin, end);
        start = end;
      } else {
        size_t length = 0;
        CodePointAt(text, begin, &length);
        start = begin + length;
      }
    }
    pcre2_match_data_free(data);
    return status;
  }

 private:
  explicit Regex(pcre2_code* code) : code_(code) {}
  pcre2_code* code_;
  bool jit_ = false;
};

// A piece of one normalised segment: its text and where it starts in the segment.
struct Piece {
  std::string text;
  size_t offset = 0;
  size_t prefix = 0;  // bytes prepended that are not in the segment (add_prefix_space)
};

struct PreTokenizerStep {
  enum class Kind { kSplit, kByteLevel } kind = Kind::kSplit;
  std::unique_ptr<Regex> regex;   // kSplit, or kByteLevel with use_regex
  bool remove_matches = false;    // kSplit "Removed"; otherwise "Isolated"
  bool add_prefix_space = false;  // kByteLevel
};

struct AddedToken {
  int32_t id = -1;
  std::string content;  // normalised when `normalized`
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool special = false;
};

// A part of a text after added tokens were found: an added token (index into added_) or the
// text between two.
struct Part {
  size_t begin = 0, end = 0;
  int added = -1;
};

absl::Status Unsupported(absl::string_view origin, absl::string_view what,
                         absl::string_view detail) {
  return absl::UnimplementedError(absl::StrCat(origin, ": unsupported ", what, " ", detail,
                                               " (verdict supports byte-level BPE tokenizers)"));
}

std::string TypeOf(const Json& component) {
  auto it = component.find("type");
  if (it == component.end() || !it->is_string()) return "(without a type)";
  return it->get<std::string>();
}

bool FlagOf(const Json& object, const char* field, bool fallback) {
  auto it = object.find(field);
  return it != object.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

}  // namespace

class TokenizerJson::Impl {
 public:
  absl::Status Load(absl::string_view json_text, absl::string_view config_text,
                    absl::string_view special_tokens_text, absl::string_view origin);

  struct Encoded {
    std::vector<int32_t> ids;
    // Per token: the segment (Part of the raw text) it came from and where it starts in that
    // segment's normalised text.
    std::vector<std::pair<size_t, size_t>> where;
    std::vector<Part> segments;
    std::vector<std::string> normalized;  // per segment; empty for added-token segments
  };
  absl::StatusOr<Encoded> EncodeDetailed(absl::string_view text) const;
  std::vector<int32_t> WithSpecialTokens(std::vector<int32_t> ids) const {
    std::vector<int32_t> out = prefix_;
    out.insert(out.end(), ids.begin(), ids.end());
    out.insert(out.end(), suffix_.begin(), suffix_.end());
    return out;
  }
  SequenceFrame single_sequence_frame() const { return SequenceFrame{prefix_, suffix_}; }
  std::string Decode(const std::vector<int32_t>& ids, bool skip_special) const;
  std::string IdToToken(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size()) return "";
    return id_to_token_[id];
  }
  std::string Normalized(absl::string_view text) const { return Normalize(text, normal_forms_); }
  int64_t vocab_size() const { return static_cast<int64_t>(id_to_token_.size()); }
  int32_t TokenToId(absl::string_view token) const {
    auto it = token_to_id_.find(token);
    return it == token_to_id_.end() ? -1 : it->second;
  }

  std::string json_text_;
  Json config_;              // tokenizer_config.json; null when there was none
  Json special_tokens_map_;  // special_tokens_map.json; null when there was none
  SpecialTokens special_;

 private:
  absl::Status LoadNormalizer(const Json& normalizer, absl::string_view origin);
  absl::Status LoadPreTokenizer(const Json& pre_tokenizer, absl::string_view origin);
  absl::Status LoadModel(const Json& model, absl::string_view origin);
  absl::Status LoadAddedTokens(const Json& added, absl::string_view origin);
  absl::Status LoadPostProcessor(const Json& processor, absl::string_view origin);
  absl::Status LoadDecoder(const Json& decoder, absl::string_view origin);
  absl::Status LoadSpecialTokens(const Json& config, const Json& special_tokens_map,
                                 const Json& model);

  // Splits text[begin, end) around the added tokens whose `normalized` flag is `normalized`.
  std::vector<Part> SplitOnAddedTokens(absl::string_view text, bool normalized) const;
  absl::Status PreTokenize(absl::string_view text, std::vector<Piece>* pieces) const;
  // BPE of one pre-token (raw bytes); appends ids and each token's byte offset in `word`.
  void Bpe(absl::string_view word, std::vector<int32_t>* ids, std::vector<size_t>* offsets) const;

  std::vector<NormalForm> normal_forms_;
  std::vector<PreTokenizerStep> pre_tokenizer_;
  absl::flat_hash_map<std::string, int32_t> vocab_;
  absl::flat_hash_map<std::string, int32_t> token_to_id_;  // vocab and added tokens
  std::vector<std::string> id_to_token_;
  // (left id << 32 | right id) -> (rank, merged id)
  absl::flat_hash_map<uint64_t, std::pair<int32_t, int32_t>> merges_;
  int32_t byte_ids_[256];
  bool ignore_merges_ = false;
  std::vector<AddedToken> added_;
  std::vector<int> added_by_first_byte_[256];  // indices into added_
  std::vector<bool> is_special_;               // by id
  std::vector<int32_t> prefix_, suffix_;       // the post-processor's single template
};

absl::Status TokenizerJson::Impl::Load(absl::string_view json_text, absl::string_view config_text,
                                       absl::string_view special_tokens_text,
                                       absl::string_view origin) {
  Json root = Json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, " is not a JSON object"));
  }
  json_text_ = std::string(json_text);
  Json config = Json::object();
  if (!config_text.empty()) {
    config = Json::parse(config_text, nullptr, false);
    if (config.is_discarded() || !config.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(kTokenizerConfigFile, " is not a JSON object"));
    }
    config_ = config;
  }
  Json special_tokens_map = Json::object();
  if (!special_tokens_text.empty()) {
    special_tokens_map = Json::parse(special_tokens_text, nullptr, false);
    if (special_tokens_map.is_discarded() || !special_tokens_map.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(kSpecialTokensMapFile, " is not a JSON object"));
    }
    special_tokens_map_ = special_tokens_map;
  }
  if (!root.contains("model") || !root["model"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, " has no \"model\" object"));
  }
  RETURN_IF_ERROR(LoadModel(root["model"], origin));
  RETURN_IF_ERROR(LoadNormalizer(root.value("normalizer", Json()), origin));
  RETURN_IF_ERROR(LoadPreTokenizer(root.value("pre_tokenizer", Json()), origin));
  RETURN_IF_ERROR(LoadAddedTokens(root.value("added_tokens", Json::array()), origin));
  RETURN_IF_ERROR(LoadPostProcessor(root.value("post_processor", Json()), origin));
  RETURN_IF_ERROR(LoadDecoder(root.value("decoder", Json()), origin));
  return LoadSpecialTokens(config, special_tokens_map, root["model"]);
}

absl::Status TokenizerJson::Impl::LoadNormalizer(const Json& normalizer, absl::string_view origin) {
  if (normalizer.is_null()) return absl::OkStatus();
  const std::string type = TypeOf(normalizer);
  if (type == "Sequence") {
    auto list = normalizer.find("normalizers");
    if (list == normalizer.end() || !list->is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": normalizer Sequence has no \"normalizers\" list"));
    }
    for (const Json& item : *list) RETURN_IF_ERROR(LoadNormalizer(item, origin));
    return absl::OkStatus();
  }
  if (type == "NFC") {
    normal_forms_.push_back(NormalForm::kNfc);
  } else if (type == "NFD") {
    normal_forms_.push_back(NormalForm::kNfd);
  } else if (type == "NFKC") {
    normal_forms_.push_back(NormalForm::kNfkc);
  } else if (type == "NFKD") {
    normal_forms_.push_back(NormalForm::kNfkd);
  } else {
    return Unsupported(origin, "normalizer", type);
  }
  return absl::OkStatus();
}

absl::Status TokenizerJson::Impl::LoadPreTokenizer(const Json& pre_tokenizer,
                                                   absl::string_view origin) {
  if (pre_tokenizer.is_null()) return absl::OkStatus();
  const std::string type = TypeOf(pre_tokenizer);
  if (type == "Sequence") {
    auto list = pre_tokenizer.find("pretokenizers");
    if (list == pre_tokenizer.end() || !list->is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": pre_tokenizer Sequence has no \"pretokenizers\" list"));
    }
    for (const Json& item : *list) RETURN_IF_ERROR(LoadPreTokenizer(item, origin));
    return absl::OkStatus();
  }
  PreTokenizerStep step;
  if (type == "Split") {
    step.kind = PreTokenizerStep::Kind::kSplit;
    const Json pattern = pre_tokenizer.value("pattern", Json());
    bool literal = false;
    std::string text;
    if (pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string()) {
      text = pattern["Regex"].get<std::string>();
    } else if (pattern.is_object() && pattern.contains("String") && pattern["String"].is_string()) {
      text = pattern["String"].get<std::string>();
      literal = true;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          origin, ": pre_tokenizer Split needs a pattern {\"Regex\": ...} or {\"String\": ...}"));
    }
    if (FlagOf(pre_tokenizer, "invert", false)) {
      return Unsupported(origin, "pre_tokenizer", "Split with invert: true");
    }
    const std::string behavior = pre_tokenizer.value("behavior", std::string("Isolated"));
    if (behavior == "Removed") {
      step.remove_matches = true;
    } else if (behavior != "Isolated") {
      return Unsupported(origin, "pre_tokenizer", absl::StrCat("Split behavior ", behavior));
    }
    ASSIGN_OR_RETURN(step.regex, Regex::Compile(text, literal));
  } else if (type == "ByteLevel") {
    step.kind = PreTokenizerStep::Kind::kByteLevel;
    step.add_prefix_space = FlagOf(pre_tokenizer, "add_prefix_space", true);
    if (FlagOf(pre_tokenizer, "use_regex", true)) {
      ASSIGN_OR_RETURN(step.regex, Regex::Compile(kGpt2Pattern, false));
    }
  } else {
    return Unsupported(origin, "pre_tokenizer", type);
  }
  pre_tokenizer_.push_back(std::move(step));
  return absl::OkStatus();
}

absl::Status TokenizerJson::Impl::LoadModel(const Json& model, absl::string_view origin) {
  const std::string type = TypeOf(model);
  // A BPE model may leave out "type" in old files; it is the only model with merges.
  if (type != "BPE" && !(type == "(without a type)" && model.contains("merges"))) {
    return Unsupported(origin, "model", type);
  }
  if (FlagOf(model, "byte_fallback", false)) {
    return Unsupported(origin, "model", "BPE with byte_fallback (SentencePiece-style BPE)");
  }
  auto dropout = model.find("dropout");
  if (dropout != model.end() && !dropout->is_null() &&
      !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    return Unsupported(origin, "model", "BPE with dropout");
  }
  for (const char* field : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = model.find(field);
    if (it != model.end() && !it->is_null() &&
        !(it->is_string() && it->get<std::string>().empty())) {
      return Unsupported(origin, "model", absl::StrCat("BPE with a ", field));
    }
  }
  ignore_merges_ = FlagOf(model, "ignore_merges", false);
  auto vocab = model.find("vocab");
  if (vocab == model.end() || !vocab->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": the BPE model has no vocab object"));
  }
  vocab_.reserve(vocab->size());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() > (1 << 30)) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": vocab entry \"", it.key(), "\" has no valid id"));
    }
    const int32_t id = it.value().get<int32_t>();
    vocab_[it.key()] = id;
    if (static_cast<size_t>(id) >= id_to_token_.size()) id_to_token_.resize(id + 1);
    id_to_token_[id] = it.key();
  }
  token_to_id_ = vocab_;
  const ByteAlphabet& alphabet = Alphabet();
  for (int b = 0; b < 256; ++b) {
    auto it = vocab_.find(alphabet.byte_to_utf8[b]);
    if (it == vocab_.end()) {
      return Unsupported(origin, "model",
                         absl::StrCat("BPE whose vocabulary lacks the byte-level character for "
                                      "byte ",
                                      b, " (not a byte-level BPE)"));
    }
    byte_ids_[b] = it->second;
  }
  auto merges = model.find("merges");
  if (merges == model.end() || !merges->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": the BPE model has no merges list"));
  }
  merges_.reserve(merges->size());
  int32_t rank = 0;
  for (const Json& merge : *merges) {
    std::string left, right;
    if (merge.is_string()) {
      const std::string text = merge.get<std::string>();
      const size_t space = text.find(' ');
      if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat(origin, ": merge ", rank, " \"", text, "\" is not two tokens"));
      }
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
               merge[1].is_string()) {
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": merge ", rank, " is neither \"a b\" nor [\"a\", \"b\"]"));
    }
    const int32_t left_id = TokenToId(left), right_id = TokenToId(right),
                  merged_id = TokenToId(left + right);
    if (left_id < 0 || right_id < 0 || merged_id < 0) {
      return absl::InvalidArgumentError(absl::StrCat(origin, ": merge ", rank, " (\"", left,
                                                     "\", \"", right,
                                                     "\") uses a token not in the vocab"));
    }
    const uint64_t key = (static_cast<uint64_t>(left_id) << 32) | static_cast<uint32_t>(right_id);
    merges_.emplace(key, std::make_pair(rank, merged_id));  // the first (best) rank wins
    ++rank;
  }
  return absl::OkStatus();
}

absl::Status TokenizerJson::Impl::LoadAddedTokens(const Json& added, absl::string_view origin) {
  if (!added.is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": added_tokens is not a list"));
  }
  for (const Json& item : added) {
    if (!item.is_object() || !item.contains("id") || !item["id"].is_number_integer() ||
        !item.contains("content") || !item["content"].is_string() ||
        item["id"].get<int64_t>() < 0 || item["id"].get<int64_t>() > (1 << 30)) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": an added token needs an integer \"id\" and a \"content\""));
    }
    AddedToken token;
    token.id = item["id"].get<int32_t>();
    token.content = item["content"].get<std::string>();
    RETURN_IF_ERROR(ValidateUtf8(token.content));
    token.single_word = FlagOf(item, "single_word", false);
    token.lstrip = FlagOf(item, "lstrip", false);
    token.rstrip = FlagOf(item, "rstrip", false);
    token.normalized = FlagOf(item, "normalized", false);
    token.special = FlagOf(item, "special", false);
    if (static_cast<size_t>(token.id) >= id_to_token_.size()) id_to_token_.resize(token.id + 1);
    id_to_token_[token.id] = token.content;
    token_to_id_[token.content] = token.id;
    if (static_cast<size_t>(token.id) >= is_special_.size()) is_special_.resize(token.id + 1);
    is_special_[token.id] = token.special;
    if (token.normalized) token.content = Normalize(token.content, normal_forms_);
    if (!token.content.empty()) added_.push_back(std::move(token));
  }
  is_special_.resize(id_to_token_.size());
  for (size_t k = 0; k < added_.size(); ++k) {
    added_by_first_byte_[static_cast<uint8_t>(added_[k].content[0])].push_back(k);
  }
  return absl::OkStatus();
}

absl::Status TokenizerJson::Impl::LoadPostProcessor(const Json& processor,
                                                    absl::string_view origin) {
  if (processor.is_null()) return absl::OkStatus();
  const std::string type = TypeOf(processor);
  if (type == "Sequence") {
    auto list = processor.find("processors");
    if (list == processor.end() || !list->is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": post_processor Sequence has no \"processors\" list"));
    }
    for (const Json& item : *list) RETURN_IF_ERROR(LoadPostProcessor(item, origin));
    return absl::OkStatus();
  }
  std::vector<int32_t> prefix, suffix;
  if (type == "ByteLevel") {
    return absl::OkStatus();  // only adjusts offsets
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    for (const char* field : {"cls", "sep"}) {
      const Json pair = processor.value(field, Json());
      if (!pair.is_array() || pair.size() != 2 || !pair[1].is_number_integer()) {
        return absl::InvalidArgumentError(
            absl::StrCat(origin, ": post_processor ", type, " needs \"", field, "\": [token, id]"));
      }
      (field[0] == 'c' ? prefix : suffix).push_back(pair[1].get<int32_t>());
    }
    special_.cls = prefix[0];
    special_.sep = suffix[0];
  } else if (type == "TemplateProcessing") {
    const Json single = processor.value("single", Json());
    const Json specials = processor.value("special_tokens", Json::object());
    if (!single.is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin, ": post_processor TemplateProcessing has no \"single\" list"));
    }
    bool seen_sequence = false;
    for (const Json& piece : single) {
      if (piece.contains("Sequence")) {
        if (seen_sequence || piece["Sequence"].value("id", std::string()) != "A") {
          return Unsupported(origin, "post_processor",
                             "TemplateProcessing whose single template is not one $A");
        }
        seen_sequence = true;
      } else if (piece.contains("SpecialToken")) {
        const std::string name = piece["SpecialToken"].value("id", std::string());
        auto entry = specials.find(name);
        if (entry == specials.end() || !entry->contains("ids") || !(*entry)["ids"].is_array()) {
          return absl::InvalidArgumentError(absl::StrCat(
              origin, ": post_processor template names \"", name, "\", not in special_tokens"));
        }
        for (const Json& id : (*entry)["ids"]) {
          if (!id.is_number_integer()) {
            return absl::InvalidArgumentError(
                absl::StrCat(origin, ": special token \"", name, "\" has a non-integer id"));
          }
          (seen_sequence ? suffix : prefix).push_back(id.get<int32_t>());
        }
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat(origin, ": post_processor template piece ", piece.dump()));
      }
    }
    if (!seen_sequence) {
      return Unsupported(origin, "post_processor", "TemplateProcessing without $A");
    }
  } else {
    return Unsupported(origin, "post_processor", type);
  }
  // A processor later in a Sequence wraps what the earlier ones made.
  prefix_.insert(prefix_.begin(), prefix.begin(), prefix.end());
  suffix_.insert(suffix_.end(), suffix.begin(), suffix.end());
  return absl::OkStatus();
}

absl::Status TokenizerJson::Impl::LoadDecoder(const Json& decoder, absl::string_view origin) {
  bool byte_level = false;
  for (const PreTokenizerStep& step : pre_tokenizer_) {
    byte_level = byte_level || step.kind == PreTokenizerStep::Kind::kByteLevel;
  }
  if (!byte_level) {
    return Unsupported(origin, "pre_tokenizer",
                       "without a ByteLevel step (only byte-level BPE is supported)");
  }
  const std::string type = decoder.is_null() ? "null" : TypeOf(decoder);
  if (type == "ByteLevel") return absl::OkStatus();
  if (type == "Sequence") {
    const Json list = decoder.value("decoders", Json());
    if (list.is_array() && list.size() == 1 && TypeOf(list[0]) == "ByteLevel") {
      return absl::OkStatus();
    }
  }
  return Unsupported(origin, "decoder", absl::StrCat(type, " (only ByteLevel)"));
}

absl::Status TokenizerJson::Impl::LoadSpecialTokens(const Json& config,
                                                    const Json& special_tokens_map,
                                                    const Json& model) {
  // transformers lets special_tokens_map.json override tokenizer_config.json.
  const auto resolve = [&](const char* field, int32_t fallback) -> absl::StatusOr<int32_t> {
    ASSIGN_OR_RETURN(std::optional<std::string> token,
                     TokenField(special_tokens_map, kSpecialTokensMapFile, field));
    if (!token.has_value()) {
      ASSIGN_OR_RETURN(token, TokenField(config, kTokenizerConfigFile, field));
    }
    if (!token.has_value()) return fallback;
    const int32_t id = TokenToId(*token);
    if (id < 0) {
      return absl::InvalidArgumentError(absl::StrCat(kTokenizerConfigFile, ": ", field, " \"", *token,
                                                     "\" is not a token of tokenizer.json"));
    }
    return id;
  };
  int32_t unk = -1;
  auto unk_token = model.find("unk_token");
  if (unk_token != model.end() && unk_token->is_string()) unk = TokenToId(*unk_token);
  ASSIGN_OR_RETURN(special_.bos, resolve("bos_token", prefix_.size() == 1 ? prefix_[0] : -1));
  ASSIGN_OR_RETURN(special_.eos, resolve("eos_token", suffix_.size() == 1 ? suffix_[0] : -1));
  ASSIGN_OR_RETURN(special_.pad, resolve("pad_token", -1));
  ASSIGN_OR_RETURN(special_.unk, resolve("unk_token", unk));
  ASSIGN_OR_RETURN(special_.cls, resolve("cls_token", special_.cls));
  ASSIGN_OR_RETURN(special_.sep, resolve("sep_token", special_.sep));
  special_.add_bos = !prefix_.empty();
  special_.add_eos = !suffix_.empty();
  return absl::OkStatus();
}

std::vector<Part> TokenizerJson::Impl::SplitOnAddedTokens(absl::string_view text,
                                                          bool normalized) const {
  std::vector<Part> parts;
  size_t done = 0;  // text[0, done) is in `parts`
  size_t i = 0;
  while (i < text.size()) {
    int best = -1;
    for (int k : added_by_first_byte_[static_cast<uint8_t>(text[i])]) {
      const AddedToken& token = added_[k];
      if (token.normalized != normalized) continue;
      if (text.compare(i, token.content.size(), token.content) != 0) continue;
      if (best < 0 || token.content.size() > added_[best].content.size()) best = k;
    }
    if (best < 0) {
      ++i;
      continue;
    }
    const AddedToken& token = added_[best];
    size_t begin = i, end = i + token.content.size();
    if (token.single_word) {
      size_t length = 0;
      const bool word_before =
          begin > 0 && IsWordChar(CodePointAt(text, PreviousCodePointStart(text, begin), &length));
      const bool word_after = end < text.size() && IsWordChar(CodePointAt(text, end, &length));
      if (word_before || word_after) {
        i = end;
        continue;
      }
    }
    if (token.lstrip) {
      while (begin > done) {
        const size_t previous = PreviousCodePointStart(text, begin);
        size_t length = 0;
        if (!IsWhiteSpace(CodePointAt(text, previous, &length))) break;
        begin = previous;
      }
    }
    if (token.rstrip) {
      size_t length = 0;
      while (end < text.size() && IsWhiteSpace(CodePointAt(text, end, &length))) end += length;
    }
    if (begin > done) parts.push_back({done, begin, -1});
    parts.push_back({begin, end, best});
    done = i = end;
  }
  if (done < text.size()) parts.push_back({done, text.size(), -1});
  return parts;
}

absl::Status TokenizerJson::Impl::PreTokenize(absl::string_view text,
                                              std::vector<Piece>* pieces) const {
  std::vector<Piece> current;
  current.push_back({std::string(text), 0, 0});
  std::vector<std::pair<size_t, size_t>> matches;
  for (const PreTokenizerStep& step : pre_tokenizer_) {
    std::vector<Piece> next;
    for (Piece& piece : current) {
      if (step.kind == PreTokenizerStep::Kind::kByteLevel && step.add_prefix_space &&
          (piece.text.empty() || piece.text[0] != ' ')) {
        piece.text.insert(0, " ");
        ++piece.prefix;
      }
      if (step.regex == nullptr) {
        next.push_back(std::move(piece));
        continue;
      }
      matches.clear();
      RETURN_IF_ERROR(step.regex->FindAll(piece.text, &matches));
      const auto emit = [&](size_t begin, size_t end) {
        if (end <= begin) return;
        Piece out;
        out.text = piece.text.substr(begin, end - begin);
        const size_t source = begin > piece.prefix ? begin - piece.prefix : 0;
        out.offset = piece.offset + source;
        out.prefix = begin < piece.prefix ? std::min(piece.prefix - begin, end - begin) : 0;
        next.push_back(std::move(out));
      };
      size_t position = 0;
      for (const auto& [begin, end] : matches) {
        emit(position, begin);
        if (!step.remove_matches) emit(begin, end);
        position = end;
      }
      emit(position, piece.text.size());
    }
    current = std::move(next);
  }
  for (Piece& piece : current) {
    if (!piece.text.empty()) pieces->push_back(std::move(piece));
  }
  return absl::OkStatus();
}

void TokenizerJson::Impl::Bpe(absl::string_view word, std::vector<int32_t>* ids,
                              std::vector<size_t>* offsets) const {
  if (word.empty()) return;
  if (ignore_merges_ || word.size() == 1) {
    std::string mapped;
    for (char c : word) mapped += Alphabet().byte_to_utf8[static_cast<uint8_t>(c)];
    auto it = vocab_.find(mapped);
    if (it != vocab_.end()) {
      ids->push_back(it->second);
      offsets->push_back(0);
      return;
    }
  }
  // Symbols are the word's UTF-8 characters (each a run of byte-level characters), merged
  // lowest rank first, leftmost first among equal ranks, as the tokenizers library does.
  struct Symbol {
    int32_t id;
    int prev, next;
    size_t begin;
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  for (size_t i = 0; i < word.size(); ++i) {
    symbols.push_back({byte_ids_[static_cast<uint8_t>(word[i])], static_cast<int>(i) - 1,
                       static_cast<int>(i) + 1, i, true});
  }
  symbols.back().next = -1;
  struct Candidate {
    int32_t rank;
    int position;
    int32_t merged;
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : position > other.position;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  const auto lookup = [&](int left) -> const std::pair<int32_t, int32_t>* {
    const int right = symbols[left].next;
    if (right < 0) return nullptr;
    const uint64_t key =
        (static_cast<uint64_t>(symbols[left].id) << 32) | static_cast<uint32_t>(symbols[right].id);
    auto it = merges_.find(key);
    return it == merges_.end() ? nullptr : &it->second;
  };
  const auto push = [&](int left) {
    if (left < 0) return;
    if (const auto* merge = lookup(left)) queue.push({merge->first, left, merge->second});
  };
  for (int i = 0; i + 1 < static_cast<int>(symbols.size()); ++i) push(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.position];
    if (!left.alive) continue;
    const auto* merge = lookup(top.position);
    if (merge == nullptr || merge->first != top.rank || merge->second != top.merged) continue;
    Symbol& right = symbols[left.next];
    right.alive = false;
    left.id = top.merged;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.position;
    push(left.prev);
    push(top.position);
  }
  for (int i = 0; i >= 0; i = symbols[i].next) {
    ids->push_back(symbols[i].id);
    offsets->push_back(symbols[i].begin);
  }
}

absl::StatusOr<TokenizerJson::Impl::Encoded> TokenizerJson::Impl::EncodeDetailed(
    absl::string_view text) const {
  RETURN_IF_ERROR(ValidateUtf8(text));
  Encoded result;
  result.segments = SplitOnAddedTokens(text, /*normalized=*/false);
  result.normalized.resize(result.segments.size());
  std::vector<Piece> pieces;
  std::vector<int32_t> word_ids;
  std::vector<size_t> word_offsets;
  for (size_t s = 0; s < result.segments.size(); ++s) {
    const Part& segment = result.segments[s];
    if (segment.added >= 0) {
      result.ids.push_back(added_[segment.added].id);
      result.where.emplace_back(s, 0);
      continue;
    }
    std::string& normalized = result.normalized[s];
    normalized = Normalize(text.substr(segment.begin, segment.end - segment.begin), normal_forms_);
    for (const Part& part : SplitOnAddedTokens(normalized, /*normalized=*/true)) {
      if (part.added >= 0) {
        result.ids.push_back(added_[part.added].id);
        result.where.emplace_back(s, part.begin);
        continue;
      }
      pieces.clear();
      RETURN_IF_ERROR(PreTokenize(
          absl::string_view(normalized).substr(part.begin, part.end - part.begin), &pieces));
      for (const Piece& piece : pieces) {
        word_ids.clear();
        word_offsets.clear();
        Bpe(piece.text, &word_ids, &word_offsets);
        for (size_t t = 0; t < word_ids.size(); ++t) {
          result.ids.push_back(word_ids[t]);
          const size_t inside = word_offsets[t] > piece.prefix ? word_offsets[t] - piece.prefix : 0;
          result.where.emplace_back(s, part.begin + piece.offset + inside);
        }
      }
    }
  }
  return result;
}

std::string TokenizerJson::Impl::Decode(const std::vector<int32_t>& ids, bool skip_special) const {
  const ByteAlphabet& alphabet = Alphabet();
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size()) continue;
    if (skip_special && is_special_[id]) continue;
    const std::string& token = id_to_token_[id];
    // The ByteLevel decoder: a token whose characters are all byte-level characters becomes
    // those bytes; any other token (an added token with a space, say) is taken as it is.
    std::string mapped;
    bool all_mapped = true;
    for (size_t i = 0; i < token.size() && all_mapped;) {
      size_t length = 0;
      const char32_t c = CodePointAt(token, i, &length);
      auto it = alphabet.char_to_byte.find(c);
      if (it == alphabet.char_to_byte.end()) {
        all_mapped = false;
      } else {
        mapped.push_back(static_cast<char>(it->second));
      }
      i += length;
    }
    bytes += all_mapped ? mapped : token;
  }
  return Utf8Lossy(bytes);
}

TokenizerJson::TokenizerJson(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TokenizerJson::~TokenizerJson() = default;

absl::StatusOr<std::unique_ptr<TokenizerJson>> TokenizerJson::FromStrings(
    absl::string_view tokenizer_json, absl::string_view tokenizer_config,
    absl::string_view origin) {
  auto impl = std::make_unique<Impl>();
  RETURN_IF_ERROR(impl->Load(tokenizer_json, tokenizer_config, "", origin));
  return std::unique_ptr<TokenizerJson>(new TokenizerJson(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<TokenizerJson>> TokenizerJson::LoadFromDirectory(
    const std::string& dir) {
  const std::filesystem::path root(dir);
  const std::string json_path = (root / kTokenizerJsonFile).string();
  ASSIGN_OR_RETURN(std::string json_text, ReadFileToString(json_path));
  std::string config_text, special_tokens_text;
  std::error_code error;
  if (std::filesystem::is_regular_file(root / kTokenizerConfigFile, error)) {
    ASSIGN_OR_RETURN(config_text, ReadFileToString((root / kTokenizerConfigFile).string()));
  }
  if (std::filesystem::is_regular_file(root / kSpecialTokensMapFile, error)) {
    ASSIGN_OR_RETURN(special_tokens_text, ReadFileToString((root / kSpecialTokensMapFile).string()));
  }
  auto impl = std::make_unique<Impl>();
  RETURN_IF_ERROR(impl->Load(json_text, config_text, special_tokens_text, json_path));
  return std::unique_ptr<TokenizerJson>(new TokenizerJson(std::move(impl)));
}

absl::StatusOr<std::vector<int32_t>> TokenizerJson::Encode(absl::string_view text) const {
  ASSIGN_OR_RETURN(Impl::Encoded encoded, impl_->EncodeDetailed(text));
  return std::move(encoded.ids);
}

absl::StatusOr<std::vector<int32_t>> TokenizerJson::EncodeWithSpecialTokens(
    absl::string_view text) const {
  ASSIGN_OR_RETURN(std::vector<int32_t> ids, Encode(text));
  return impl_->WithSpecialTokens(std::move(ids));
}

absl::StatusOr<SplitEncoding> TokenizerJson::EncodeConcatenated(absl::string_view first,
                                                                absl::string_view second) const {
  const std::string joined = absl::StrCat(first, second);
  ASSIGN_OR_RETURN(Impl::Encoded encoded, impl_->EncodeDetailed(joined));
  const size_t join = first.size();
  SplitEncoding result;
  for (size_t t = 0; t < encoded.ids.size(); ++t) {
    const auto [s, offset] = encoded.where[t];
    const Part& segment = encoded.segments[s];
    bool in_first = segment.begin < join;
    if (in_first && segment.end > join && segment.added < 0) {
      // The join falls inside this segment: find it in the normalised text, where a
      // character composed across the join belongs to `first`.
      const std::string head =
          impl_->Normalized(absl::string_view(joined).substr(segment.begin, join - segment.begin));
      const std::string& whole = encoded.normalized[s];
      size_t common = 0;
      while (common < head.size() && common < whole.size() && head[common] == whole[common]) {
        ++common;
      }
      while (common > 0 && common < whole.size() &&
             (static_cast<uint8_t>(whole[common]) & 0xC0) == 0x80) {
        --common;  // back to the start of the character
      }
      // common < head.size(): normalising composed the character at `common` from both
      // sides of the join, so it starts in `first`.
      in_first = common < head.size() ? offset <= common : offset < common;
    }
    if (in_first) result.first_length = t + 1;
    result.ids.push_back(encoded.ids[t]);
  }
  return result;
}

std::string TokenizerJson::Decode(const std::vector<int32_t>& ids) const {
  return impl_->Decode(ids, /*skip_special=*/true);
}

std::string TokenizerJson::Decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  return impl_->Decode(ids, skip_special_tokens);
}

const SpecialTokens& TokenizerJson::special_tokens() const { return impl_->special_; }

SequenceFrame TokenizerJson::single_sequence_frame() const {
  return impl_->single_sequence_frame();
}

int64_t TokenizerJson::vocab_size() const { return impl_->vocab_size(); }

absl::Status TokenizerJson::SaveToDirectory(const std::string& dir) const {
  RETURN_IF_ERROR(CreateDirectories(dir));
  const std::filesystem::path root(dir);
  RETURN_IF_ERROR(WriteFileAtomically((root / kTokenizerJsonFile).string(), impl_->json_text_));
  Json config = impl_->config_;
  if (config.is_null()) {
    config = Json::object();
    config["tokenizer_class"] = "PreTrainedTokenizerFast";
    const SpecialTokens& special = impl_->special_;
    const std::pair<const char*, int32_t> fields[] = {{"bos_token", special.bos},
                                                      {"eos_token", special.eos},
                                                      {"pad_token", special.pad},
                                                      {"unk_token", special.unk}};
    for (const auto& [field, id] : fields) {
      if (id >= 0) config[field] = impl_->IdToToken(id);
    }
  }
  RETURN_IF_ERROR(WriteJsonFile((root / kTokenizerConfigFile).string(), config));
  if (impl_->special_tokens_map_.is_null()) return absl::OkStatus();
  return WriteJsonFile((root / kSpecialTokensMapFile).string(), impl_->special_tokens_map_);
}

std::string TokenizerJson::IdToToken(int32_t id) const { return impl_->IdToToken(id); }

int32_t TokenizerJson::TokenToId(absl::string_view token) const { return impl_->TokenToId(token); }

}  // namespace verdict
