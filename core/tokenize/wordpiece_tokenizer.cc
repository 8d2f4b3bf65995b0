#include "core/tokenize/wordpiece_tokenizer.h"

#include <algorithm>

#include <utf8proc.h>

#include <cstdlib>
#include <filesystem>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/tokenize/json_files.h"
#include "core/tokenize/utf8.h"
#include "core/util/file_util.h"
#include "core/util/status_macros.h"

namespace verdict {
namespace {

constexpr char kUnk[] = "[UNK]";
constexpr char kCls[] = "[CLS]";
constexpr char kSep[] = "[SEP]";
constexpr char kPad[] = "[PAD]";
constexpr char kMask[] = "[MASK]";

utf8proc_category_t CategoryOf(char32_t c) {
  return utf8proc_category(static_cast<utf8proc_int32_t>(c));
}

// BERT's _is_control: every "C*" category except the tab, newline and carriage return it
// counts as whitespace. Unassigned code points (Cn) are dropped too.
bool IsControl(char32_t c) {
  if (c == U'\t' || c == U'\n' || c == U'\r') return false;
  switch (CategoryOf(c)) {
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
      return true;
    default:
      return false;
  }
}

// BERT's _is_whitespace (Zs and the ASCII spaces), plus the line and paragraph separators
// that Python's str.split() then splits on.
bool IsWhitespace(char32_t c) {
  if (c == U' ' || c == U'\t' || c == U'\n' || c == U'\r') return true;
  const utf8proc_category_t category = CategoryOf(c);
  return category == UTF8PROC_CATEGORY_ZS || category == UTF8PROC_CATEGORY_ZL ||
         category == UTF8PROC_CATEGORY_ZP;
}

// BERT's _is_punctuation: Unicode P*, and all non-alphanumeric printable ASCII.
bool IsPunctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
      (c >= 123 && c <= 126)) {
    return true;
  }
  const utf8proc_category_t category = CategoryOf(c);
  return category >= UTF8PROC_CATEGORY_PC && category <= UTF8PROC_CATEGORY_PO;
}

// BERT's _is_chinese_char: the CJK Unified Ideographs blocks (not Hangul, kana or CJK
// punctuation, which BERT treats as ordinary characters).
bool IsCjkIdeograph(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

bool IsLetter(char32_t c) {
  const utf8proc_category_t category = CategoryOf(c);
  return category >= UTF8PROC_CATEGORY_LU && category <= UTF8PROC_CATEGORY_LO;
}

// Python's str.lower(), which BertTokenizer uses: simple lower-casing, except that a capital
// sigma ending a word becomes the final sigma ς.
std::u32string LowerCase(const std::u32string& word) {
  std::u32string out(word.size(), U'\0');
  for (size_t i = 0; i < word.size(); ++i) {
    char32_t c = word[i];
    if (c == 0x03A3) {
      bool preceded_by_letter = false;
      for (size_t j = i; j-- > 0;) {
        if (CategoryOf(word[j]) == UTF8PROC_CATEGORY_MN) continue;
        preceded_by_letter = IsLetter(word[j]);
        break;
      }
      bool followed_by_letter = false;
      for (size_t j = i + 1; j < word.size(); ++j) {
        if (CategoryOf(word[j]) == UTF8PROC_CATEGORY_MN) continue;
        followed_by_letter = IsLetter(word[j]);
        break;
      }
      out[i] = preceded_by_letter && !followed_by_letter ? 0x03C2 : 0x03C3;
      continue;
    }
    out[i] = static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c)));
  }
  return out;
}

// BERT's _run_strip_accents: canonical decomposition (NFD), then every Mn mark dropped.
std::u32string StripAccents(const std::u32string& word) {
  bool ascii = true;
  for (char32_t c : word) ascii = ascii && c < 0x80;
  if (ascii) return word;  // nothing to decompose
  const std::string utf8 = EncodeUtf8(word);
  utf8proc_uint8_t* decomposed = nullptr;
  const utf8proc_ssize_t length =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(utf8.data()),
                   static_cast<utf8proc_ssize_t>(utf8.size()), &decomposed,
                   static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE));
  if (length < 0) return word;  // only on invalid input, which Encode has ruled out
  std::u32string nfd = DecodeUtf8(
      absl::string_view(reinterpret_cast<const char*>(decomposed), static_cast<size_t>(length)));
  std::free(decomposed);
  std::u32string out;
  out.reserve(nfd.size());
  for (char32_t c : nfd) {
    if (CategoryOf(c) != UTF8PROC_CATEGORY_MN) out.push_back(c);
  }
  return out;
}

