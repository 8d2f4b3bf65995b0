"""client/python as a package: `pip install ./client/python` into a fresh venv made with
Debian's python3, `pip wheel`, the sdist, and no stub generation at import.

Run by CTest (client_python_package_test) with /usr/bin/python3 and VERDICT_SOURCE_DIR (the
repository) and VERDICT_PYTHON_VENV (where to make the venv) set. It is the setup fixture of
the tests that run the client and its examples against verdictd with that venv's python. No
index is used or needed: the build backend is in-tree and Debian's python3-grpcio and
python3-protobuf satisfy the dependencies (the venv sees them through
--system-site-packages).
"""

import os
import shutil
import subprocess
import tarfile
import tempfile
import unittest
import zipfile
from pathlib import Path

SOURCE_DIR = Path(os.environ["VERDICT_SOURCE_DIR"])
PACKAGE_DIR = SOURCE_DIR / "client" / "python"
VENV = Path(os.environ["VERDICT_PYTHON_VENV"])
# pip's once-a-day "new version available" check would reach for PyPI; the rest does not.
PIP_ENV = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def run(*argv, cwd=None, env=None) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=300,
                            check=False, cwd=cwd, env=env or PIP_ENV)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def make_venv(path: Path) -> Path:
    """A fresh venv of Debian's python3 that sees its site packages; returns its python."""
    shutil.rmtree(path, ignore_errors=True)
    run("/usr/bin/python3", "-m", "venv", "--system-site-packages", path)
    return path / "bin" / "python"


class PythonPackageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="verdict-python-package-"))
        # The venv the other Python tests use: exactly what the README tells a user to do.
        cls.python = make_venv(VENV)
        cls.tree_before = cls.source_tree()
        run(cls.python, "-m", "pip", "install", PACKAGE_DIR, cwd=cls.tmp)
        cls.tree_after = cls.source_tree()

    @staticmethod
    def source_tree():
        return sorted(p for p in PACKAGE_DIR.rglob("*") if "__pycache__" not in p.parts)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def installed(self, python: Path, code: str) -> str:
        # From a folder away from the repository, so only the installed package can be found.
        return run(python, "-c", code, cwd=self.tmp).stdout

    def test_pip_install_puts_generated_stubs_under_verdict_client(self):
        out = self.installed(self.python, (
            "import importlib.util, verdict_client, verdict_client.v1.scoring_pb2 as s\n"
            "print(verdict_client.__file__)\n"
            "print(s.ScoreBatchRequest.__module__)\n"
            "print(importlib.util.find_spec('verdict'))\n"
            "print(verdict_client.__version__)\n")).splitlines()
        self.assertTrue(out[0].startswith(str(VENV)), out[0])
        self.assertEqual(out[1], "verdict_client.v1.scoring_pb2")
        self.assertEqual(out[2], "None")  # nothing installed under a top-level `verdict`
        self.assertEqual(out[3], "0.1.0")
        # A (non-editable) install writes nothing into the source tree.
        self.assertEqual(self.tree_after, self.tree_before)

    def test_import_runs_no_generator(self):
        # Any subprocess at import (protoc, grpc_tools) fails the import.
        self.installed(self.python, (
            "import subprocess\n"
            "def refuse(*a, **k): raise AssertionError('subprocess at import: %r' % (a,))\n"
            "subprocess.Popen = subprocess.run = refuse\n"
            "import verdict_client\n"
            "verdict_client.VerdictClient('127.0.0.1:1').close()\n"))

    def test_a_checkout_without_stubs_says_how_to_build_them(self):
        # A copy, so that stubs an editable install may have left in the tree do not count.
        copy = self.tmp / "checkout"
        shutil.copytree(PACKAGE_DIR / "verdict_client", copy / "verdict_client",
                        ignore=shutil.ignore_patterns("v1", "__pycache__"))
        result = subprocess.run(["/usr/bin/python3", "-c", "import verdict_client"], cwd=copy,
                                capture_output=True, text=True, check=False)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("ImportError: verdict_client's gRPC stubs (verdict_client.v1) are missing",
                      result.stderr)
        self.assertIn("pip install ./client/python", result.stderr)

    def test_pip_wheel_builds_a_pure_wheel_with_the_stubs(self):
        out = self.tmp / "wheels"
        run(self.python, "-m", "pip", "wheel", "--no-deps", "-w", out, PACKAGE_DIR, cwd=self.tmp)
        [wheel] = out.glob("*.whl")
        self.assertEqual(wheel.name, "verdict_client-0.1.0-py3-none-any.whl")
        names = zipfile.ZipFile(wheel).namelist()
        for module in ("common_pb2", "scoring_pb2", "scoring_pb2_grpc", "models_pb2_grpc"):
            self.assertIn(f"verdict_client/v1/{module}.py", names)
        self.assertFalse([n for n in names if n.startswith("verdict/")])
        scoring = zipfile.ZipFile(wheel).read("verdict_client/v1/scoring_pb2.py").decode()
        self.assertIn("from verdict_client.v1 import common_pb2", scoring)
        self.assertNotIn("from verdict.v1", scoring)
        metadata = zipfile.ZipFile(wheel).read(
            "verdict_client-0.1.0.dist-info/METADATA").decode()
        self.assertIn("Requires-Dist: grpcio>=1.51", metadata)

    def test_the_sdist_carries_the_protos_and_installs_away_from_the_repository(self):
        out = self.tmp / "sdist"
        run("/usr/bin/python3", PACKAGE_DIR / "_build" / "verdict_build.py", "sdist", out)
        [sdist] = out.glob("*.tar.gz")
        with tarfile.open(sdist) as tar:
            names = tar.getnames()
        self.assertIn("verdict_client-0.1.0/proto/verdict/v1/scoring.proto", names)
        self.assertIn("verdict_client-0.1.0/pyproject.toml", names)
        python = make_venv(self.tmp / "sdist-venv")
        # pip unpacks the sdist into a temporary folder: the repository's proto/ is out of
        # reach there, so the stubs come from the sdist's own copy.
        run(python, "-m", "pip", "install", sdist, cwd=self.tmp)
        self.assertEqual(self.installed(python, (
            "import verdict_client.v1.scoring_pb2 as s; print(s.DESCRIPTOR.package)")).strip(),
            "verdict.v1")


if __name__ == "__main__":
    unittest.main(verbosity=2)
