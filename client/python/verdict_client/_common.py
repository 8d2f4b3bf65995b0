"""What the sync and asyncio clients share: requests, results, retries and channel settings.

Nothing here does I/O, so both clients build the same requests and read the same responses.
"""

import json
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import grpc

from verdict_client._stubs import common_pb2, scoring_pb2

# The server's default --max_items_per_request; bigger calls are split into requests this big.
DEFAULT_MAX_ITEMS_PER_REQUEST = 1024

# A message as a dict {"role": ..., "content": ...} (TRL's and OpenAI's conversational
# format), a (role, content) pair, or a verdict.v1.ChatMessage.
Message = Union[Mapping[str, str], Tuple[str, str], Any]


def parse_model_ref(text: str):
    """"name" (latest), "name:3" (version 3) or "name:alias" -> a verdict.v1.ModelRef."""
    name, _, selector = text.partition(":")
    if not name:
        raise ValueError(f"model: expected NAME, NAME:VERSION or NAME:ALIAS, got {text!r}")
    ref = common_pb2.ModelRef(name=name)
    if selector.isdigit():
        ref.version = int(selector)
    elif selector:
        ref.alias = selector
    return ref


@dataclass
class ScoreResult:
    """What score(..., return_details=True) returns.

    rewards and token_counts are per item, in input order. model and version name the version
    that scored every item: an alias or "latest" is resolved by the server on the first request,
    and a call split into several requests pins the rest to that version. queue_time and
    compute_time are seconds, summed over the requests the call took. A call with no items
    sends no request: version 0, requests 0.
    """

    rewards: List[float]
    model: str
    version: int
    normalized: bool
    token_counts: List[int]
    queue_time: float = 0.0
    compute_time: float = 0.0
    requests: int = 0

    def __len__(self):
        return len(self.rewards)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of UNAVAILABLE (server restarting, draining or not up yet) and RESOURCE_EXHAUSTED
    (its scoring queue is full), with exponential backoff and jitter.

    Attempt n (0-based) that fails with a retryable code is followed by a sleep of
    uniform(0.5, 1) * min(max_backoff, initial_backoff * multiplier**n) seconds, unless it was
    the last attempt or the sleep would pass the call's deadline. RESOURCE_EXHAUSTED from gRPC's
    message size limit is not retried (the same request would fail again; send fewer items).
    """

    max_attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    multiplier: float = 2.0
    retryable_codes: Tuple[grpc.StatusCode, ...] = (grpc.StatusCode.UNAVAILABLE,
                                                    grpc.StatusCode.RESOURCE_EXHAUSTED)

    def __post_init__(self):
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be >= 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("RetryPolicy: backoffs must be >= 0 and multiplier >= 1")

    def backoff(self, attempt: int) -> Optional[float]:
        """Seconds to wait after failed attempt `attempt`, or None when it was the last."""
        if attempt + 1 >= self.max_attempts:
            return None
        cap = min(self.max_backoff, self.initial_backoff * self.multiplier ** attempt)
        return cap * random.uniform(0.5, 1.0)

    def retryable(self, error: grpc.RpcError) -> bool:
        code = error.code() if hasattr(error, "code") else None
        if code not in self.retryable_codes:
            return False
        details = (error.details() or "") if hasattr(error, "details") else ""
        return "message larger than max" not in details


NO_RETRY = RetryPolicy(max_attempts=1)


class Deadline:
    """A call's deadline across its attempts and requests; None: no deadline."""

    def __init__(self, timeout: Optional[float]):
        self._end = time.monotonic() + timeout if timeout else None

    def remaining(self) -> Optional[float]:
        return None if self._end is None else max(0.0, self._end - time.monotonic())

    def allows(self, sleep: float) -> bool:
        return self._end is None or time.monotonic() + sleep < self._end


# The gRPC service config of every channel, as the CLI's (client/connection.h,
# kClientServiceConfig): round_robin over every address the target resolves to (a
# "dns:///scoring.ns.svc.cluster.local:50051" target names every pod of a Kubernetes headless
# Service; "ipv4:10.0.0.1:50051,10.0.0.2:50051" lists them), and gRPC's own transparent retries
# of ScoreBatch only, the one idempotent call, on UNAVAILABLE, RESOURCE_EXHAUSTED and CANCELLED
# (a server shutting down cancels the calls it accepted but had not started; gRPC never retries
# a call the client cancelled): a replica that goes away mid-call costs a quick retry on
# another one. RetryPolicy's retries wrap these
# for longer outages (a server restarting).
SERVICE_CONFIG = json.dumps({
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [{
        "name": [{"service": "verdict.v1.ScoringService", "method": "ScoreBatch"}],
        "retryPolicy": {
            "maxAttempts": 5,
            "initialBackoff": "0.1s",
            "maxBackoff": "2s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED", "CANCELLED"],
        },
    }],
})


