// verdict submit: a training job from flags and/or a job file.
#include <optional>
#include <ostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/commands/commands.h"
#include "client/dataset_upload.h"
#include "client/job_file.h"
#include "client/local_inspection.h"
#include "client/output.h"
#include "client/scoring.h"
#include "core/train/training_config.h"

namespace verdict::client {
namespace {

// Core's TrainingConfig is the one home of the training defaults: the server fills unset spec
// fields from it, and the help text quotes it (header only: the CLI links no core library).
const verdict::TrainingConfig kDefaults;

using verdict::v1::TrainingJobSpec;

// Every flag of `submit`, unset unless given, so that only given flags override the file.
struct SubmitFlags {
  std::optional<std::string> file;
  // data
  std::optional<std::string> train_file, dataset_id, data_path;
  std::optional<std::string> eval_file, eval_dataset_id, eval_path;
  std::optional<double> eval_fraction;
  std::optional<int64_t> eval_max_pairs, max_train_pairs;
  bool skip_invalid = false;
  bool gradient_checkpointing = false;
  std::optional<int64_t> lora_rank;
  std::optional<double> lora_alpha;
  std::optional<std::string> lora_target_modules;
  std::optional<std::string> chat_format, data_format, input_rule;
  // model
  std::optional<std::string> name, preset, base_model, from_model, tokenizer_path;
  std::optional<int64_t> vocab_size;
  std::optional<std::string> tokenizer_type;
  // hyperparameters
  std::optional<double> epochs, learning_rate, warmup_ratio, min_lr_ratio, weight_decay, max_grad_norm,
      center_rewards;
  std::optional<int64_t> max_steps, batch_size, eval_batch_size, grad_accum, max_length,
      warmup_steps, max_batch_tokens, seed;
  std::optional<std::string> truncation, lr_scheduler;
  std::optional<bool> prefix_sharing;
  // schedule and placement
  std::optional<int64_t> logging_steps, eval_steps, save_steps, save_total_limit, priority,
      world_size;
  std::optional<std::string> device, dtype;
  // submission
  std::optional<std::string> request_id, upload_name;
  bool validate_only = false, watch = false, no_progress = false;
};

void AddFlags(FlagParser& flags, SubmitFlags& f) {
  flags.AddString("file", &f.file, "FILE",
                  "Job file (YAML, or .json): a TrainingJobSpec, or {spec, request_id}.\n"
                  "Flags given as well override the file.");
  flags.AddSection("Data:");
  flags.AddString("train", &f.train_file, "FILE",
                  "Local preference file (JSON Lines or a JSON array, plain or gzip):\n"
                  "uploaded first, then trained on.");
  flags.AddString("dataset", &f.dataset_id, "ID", "A dataset uploaded earlier.");
  flags.AddString("data-path", &f.data_path, "PATH", "A file under the server's --data_dir.");
  flags.AddString("eval-file", &f.eval_file, "FILE", "Local eval file, uploaded first.");
  flags.AddString("eval-dataset", &f.eval_dataset_id, "ID", "Eval on an uploaded dataset.");
  flags.AddString("eval-path", &f.eval_path, "PATH", "Eval on a file under --data_dir.");
  flags.AddDouble("eval-fraction", &f.eval_fraction, "F",
                  absl::StrCat("Hold out this fraction for eval (default ", kDefaults.eval_fraction,
                               "; 0: none)."));
  flags.AddInt("eval-max-pairs", &f.eval_max_pairs, "N", "Evaluate on at most N pairs.");
  flags.AddInt("max-train-pairs", &f.max_train_pairs, "N", "Train on at most N pairs.");
  flags.AddBool("skip-invalid", &f.skip_invalid, "Skip invalid lines instead of failing the job.");
  flags.AddString("chat-format", &f.chat_format, "FORMAT",
                  "How message lists become text (default hh): hh, chatml, llama2,\n"
                  "qwen3, qwen2, qwen2_5, llama3, llama3_1.");
  flags.AddString("data-format", &f.data_format, "FORMAT",
                  "Files accepted (default auto: detected): auto, jsonl, json (a JSON\n"
                  "array), sharegpt (LLaMA-Factory preference records).");
  flags.AddString("input-rule", &f.input_rule, "RULE",
                  "How prompt and response become input tokens (default concat, TRL's):\n"
                  "concat, pair ([CLS] prompt [SEP] response [SEP]), chat (as a conversation).");
  flags.AddSection("Model:");
  flags.AddString("name", &f.name, "NAME", "Registered name of the result (default reward-model).");
  flags.AddString("preset", &f.preset, "PRESET",
                  absl::StrCat("Train from scratch (default ", kDefaults.preset,
                               "):\nencoder-tiny, encoder-small, encoder-base, decoder-tiny,\n"
                               "decoder-small."));
  flags.AddString("base-model", &f.base_model, "DIR",
                  "Start from a Hugging Face directory under --model_dir.");
  flags.AddString("from-model", &f.from_model, "NAME[:V]", "Continue training a registered model.");
  flags.AddString("tokenizer", &f.tokenizer_path, "PATH",
                  "Tokenizer file under --model_dir (presets only).");
  flags.AddInt("vocab-size", &f.vocab_size, "N",
               absl::StrCat("Train a SentencePiece tokenizer of N pieces (default ",
                            kDefaults.vocab_size, ")."));
  flags.AddString("tokenizer-type", &f.tokenizer_type, "unigram|bpe",
                  "Kind of trained tokenizer (default unigram).");
  flags.AddSection("Hyperparameters:");
  flags.AddDouble("epochs", &f.epochs, "F", absl::StrCat("Passes over the data (default ", kDefaults.num_epochs, ")."));
  flags.AddInt("max-steps", &f.max_steps, "N",
               "Stop after N optimizer steps (overrides --epochs).");
  flags.AddDouble("lr", &f.learning_rate, "LR", absl::StrCat("Peak learning rate (default ", kDefaults.learning_rate, ")."));
  flags.AddInt("batch-size", &f.batch_size, "N", absl::StrCat("Pairs per micro-batch (default ", kDefaults.batch_size, ")."));
  flags.AddInt("eval-batch-size", &f.eval_batch_size, "N", "Pairs per eval batch.");
  flags.AddInt("grad-accum", &f.grad_accum, "N", absl::StrCat("Micro-batches per optimizer step (default ",
                            kDefaults.gradient_accumulation_steps, ")."));
  flags.AddInt("max-length", &f.max_length, "N", absl::StrCat("Longest sequence in tokens (default ", kDefaults.max_length,
                            ", at most the model's positions)."));
  flags.AddString("truncation", &f.truncation, "truncate|drop", absl::StrCat("Policy for longer pairs (default ",
                               verdict::TruncationPolicyName(kDefaults.truncation), ")."));
  flags.AddInt("warmup-steps", &f.warmup_steps, "N", "Linear warm-up steps.");
  flags.AddDouble("warmup-ratio", &f.warmup_ratio, "F", "Warm-up as a fraction of all steps.");
  flags.AddDouble("min-lr-ratio", &f.min_lr_ratio, "F",
                  absl::StrCat("Decay to this fraction of --lr (default ", kDefaults.min_lr_ratio,
                               ")."));
  flags.AddString("lr-scheduler", &f.lr_scheduler, "linear|cosine|constant",
                  absl::StrCat("Learning-rate shape (default ",
                               verdict::LrScheduleKindName(kDefaults.lr_scheduler), ")."));
  flags.AddDouble("weight-decay", &f.weight_decay, "F", absl::StrCat("AdamW weight decay (default ", kDefaults.weight_decay, ")."));
  flags.AddDouble("max-grad-norm", &f.max_grad_norm, "F", absl::StrCat("Gradient clipping (default ", kDefaults.max_grad_norm, "; 0: off)."));
  flags.AddDouble("center-rewards", &f.center_rewards, "F", "center_rewards_coefficient.");
  flags.AddBool("prefix-sharing", &f.prefix_sharing,
                absl::StrCat("Decoders: the prompt computed once per pair (default ",
                             kDefaults.prefix_sharing ? "true" : "false", ")."));
  flags.AddInt("max-batch-tokens", &f.max_batch_tokens, "N", "Token budget of a micro-batch.");
  flags.AddBool("gradient-checkpointing", &f.gradient_checkpointing,
                "Recompute each transformer block in the backward pass (less memory).");
  flags.AddInt("lora-rank", &f.lora_rank, "N",
               "LoRA adapters of rank N; backbone frozen, head trained (default 0: off).");
  flags.AddDouble("lora-alpha", &f.lora_alpha, "F",
                  absl::StrCat("LoRA scale alpha / rank (default ", kDefaults.lora_alpha, ")."));
  flags.AddString("lora-target-modules", &f.lora_target_modules, "A,B,...",
                  "Layers to adapt, e.g. q_proj,v_proj (default: all linear layers).");
  flags.AddInt("seed", &f.seed, "N", absl::StrCat("Seed of everything random (default ", kDefaults.seed, ")."));
  flags.AddSection("Schedule:");
  flags.AddInt("logging-steps", &f.logging_steps, "N",
               absl::StrCat("Log train metrics every N steps (default ",
                            kDefaults.logging_steps, ")."));
  flags.AddInt("eval-steps", &f.eval_steps, "N", "Evaluate every N steps (default: each epoch).");
  flags.AddInt("save-steps", &f.save_steps, "N",
               absl::StrCat("Checkpoint every N steps (default ", kDefaults.save_steps,
                            "; 0: at the end only)."));
  flags.AddInt("save-total-limit", &f.save_total_limit, "N", absl::StrCat("Checkpoints kept while running (default ",
                            kDefaults.save_total_limit, ")."));
  flags.AddString("device", &f.device, "DEV", "cpu, cuda or cuda:N (default: the server's).");
  flags.AddString("dtype", &f.dtype, "float32|bfloat16",
                  absl::StrCat("Training precision (default ",
                               verdict::DtypeName(kDefaults.dtype), ")."));
  flags.AddInt("world-size", &f.world_size, "N",
               "Data-parallel ranks: N verdict-train processes on the server's node, each\n"
               "with --batch-size pairs of every step (default 1: in the server; cpu only).");
  flags.AddInt("priority", &f.priority, "N", "Higher runs sooner, in [-100, 100].");
  flags.AddSection("Submission:");
  flags.AddString("request-id", &f.request_id, "KEY",
                  "Idempotency key: resubmitting returns the same job.");
  flags.AddString("upload-name", &f.upload_name, "NAME", "Name of the dataset --train uploads.");
  flags.AddBool("validate-only", &f.validate_only,
                "Check the spec and show it with defaults; create nothing. Local\n"
                "--train / --eval-file files are checked here instead, every problem\n"
                "listed with its line, and not uploaded (the server then checks the\n"
                "rest of the spec once the data is uploaded).");
  flags.AddBool("watch", &f.watch, "Follow the job until it ends (exit code as `verdict watch`).");
  flags.AddBool("no-progress", &f.no_progress, "With --watch: plain lines even on a terminal.");
}

// Applies an enum flag; false after printing the problem.
template <typename Setter>
bool SetEnum(const std::optional<std::string>& text, const google::protobuf::EnumDescriptor& type,
             absl::string_view flag, Setter set, CommandEnv& env) {
  if (!text) return true;
  absl::StatusOr<int> value = ParseEnumValue(type, *text);
  if (!value.ok()) {
    *env.err << "verdict: --" << flag << ": " << value.status().message() << "\n";
    return false;
  }
  set(*value);
  return true;
}

// Copies every given flag into the spec; false after printing a usage problem.
bool ApplyFlags(const SubmitFlags& f, TrainingJobSpec& spec, CommandEnv& env) {
  int data_sources = (f.train_file ? 1 : 0) + (f.dataset_id ? 1 : 0) + (f.data_path ? 1 : 0);
  int eval_sources = (f.eval_file ? 1 : 0) + (f.eval_dataset_id ? 1 : 0) + (f.eval_path ? 1 : 0) +
                     (f.eval_fraction ? 1 : 0);
  int bases = (f.preset ? 1 : 0) + (f.base_model ? 1 : 0) + (f.from_model ? 1 : 0);
  if (data_sources > 1 || eval_sources > 1 || bases > 1) {
    *env.err << "verdict: give at most one of "
             << (data_sources > 1   ? "--train, --dataset, --data-path"
                 : eval_sources > 1 ? "--eval-file, --eval-dataset, --eval-path, --eval-fraction"
                                    : "--preset, --base-model, --from-model")
             << "\n";
    return false;
  }
  if (f.dataset_id) spec.mutable_train_data()->set_dataset_id(*f.dataset_id);
  if (f.data_path) spec.mutable_train_data()->set_path(*f.data_path);
  if (f.eval_dataset_id) spec.mutable_eval()->mutable_dataset()->set_dataset_id(*f.eval_dataset_id);
  if (f.eval_path) spec.mutable_eval()->mutable_dataset()->set_path(*f.eval_path);
  if (f.eval_fraction) spec.mutable_eval()->set_eval_fraction(*f.eval_fraction);
  if (f.eval_max_pairs) spec.mutable_eval()->set_max_pairs(*f.eval_max_pairs);
  if (f.max_train_pairs) spec.mutable_data_options()->set_max_train_pairs(*f.max_train_pairs);
  if (f.skip_invalid) spec.mutable_data_options()->set_skip_invalid(true);
  if (f.name) spec.set_output_model_name(*f.name);
  if (f.preset) spec.set_preset(*f.preset);
  if (f.base_model) spec.set_base_model(*f.base_model);
  if (f.from_model) {
    absl::StatusOr<verdict::v1::ModelRef> model = ParseModelRef(*f.from_model);
    if (!model.ok()) {
      *env.err << "verdict: --from-model: " << model.status().message() << "\n";
      return false;
    }
    *spec.mutable_registered_model() = *model;
  }
  if (f.tokenizer_path) spec.mutable_tokenizer()->set_path(*f.tokenizer_path);
  if (f.vocab_size)
    spec.mutable_tokenizer()->mutable_train()->set_vocab_size(static_cast<int32_t>(*f.vocab_size));
  auto* h = spec.mutable_hyperparameters();
  if (f.epochs) h->set_num_epochs(*f.epochs);
  if (f.max_steps) h->set_max_steps(*f.max_steps);
  if (f.learning_rate) h->set_learning_rate(*f.learning_rate);
  if (f.batch_size) h->set_per_device_train_batch_size(static_cast<int32_t>(*f.batch_size));
  if (f.eval_batch_size)
    h->set_per_device_eval_batch_size(static_cast<int32_t>(*f.eval_batch_size));
  if (f.grad_accum) h->set_gradient_accumulation_steps(static_cast<int32_t>(*f.grad_accum));
  if (f.max_length) h->set_max_length(static_cast<int32_t>(*f.max_length));
  if (f.warmup_steps) h->set_warmup_steps(*f.warmup_steps);
  if (f.warmup_ratio) h->set_warmup_ratio(*f.warmup_ratio);
  if (f.min_lr_ratio) h->set_min_lr_ratio(*f.min_lr_ratio);
  if (f.weight_decay) h->set_weight_decay(*f.weight_decay);
  if (f.max_grad_norm) h->set_max_grad_norm(*f.max_grad_norm);
  if (f.center_rewards) h->set_center_rewards_coefficient(*f.center_rewards);
  if (f.prefix_sharing) h->set_prefix_sharing(*f.prefix_sharing);
  if (f.max_batch_tokens) h->set_max_batch_tokens(*f.max_batch_tokens);
  if (f.gradient_checkpointing) h->set_gradient_checkpointing(true);
  if (f.lora_rank) h->set_lora_rank(static_cast<int32_t>(*f.lora_rank));
  if (f.lora_alpha) h->set_lora_alpha(*f.lora_alpha);
  if (f.lora_target_modules) {
    h->clear_lora_target_modules();
    for (absl::string_view name : absl::StrSplit(*f.lora_target_modules, ',', absl::SkipEmpty())) {
      h->add_lora_target_modules(std::string(name));
    }
  }
  if (f.seed) h->set_seed(static_cast<uint64_t>(*f.seed));
  if (f.logging_steps) spec.set_logging_steps(static_cast<int32_t>(*f.logging_steps));
  if (f.eval_steps) spec.set_eval_steps(static_cast<int32_t>(*f.eval_steps));
  if (f.save_steps) spec.set_save_steps(static_cast<int32_t>(*f.save_steps));
  if (f.save_total_limit) spec.set_save_total_limit(static_cast<int32_t>(*f.save_total_limit));
  if (f.priority) spec.set_priority(static_cast<int32_t>(*f.priority));
  if (f.world_size) spec.set_world_size(static_cast<int32_t>(*f.world_size));
  if (f.device) spec.set_device(*f.device);
  return SetEnum(
             f.chat_format, *verdict::v1::ChatFormat_descriptor(), "chat-format",
             [&](int v) {
               spec.mutable_data_options()->set_chat_format(
                   static_cast<verdict::v1::ChatFormat>(v));
             },
             env) &&
         SetEnum(
             f.input_rule, *verdict::v1::InputRule_descriptor(), "input-rule",
             [&](int v) {
               spec.mutable_data_options()->set_input_rule(static_cast<verdict::v1::InputRule>(v));
             },
             env) &&
         SetEnum(
             f.data_format, *verdict::v1::DataFormat_descriptor(), "data-format",
             [&](int v) {
               spec.mutable_data_options()->set_format(static_cast<verdict::v1::DataFormat>(v));
             },
             env) &&
         SetEnum(
             f.tokenizer_type, *verdict::v1::SentencePieceModelType_descriptor(), "tokenizer-type",
             [&](int v) {
               spec.mutable_tokenizer()->mutable_train()->set_model_type(
                   static_cast<verdict::v1::SentencePieceModelType>(v));
             },
             env) &&
         SetEnum(
             f.truncation, *verdict::v1::TruncationPolicy_descriptor(), "truncation",
             [&](int v) { h->set_truncation(static_cast<verdict::v1::TruncationPolicy>(v)); },
             env) &&
         SetEnum(
             f.lr_scheduler, *verdict::v1::LrScheduler_descriptor(), "lr-scheduler",
             [&](int v) { h->set_lr_scheduler(static_cast<verdict::v1::LrScheduler>(v)); }, env) &&
         SetEnum(
             f.dtype, *verdict::v1::Dtype_descriptor(), "dtype",
             [&](int v) { spec.set_dtype(static_cast<verdict::v1::Dtype>(v)); }, env);
}

// Uploads a local file for --train / --eval-file; prints what it did on stderr.
absl::StatusOr<std::string> Upload(Connection& connection, const std::string& path,
                                   const std::optional<std::string>& name, CommandEnv& env) {
  UploadOptions options;
  if (name) options.name = *name;
  absl::StatusOr<verdict::v1::Dataset> dataset = UploadDatasetFile(connection, path, options);
  if (!dataset.ok()) return dataset.status();
  *env.err << "uploaded " << path << " as dataset " << dataset->id() << " (" << dataset->pairs()
           << " pairs, " << FormatBytes(dataset->size_bytes()) << ")\n";
  return dataset->id();
}

// --validate-only with local files: reads each as the job would (its data options), prints
// what was found on stderr (stdout with --output json) and uploads nothing. Returns the exit
// code.
int ValidateLocalFiles(const SubmitFlags& f, const TrainingJobSpec& spec, CommandEnv& env) {
  LocalInspectionOptions options;
  options.format = spec.data_options().format();
  options.chat_format = spec.data_options().chat_format();
  const bool skip_invalid = spec.data_options().skip_invalid();
  int exit_code = kExitOk;
  for (const auto* file : {&f.train_file, &f.eval_file}) {
    if (!file->has_value()) continue;
    absl::StatusOr<verdict::v1::DatasetInspection> report = InspectLocalFile(**file, options);
    if (!report.ok()) return ReportLocalError(report.status(), *env.err);
    const bool clean = InspectionIsClean(*report, skip_invalid);
    if (env.options.format() == OutputFormat::kJson) {
      *env.out << ToJson(*report) << "\n";
    } else {
      PrintInspection(*report, **file, *env.err);
    }
    if (!clean) {
      exit_code = kExitError;
      if (report->pairs() == 0) {
        *env.err << "verdict: " << **file << ": no valid preference pair\n";
      } else if (report->stopped().empty() && report->invalid_lines() > 0) {
        *env.err << "verdict: " << **file << ": a job would fail at line "
                 << report->invalid(0).line() << " (--skip-invalid skips invalid lines)\n";
      }
    }
  }
  if (exit_code == kExitOk && env.options.format() != OutputFormat::kJson) {
    *env.err << "the data is valid; nothing was uploaded. The server checks the rest of the "
                "spec with the data: upload it (verdict upload FILE) and submit with --dataset "
                "ID --validate-only\n";
  }
  return exit_code;
}

}  // namespace

int RunSubmit(const std::vector<std::string>& args, CommandEnv& env) {
  FlagParser flags(
      "verdict submit [--file JOB.yaml] [flags]",
      "Submits a reward-model training job and prints its id (details go to stderr). Unset\n"
      "fields take the server's defaults. With --train FILE the local file is uploaded\n"
      "first. Example:\n"
      "  verdict submit --train pairs.jsonl --preset encoder-tiny --vocab-size 400 \\\n"
      "      --max-steps 100 --name helpful-rm --watch");
  SubmitFlags f;
  AddFlags(flags, f);
  std::vector<std::string> positional;
  if (auto exit = ParseCommandArgs(flags, args, env, 0, 0, &positional)) return *exit;

  verdict::v1::SubmitTrainingJobRequest request;
  if (f.file) {
    absl::StatusOr<verdict::v1::SubmitTrainingJobRequest> loaded = LoadJobFile(*f.file);
    if (!loaded.ok()) return ReportLocalError(loaded.status(), *env.err);
    request = *std::move(loaded);
  }
  if (!ApplyFlags(f, *request.mutable_spec(), env)) {
    *env.err << "Usage: " << flags.usage() << "\n";
    return kExitUsage;
  }
  if (f.request_id) request.set_request_id(*f.request_id);
  if (f.validate_only) request.set_validate_only(true);
  if (!request.spec().has_train_data() && !f.train_file) {
    *env.err << "verdict: no training data: give --train FILE, --dataset ID, --data-path PATH or "
                "train_data in --file\nUsage: "
             << flags.usage() << "\n";
    return kExitUsage;
  }

  if (f.validate_only && (f.train_file || f.eval_file)) {
    return ValidateLocalFiles(f, request.spec(), env);
  }

  int exit_code = kExitOk;
  std::unique_ptr<Connection> connection = Connect(env, &exit_code);
  if (connection == nullptr) return exit_code;
  if (f.train_file) {
    absl::StatusOr<std::string> id = Upload(*connection, *f.train_file, f.upload_name, env);
    if (!id.ok()) return ReportRpcError(id.status(), env.options.server, *env.err);
    request.mutable_spec()->mutable_train_data()->set_dataset_id(*id);
  }
  if (f.eval_file) {
    absl::StatusOr<std::string> id = Upload(*connection, *f.eval_file, std::nullopt, env);
    if (!id.ok()) return ReportRpcError(id.status(), env.options.server, *env.err);
    request.mutable_spec()->mutable_eval()->mutable_dataset()->set_dataset_id(*id);
  }

  verdict::v1::Job job;
  std::unique_ptr<grpc::ClientContext> context = connection->NewContext();
  grpc::Status status = connection->training().SubmitTrainingJob(context.get(), request, &job);
  if (!status.ok()) return ReportRpcError(status, env.options.server, *env.err);
  if (env.options.format() == OutputFormat::kJson) {
    *env.out << ToJson(job) << "\n" << std::flush;
  } else if (f.validate_only) {
    *env.out << "the spec is valid; with every default filled in:\n" << ToJson(job.spec()) << "\n";
  } else {
    *env.err << "submitted job " << job.id() << " (" << JobStateName(job.state())
             << ", output model " << job.spec().output_model_name() << ")\n";
    *env.out << job.id() << "\n" << std::flush;
  }
  if (!f.watch || f.validate_only) return kExitOk;
  WatchArgs watch;
  watch.progress_bar = !f.no_progress;
  return WatchJob(*connection, job.id(), watch, env);
}

}  // namespace verdict::client
