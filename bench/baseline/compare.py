#!/usr/bin/python3
"""verdict vs the Python baseline, training and scoring, interleaved (A B A B ...), medians.

1. `baseline_tool --mode=export`: our tokenizer trained on hh-rlhf helpful-base, every training
   pair as token ids (encoded as our trainer encodes them), the scoring texts, and the initial
   weights saved by our trainer.
2. Consistency: the Python loop's loss and rewards on our trainer's first batch, same weights
   and ids, against what our trainer reported for it (must agree to 1e-5).
3. Training: `baseline_tool --mode=train` (our Trainer, as shipped: length-grouped batches)
   and `train.py` (TRL-style: random order, pad to longest), both from the same initial
   weights and ids, batch 16 pairs, AdamW, clip 1.0; pairs/s over the steps after the first.
4. Scoring: verdictd (its defaults; the model imported and loaded over gRPC) and scorer.py
   (per request, no cross-request batching) serve the model our first training run produced;
   the same load.py closed loop (N clients x B items) runs against each in turn; items/s,
   p50 and p99. Both servers' scores of one request are compared first. --group=G makes the
   load GRPO-shaped for both arms: each request holds B/G prompts with G completions each.

  bench/baseline/compare.py                          # encoder-tiny, 3 reps, ~5 min
  bench/baseline/compare.py --preset=encoder-small --train_steps=8
  bench/baseline/compare.py --preset=decoder-tiny                 # the Llama layout
  bench/baseline/compare.py --preset=decoder-tiny --group=8 --skip_training   # GRPO scoring
  bench/baseline/compare.py --base_model=tests/data/models/stories260K-hf

Needs build/bench/baseline_tool and build/server/verdictd, and Debian's python3-torch,
python3-sentencepiece and python3-grpcio.
"""

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


def machine():
    load = open("/proc/loadavg").read().split()[:3]
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")), "?")
    return f"nproc={os.cpu_count()} cpu='{model}' loadavg={' '.join(load)}"


def result_of(output):
    match = re.search(r"^RESULT (.*)$", output, re.M)
    if not match:
        raise RuntimeError(f"no RESULT line in:\n{output[-2000:]}")
    return {k: float(v) for k, v in (kv.split("=") for kv in match.group(1).split())}


def run(command):
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, process, timeout=60):
    give_up = time.time() + timeout
    while time.time() < give_up:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port}")


