"""verdictd and the verdict CLI for the Python tests: a server on loopback with its state in a
temporary folder, and a tiny model trained on tests/data to score with.

Reads VERDICTD, VERDICT_CLI and VERDICT_SOURCE_DIR from the environment (set by CTest).
"""

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Sequence

SOURCE_DIR = Path(os.environ["VERDICT_SOURCE_DIR"])
VERDICTD = os.environ["VERDICTD"]
VERDICT_CLI = os.environ["VERDICT_CLI"]
SYNTHETIC = SOURCE_DIR / "tests" / "data" / "synthetic" / "helpful-concise.jsonl"


class Server:
    """verdictd on 127.0.0.1:port (0: a free one it picks) with its state under root."""

    def __init__(self, root: Path, port: int = 0, flags: Sequence[str] = ()):
        self.root = root
        (root / "data").mkdir(parents=True, exist_ok=True)
        (root / "models").mkdir(parents=True, exist_ok=True)
        self.log = open(root / "verdictd.log", "ab")  # noqa: SIM115 (closed in stop())
        log_start = self.log.tell()
        self.process = subprocess.Popen(
            [VERDICTD, "--host=127.0.0.1", f"--port={port}", "--metrics_port=-1",
             f"--state_dir={root / 'state'}", f"--data_dir={root / 'data'}",
             f"--model_dir={root / 'models'}",
             # Idle channels of earlier tests hold a draining server for its whole grace.
             "--drain_grace_seconds=1", *flags],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # A restarted server appends to its predecessor's log: read only its own lines.
            log = (root / "verdictd.log").read_bytes()[log_start:]
            listening = re.search(rb"listening on 127\.0\.0\.1:([0-9]+)[^\n]*\n", log)
            if listening:
                self.port = int(listening.group(1))
                self.address = f"127.0.0.1:{self.port}"
                # With --http_port: the HTTP scoring endpoint's base URL.
                http = re.search(rb"HTTP scoring on :([0-9]+)", listening.group(0))
                self.http_url = f"http://127.0.0.1:{int(http.group(1))}" if http else None
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("verdictd did not start:\n" + (root / "verdictd.log").read_text())

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        self.log.close()


def cli(server: Server, *args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([VERDICT_CLI, "--server", server.address, *args],
                          capture_output=True, text=True, timeout=180, check=False, env=env)


def train_tiny_model(server: Server, name: str) -> None:
    """Version 1 of `name`: a tiny encoder trained for a few steps on synthetic pairs."""
    trained = cli(server, "submit", "--train", str(SYNTHETIC), "--preset", "encoder-tiny",
                  "--vocab-size", "400", "--max-steps", "10", "--lr", "1e-3", "--name", name,
                  "--watch")
    if trained.returncode != 0:
        raise RuntimeError(f"training failed: {trained.stdout}{trained.stderr}")


def cli_score(server: Server, model: str, prompt: str, response: str) -> float:
    result = cli(server, "score", "--model", model, "--prompt", prompt, "--response", response)
    if result.returncode != 0:
        raise RuntimeError(f"verdict score failed: {result.stderr}")
    return float(result.stdout)
