"""The reward function a PPO (RLHF) loop calls: reward_fn(prompts, responses) -> list[float].

A PPO step generates a batch of responses and needs one scalar reward each. This module turns
verdictd's ScoringService into that function:

    from ppo_reward_fn import make_reward_fn
    reward_fn = make_reward_fn("localhost:50051", model="helpful-rm:production")
    rewards = reward_fn(prompts, responses)      # list[float], same order as the inputs

It splits big batches into requests of `batch_size` items, and retries a request the server
refuses with RESOURCE_EXHAUSTED (its scoring queue is full) or UNAVAILABLE (restarting,
draining, or not reachable yet) with exponential backoff and jitter, so a training loop rides
out a busy or restarting scorer instead of crashing. Other errors (a wrong model name, an
empty response, ...) are raised at once: retrying cannot fix them.

Run as a script it scores a few pairs against a server:
    /usr/bin/python3 ppo_reward_fn.py --server localhost:50051 --model reward-model
"""

import argparse
import os
import random
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import grpc

try:
    from verdict_client import VerdictClient
except ImportError:  # run from the repository: client/python is one level up
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from verdict_client import VerdictClient

RETRYABLE = (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)


class RewardFunction:
    """Callable reward_fn(prompts, responses) -> list[float] backed by a VerdictClient."""

    def __init__(self, client: VerdictClient, model: str, *, batch_size: int = 64,
                 normalize: bool = False, max_attempts: int = 8, initial_backoff: float = 0.1,
                 max_backoff: float = 5.0, sleep: Callable[[float], None] = time.sleep):
        if batch_size < 1 or max_attempts < 1:
            raise ValueError("batch_size and max_attempts must be >= 1")
        self.client = client
        self.model = model
        self.batch_size = batch_size
        self.normalize = normalize
        self.max_attempts = max_attempts
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self.retries = 0  # how many retries all calls needed (for logging / tests)

    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> List[float]:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        rewards: List[float] = []
        for start in range(0, len(prompts), self.batch_size):
            end = start + self.batch_size
            rewards.extend(self._score_with_retry(prompts[start:end], responses[start:end]))
        return rewards

    def _score_with_retry(self, prompts, responses) -> List[float]:
        for attempt in range(self.max_attempts):
            try:
                return self.client.score(prompts, responses, model=self.model,
                                         normalize=self.normalize)
            except grpc.RpcError as error:
                if error.code() not in RETRYABLE or attempt + 1 == self.max_attempts:
                    raise
                backoff = min(self.max_backoff, self.initial_backoff * (2 ** attempt))
                self.retries += 1
                self._sleep(backoff * random.uniform(0.5, 1.0))
        raise AssertionError("unreachable")


def make_reward_fn(target: Optional[str] = None, model: Optional[str] = None,
                   token: Optional[str] = None, **options) -> RewardFunction:
    """A RewardFunction for `target` (default $VERDICT_SERVER or localhost:50051) and `model`
    (default $VERDICT_MODEL or reward-model); the token defaults to $VERDICT_TOKEN."""
    client = VerdictClient(target or os.environ.get("VERDICT_SERVER", "localhost:50051"),
                           token=token or os.environ.get("VERDICT_TOKEN") or None)
    return RewardFunction(client, model or os.environ.get("VERDICT_MODEL", "reward-model"),
                          **options)


_default: Optional[RewardFunction] = None


def reward_fn(prompts: Sequence[str], responses: Sequence[str]) -> List[float]:
    """The plain function a PPO trainer takes, configured from the environment."""
    global _default
    if _default is None:
        _default = make_reward_fn()
    return _default(prompts, responses)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=os.environ.get("VERDICT_SERVER", "localhost:50051"))
    parser.add_argument("--model", default=os.environ.get("VERDICT_MODEL", "reward-model"))
    args = parser.parse_args()
    fn = make_reward_fn(args.server, args.model)
    prompts = ["\n\nHuman: What is the capital of France?\n\nAssistant:"] * 2
    responses = [" The capital of France is Paris.", " Figure it out yourself."]
    try:
        for response, reward in zip(responses, fn(prompts, responses)):
            print(f"{reward:+.4f}  {response!r}")
    except grpc.RpcError as error:
        print(f"ppo_reward_fn: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
