"""A PPO-loop sketch: each step generates a batch of completions and scores them with verdictd.

The policy here is a stand-in (it picks canned completions, an empty one among them, as a
policy can generate nothing); swap in your model's generate(). What the sketch shows is the
scoring side of a real loop:
  - AsyncVerdictClient scores the step's micro-batches concurrently (asyncio.gather), so the
    server's batcher sees them together;
  - empty completions are scored like any other;
  - return_details=True gives the model version that scored (pin it with NAME:VERSION, or watch
    for an alias moving mid-run) and the tokens scored per item;
  - UNAVAILABLE and RESOURCE_EXHAUSTED are retried with backoff by the client, within each
    call's deadline, so a busy or restarting scorer slows the loop instead of crashing it.

    python ppo_loop.py --server localhost:50051 --model reward-model --steps 3
"""

import argparse
import asyncio
import random
import statistics
import sys
from typing import List, Tuple

import grpc

from verdict_client import AsyncVerdictClient, RetryPolicy, ScoreResult

QUESTIONS = ["What is the capital of France?", "How do I boil an egg?",
             "Name a prime number.", "What colour is the sky?"]
CANNED = [" Here is a careful, helpful answer.", " I don't know.", " Figure it out yourself.",
          " Sure! Let me explain step by step.", ""]


def generate(rng: random.Random, batch_size: int) -> Tuple[List[str], List[str]]:
    """The policy's rollouts for one step (a stand-in for model.generate)."""
    prompts = [f"\n\nHuman: {rng.choice(QUESTIONS)}\n\nAssistant:" for _ in range(batch_size)]
    completions = [rng.choice(CANNED) for _ in range(batch_size)]
    completions[0] = ""  # every batch has an empty completion, for the sketch's sake
    return prompts, completions


async def score_step(client: AsyncVerdictClient, prompts: List[str], completions: List[str],
                     micro_batch: int) -> ScoreResult:
    """Scores one step's rollouts as concurrent micro-batches, merged back in order."""
    parts = await asyncio.gather(*[
        client.score(prompts[i:i + micro_batch], completions[i:i + micro_batch],
                     return_details=True)
        for i in range(0, len(prompts), micro_batch)])
    versions = {(part.model, part.version) for part in parts}
    if len(versions) != 1:
        # An alias moved between micro-batches: rewards from two versions must not be mixed.
        raise RuntimeError(f"one step was scored by several versions: {sorted(versions)}")
    merged = parts[0]
    for part in parts[1:]:
        merged.rewards += part.rewards
        merged.token_counts += part.token_counts
        merged.requests += part.requests
    return merged


async def run(args) -> int:
    rng = random.Random(args.seed)
    async with AsyncVerdictClient(args.server, model=args.model, timeout=args.timeout,
                                  retry=RetryPolicy(max_attempts=8)) as client:
        for step in range(args.steps):
            prompts, completions = generate(rng, args.batch_size)
            scored = await score_step(client, prompts, completions, args.micro_batch)
            mean = statistics.fmean(scored.rewards)
            std = statistics.pstdev(scored.rewards) or 1.0
            advantages = [(r - mean) / std for r in scored.rewards]  # what PPO would use
            empty = [r for r, c in zip(scored.rewards, completions) if not c]
            print(f"step {step}: {len(scored.rewards)} rewards from {scored.model} "
                  f"v{scored.version}, mean {mean:+.4f}, std {std:.4f}, "
                  f"{len(empty)} empty (mean {statistics.fmean(empty):+.4f}), "
                  f"{sum(scored.token_counts)} tokens, max |advantage| "
                  f"{max(abs(a) for a in advantages):.2f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", help="HOST:PORT (default $VERDICT_SERVER)")
    parser.add_argument("--model", help="NAME[:VERSION|:ALIAS] (default $VERDICT_MODEL)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per scoring call")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        return asyncio.run(run(args))
    except grpc.RpcError as error:
        print(f"ppo_loop: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
