"""A small Python client for verdictd's ScoringService.

    from verdict_client import VerdictClient
    client = VerdictClient("localhost:50051", token=None)
    scores = client.score(["\\n\\nHuman: Hi\\n\\nAssistant:"], [" Hello! How can I help?"],
                          model="helpful-rm")

The stubs are generated from the repository's proto/ on first use (see _stubs.py). Errors are
grpc.RpcError with the server's status code and message; retrying is left to the caller (see
examples/ppo_reward_fn.py for a loop that retries RESOURCE_EXHAUSTED and UNAVAILABLE).
"""

from typing import List, Optional, Sequence

import grpc

from verdict_client._stubs import generate_stubs, load_stubs

__all__ = ["VerdictClient", "parse_model_ref", "generate_stubs", "load_stubs"]


def parse_model_ref(text: str, stubs=None):
    """"name" (latest), "name:3" (version 3) or "name:alias" -> a verdict.v1.ModelRef."""
    stubs = stubs or load_stubs()
    name, _, selector = text.partition(":")
    if not name:
        raise ValueError(f"model: expected NAME, NAME:VERSION or NAME:ALIAS, got {text!r}")
    ref = stubs.common_pb2.ModelRef(name=name)
    if selector.isdigit():
        ref.version = int(selector)
    elif selector:
        ref.alias = selector
    return ref


class VerdictClient:
    """One channel to a verdictd; safe to share between threads (gRPC channels are)."""

    def __init__(self, target: str = "localhost:50051", token: Optional[str] = None, *,
                 tls: bool = False, root_certificates: Optional[bytes] = None,
                 timeout: float = 30.0):
        self._stubs = load_stubs()
        options = [("grpc.max_receive_message_length", 64 << 20),
                   ("grpc.max_send_message_length", 64 << 20),
                   # After a server restart, try the connection again within seconds rather
                   # than gRPC's default backoff of up to two minutes: callers retrying
                   # UNAVAILABLE would otherwise keep failing against a server that is back.
                   ("grpc.initial_reconnect_backoff_ms", 250),
                   ("grpc.min_reconnect_backoff_ms", 250),
                   ("grpc.max_reconnect_backoff_ms", 2000)]
        if tls or root_certificates is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout
        self._scoring = self._stubs.scoring_pb2_grpc.ScoringServiceStub(self._channel)

    def score(self, prompts: Sequence[str], responses: Sequence[str], model: str = "reward-model",
              normalize: bool = False, timeout: Optional[float] = None) -> List[float]:
        """One reward per (prompt, response), in order, from one ScoreBatch request.

        `model` is "name", "name:VERSION" or "name:ALIAS". Raises ValueError if the lists differ
        in length, grpc.RpcError for a refused request (INVALID_ARGUMENT, NOT_FOUND,
        RESOURCE_EXHAUSTED when the server's queue is full, UNAVAILABLE, ...).
        """
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        if not prompts:
            return []
        pb = self._stubs.scoring_pb2
        request = pb.ScoreBatchRequest(
            model=parse_model_ref(model, self._stubs),
            items=[pb.ScoreItem(prompt_response=pb.PromptResponse(prompt=p, response=r))
                   for p, r in zip(prompts, responses)],
            options=pb.ScoreOptions(normalize=normalize))
        response = self._scoring.ScoreBatch(
            request, timeout=timeout if timeout is not None else self._timeout,
            metadata=self._metadata)
        return list(response.scores)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
