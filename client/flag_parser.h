// FlagParser: the command-line flags of one `verdict` subcommand, parsed by hand.
//
// Each subcommand builds one FlagParser, registers its flags (with where each value goes and a
// one-line help), parses its arguments and gets back the positional arguments. The same object
// renders the subcommand's --help text, so the help can never drift from the flags.
//
// Accepted forms: `--name value`, `--name=value`, and for booleans `--name` alone,
// `--name=true|false` or `--no-name`. `-h` and `--help` ask for help. Everything after a lone
// `--` is positional, and so is a lone `-` (stdin). A flag given twice keeps its last value.
//
// Not thread-safe; used on the main thread only.
//
// Example:
//   FlagParser flags("verdict cancel JOB [flags]", "Asks a job to stop.");
//   std::string reason;
//   flags.AddString("reason", &reason, "TEXT", "Why, recorded in the job's events.");
//   absl::StatusOr<std::vector<std::string>> args = flags.Parse(argv_tail);
#ifndef VERDICT_CLIENT_FLAG_PARSER_H_
#define VERDICT_CLIENT_FLAG_PARSER_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace verdict::client {

class FlagParser {
 public:
  // `usage` is the synopsis line ("verdict score [flags]"); `description` a paragraph shown
  // under it in --help.
  FlagParser(std::string usage, std::string description);

  // Starts a titled group of flags in --help ("Job flags:", "Global flags:").
  void AddSection(std::string title);

  // Registers a flag. `value_name` names the value in --help ("FILE", "N"). Flags stored in a
  // std::optional stay unset (nullopt) unless given, so callers can tell "absent" from zero.
  void AddString(std::string name, std::string* out, std::string value_name, std::string help);
  void AddString(std::string name, std::optional<std::string>* out, std::string value_name,
                 std::string help);
  void AddInt(std::string name, std::optional<int64_t>* out, std::string value_name,
              std::string help);
  void AddInt(std::string name, int64_t* out, std::string value_name, std::string help);
  void AddDouble(std::string name, std::optional<double>* out, std::string value_name,
                 std::string help);
  void AddDouble(std::string name, double* out, std::string value_name, std::string help);
  void AddBool(std::string name, bool* out, std::string help);
  void AddBool(std::string name, std::optional<bool>* out, std::string help);

  // Parses `args` (the arguments after the subcommand's name) into the registered outputs and
  // returns the positional arguments in order. INVALID_ARGUMENT naming the flag for an unknown
  // flag, a missing value or a value of the wrong type. With stop_at_first_positional, parsing
  // ends at the first positional argument, which is returned with everything after it
  // untouched (used for the global flags that come before the subcommand's name).
  absl::StatusOr<std::vector<std::string>> Parse(const std::vector<std::string>& args,
                                                 bool stop_at_first_positional = false);

  // Whether -h or --help was among the parsed arguments.
  bool help_requested() const { return help_requested_; }

  // The full --help text: usage, description, then every flag by section.
  std::string Help() const;
  // The usage line alone, for error messages.
  const std::string& usage() const { return usage_; }

 private:
  struct Flag {
    std::string name;
    std::string value_name;  // empty for booleans
    std::string help;
    std::function<absl::Status(absl::string_view)> set;
    std::function<void(bool)> set_bool;  // booleans only
  };
  struct Section {
    std::string title;
    std::vector<Flag> flags;
  };

  void Add(Flag flag);
  const Flag* Find(absl::string_view name) const;

  std::string usage_;
  std::string description_;
  std::vector<Section> sections_;
  bool help_requested_ = false;
};

}  // namespace verdict::client

#endif  // VERDICT_CLIENT_FLAG_PARSER_H_