@dataclass
class ConnectionSettings:
    """Mirrors the CLI's global flags (--server, --tls, --ca, --tls-server-name, --token,
    --timeout), with the same environment defaults ($VERDICT_SERVER, $VERDICT_TOKEN)."""

    target: str
    metadata: Tuple[Tuple[str, str], ...]
    credentials: Optional[grpc.ChannelCredentials]
    options: List[Tuple[str, Any]] = field(default_factory=list)

    @classmethod
    def make(cls, target: Optional[str], token: Optional[str], tls: bool,
             ca_file: Optional[str], root_certificates: Optional[bytes],
             tls_server_name: Optional[str], extra_options: Iterable[Tuple[str, Any]]):
        target = target or os.environ.get("VERDICT_SERVER") or "localhost:50051"
        if token is None:
            token = os.environ.get("VERDICT_TOKEN") or None
        if (ca_file is not None or root_certificates is not None
                or tls_server_name is not None) and not tls:
            raise ValueError("ca_file, root_certificates and tls_server_name need tls=True")
        if ca_file is not None and root_certificates is not None:
            raise ValueError("pass ca_file or root_certificates, not both")
        options = [("grpc.max_receive_message_length", 64 << 20),
                   ("grpc.max_send_message_length", 64 << 20),
                   # After a server restart, connect again within seconds rather than after
                   # gRPC's default backoff of up to two minutes, or retries of UNAVAILABLE
                   # would keep failing against a server that is back.
                   ("grpc.initial_reconnect_backoff_ms", 250),
                   ("grpc.min_reconnect_backoff_ms", 250),
                   ("grpc.max_reconnect_backoff_ms", 2000),
                   ("grpc.service_config", SERVICE_CONFIG),
                   ("grpc.enable_retries", 1)]
        credentials = None
        if tls:
            if ca_file is not None:
                with open(ca_file, "rb") as f:
                    root_certificates = f.read()
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            if tls_server_name:
                options.append(("grpc.ssl_target_name_override", tls_server_name))
        # gRPC takes the first of repeated channel arguments: the caller's replace ours.
        extra_options = list(extra_options)
        overridden = {key for key, _ in extra_options}
        options = [option for option in options if option[0] not in overridden] + extra_options
        # Per-call metadata rather than call credentials: gRPC refuses call credentials on an
        # insecure channel, and a token over plain loopback is a legitimate setup (as the CLI).
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        return cls(target, metadata, credentials, options)


def _message(message: Message):
    if isinstance(message, scoring_pb2.ChatMessage):
        return message
    if isinstance(message, Mapping):
        return scoring_pb2.ChatMessage(role=message["role"], content=message.get("content") or "")
    role, content = message
    return scoring_pb2.ChatMessage(role=role, content=content or "")


def prompt_response_items(prompts: Sequence[str], responses: Sequence[str]):
    if isinstance(prompts, str) or isinstance(responses, str):
        raise TypeError("prompts and responses are sequences of strings, not one string")
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    # None (a policy that produced nothing) scores as the empty response it is.
    return [scoring_pb2.ScoreItem(prompt_response=scoring_pb2.PromptResponse(
        prompt=prompt or "", response=response or ""))
        for prompt, response in zip(prompts, responses)]


def conversation_items(conversations: Sequence[Sequence[Message]]):
    return [scoring_pb2.ScoreItem(conversation=scoring_pb2.Conversation(
        messages=[_message(m) for m in conversation])) for conversation in conversations]


def chunks(items: list, size: int):
    return [items[start:start + size] for start in range(0, len(items), size)]


def request(model_ref, items, normalize: bool):
    return scoring_pb2.ScoreBatchRequest(model=model_ref, items=items,
                                         options=scoring_pb2.ScoreOptions(normalize=normalize))


def pinned(response) -> Any:
    """The ModelRef of the version that answered: later requests of a call use it."""
    return common_pb2.ModelRef(name=response.model.name, version=response.model.version)


def _seconds(duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def result(responses, model_ref) -> ScoreResult:
    """One ScoreResult from the responses of a call's requests, in order."""
    out = ScoreResult(rewards=[], model=model_ref.name, version=0, normalized=False,
                      token_counts=[], requests=len(responses))
    for response in responses:
        out.rewards.extend(response.scores)
        out.token_counts.extend(response.token_counts)
        out.queue_time += _seconds(response.queue_time)
        out.compute_time += _seconds(response.compute_time)
        out.model, out.version = response.model.name, response.model.version
        out.normalized = response.normalized
    return out
