"""The Python client and the PPO reward-function example against a real verdictd.

Run by CTest (tests/client/CMakeLists.txt) with Debian's /usr/bin/python3 (python3-grpcio,
python3-grpc-tools) and three environment variables: VERDICTD (the server binary), VERDICT_CLI
(the CLI, used to train the model the test scores with) and VERDICT_SOURCE_DIR (the
repository). The gRPC stubs are generated from proto/ into a temporary folder as the test starts.
"""

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

SOURCE_DIR = Path(os.environ["VERDICT_SOURCE_DIR"])
VERDICTD = os.environ["VERDICTD"]
VERDICT_CLI = os.environ["VERDICT_CLI"]
SYNTHETIC = SOURCE_DIR / "tests" / "data" / "synthetic" / "helpful-concise.jsonl"

sys.path.insert(0, str(SOURCE_DIR / "client" / "python"))
sys.path.insert(0, str(SOURCE_DIR / "client" / "python" / "examples"))

import grpc  # noqa: E402

import verdict_client  # noqa: E402


class Server:
    """verdictd on 127.0.0.1:port (0: a free one it picks) with its state under root."""

    def __init__(self, root: Path, port: int = 0):
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
             "--drain_grace_seconds=1"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # A restarted server appends to its predecessor's log: read only its own lines.
            log = (root / "verdictd.log").read_bytes()[log_start:]
            listening = re.search(rb"listening on 127\.0\.0\.1:([0-9]+)", log)
            if listening:
                self.port = int(listening.group(1))
                self.address = f"127.0.0.1:{self.port}"
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