def median(values):
    return statistics.median(values) if values else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default=str(ROOT / "build"))
    parser.add_argument("--preset", default="encoder-tiny")
    parser.add_argument("--base_model", default="",
                        help="a Hugging Face base to start from instead of --preset, e.g. "
                             "tests/data/models/stories260K-hf")
    parser.add_argument("--max_length", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=16, help="training pairs per batch")
    parser.add_argument("--train_steps", type=int, default=12)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16, help="scoring items per request")
    parser.add_argument("--seconds", type=float, default=8, help="scoring phase length")
    parser.add_argument("--group", type=int, default=1,
                        help="GRPO-shaped scoring load: completions of one prompt per group, "
                             "--batch / --group groups per request (1: independent items)")
    parser.add_argument("--scorer_concurrency", type=int, default=1)
    parser.add_argument("--skip_training", action="store_true")
    parser.add_argument("--skip_scoring", action="store_true")
    args = parser.parse_args()
    if args.group < 1 or args.batch % args.group != 0:
        parser.error(f"--batch ({args.batch}) must be a multiple of --group ({args.group})")

    tool = Path(args.build) / "bench/baseline_tool"
    verdictd = Path(args.build) / "server/verdictd"
    work = Path(tempfile.mkdtemp(prefix="verdict_baseline_"))
    print(f"compare: {machine()}")
    shape = (f" ({args.batch // args.group} prompts x {args.group} completions)"
             if args.group > 1 else "")
    print(f"model {args.base_model or args.preset}, max_length {args.max_length}, "
          f"training batch {args.batch_size} pairs x {args.train_steps} steps, scoring "
          f"{args.clients} clients x {args.batch} items{shape} x {args.seconds:.0f} s, {args.reps} reps, "
          f"A = verdict, B = Python baseline")
    processes = []
    try:
        export = [tool, "--mode=export", f"--out={work}", f"--preset={args.preset}",
                  f"--max_length={args.max_length}", f"--batch_size={args.batch_size}"]
        if args.base_model:
            export.append(f"--base_model={Path(args.base_model).resolve()}")
        print(run(export).strip())
        check = run([PYTHON, HERE / "train.py", "--dir", work, "--check"])
        print(check.strip())

        # The model the scoring arms serve: our trainer's, after its first training run.
        trained = work / "trained"
        train_rows = []
        if not args.skip_training:
            print("\n== training (pairs/s over steps 2..N)")
            for rep in range(args.reps):
                seed = str(42 + rep)
                for arm in ("A", "B"):
                    if arm == "A":
                        command = [tool, "--mode=train", f"--out={work}", f"--seed={seed}",
                                   f"--max_steps={args.train_steps}",
                                   f"--batch_size={args.batch_size}",
                                   f"--max_length={args.max_length}"]
                        if not trained.exists():
                            command.append(f"--keep={trained}")
                    else:
                        command = [PYTHON, HERE / "train.py", "--dir", work, "--seed", seed,
                                   "--max_steps", str(args.train_steps),
                                   "--batch_size", str(args.batch_size)]
                    r = result_of(run(command))
                    train_rows.append((arm, r))
                    print(f"{arm} rep {rep}  pairs/s {r['pairs_per_second']:7.2f}  padding "
                          f"{r['padding']:.3f}  loss {r['last_loss']:.4f}  load {r['load']:.2f}",
                          flush=True)
        if not trained.exists():
            shutil.copytree(work / "init", trained)

        score_rows = []
        agreement = None
        if not args.skip_scoring:
            sys.path.insert(0, str(HERE))
            import grpc
            from load import read_items, run_load, score
            from stubs import v1

            ours_port, base_port = free_port(), free_port()
            processes.append(subprocess.Popen(
                [verdictd, f"--port={ours_port}", "--metrics_port=-1",
                 f"--state_dir={work / 'state'}", f"--model_dir={work}"],
                stdout=subprocess.DEVNULL, stderr=open(work / "verdictd.log", "w")))
            processes.append(subprocess.Popen(
                [PYTHON, HERE / "scorer.py", "--model_dir", trained, "--port", str(base_port),
                 "--concurrency", str(args.scorer_concurrency)],
                stdout=subprocess.DEVNULL, stderr=open(work / "scorer.log", "w")))
            wait_for_port(ours_port, processes[0])
            wait_for_port(base_port, processes[1])
            with grpc.insecure_channel(f"127.0.0.1:{ours_port}") as channel:
                models = v1.models_pb2_grpc.ModelServiceStub(channel)
                models.ImportModel(v1.models_pb2.ImportModelRequest(name="bl", path="trained"))
                models.LoadModel(v1.models_pb2.LoadModelRequest(
                    model=v1.common_pb2.ModelRef(name="bl")))
            items = read_items(work / "items.jsonl")
            targets = {"A": f"127.0.0.1:{ours_port}", "B": f"127.0.0.1:{base_port}"}
            ours = score(targets["A"], "bl", items, args.batch, group=args.group)
            theirs = score(targets["B"], "bl", items, args.batch, group=args.group)
            agreement = max(abs(a - b) for a, b in zip(ours, theirs))
            print(f"\nscores of one {args.batch}-item request, verdictd vs scorer.py: max |diff| "
                  f"{agreement:.2e}")
            print("== scoring")
            for rep in range(args.reps):
                for arm in ("A", "B"):
                    r = run_load(targets[arm], "bl", items, args.clients, args.batch,
                                 args.seconds, group=args.group)
                    r["load"] = os.getloadavg()[0]
                    score_rows.append((arm, r))
                    print(f"{arm} rep {rep}  items/s {r['items_per_second']:7.2f}  p50 ms "
                          f"{r['p50_ms']:7.1f}  p99 ms {r['p99_ms']:7.1f}  requests "
                          f"{r['requests']}  errors {r['errors']}  load {r['load']:.2f}",
                          flush=True)

        print("\n== medians (A = verdict, B = Python baseline)")
        if train_rows:
            a = median([r["pairs_per_second"] for arm, r in train_rows if arm == "A"])
            b = median([r["pairs_per_second"] for arm, r in train_rows if arm == "B"])
            pa = median([r["padding"] for arm, r in train_rows if arm == "A"])
            pb = median([r["padding"] for arm, r in train_rows if arm == "B"])
            per_rep = [ra["pairs_per_second"] / rb["pairs_per_second"]
                       for (_, ra), (_, rb) in zip(train_rows[0::2], train_rows[1::2])]
            print(f"training pairs/s: A {a:.2f} (padding {pa:.3f})  B {b:.2f} (padding {pb:.3f})"
                  f"  A/B {a / b:.2f}x (median of per-rep ratios {median(per_rep):.2f}x)")
        if score_rows:
            def med(arm, key):
                return median([r[key] for x, r in score_rows if x == arm])
            print(f"scoring items/s: A {med('A', 'items_per_second'):.2f}  B "
                  f"{med('B', 'items_per_second'):.2f}  A/B "
                  f"{med('A', 'items_per_second') / med('B', 'items_per_second'):.2f}x")
            print(f"scoring p50 ms: A {med('A', 'p50_ms'):.1f}  B {med('B', 'p50_ms'):.1f};  "
                  f"p99 ms: A {med('A', 'p99_ms'):.1f}  B {med('B', 'p99_ms'):.1f}  "
                  f"(A/B p99 {med('A', 'p99_ms') / med('B', 'p99_ms'):.2f})")
        print(f"after: {machine()}")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
