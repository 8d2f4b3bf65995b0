// One rank of a data-parallel training run, for data_parallel_test.cc: a small real run
// (synthetic data from tests/data, the encoder-tiny preset, a committed tokenizer), its
// settings given as key=value arguments, every on_step loss appended to `losses` at full
// precision. The rendezvous comes from the environment, as torchrun sets it. Exits 1 with the
// trainer's error on stderr.
//
//   data_parallel_worker output=DIR batch_size=8 world_size=2 losses=FILE [timeout=S]
//       [eval_steps=N] [save_steps=N] [overlap=0|1]
#include <cstdio>
#include <iostream>
#include <map>
#include <string>

#include "absl/strings/numbers.h"
#include "core/train/trainer.h"

int main(int argc, char** argv) {
  std::map<std::string, std::string> args;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    if (eq == std::string::npos) {
      std::cerr << "want key=value, got " << arg << "\n";
      return 2;
    }
    args[arg.substr(0, eq)] = arg.substr(eq + 1);
  }
  auto number = [&](const std::string& key, int64_t fallback) {
    int64_t value = fallback;
    if (args.count(key) && !absl::SimpleAtoi(args[key], &value)) {
      std::cerr << key << ": not a number\n";
      std::exit(2);
    }
    return value;
  };
  auto real = [&](const std::string& key, double fallback) {
    double value = fallback;
    if (args.count(key) && !absl::SimpleAtod(args[key], &value)) {
      std::cerr << key << ": not a number\n";
      std::exit(2);
    }
    return value;
  };
  verdict::TrainingConfig config;
  const std::string data = VERDICT_TESTDATA_DIR;
  config.train_path = data + "/synthetic/helpful-concise.jsonl";
  config.tokenizer_path = data + "/tokenizers/sentencepiece-test/test_model.model";
  config.preset = "encoder-tiny";
  // 97 training pairs in global batches of 16: the last one holds a single pair, so one of two
  // ranks gets an empty shard.
  config.max_train_pairs = 97;
  config.max_eval_pairs = 16;
  config.max_length = 64;
  config.learning_rate = 3e-3;
  config.num_epochs = number("epochs", 2);
  config.gradient_accumulation_steps = 2;
  config.logging_steps = 1;
  // Under the pairwise loss alone, classifier.bias has a true gradient of exactly zero (the
  // loss sees only r_chosen - r_rejected), so its gradient is pure float noise that depends on
  // the reduction order, and Adam divides it by sqrt(v) ~ |noise|: +-lr steps that differ
  // between any two batchings of the same pairs (1 x 16 vs 1 x 8 with accumulation too), by
  // 1e-3 after 4 steps here. TRL's recommended centring term (0.01) gives that bias a real
  // gradient, and an epsilon of 1e-6 keeps the other near-zero gradients' noise below
  // Adam's floor, so that the comparison measures data parallelism, not noise amplification.
  config.center_rewards_coefficient = real("center", 0.01);
  config.adam_epsilon = real("eps", 1e-6);
  config.batch_size = number("batch_size", 16);
  config.world_size = number("world_size", 1);
  config.distributed_timeout_seconds = number("timeout", 30);
  config.overlap_allreduce = number("overlap", 1) != 0;
  config.eval_steps = number("eval_steps", 0);
  config.save_steps = number("save_steps", 0);
  config.output_dir = args["output"];
  config.run_dir = args["output"] + ".run";

  const std::string losses_path = args["losses"];
  verdict::TrainerCallbacks callbacks;
  callbacks.on_step = [&](const verdict::TrainStepMetrics& m) {
    if (FILE* f = std::fopen(losses_path.c_str(), "a")) {
      std::fprintf(f, "%lld %.17g %lld\n", static_cast<long long>(m.step), m.loss,
                   static_cast<long long>(m.pairs));
      std::fclose(f);
    }
  };
  auto trainer = verdict::Trainer::Create(config, callbacks);
  if (!trainer.ok()) {
    std::cerr << trainer.status() << "\n";
    return 1;
  }
  auto result = (*trainer)->Run();
  if (!result.ok()) {
    std::cerr << result.status() << "\n";
    return 1;
  }
  return 0;
}