def cli(server: Server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([VERDICT_CLI, "--server", server.address, *args],
                          capture_output=True, text=True, timeout=180, check=False)


class PythonClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="verdict-python-test-"))
        # Generated at test time, never committed: exactly what a user's first import does.
        os.environ["VERDICT_STUBS_DIR"] = str(cls.tmp / "stubs")
        verdict_client.load_stubs()
        cls.server = Server(cls.tmp / "server")
        trained = cli(cls.server, "submit", "--train", str(SYNTHETIC), "--preset", "encoder-tiny",
                      "--vocab-size", "400", "--max-steps", "10", "--lr", "1e-3", "--name",
                      "py-rm", "--watch")
        if trained.returncode != 0:
            raise RuntimeError(f"training failed: {trained.stdout}{trained.stderr}")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def cli_score(self, prompt: str, response: str) -> float:
        result = cli(self.server, "score", "--model", "py-rm", "--prompt", prompt, "--response",
                     response)
        self.assertEqual(result.returncode, 0, result.stderr)
        return float(result.stdout)

    def test_stubs_are_generated_outside_the_source_tree(self):
        stubs = Path(os.environ["VERDICT_STUBS_DIR"])
        self.assertTrue((stubs / "verdict" / "v1" / "scoring_pb2_grpc.py").is_file())
        self.assertFalse(list((SOURCE_DIR / "client" / "python").rglob("*_pb2.py")))

    def test_score_matches_the_cli(self):
        prompts = ["\n\nHuman: What is the capital of Kenya?\n\nAssistant:"] * 2
        responses = [" The capital of Kenya is Nairobi.", " Figure it out yourself."]
        with verdict_client.VerdictClient(self.server.address) as client:
            scores = client.score(prompts, responses, model="py-rm")
            self.assertEqual(len(scores), 2)
            for prompt, response, score in zip(prompts, responses, scores):
                self.assertAlmostEqual(score, self.cli_score(prompt, response), places=4)
            self.assertEqual(client.score([], [], model="py-rm"), [])
            # The same version by number: the same score, up to float rounding (alone, the
            # item is a batch of one; above it was batched with a second, padded item).
            [alone] = client.score(prompts[:1], responses[:1], model="py-rm:1")
            self.assertAlmostEqual(alone, scores[0], places=6)
            with self.assertRaises(ValueError):
                client.score(prompts, responses[:1], model="py-rm")

    def test_errors_carry_the_servers_code(self):
        client = verdict_client.VerdictClient(self.server.address)
        with self.assertRaises(grpc.RpcError) as raised:
            client.score(["p"], ["r"], model="no-such-model")
        self.assertEqual(raised.exception.code(), grpc.StatusCode.NOT_FOUND)
        with self.assertRaises(grpc.RpcError) as unknown_version:
            client.score(["p"], ["r"], model="py-rm:99")
        self.assertEqual(unknown_version.exception.code(), grpc.StatusCode.NOT_FOUND)
        # A policy may generate nothing: an empty response is scored, not refused.
        [empty] = client.score(["p"], [""], model="py-rm")
        self.assertTrue(math.isfinite(empty))

    def test_reward_fn_batches_and_keeps_the_order(self):
        import ppo_reward_fn
        fn = ppo_reward_fn.make_reward_fn(self.server.address, "py-rm", batch_size=7)
        prompts = [f"\n\nHuman: Question {i}?\n\nAssistant:" for i in range(50)]
        responses = [f" Answer {'yes' if i % 2 else 'no'} to {i}." for i in range(50)]
        rewards = fn(prompts, responses)
        self.assertEqual(len(rewards), 50)
        self.assertTrue(all(isinstance(r, float) for r in rewards))
        for i in (0, 13, 49):
            self.assertAlmostEqual(rewards[i], self.cli_score(prompts[i], responses[i]), places=4)
        self.assertEqual(fn.retries, 0)

    def test_reward_fn_from_the_environment(self):
        import ppo_reward_fn
        os.environ["VERDICT_SERVER"] = self.server.address
        os.environ["VERDICT_MODEL"] = "py-rm"
        try:
            ppo_reward_fn._default = None
            self.assertEqual(len(ppo_reward_fn.reward_fn(["p"], [" r"])), 1)
        finally:
            del os.environ["VERDICT_SERVER"], os.environ["VERDICT_MODEL"]

    def test_reward_fn_does_not_retry_what_retrying_cannot_fix(self):
        import ppo_reward_fn
        sleeps = []
        fn = ppo_reward_fn.RewardFunction(verdict_client.VerdictClient(self.server.address),
                                          "no-such-model", sleep=sleeps.append)
        with self.assertRaises(grpc.RpcError):
            fn(["p"], ["r"])
        self.assertEqual(sleeps, [])

    def test_reward_fn_retries_until_a_restarted_server_answers(self):
        import ppo_reward_fn
        # Stops the suite's server and starts it again on the same port and state.
        self.server.stop()
        fn = ppo_reward_fn.make_reward_fn(self.server.address, "py-rm", max_attempts=12,
                                          initial_backoff=0.2, max_backoff=2.0)
        result = {}

        def call():
            try:
                result["rewards"] = fn(["\n\nHuman: Hi\n\nAssistant:"], [" Hello."])
            except grpc.RpcError as error:  # reported by the assertion below
                result["error"] = error

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(1.5)  # the first attempts meet a closed port: UNAVAILABLE
        type(self).server = Server(self.tmp / "server", self.server.port)
        caller.join(timeout=120)
        self.assertNotIn("error", result)
        self.assertEqual(len(result["rewards"]), 1)
        self.assertGreater(fn.retries, 0)
        self.assertAlmostEqual(result["rewards"][0],
                               self.cli_score("\n\nHuman: Hi\n\nAssistant:", " Hello."), places=4)

    def test_the_example_runs_as_a_script(self):
        script = SOURCE_DIR / "client" / "python" / "examples" / "ppo_reward_fn.py"
        result = subprocess.run([sys.executable, str(script), "--server", self.server.address,
                                 "--model", "py-rm"], capture_output=True, text=True, timeout=60,
                                check=False, env={**os.environ})
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(len(result.stdout.strip().splitlines()), 2)
        missing = subprocess.run([sys.executable, str(script), "--server", self.server.address,
                                  "--model", "absent"], capture_output=True, text=True,
                                 timeout=60, check=False)
        self.assertEqual(missing.returncode, 1)
        self.assertIn("NOT_FOUND", missing.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
