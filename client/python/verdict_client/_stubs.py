"""Generated gRPC stubs for verdict.v1, made from the repository's proto/ on demand.

Generated code is never committed. load_stubs() imports the modules verdict.v1.*_pb2 and
*_pb2_grpc if they are already importable (e.g. generated at build time into a folder on
sys.path); otherwise it generates them with grpc_tools.protoc (Debian: python3-grpc-tools)
into $VERDICT_STUBS_DIR, or a fresh temporary folder, and puts that folder on sys.path.
"""

import atexit
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_PROTO_NAMES = ("common", "datasets", "models", "scoring", "training")


def default_proto_dir() -> Path:
    """$VERDICT_PROTO_DIR, else proto/ of the repository this file sits in."""
    configured = os.environ.get("VERDICT_PROTO_DIR")
    if configured:
        return Path(configured)
    # client/python/verdict_client/_stubs.py -> the repository root is three levels up.
    return Path(__file__).resolve().parents[3] / "proto"


def generate_stubs(out_dir, proto_dir=None) -> Path:
    """Runs grpc_tools.protoc on every verdict/v1 proto; returns out_dir.

    Raises RuntimeError with protoc's message if generation fails.
    """
    proto_dir = Path(proto_dir) if proto_dir else default_proto_dir()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    protos = [str(proto_dir / "verdict" / "v1" / f"{name}.proto") for name in _PROTO_NAMES]
    missing = [p for p in protos if not Path(p).is_file()]
    if missing:
        raise RuntimeError(f"verdict protos not found: {', '.join(missing)} "
                           "(set VERDICT_PROTO_DIR to the repository's proto/ folder)")
    # A subprocess rather than grpc_tools.protoc.main(): its __main__ adds the include path of
    # the well-known types (google/protobuf/*.proto) that our protos import.
    result = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_dir}",
         f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", *protos],
        capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"grpc_tools.protoc failed: {result.stderr.strip()}")
    return out_dir


class Stubs:
    """The generated modules, by short name: stubs.scoring_pb2, stubs.scoring_pb2_grpc, ..."""

    def __init__(self):
        for name in _PROTO_NAMES:
            for suffix in ("_pb2", "_pb2_grpc"):
                module = importlib.import_module(f"verdict.v1.{name}{suffix}")
                setattr(self, f"{name}{suffix}", module)


_loaded = None


def load_stubs() -> Stubs:
    """The stub modules, generating them first if they cannot be imported."""
    global _loaded
    if _loaded is not None:
        return _loaded
    try:
        _loaded = Stubs()
        return _loaded
    except ImportError:
        pass
    out_dir = os.environ.get("VERDICT_STUBS_DIR")
    if not out_dir:
        out_dir = tempfile.mkdtemp(prefix="verdict-stubs-")
        atexit.register(shutil.rmtree, out_dir, ignore_errors=True)
    generate_stubs(out_dir)
    sys.path.insert(0, str(out_dir))
    importlib.invalidate_caches()
    # A half-imported namespace package "verdict" from the failed attempt must not shadow ours.
    for module in [m for m in sys.modules if m == "verdict" or m.startswith("verdict.")]:
        del sys.modules[module]
    _loaded = Stubs()
    return _loaded
