"""The generated gRPC stubs (verdict_client.v1), with a clear error when they were not built.

They are generated from proto/verdict/v1 when the package is built (pip install / pip wheel,
see _build/verdict_build.py), never at import time, so a plain checkout on sys.path has none.
"""

_HOW_TO_BUILD = (
    "verdict_client's gRPC stubs (verdict_client.v1) are missing: they are generated when the "
    "package is built. Install it with `pip install ./client/python` (from the verdict "
    "repository; in a venv made with `python3 -m venv --system-site-packages` on Debian), or, "
    "to use a checkout in place, run `python3 client/python/_build/verdict_build.py stubs`.")

try:
    from verdict_client.v1 import common_pb2, scoring_pb2, scoring_pb2_grpc
except ImportError as error:
    if error.name is not None and not error.name.startswith("verdict_client"):
        raise  # e.g. grpc or google.protobuf itself is missing: that message says it best
    raise ImportError(_HOW_TO_BUILD, name="verdict_client.v1") from error

__all__ = ["common_pb2", "scoring_pb2", "scoring_pb2_grpc"]