// BERT's BasicTokenizer on text free of special tokens: the words WordPiece then splits.
std::vector<std::u32string> BasicTokenize(absl::string_view text, bool do_lower_case) {
  std::u32string cleaned;
  for (char32_t c : DecodeUtf8(text)) {
    if (c == 0 || c == 0xFFFD || IsControl(c)) continue;
    if (IsWhitespace(c)) {
      cleaned.push_back(U' ');
    } else if (IsCjkIdeograph(c)) {
      cleaned.push_back(U' ');
      cleaned.push_back(c);
      cleaned.push_back(U' ');
    } else {
      cleaned.push_back(c);
    }
  }
  std::vector<std::u32string> words;
  size_t start = 0;
  while (start < cleaned.size()) {
    size_t end = cleaned.find(U' ', start);
    if (end == std::u32string::npos) end = cleaned.size();
    if (end > start) {
      std::u32string word = cleaned.substr(start, end - start);
      if (do_lower_case) word = StripAccents(LowerCase(word));
      std::u32string current;
      for (char32_t c : word) {
        if (IsPunctuation(c)) {
          if (!current.empty()) words.push_back(std::move(current));
          current.clear();
          words.push_back(std::u32string(1, c));
        } else {
          current.push_back(c);
        }
      }
      if (!current.empty()) words.push_back(std::move(current));
    }
    start = end + 1;
  }
  return words;
}

}  // namespace

WordPieceTokenizer::WordPieceTokenizer(std::vector<std::string> tokens,
                                       absl::flat_hash_map<std::string, int32_t> ids,
                                       const Options& options)
    : tokens_(std::move(tokens)), ids_(std::move(ids)), options_(options) {
  special_.unk = TokenToId(kUnk);
  special_.cls = TokenToId(kCls);
  special_.sep = TokenToId(kSep);
  special_.pad = TokenToId(kPad);
  mask_ = TokenToId(kMask);
  // BERT frames sequences with [CLS] / [SEP]; it has no BOS / EOS to add.
  special_.add_bos = false;
  special_.add_eos = false;
  for (const char* token : {kCls, kSep, kPad, kUnk, kMask}) {
    const int32_t id = TokenToId(token);
    if (id >= 0) unsplittable_.emplace_back(token, id);
  }
}

absl::StatusOr<std::unique_ptr<WordPieceTokenizer>> WordPieceTokenizer::Load(
    const std::string& vocab_path, const Options& options) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(vocab_path));
  RETURN_IF_ERROR(ValidateUtf8(text));
  std::vector<std::string> tokens = absl::StrSplit(text, '\n');
  // The newline ending the last line starts no token.
  if (!tokens.empty() && tokens.back().empty()) tokens.pop_back();
  auto tokenizer = FromTokens(std::move(tokens), options);
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat(vocab_path, ": ", tokenizer.status().message()));
  }
  return tokenizer;
}

absl::StatusOr<std::unique_ptr<WordPieceTokenizer>> WordPieceTokenizer::FromTokens(
    std::vector<std::string> tokens, const Options& options) {
  absl::flat_hash_map<std::string, int32_t> ids;
  ids.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    // A repeated token maps to its last line, as BertTokenizer's load_vocab has it.
    ids.insert_or_assign(tokens[i], static_cast<int32_t>(i));
  }
  if (!ids.contains(kUnk)) {
    return absl::InvalidArgumentError("WordPiece vocabulary has no [UNK] token");
  }
  return std::unique_ptr<WordPieceTokenizer>(
      new WordPieceTokenizer(std::move(tokens), std::move(ids), options));
}

std::string WordPieceTokenizer::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= tokens_.size()) return "";
  return tokens_[static_cast<size_t>(id)];
}

int32_t WordPieceTokenizer::TokenToId(absl::string_view token) const {
  auto it = ids_.find(token);
  return it == ids_.end() ? -1 : it->second;
}

absl::StatusOr<std::vector<int32_t>> WordPieceTokenizer::Encode(absl::string_view text) const {
  RETURN_IF_ERROR(ValidateUtf8(text));
  std::vector<int32_t> ids;
  while (!text.empty()) {
    // The leftmost special token, if any, splits the text.
    size_t found = absl::string_view::npos;
    const std::pair<std::string, int32_t>* special = nullptr;
    for (const auto& candidate : unsplittable_) {
      const size_t at = text.find(candidate.first);
      if (at < found) {
        found = at;
        special = &candidate;
      }
    }
    if (special == nullptr) {
      EncodePlainText(text, &ids);
      break;
    }
    EncodePlainText(text.substr(0, found), &ids);
    ids.push_back(special->second);
    text.remove_prefix(found + special->first.size());
  }
  return ids;
}

