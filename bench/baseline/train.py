#!/usr/bin/python3
"""TRL-style reward-model training loop in plain PyTorch: the baseline arm of compare.py.

What TRL's RewardTrainer does by default, on our ids and initial weights: the training pairs in
a random order each epoch (no length grouping), batches of --batch_size pairs, chosen and
rejected rows stacked into one batch and right-padded to its longest row, one forward,
loss = mean(-logsigmoid(r_chosen - r_rejected)), gradient norm clipped to 1.0, AdamW
(lr 1e-4, betas 0.9/0.999, eps 1e-8, weight decay 0) with a linear decay to 0.

Reads from the directory `baseline_tool --mode=export` writes: pairs.jsonl (token ids, encoded
by our tokenizer exactly as our trainer encodes them), init/ (the initial weights), check.json
(our trainer's loss and rewards on its first batch).

  train.py --dir DIR --max_steps 12 --seed 43     # prints "RESULT pairs_per_second=..."
  train.py --dir DIR --check                       # the same loss as our trainer?
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import load_model, pad_batch  # noqa: E402


def read_pairs(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def collate(pairs, indices, pad_id):
    rows = [pairs[i]["chosen"] for i in indices] + [pairs[i]["rejected"] for i in indices]
    ids, mask = pad_batch(rows, pad_id)
    return ids, mask, int(mask.sum()), ids.numel()


def check(args, pairs, model, pad_id):
    """Our trainer's loss and reward statistics on its first batch vs this loop's."""
    expected = json.loads((Path(args.dir) / "check.json").read_text())
    ids, mask, _, _ = collate(pairs, expected["batch"], pad_id)
    n = len(expected["batch"])
    with torch.no_grad():
        rewards = model(ids, mask).double()
        loss = (-F.logsigmoid(rewards[:n] - rewards[n:])).mean().item()
    ours = {"loss": loss, "chosen_reward_mean": rewards[:n].mean().item(),
            "rejected_reward_mean": rewards[n:].mean().item(),
            "reward_min": rewards.min().item(), "reward_max": rewards.max().item()}
    worst = 0.0
    for key, value in ours.items():
        diff = abs(value - expected[key])
        worst = max(worst, diff)
        print(f"check {key:22s} verdict trainer {expected[key]: .8f}  python {value: .8f}  "
              f"|diff| {diff:.2e}")
    print(f"CHECK max_abs_diff={worst:.3e} {'OK' if worst < 1e-5 else 'MISMATCH'}")
    return 0 if worst < 1e-5 else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", required=True, help="baseline_tool --mode=export's output")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_steps", type=int, default=12)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--check", action="store_true", help="only the consistency check")
    args = parser.parse_args()

    pairs = read_pairs(Path(args.dir) / "pairs.jsonl")
    model = load_model(Path(args.dir) / "init")
    pad_id = int(model.config.get("pad_token_id", 0) or 0)
    if args.check:
        return check(args, pairs, model, pad_id)

    torch.manual_seed(args.seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, betas=(0.9, 0.999),
                                  eps=1e-8, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(0.0, 1.0 - step / args.max_steps))
    generator = torch.Generator().manual_seed(args.seed)

    step, timed_pairs, timed_seconds = 0, 0, 0.0
    real_tokens, padded_tokens, loss_value = 0, 0, 0.0
    while step < args.max_steps:
        order = torch.randperm(len(pairs), generator=generator).tolist()
        for start in range(0, len(order) - args.batch_size + 1, args.batch_size):
            if step >= args.max_steps:
                break
            began = time.perf_counter()
            indices = order[start:start + args.batch_size]
            ids, mask, real, padded = collate(pairs, indices, pad_id)
            rewards = model(ids, mask)
            n = len(indices)
            loss = (-F.logsigmoid(rewards[:n] - rewards[n:])).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            loss_value = loss.item()
            elapsed = time.perf_counter() - began
            step += 1
            if step == 1:
                continue  # one-off costs, as our trainer's first step is left out
            timed_pairs += n
            timed_seconds += elapsed
            real_tokens += real
            padded_tokens += padded
    padding = 1.0 - real_tokens / max(1, padded_tokens)
    load = os.getloadavg()[0]
    print(f"RESULT pairs_per_second={timed_pairs / timed_seconds:.3f} pairs={timed_pairs} "
          f"seconds={timed_seconds:.2f} padding={padding:.3f} last_loss={loss_value:.4f} "
          f"load={load:.2f} torch_threads={torch.get_num_threads()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
