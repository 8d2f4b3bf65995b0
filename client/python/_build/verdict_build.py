"""The in-tree PEP 517 build backend of verdict-client (standard library only).

Why not setuptools: pip builds in an isolated environment and would download the backend from
an index, which the machines this is built on do not reach. With `requires = []` and this file
on `backend-path`, `pip install ./client/python`, `pip wheel` and installing the sdist work
offline.

What it does beyond packing files: the gRPC stubs are generated here, at build time, from
proto/verdict/v1/*.proto (the sdist's own copy, else the repository's ../../proto) into
verdict_client/v1/, and their imports are rewritten from `verdict.v1` to `verdict_client.v1`
so nothing is installed under a top-level `verdict` (an unrelated PyPI package has that
name). The generator is protoc with grpc_python_plugin (Debian: protobuf-compiler,
protobuf-compiler-grpc), else `python -m grpc_tools.protoc`; $PROTOC and
$VERDICT_GRPC_PYTHON_PLUGIN name other binaries, $VERDICT_PROTO_DIR another proto/ folder.
Only where none of them is installed does the build ask pip for grpcio-tools (from an index).

Also a script (there is no `python3 -m build` without an index):
    python3 client/python/_build/verdict_build.py stubs      # into verdict_client/v1 (gitignored),
                                                             # to use a checkout in place
    python3 client/python/_build/verdict_build.py sdist DIR  # or: wheel DIR
"""

import base64
import csv
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
PROTO_NAMES = ("common", "datasets", "models", "scoring", "training")
STUB_PACKAGE = "verdict_client/v1"
# Files of the source tree that go into the sdist (and, under verdict_client/, the wheel).
SDIST_GLOBS = ("pyproject.toml", "README.md", "_build/*.py", "verdict_client/*.py",
               "verdict_client/py.typed", "examples/*.py")


# --- project metadata ------------------------------------------------------------------------

def _read_project():
    """pyproject.toml's [project] table."""
    text = (PROJECT_DIR / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib  # Python >= 3.11
    except ImportError:
        tomllib = None
    if tomllib is not None:
        return tomllib.loads(text)["project"]
    # Python 3.9/3.10 without tomli: the few flat `key = value` lines this pyproject uses.
    project, in_project = {}, False
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            in_project = line == "[project]"
        elif in_project and "=" in line and not line.startswith("#"):
            key, _, value = (part.strip() for part in line.partition("="))
            if value.startswith("["):
                project[key] = re.findall(r'"([^"]*)"', value)
            elif value.startswith('"'):
                project[key] = value.strip('"')
    return project


def _dist_name(project):
    return re.sub(r"[-_.]+", "_", project["name"]).lower()


def _metadata(project) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {project['name']}",
             f"Version: {project['version']}"]
    if project.get("description"):
        lines.append(f"Summary: {project['description']}")
    if project.get("requires-python"):
        lines.append(f"Requires-Python: {project['requires-python']}")
    lines += [f"Requires-Dist: {requirement}" for requirement in project.get("dependencies", [])]
    readme = PROJECT_DIR / project.get("readme", "README.md")
    if readme.is_file():
        lines.append("Description-Content-Type: text/markdown")
        return "\n".join(lines) + "\n\n" + readme.read_text(encoding="utf-8")
    return "\n".join(lines) + "\n"


def _wheel_file() -> str:
    return ("Wheel-Version: 1.0\nGenerator: verdict_build\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n")


# --- stubs -----------------------------------------------------------------------------------

def find_proto_dir() -> Path:
    """The proto/ folder holding verdict/v1/*.proto: $VERDICT_PROTO_DIR, the sdist's copy, or
    the repository's."""
    candidates = []
    if os.environ.get("VERDICT_PROTO_DIR"):
        candidates.append(Path(os.environ["VERDICT_PROTO_DIR"]))
    candidates += [PROJECT_DIR / "proto", PROJECT_DIR.parent.parent / "proto"]
    for candidate in candidates:
        if all((candidate / "verdict" / "v1" / f"{n}.proto").is_file() for n in PROTO_NAMES):
            return candidate
    raise RuntimeError("verdict_build: proto/verdict/v1/*.proto not found in "
                       + ", ".join(str(c) for c in candidates)
                       + " (build from the verdict repository, or set VERDICT_PROTO_DIR)")