void WordPieceTokenizer::EncodePlainText(absl::string_view text, std::vector<int32_t>* ids) const {
  for (const std::u32string& word : BasicTokenize(text, options_.do_lower_case)) {
    EncodeWord(word, ids);
  }
}

void WordPieceTokenizer::EncodeWord(const std::u32string& word, std::vector<int32_t>* ids) const {
  if (word.size() > kMaxCharsPerWord) {
    ids->push_back(special_.unk);
    return;
  }
  // Byte offset of each character in the word's UTF-8 form, so candidates are substrings.
  std::string utf8;
  std::vector<size_t> offsets;
  offsets.reserve(word.size() + 1);
  for (char32_t c : word) {
    offsets.push_back(utf8.size());
    AppendUtf8(c, &utf8);
  }
  offsets.push_back(utf8.size());

  std::vector<int32_t> pieces;
  std::string candidate;
  size_t start = 0;
  while (start < word.size()) {
    int32_t match = -1;
    size_t end = word.size();
    for (; end > start; --end) {
      candidate.assign(start > 0 ? "##" : "");
      candidate.append(utf8, offsets[start], offsets[end] - offsets[start]);
      match = TokenToId(candidate);
      if (match >= 0) break;
    }
    if (match < 0) {
      ids->push_back(special_.unk);
      return;
    }
    pieces.push_back(match);
    start = end;
  }
  ids->insert(ids->end(), pieces.begin(), pieces.end());
}

absl::StatusOr<SplitEncoding> WordPieceTokenizer::EncodeConcatenated(
    absl::string_view first, absl::string_view second) const {
  SplitEncoding out;
  ASSIGN_OR_RETURN(out.ids, Encode(absl::StrCat(first, second)));
  // Words are cut at whitespace and punctuation, so `first`'s own tokens start the joined
  // encoding up to the word that straddles the join, if one does.
  ASSIGN_OR_RETURN(std::vector<int32_t> first_ids, Encode(first));
  out.first_length = static_cast<size_t>(
      std::mismatch(first_ids.begin(), first_ids.end(), out.ids.begin(), out.ids.end()).first -
      first_ids.begin());
  return out;
}

SequenceFrame WordPieceTokenizer::single_sequence_frame() const {
  return SequenceFrame{{special_.cls}, {special_.sep}};
}

std::string WordPieceTokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::vector<absl::string_view> words;
  words.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= tokens_.size()) continue;
    if (id == special_.cls || id == special_.sep || id == special_.pad || id == special_.unk ||
        id == mask_) {
      continue;
    }
    words.push_back(tokens_[static_cast<size_t>(id)]);
  }
  std::string text = absl::StrReplaceAll(absl::StrJoin(words, " "), {{" ##", ""}});
  text = std::string(absl::StripAsciiWhitespace(text));
  // BertTokenizer's clean_up_tokenization, one replacement after the other as it does them.
  static constexpr std::pair<const char*, const char*> kCleanUps[] = {
      {" .", "."},     {" ?", "?"},     {" !", "!"},     {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"},   {" 's", "'s"},   {" 've", "'ve"}, {" 're", "'re"},
  };
  for (const auto& [from, to] : kCleanUps) text = absl::StrReplaceAll(text, {{from, to}});
  return text;
}

absl::Status WordPieceTokenizer::SaveToDirectory(const std::string& dir) const {
  RETURN_IF_ERROR(CreateDirectories(dir));
  const std::filesystem::path root(dir);
  std::string vocab;
  for (const std::string& token : tokens_) absl::StrAppend(&vocab, token, "\n");
  RETURN_IF_ERROR(WriteFileAtomically((root / kWordPieceVocabFile).string(), vocab));

  nlohmann::json config = {
      {"tokenizer_class", options_.tokenizer_class},
      {"do_lower_case", options_.do_lower_case},
      {"tokenize_chinese_chars", true},
      {"strip_accents", nullptr},
      {"clean_up_tokenization_spaces", true},
  };
  nlohmann::json special_map = nlohmann::json::object();
  const std::pair<const char*, const char*> named[] = {
      {"unk_token", kUnk}, {"sep_token", kSep},   {"pad_token", kPad},
      {"cls_token", kCls}, {"mask_token", kMask},
  };
  for (const auto& [name, token] : named) {
    if (TokenToId(token) < 0) continue;
    config[name] = token;
    special_map[name] = token;
  }
  if (options_.model_max_length > 0) config["model_max_length"] = options_.model_max_length;
  RETURN_IF_ERROR(WriteJsonFile((root / kTokenizerConfigFile).string(), config));
  return WriteJsonFile((root / kSpecialTokensMapFile).string(), special_map);
}

}  // namespace verdict
