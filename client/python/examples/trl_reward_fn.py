"""A TRL-style reward function backed by verdictd: rewards = reward_fn(prompts, completions).

TRL's GRPOTrainer (and trainers built like it) call each reward function as
`reward_func(prompts=..., completions=..., **dataset_columns)` and expect one float per
completion. Both of TRL's data formats are accepted:
  - standard: prompts and completions are strings (the completion may be empty);
  - conversational: a prompt is a list of {"role", "content"} messages and a completion is
    [{"role": "assistant", "content": ...}]; they are scored as one conversation, rendered with
    the model's chat format on the server.

    from trl_reward_fn import make_reward_fn
    reward_fn = make_reward_fn("localhost:50051", model="helpful-rm:production")
    trainer = GRPOTrainer(model=..., reward_funcs=[reward_fn], ...)

Retries (UNAVAILABLE, RESOURCE_EXHAUSTED), deadlines and splitting big batches into requests
are the client's (VerdictClient's RetryPolicy, timeout and max_items_per_request).

As a script, it scores a few completions, an empty one among them, and prints the rewards:
    python trl_reward_fn.py --server localhost:50051 --model reward-model
"""

import argparse
import sys
from typing import Any, List, Optional, Sequence

import grpc

from verdict_client import VerdictClient


class RewardFunction:
    """reward_fn(prompts, completions, **kwargs) -> list[float], in input order."""

    def __init__(self, client: VerdictClient, model: Optional[str] = None,
                 normalize: bool = False):
        self.client = client
        self.model = model
        self.normalize = normalize
        # TRL logs each reward function's rewards under its __name__.
        self.__name__ = f"verdict/{model or client.model}"

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any],
                 **kwargs) -> List[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        if not completions:
            return []
        if isinstance(completions[0], str) or completions[0] is None:
            return self.client.score(list(prompts), list(completions), self.model,
                                     normalize=self.normalize)
        conversations = [_messages(prompt) + list(completion)
                         for prompt, completion in zip(prompts, completions)]
        return self.client.score_conversations(conversations, self.model,
                                               normalize=self.normalize)


def _messages(prompt) -> list:
    # A conversational completion may come with a plain-string prompt: a user turn.
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def make_reward_fn(target: Optional[str] = None, model: Optional[str] = None, *,
                   normalize: bool = False, **client_options) -> RewardFunction:
    """A RewardFunction for `target` (default $VERDICT_SERVER, else localhost:50051) and `model`
    (default $VERDICT_MODEL); client_options go to VerdictClient (token, tls, ca_file, timeout,
    retry, max_items_per_request, ...)."""
    client = VerdictClient(target, model=model, **client_options)
    if not client.model:
        raise ValueError("model: pass model= or set VERDICT_MODEL")
    return RewardFunction(client, normalize=normalize)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", help="HOST:PORT (default $VERDICT_SERVER)")
    parser.add_argument("--model", help="NAME[:VERSION|:ALIAS] (default $VERDICT_MODEL)")
    args = parser.parse_args()
    reward_fn = make_reward_fn(args.server, args.model)
    prompts = ["\n\nHuman: What is the capital of France?\n\nAssistant:"] * 3
    completions = [" The capital of France is Paris.", " Figure it out yourself.", ""]
    conversational_prompts = [[{"role": "user", "content": "What is the capital of France?"}]]
    conversational_completions = [[{"role": "assistant", "content": "It is Paris."}]]
    try:
        for completion, reward in zip(completions, reward_fn(prompts, completions)):
            print(f"{reward:+.4f}  {completion!r}")
        [reward] = reward_fn(conversational_prompts, conversational_completions)
        print(f"{reward:+.4f}  {conversational_completions[0]!r}")
    except grpc.RpcError as error:
        print(f"trl_reward_fn: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
