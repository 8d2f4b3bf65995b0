#include "client/flag_parser.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace verdict::client {
namespace {

absl::Status BadValue(absl::string_view name, absl::string_view expected, absl::string_view value) {
  return absl::InvalidArgumentError(
      absl::StrCat("--", name, ": expected ", expected, ", got '", value, "'"));
}

// "true", "1", "yes" or "false", "0", "no", in any case.
absl::Status ParseBool(absl::string_view name, absl::string_view value, bool* out) {
  const std::string lower = absl::AsciiStrToLower(value);
  if (lower == "true" || lower == "1" || lower == "yes") {
    *out = true;
  } else if (lower == "false" || lower == "0" || lower == "no") {
    *out = false;
  } else {
    return BadValue(name, "true or false", value);
  }
  return absl::OkStatus();
}

}  // namespace

FlagParser::FlagParser(std::string usage, std::string description)
    : usage_(std::move(usage)), description_(std::move(description)) {
  sections_.push_back({"Flags:", {}});
}

void FlagParser::AddSection(std::string title) { sections_.push_back({std::move(title), {}}); }

void FlagParser::Add(Flag flag) { sections_.back().flags.push_back(std::move(flag)); }

void FlagParser::AddString(std::string name, std::string* out, std::string value_name,
                           std::string help) {
  Add({std::move(name), std::move(value_name), std::move(help),
       [out](absl::string_view v) {
         *out = std::string(v);
         return absl::OkStatus();
       },
       nullptr});
}

void FlagParser::AddString(std::string name, std::optional<std::string>* out,
                           std::string value_name, std::string help) {
  Add({std::move(name), std::move(value_name), std::move(help),
       [out](absl::string_view v) {
         *out = std::string(v);
         return absl::OkStatus();
       },
       nullptr});
}

void FlagParser::AddInt(std::string name, std::optional<int64_t>* out, std::string value_name,
                        std::string help) {
  Add({name, std::move(value_name), std::move(help),
       [out, name](absl::string_view v) {
         int64_t parsed;
         if (!absl::SimpleAtoi(v, &parsed)) return BadValue(name, "an integer", v);
         *out = parsed;
         return absl::OkStatus();
       },
       nullptr});
}

void FlagParser::AddInt(std::string name, int64_t* out, std::string value_name, std::string help) {
  Add({name, std::move(value_name), std::move(help),
       [out, name](absl::string_view v) {
         if (!absl::SimpleAtoi(v, out)) return BadValue(name, "an integer", v);
         return absl::OkStatus();
       },
       nullptr});
}

void FlagParser::AddDouble(std::string name, std::optional<double>* out, std::string value_name,
                           std::string help) {
  Add({name, std::move(value_name), std::move(help),
       [out, name](absl::string_view v) {
         double parsed;
         if (!absl::SimpleAtod(v, &parsed)) return BadValue(name, "a number", v);
         *out = parsed;
         return absl::OkStatus();
       },
       nullptr});
}

void FlagParser::AddDouble(std::string name, double* out, std::string value_name,
                           std::string help) {
  Add({name, std::move(value_name), std::move(help),
       [out, name](absl::string_view v) {
         if (!absl::SimpleAtod(v, out)) return BadValue(name, "a number", v);
         return absl::OkStatus();
       },
       nullptr});
}

void FlagParser::AddBool(std::string name, bool* out, std::string help) {
  Add({name, "", std::move(help),
       [out, name](absl::string_view v) { return ParseBool(name, v, out); },
       [out](bool v) { *out = v; }});
}

void FlagParser::AddBool(std::string name, std::optional<bool>* out, std::string help) {
  Add({name, "", std::move(help),
       [out, name](absl::string_view v) {
         bool value = false;
         absl::Status status = ParseBool(name, v, &value);
         if (status.ok()) *out = value;
         return status;
       },
       [out](bool v) { *out = v; }});
}

const FlagParser::Flag* FlagParser::Find(absl::string_view name) const {
  for (const Section& section : sections_) {
    for (const Flag& flag : section.flags) {
      if (flag.name == name) return &flag;
    }
  }
  return nullptr;
}

absl::StatusOr<std::vector<std::string>> FlagParser::Parse(const std::vector<std::string>& args,
                                                           bool stop_at_first_positional) {
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      positional.insert(positional.end(), args.begin() + i + 1, args.end());
      break;
    }
    if (arg == "-h" || arg == "--help") {
      help_requested_ = true;
      continue;
    }
    if (!absl::StartsWith(arg, "--")) {
      if (absl::StartsWith(arg, "-") && arg != "-") {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown flag '", arg, "' (flags start with --)"));
      }
      if (stop_at_first_positional) {
        positional.insert(positional.end(), args.begin() + i, args.end());
        break;
      }
      positional.push_back(arg);
      continue;
    }
    absl::string_view body = absl::string_view(arg).substr(2);
    std::optional<std::string> inline_value;
    if (const size_t eq = body.find('='); eq != absl::string_view::npos) {
      inline_value = std::string(body.substr(eq + 1));
      body = body.substr(0, eq);
    }
    const Flag* flag = Find(body);
    if (flag == nullptr && absl::StartsWith(body, "no-") && !inline_value.has_value()) {
      const Flag* negated = Find(body.substr(3));
      if (negated != nullptr && negated->set_bool) {
        negated->set_bool(false);
        continue;
      }
    }
    if (flag == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", body));
    }
    if (flag->set_bool) {
      if (inline_value.has_value()) {
        if (absl::Status s = flag->set(*inline_value); !s.ok()) return s;
      } else {
        flag->set_bool(true);
      }
      continue;
    }
    if (!inline_value.has_value()) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", flag->name, " needs a value (", flag->value_name, ")"));
      }
      inline_value = args[++i];
    }
    if (absl::Status s = flag->set(*inline_value); !s.ok()) return s;
  }
  return positional;
}

std::string FlagParser::Help() const {
  std::string text = absl::StrCat("Usage: ", usage_, "\n");
  if (!description_.empty()) absl::StrAppend(&text, "\n", description_, "\n");
  constexpr size_t kHelpColumn = 30;
  for (const Section& section : sections_) {
    if (section.flags.empty()) continue;
    absl::StrAppend(&text, "\n", section.title, "\n");
    for (const Flag& flag : section.flags) {
      std::string left = absl::StrCat("  --", flag.name);
      if (!flag.value_name.empty()) absl::StrAppend(&left, " ", flag.value_name);
      if (left.size() + 2 > kHelpColumn) {
        absl::StrAppend(&text, left, "\n", std::string(kHelpColumn, ' '));
      } else {
        absl::StrAppend(&text, left, std::string(kHelpColumn - left.size(), ' '));
      }
      // Continuation lines of a multi-line help keep the help column.
      std::string help = flag.help;
      size_t pos = 0;
      while ((pos = help.find('\n', pos)) != std::string::npos) {
        help.insert(pos + 1, std::string(kHelpColumn, ' '));
        pos += kHelpColumn + 1;
      }
      absl::StrAppend(&text, help, "\n");
    }
  }
  return text;
}

}  // namespace verdict::client
