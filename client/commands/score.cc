// verdict score: one prompt/response from flags, or JSON lines in and out.
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <istream>
#include <ostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/commands/commands.h"
#include "client/local_file.h"
#include "client/output.h"
#include "client/scoring.h"

namespace verdict::client {
namespace {

// Pair statistics for the summary: how often chosen outscored rejected.
struct PairTally {
  int64_t pairs = 0;
  int64_t chosen_higher = 0;
  double margin_sum = 0;
};

int ScoreOne(Connection& connection, const ScoreOptions& options, const std::string& prompt,
             const std::string& response, CommandEnv& env) {
  verdict::v1::ScoreBatchRequest request;
  *request.mutable_model() = options.model;
  request.mutable_options()->set_normalize(options.normalize);
  auto* item = request.add_items()->mutable_prompt_response();
  item->set_prompt(prompt);
  item->set_response(response);
  verdict::v1::ScoreBatchResponse result;
  std::unique_ptr<grpc::ClientContext> context = connection.NewContext();
  grpc::Status status = connection.scoring().ScoreBatch(context.get(), request, &result);
  if (!status.ok()) return ReportRpcError(status, env.options.server, *env.err);
  if (env.options.format() == OutputFormat::kJson) {
    *env.out << ToJson(result) << "\n";
  } else {
    *env.out << absl::StrFormat("%.6f", result.scores(0)) << "\n";
  }
  return kExitOk;
}

// Reads, scores and writes `lines` (a chunk of the input starting at line `first_line`).
absl::Status ScoreChunk(Connection& connection, const ScoreOptions& options,
                        const std::vector<std::string>& lines, int64_t first_line,
                        absl::string_view input_name, std::ostream& out, PairTally& tally,
                        verdict::v1::ModelRef& version_used, bool* input_error) {
  std::vector<ScoreLine> parsed;
  std::vector<verdict::v1::ScoreItem> items;
  for (size_t i = 0; i < lines.size(); ++i) {
    absl::StatusOr<ScoreLine> line = ParseScoreLine(lines[i]);
    if (!line.ok()) {
      *input_error = true;
      return absl::InvalidArgumentError(
          absl::StrCat(input_name, ":", first_line + i, ": ", line.status().message()));
    }
    items.insert(items.end(), line->items.begin(), line->items.end());
    parsed.push_back(*std::move(line));
  }
  if (items.empty()) {
    for (size_t i = 0; i < parsed.size(); ++i) out << "\n";
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<double>> scores =
      ScoreItems(connection, items, options, &version_used);
  if (!scores.ok()) return scores.status();
  size_t next = 0;
  for (const ScoreLine& line : parsed) {
    const absl::Span<const double> mine(scores->data() + next, line.items.size());
    next += line.items.size();
    out << RenderScoredLine(line, mine) << "\n";
    if (line.kind == ScoreLine::Kind::kPair) {
      ++tally.pairs;
      if (mine[0] > mine[1]) ++tally.chosen_higher;
      tally.margin_sum += mine[0] - mine[1];
    }
  }
  out.flush();
  return absl::OkStatus();
}

}  // namespace

int RunScore(const std::vector<std::string>& args, CommandEnv& env) {
  FlagParser flags(
      "verdict score --model NAME[:VERSION|:ALIAS] (--response TEXT [--prompt TEXT] | "
      "[--input FILE] [--output-file FILE]) [flags]",
      "Scores with a registered model. With --response: one item, the score printed alone.\n"
      "Otherwise JSON lines are read from --input (or stdin) and written to --output-file (or\n"
      "stdout) in the same order, each line keeping its keys and gaining scores:\n"
      "  {\"prompt\", \"response\"}              -> + \"score\"\n"
      "  {\"messages\": [{role, content}]}     -> + \"score\" (model's chat format)\n"
      "  {\"chosen\", \"rejected\"[, \"prompt\"]}  -> + \"chosen_score\", \"rejected_score\"\n"
      "Pairs may use any training layout (hh-rlhf transcripts are split as training splits\n"
      "them); a summary with the pairwise accuracy goes to stderr. Requests of --batch-size\n"
      "items run --parallel at a time; RESOURCE_EXHAUSTED and UNAVAILABLE are retried.");
  std::string model_text, input, output_file;
  std::optional<std::string> prompt, response;
  ScoreOptions options;
  int64_t batch_size = 64, parallel = 4;
  flags.AddString("model", &model_text, "NAME[:V|:ALIAS]",
                  "Model to score with; NAME alone means its latest version.");
  flags.AddString("prompt", &prompt, "TEXT", "Prompt of the single item (may be empty).");
  flags.AddString("response", &response, "TEXT", "Response of the single item.");
  flags.AddString("input", &input, "FILE", "JSON lines to score (default: stdin).");
  flags.AddString("output-file", &output_file, "FILE", "Where scored lines go (default: stdout).");
  flags.AddBool("normalize", &options.normalize, "Normalised scores (r - mean) / std.");
  flags.AddInt("batch-size", &batch_size, "N", "Items per request (default 64).");
  flags.AddInt("parallel", &parallel, "N", "Requests in flight (default 4).");
  std::vector<std::string> positional;
  if (auto exit = ParseCommandArgs(flags, args, env, 0, 0, &positional)) return *exit;
  absl::Status problem;
  if (model_text.empty()) {
    problem = absl::InvalidArgumentError("--model is required");
  } else if (absl::StatusOr<verdict::v1::ModelRef> model = ParseModelRef(model_text); !model.ok()) {
    problem = model.status();
  } else {
    options.model = *model;
  }
  if (problem.ok() && prompt && !response)
    problem = absl::InvalidArgumentError("--prompt needs --response");
  if (problem.ok() && response && (!input.empty() || !output_file.empty())) {
    problem = absl::InvalidArgumentError("--response scores one item: drop --input/--output-file");
  }
  if (problem.ok() && (batch_size < 1 || parallel < 1 || batch_size > 100000 || parallel > 256)) {
    problem = absl::InvalidArgumentError("--batch-size and --parallel must be positive");
  }
  if (!problem.ok()) {
    *env.err << "verdict: " << problem.message() << "\nUsage: " << flags.usage() << "\n";
    return kExitUsage;
  }
  options.items_per_request = static_cast<int>(batch_size);
  options.parallel = static_cast<int>(parallel);

  int exit_code = kExitOk;
  std::unique_ptr<Connection> connection = Connect(env, &exit_code);
  if (connection == nullptr) return exit_code;
  if (response) return ScoreOne(*connection, options, prompt.value_or(""), *response, env);

  std::ifstream input_file;
  std::istream* in = env.in;
  std::string input_name = "stdin";
  if (!input.empty() && input != "-") {
    input_file.open(input, std::ios::binary);
    if (!input_file) return ReportLocalError(ErrnoToStatus(errno, input), *env.err);
    in = &input_file;
    input_name = input;
  }
  if (in == env.in && isatty(STDIN_FILENO)) {
    *env.err << "reading JSON lines from stdin (end with Ctrl-D; --help for the layouts)\n";
  }
  std::ofstream output_stream;
  std::ostream* out = env.out;
  if (!output_file.empty() && output_file != "-") {
    output_stream.open(output_file, std::ios::binary | std::ios::trunc);
    if (!output_stream) return ReportLocalError(ErrnoToStatus(errno, output_file), *env.err);
    out = &output_stream;
  }

  const auto start = std::chrono::steady_clock::now();
  // Enough lines to keep every parallel request full, few enough to stream a huge file.
  const size_t chunk_lines = static_cast<size_t>(batch_size * parallel * 4);
  PairTally tally;
  verdict::v1::ModelRef version_used;
  int64_t line_number = 1, scored_lines = 0;
  std::vector<std::string> chunk;
  std::string line;
  bool more = true;
  while (more) {
    chunk.clear();
    while (chunk.size() < chunk_lines && (more = static_cast<bool>(std::getline(*in, line)))) {
      chunk.push_back(std::move(line));
    }
    if (chunk.empty()) break;
    bool input_error = false;
    absl::Status status = ScoreChunk(*connection, options, chunk, line_number, input_name, *out,
                                     tally, version_used, &input_error);
    if (!status.ok()) {
      return input_error ? ReportLocalError(status, *env.err)
                         : ReportRpcError(status, env.options.server, *env.err);
    }
    line_number += static_cast<int64_t>(chunk.size());
    scored_lines += static_cast<int64_t>(chunk.size());
  }
  if (in->bad())
    return ReportLocalError(absl::DataLossError(absl::StrCat(input_name, ": read error")),
                            *env.err);
  if (out != env.out && !output_stream.good()) {
    return ReportLocalError(ErrnoToStatus(errno, output_file), *env.err);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (env.options.format() == OutputFormat::kText) {
    *env.err << "scored " << scored_lines << " lines with " << ModelRefToString(version_used)
             << " in " << FormatSeconds(seconds) << "\n";
    if (tally.pairs > 0) {
      *env.err << absl::StrFormat(
          "pairs: %d, chosen scored above rejected in %d: accuracy %.3f, mean margin %.4f\n",
          tally.pairs, tally.chosen_higher,
          static_cast<double>(tally.chosen_higher) / static_cast<double>(tally.pairs),
          tally.margin_sum / static_cast<double>(tally.pairs));
    }
  }
  return kExitOk;
}

}  // namespace verdict::client
