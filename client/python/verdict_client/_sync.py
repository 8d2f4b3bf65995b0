"""VerdictClient: scores from verdictd's ScoringService over a blocking gRPC channel.

Thread-safety: one client may be shared by threads (gRPC channels are); `retries` is a plain
counter and may miss increments under contention (it is for logging).
"""

import os
import time
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union

import grpc

from verdict_client import _common
from verdict_client._common import Message, RetryPolicy, ScoreResult
from verdict_client._stubs import scoring_pb2_grpc


class VerdictClient:
    """One channel to a verdictd.

    target: "HOST:PORT", or "dns:///HOST:PORT" to balance requests over every address of a
    name (round_robin; a Kubernetes headless Service), default $VERDICT_SERVER, else
    localhost:50051. token: bearer token of a server started with --token_file (default
    $VERDICT_TOKEN). tls, ca_file (PEM roots; or root_certificates as bytes; default: the
    system's roots) and tls_server_name mirror the CLI's --tls, --ca and --tls-server-name.
    model: the default of score()'s `model` (default $VERDICT_MODEL). timeout: seconds a call
    may take, retries and all (None or 0: no deadline). retry: a RetryPolicy
    (verdict_client.NO_RETRY for none). Calls with more items than max_items_per_request (the
    server's --max_items_per_request) are split.
    """

    def __init__(self, target: Optional[str] = None, token: Optional[str] = None, *,
                 model: Optional[str] = None, tls: bool = False, ca_file: Optional[str] = None,
                 root_certificates: Optional[bytes] = None,
                 tls_server_name: Optional[str] = None, timeout: Optional[float] = 30.0,
                 retry: RetryPolicy = RetryPolicy(),
                 max_items_per_request: int = _common.DEFAULT_MAX_ITEMS_PER_REQUEST,
                 options: Iterable[Tuple[str, Any]] = ()):
        if max_items_per_request < 1:
            raise ValueError("max_items_per_request must be >= 1")
        self._settings = _common.ConnectionSettings.make(target, token, tls, ca_file,
                                                         root_certificates, tls_server_name,
                                                         options)
        if self._settings.credentials is not None:
            self._channel = grpc.secure_channel(self._settings.target, self._settings.credentials,
                                                options=self._settings.options)
        else:
            self._channel = grpc.insecure_channel(self._settings.target,
                                                  options=self._settings.options)
        self._scoring = scoring_pb2_grpc.ScoringServiceStub(self._channel)
        self.target = self._settings.target
        self.model = model or os.environ.get("VERDICT_MODEL") or None
        self.timeout = timeout
        self.retry = retry
        self.max_items_per_request = max_items_per_request
        self.retries = 0  # retries all calls needed so far

    def score(self, prompts: Sequence[str], responses: Sequence[str],
              model: Optional[str] = None, *, normalize: bool = False,
              return_details: bool = False, timeout: Optional[float] = ...
              ) -> Union[List[float], ScoreResult]:
        """One reward per (prompt, response), in order.

        model: "name", "name:VERSION" or "name:ALIAS" (default: the client's). An empty
        response (or None) is scored like any other. normalize: (reward - mean) / std with the
        model's reward_stats. return_details: a ScoreResult (rewards, the version that scored,
        token counts) instead of the list of rewards. timeout: overrides the client's.
        Raises ValueError for lists of different lengths and grpc.RpcError for a refused call
        (after retries where RetryPolicy allows them).
        """
        items = _common.prompt_response_items(prompts, responses)
        return self._score(items, model, normalize, return_details, timeout)

    def score_conversations(self, conversations: Sequence[Sequence[Message]],
                            model: Optional[str] = None, *, normalize: bool = False,
                            return_details: bool = False, timeout: Optional[float] = ...
                            ) -> Union[List[float], ScoreResult]:
        """One reward per conversation, rendered with the model's chat format: the last
        message (role "assistant", content may be empty) is the response scored. Messages are
        {"role": ..., "content": ...} dicts or (role, content) pairs."""
        items = _common.conversation_items(conversations)
        return self._score(items, model, normalize, return_details, timeout)

    def _score(self, items, model, normalize, return_details, timeout):
        model = model or self.model
        if not model:
            raise ValueError("model: pass model= to score() or the client, or set VERDICT_MODEL")
        model_ref = _common.parse_model_ref(model)
        deadline = _common.Deadline(self.timeout if timeout is ... else timeout)
        responses = []
        for chunk in _common.chunks(items, self.max_items_per_request):
            ref = _common.pinned(responses[0]) if responses else model_ref
            responses.append(self._call(_common.request(ref, chunk, normalize), deadline))
        details = _common.result(responses, model_ref)
        return details if return_details else details.rewards

    def _call(self, request, deadline: _common.Deadline):
        attempt = 0
        while True:
            try:
                return self._scoring.ScoreBatch(request, timeout=deadline.remaining(),
                                                metadata=self._settings.metadata)
            except grpc.RpcError as error:
                sleep = self.retry.backoff(attempt) if self.retry.retryable(error) else None
                if sleep is None or not deadline.allows(sleep):
                    raise
            self.retries += 1
            attempt += 1
            time.sleep(sleep)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
