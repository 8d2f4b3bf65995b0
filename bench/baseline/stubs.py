"""gRPC stubs for proto/verdict/v1, generated into a temporary folder when first imported.

Uses protoc with grpc_python_plugin (Debian: protobuf-compiler, protobuf-compiler-grpc), else
`python3 -m grpc_tools.protoc` (python3-grpc-tools), as client/python's build does; nothing is
written into the source tree.

  from stubs import v1
  v1.scoring_pb2.ScoreBatchRequest(...)
"""

import atexit
import importlib
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

_PROTO_DIR = Path(__file__).resolve().parents[2] / "proto"


def _generate(out_dir):
    protos = [str(p.relative_to(_PROTO_DIR))
              for p in sorted((_PROTO_DIR / "verdict/v1").glob("*.proto"))]
    protoc, plugin = shutil.which("protoc"), shutil.which("grpc_python_plugin")
    if protoc and plugin:
        command = [protoc, f"-I{_PROTO_DIR}", f"--python_out={out_dir}", f"--grpc_out={out_dir}",
                   f"--plugin=protoc-gen-grpc={plugin}", *protos]
    else:
        command = [sys.executable, "-m", "grpc_tools.protoc", f"-I{_PROTO_DIR}",
                   f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", *protos]
    subprocess.run(command, check=True, cwd=_PROTO_DIR)


_out = tempfile.mkdtemp(prefix="verdict_stubs_")
atexit.register(shutil.rmtree, _out, True)
_generate(_out)
sys.path.insert(0, _out)
v1 = types.SimpleNamespace(**{
    name: importlib.import_module(f"verdict.v1.{name}")
    for name in ("common_pb2", "scoring_pb2", "scoring_pb2_grpc", "models_pb2", "models_pb2_grpc")
})