def _pythons():
    """Interpreters that may have grpc_tools: this one (maybe a build-isolated one without it),
    then the system's."""
    candidates = [sys.executable, shutil.which("python3"), "/usr/bin/python3"]
    return [p for p in dict.fromkeys(candidates) if p and Path(p).exists()]


def _protoc_commands(proto_dir: Path, out_dir: Path):
    """Candidate generator command lines, best first."""
    protos = [f"verdict/v1/{name}.proto" for name in PROTO_NAMES]
    protoc = os.environ.get("PROTOC") or shutil.which("protoc")
    plugin = os.environ.get("VERDICT_GRPC_PYTHON_PLUGIN") or shutil.which("grpc_python_plugin")
    commands = []
    if protoc and plugin:
        commands.append([protoc, f"-I{proto_dir}", f"--python_out={out_dir}",
                         f"--grpc_out={out_dir}", f"--plugin=protoc-gen-grpc={plugin}", *protos])
    # grpc_tools' __main__ adds the include path of google/protobuf/*.proto itself. The
    # interpreter running this backend may be a build-isolated one without grpc_tools, so the
    # system's python3 is tried as well.
    for python in _pythons():
        commands.append([python, "-m", "grpc_tools.protoc", f"-I{proto_dir}",
                         f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", *protos])
    return commands


_IMPORT = re.compile(r"^from verdict\.v1 import ", re.MULTILINE)
_MODULE_NAME = re.compile(r"'verdict\.v1\.(\w+_pb2)'")


def generate_stubs(package_dir: Path) -> None:
    """Writes verdict_client/v1/{__init__,*_pb2,*_pb2_grpc}.py into package_dir (the folder
    that holds verdict_client/), importing each other as verdict_client.v1.*."""
    proto_dir = find_proto_dir()
    errors = []
    with tempfile.TemporaryDirectory(prefix="verdict-stubs-") as tmp:
        for command in _protoc_commands(proto_dir, Path(tmp)):
            try:
                result = subprocess.run(command, capture_output=True, text=True, check=False)
            except OSError as error:  # e.g. $PROTOC names no program
                errors.append(f"{command[0]}: {error}")
                continue
            if result.returncode == 0:
                break
            errors.append(f"{' '.join(command[:3])} ...: {result.stderr.strip()}")
        else:
            raise RuntimeError(
                "verdict_build: could not generate the gRPC stubs; install protoc and "
                "grpc_python_plugin (Debian: protobuf-compiler protobuf-compiler-grpc) or "
                "grpcio-tools.\n" + "\n".join(errors or ["no generator found"]))
        out = package_dir / STUB_PACKAGE
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        (out / "__init__.py").write_text(
            '"""gRPC stubs of verdict.v1, generated from proto/ when the package was built."""\n',
            encoding="utf-8")
        for generated in sorted((Path(tmp) / "verdict" / "v1").glob("*.py")):
            code = generated.read_text(encoding="utf-8")
            code = _IMPORT.sub("from verdict_client.v1 import ", code)
            code = _MODULE_NAME.sub(r"'verdict_client.v1.\1'", code)
            if re.search(r"^\s*(from|import) verdict\b(?!_)", code, re.MULTILINE):
                raise RuntimeError(f"verdict_build: {generated.name} still imports `verdict`")
            (out / generated.name).write_text(code, encoding="utf-8")


# --- wheels ----------------------------------------------------------------------------------

class _WheelWriter:
    """A zip that records each file's hash for RECORD."""

    def __init__(self, path: Path, dist_info: str):
        self._zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED)
        self._dist_info = dist_info
        self._records = []

    def add(self, name: str, data: bytes):
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # reproducible
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        self._zip.writestr(info, data)
        self._records.append((name, f"sha256={digest}", str(len(data))))

    def close(self):
        record = io.StringIO()
        writer = csv.writer(record, lineterminator="\n")
        writer.writerows(self._records)
        writer.writerow((f"{self._dist_info}/RECORD", "", ""))
        info = zipfile.ZipInfo(f"{self._dist_info}/RECORD", date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        self._zip.writestr(info, record.getvalue())
        self._zip.close()


def _write_dist_info(wheel: _WheelWriter, project, dist_info: str):
    wheel.add(f"{dist_info}/METADATA", _metadata(project).encode())
    wheel.add(f"{dist_info}/WHEEL", _wheel_file().encode())


def _build(wheel_directory, editable: bool) -> str:
    project = _read_project()
    name = f"{_dist_name(project)}-{project['version']}"
    dist_info = f"{name}.dist-info"
    wheel_name = f"{name}-py3-none-any.whl"
    wheel = _WheelWriter(Path(wheel_directory) / wheel_name, dist_info)
    if editable:
        # The stubs go into the source tree (gitignored) and a .pth puts it on sys.path; after
        # proto/ changes, install again to regenerate them.
        generate_stubs(PROJECT_DIR)
        wheel.add("verdict_client_editable.pth", f"{PROJECT_DIR}\n".encode())
    else:
        with tempfile.TemporaryDirectory(prefix="verdict-wheel-") as tmp:
            generate_stubs(Path(tmp))
            for path in sorted((Path(tmp) / STUB_PACKAGE).glob("*.py")):
                wheel.add(f"{STUB_PACKAGE}/{path.name}", path.read_bytes())
        for path in sorted((PROJECT_DIR / "verdict_client").iterdir()):
            if path.is_file() and (path.suffix == ".py" or path.name == "py.typed"):
                wheel.add(f"verdict_client/{path.name}", path.read_bytes())
    _write_dist_info(wheel, project, dist_info)
    wheel.close()
    return wheel_name


def _have_generator() -> bool:
    protoc = os.environ.get("PROTOC") or shutil.which("protoc")
    plugin = os.environ.get("VERDICT_GRPC_PYTHON_PLUGIN") or shutil.which("grpc_python_plugin")
    if protoc and plugin and shutil.which(protoc) and shutil.which(plugin):
        return True
    return any(subprocess.run([python, "-c", "import grpc_tools.protoc"], capture_output=True,
                              check=False).returncode == 0 for python in _pythons())


def get_requires_for_build_wheel(config_settings=None):
    # Nothing where protoc and grpc_python_plugin (or grpc_tools) are installed, as on Debian
    # with the packages above: the build then needs no index. Elsewhere pip fetches
    # grpcio-tools into the isolated build environment, and the stubs come from it.
    return [] if _have_generator() else ["grpcio-tools"]


def get_requires_for_build_sdist(config_settings=None):
    return []


get_requires_for_build_editable = get_requires_for_build_wheel


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    project = _read_project()
    dist_info = f"{_dist_name(project)}-{project['version']}.dist-info"
    out = Path(metadata_directory) / dist_info
    out.mkdir(parents=True, exist_ok=True)
    (out / "METADATA").write_text(_metadata(project), encoding="utf-8")
    (out / "WHEEL").write_text(_wheel_file(), encoding="utf-8")
    return dist_info


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _build(wheel_directory, editable=False)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _build(wheel_directory, editable=True)


def build_sdist(sdist_directory, config_settings=None):
    """verdict_client-VERSION.tar.gz: the sources plus a copy of proto/verdict/v1, so that it
    builds away from the repository."""
    project = _read_project()
    base = f"{_dist_name(project)}-{project['version']}"
    files = {}
    for pattern in SDIST_GLOBS:
        for path in sorted(PROJECT_DIR.glob(pattern)):
            files[path.relative_to(PROJECT_DIR).as_posix()] = path.read_bytes()
    proto_dir = find_proto_dir()
    for name in PROTO_NAMES:
        files[f"proto/verdict/v1/{name}.proto"] = (
            proto_dir / "verdict" / "v1" / f"{name}.proto").read_bytes()
    files["PKG-INFO"] = _metadata(project).encode()
    sdist_name = f"{base}.tar.gz"
    with tarfile.open(Path(sdist_directory) / sdist_name, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for relative, data in sorted(files.items()):
            info = tarfile.TarInfo(f"{base}/{relative}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return sdist_name


def main(argv) -> int:
    if argv == ["stubs"]:
        generate_stubs(PROJECT_DIR)
        print(PROJECT_DIR / STUB_PACKAGE)
        return 0
    if len(argv) == 2 and argv[0] in ("sdist", "wheel"):
        Path(argv[1]).mkdir(parents=True, exist_ok=True)
        build = build_sdist if argv[0] == "sdist" else build_wheel
        print(Path(argv[1]) / build(argv[1]))
        return 0
    print(f"usage: {Path(sys.argv[0]).name} stubs | sdist DIR | wheel DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
