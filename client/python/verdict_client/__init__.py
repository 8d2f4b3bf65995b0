"""Python client for verdictd's ScoringService (sync and asyncio).

    from verdict_client import VerdictClient
    client = VerdictClient("localhost:50051", model="helpful-rm")
    rewards = client.score(["\\n\\nHuman: Hi\\n\\nAssistant:"], [" Hello! How can I help?"])
    details = client.score(prompts, responses, return_details=True)  # + version, token counts

AsyncVerdictClient has the same methods as coroutines. Errors are grpc.RpcError with the
server's status code and message, raised after the client's RetryPolicy has retried
UNAVAILABLE and RESOURCE_EXHAUSTED. The gRPC stubs (verdict_client.v1) are generated when the
package is built (`pip install ./client/python`), never at import.
"""

from verdict_client._common import NO_RETRY, RetryPolicy, ScoreResult, parse_model_ref
from verdict_client._aio import AsyncVerdictClient
from verdict_client._sync import VerdictClient

try:
    from importlib.metadata import PackageNotFoundError, version as _version
    __version__ = _version("verdict-client")
except PackageNotFoundError:  # used in place from a checkout
    __version__ = "0+unknown"

__all__ = ["AsyncVerdictClient", "NO_RETRY", "RetryPolicy", "ScoreResult", "VerdictClient",
           "parse_model_ref", "__version__"]
