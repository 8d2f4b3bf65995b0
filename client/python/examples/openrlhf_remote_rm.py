"""verdictd as OpenRLHF's remote reward model: POST /get_reward over HTTP.

OpenRLHF's PPO/GRPO trainers score rollouts through a reward server given with
`--remote_rm_url`: they post {"query": [<prompt and response, joined>, ...]} and read
{"rewards": [...]}. Start verdictd with its HTTP port and point OpenRLHF at it:

    verdictd --http_port=5000 --http_model=helpful-rm:production
    python -m openrlhf.cli.train_ppo_ray ... --remote_rm_url http://rm-host:5000/get_reward

(`?model=NAME[:VERSION|ALIAS]` in the URL picks another model.) Each query is scored as the
model's input rule frames a joined text (ScoreItem.text in proto/verdict/v1/scoring.proto):
under TRL's concat rule, exactly the reward of its prompt and response.

This file does what OpenRLHF's client does, with the standard library only, so a loop that is
not OpenRLHF can call the same endpoint. As a script it scores a few joined texts, an empty
completion among them, and prints the rewards:

    python openrlhf_remote_rm.py --url http://localhost:5000/get_reward?model=reward-model
"""

import argparse
import json
import random
import sys
import time
import urllib.error
import urllib.request
from typing import List, Optional, Sequence

# Worth another try: the queue is full (429) or the server is draining or restarting (503).
RETRYABLE = {429, 503}


class RewardServerError(RuntimeError):
    """The reward server refused the request: `status` (HTTP) and the server's error body."""

    def __init__(self, status: int, error: dict):
        super().__init__(f"HTTP {status} {error.get('status', '')}: {error.get('message', '')}")
        self.status = status
        self.error = error


def remote_rm_fn(url: str, queries: Sequence[str], token: Optional[str] = None,
                 timeout: float = 60.0, max_attempts: int = 5) -> List[float]:
    """One reward per query, in order, from POST `url` (…/get_reward)."""
    body = json.dumps({"query": list(queries)}).encode()
    headers = {"Content-Type": "application/json",
               # The server stops waiting for the scores when the client would.
               "X-Request-Timeout-Ms": str(int(timeout * 1000))}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    backoff = 0.1
    for attempt in range(1, max_attempts + 1):
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())["rewards"]
        except urllib.error.HTTPError as failure:
            error = json.loads(failure.read() or b"{}").get("error", {})
            if failure.code not in RETRYABLE or attempt == max_attempts:
                raise RewardServerError(failure.code, error) from None
        except urllib.error.URLError:  # not listening (yet): a restarting server
            if attempt == max_attempts:
                raise
        time.sleep(backoff * random.uniform(0.5, 1.5))
        backoff = min(backoff * 2, 5.0)
    raise AssertionError("unreachable")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="http://HOST:PORT/get_reward[?model=...]")
    parser.add_argument("--token", help="bearer token, when verdictd has --token_file")
    args = parser.parse_args(argv)
    prompt = "\n\nHuman: What is the capital of France?\n\nAssistant:"
    queries = [prompt + " Paris.", prompt + " I would rather not say.", prompt]
    try:
        rewards = remote_rm_fn(args.url, queries, token=args.token)
    except RewardServerError as error:
        print(f"openrlhf_remote_rm: {error}", file=sys.stderr)
        return 1
    for query, reward in zip(queries, rewards):
        print(f"{reward:+.4f} {query[len(prompt):]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
