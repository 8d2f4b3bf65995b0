"""AsyncVerdictClient: VerdictClient for asyncio code (grpc.aio), with the same arguments.

    async with AsyncVerdictClient("localhost:50051", model="hh-rm") as client:
        rewards = await client.score(prompts, responses)

The channel is made on the first call, inside the running event loop, and belongs to that loop:
use one client per loop. Concurrent calls from tasks of that loop share it.
"""

import asyncio
import os
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union

import grpc
import grpc.aio

from verdict_client import _common
from verdict_client._common import Message, RetryPolicy, ScoreResult
from verdict_client._stubs import scoring_pb2_grpc


class AsyncVerdictClient:
    """See VerdictClient for the arguments; score() and score_conversations() are coroutines."""

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
        self._channel = None
        self._scoring = None
        self.target = self._settings.target
        self.model = model or os.environ.get("VERDICT_MODEL") or None
        self.timeout = timeout
        self.retry = retry
        self.max_items_per_request = max_items_per_request
        self.retries = 0

    def _stub(self):
        if self._scoring is None:
            if self._settings.credentials is not None:
                self._channel = grpc.aio.secure_channel(
                    self._settings.target, self._settings.credentials,
                    options=self._settings.options)
            else:
                self._channel = grpc.aio.insecure_channel(self._settings.target,
                                                          options=self._settings.options)
            self._scoring = scoring_pb2_grpc.ScoringServiceStub(self._channel)
        return self._scoring

    async def score(self, prompts: Sequence[str], responses: Sequence[str],
                    model: Optional[str] = None, *, normalize: bool = False,
                    return_details: bool = False, timeout: Optional[float] = ...
                    ) -> Union[List[float], ScoreResult]:
        """As VerdictClient.score."""
        items = _common.prompt_response_items(prompts, responses)
        return await self._score(items, model, normalize, return_details, timeout)

    async def score_conversations(self, conversations: Sequence[Sequence[Message]],
                                  model: Optional[str] = None, *, normalize: bool = False,
                                  return_details: bool = False, timeout: Optional[float] = ...
                                  ) -> Union[List[float], ScoreResult]:
        """As VerdictClient.score_conversations."""
        items = _common.conversation_items(conversations)
        return await self._score(items, model, normalize, return_details, timeout)

    async def _score(self, items, model, normalize, return_details, timeout):
        model = model or self.model
        if not model:
            raise ValueError("model: pass model= to score() or the client, or set VERDICT_MODEL")
        model_ref = _common.parse_model_ref(model)
        deadline = _common.Deadline(self.timeout if timeout is ... else timeout)
        responses = []
        for chunk in _common.chunks(items, self.max_items_per_request):
            ref = _common.pinned(responses[0]) if responses else model_ref
            responses.append(await self._call(_common.request(ref, chunk, normalize), deadline))
        details = _common.result(responses, model_ref)
        return details if return_details else details.rewards

    async def _call(self, request, deadline: _common.Deadline):
        attempt = 0
        while True:
            try:
                return await self._stub().ScoreBatch(request, timeout=deadline.remaining(),
                                                     metadata=self._settings.metadata)
            except grpc.RpcError as error:
                sleep = self.retry.backoff(attempt) if self.retry.retryable(error) else None
                if sleep is None or not deadline.allows(sleep):
                    raise
            self.retries += 1
            attempt += 1
            await asyncio.sleep(sleep)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._scoring = None

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()
