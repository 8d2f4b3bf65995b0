"""HTTP/JSON scoring (server/http_scoring.h) against a real verdictd.

OpenRLHF's remote reward model client posts {"query": [...]} to /get_reward; this test sends
exactly that shape and checks the rewards against gRPC's ScoreBatch (through the verdict CLI),
the /v1/score JSON mapping, the status codes errors map to, and the bearer token.

Run by CTest (tests/server/CMakeLists.txt) with Debian's /usr/bin/python3 and two
environment variables: VERDICTD (the server binary) and VERDICT_CLI (the CLI, which trains the
model the test scores with and is the gRPC side of the comparison). Standard library only.
"""

import json
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from pathlib import Path

VERDICTD = os.environ["VERDICTD"]
VERDICT_CLI = os.environ["VERDICT_CLI"]
SYNTHETIC = (Path(__file__).resolve().parents[1] / "data" / "synthetic" /
             "helpful-concise.jsonl")
TOKEN = "http-test-token-7f3a9c"

PROMPTS = ["\n\nHuman: What is the capital of Kenya?\n\nAssistant:",
           "\n\nHuman: How do I boil an egg?\n\nAssistant:"]
RESPONSES = [" The capital of Kenya is Nairobi.", " Put it in boiling water for nine minutes."]


class Server:
    """verdictd on loopback, gRPC and HTTP on free ports, its state under root."""

    def __init__(self, root: Path, *flags: str):
        root.mkdir(parents=True, exist_ok=True)
        self.log_path = root / "verdictd.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            [VERDICTD, "--host=127.0.0.1", "--port=0", "--metrics_port=-1", "--http_port=0",
             f"--state_dir={root / 'state'}", f"--data_dir={SYNTHETIC.parent}",
             "--drain_grace_seconds=1", *flags],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            log = self.log_path.read_text()
            started = re.search(r"listening on 127\.0\.0\.1:([0-9]+).*HTTP scoring on :([0-9]+)",
                                log)
            if started:
                self.address = f"127.0.0.1:{started.group(1)}"
                self.http = f"http://127.0.0.1:{started.group(2)}"
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("verdictd did not start:\n" + self.log_path.read_text())

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        self.log.close()

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([VERDICT_CLI, "--server", self.address, *args],
                              capture_output=True, text=True, timeout=180, check=False)

    def post(self, path: str, body, headers=None):
        """(HTTP status, parsed JSON body, response headers) of a POST."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(self.http + path, data=data, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read()), response.headers
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read()), error.headers


class HttpScoringTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="verdict-http-test-"))
        cls.server = Server(cls.tmp / "open", "--http_model=http-rm",
                            "--max_message_bytes=1048576")
        trained = cls.server.cli("submit", "--train", str(SYNTHETIC), "--preset", "encoder-tiny",
                                 "--vocab-size", "400", "--max-steps", "10", "--lr", "1e-3",
                                 "--name", "http-rm", "--watch")
        if trained.returncode != 0:
            raise RuntimeError(f"training failed: {trained.stdout}{trained.stderr}")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def grpc_score(self, prompt: str, response: str) -> float:
        result = self.server.cli("score", "--model", "http-rm", "--prompt", prompt,
                                 "--response", response)
        self.assertEqual(result.returncode, 0, result.stderr)
        return float(result.stdout)

    def test_openrlhf_request_scores_as_score_batch(self):
        # OpenRLHF sends each prompt and response joined, plus fields the server may ignore.
        queries = [p + r for p, r in zip(PROMPTS, RESPONSES)]
        status, body, _ = self.server.post("/get_reward", {"query": queries,
                                                           "prompts": PROMPTS, "labels": None})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["rewards"], body["scores"])
        self.assertEqual(body["model"], {"name": "http-rm", "version": 1})
        # Under the concat rule a joined text is the prompt and response TRL joins.
        for prompt, response, reward in zip(PROMPTS, RESPONSES, body["rewards"]):
            self.assertAlmostEqual(reward, self.grpc_score(prompt, response), places=4)
        # The URL may name the model (and version) instead of --http_model.
        status, by_url, _ = self.server.post("/get_reward?model=http-rm:1", {"query": queries})
        self.assertEqual(status, 200, by_url)
        self.assertEqual(by_url["rewards"], body["rewards"])

    def test_empty_completions_score(self):
        status, body, _ = self.server.post("/get_reward", {"query": [PROMPTS[0], ""]})
        self.assertEqual(status, 200, body)
        self.assertEqual(len(body["rewards"]), 2)
        self.assertTrue(all(math.isfinite(r) for r in body["rewards"]))
        self.assertAlmostEqual(body["rewards"][0], self.grpc_score(PROMPTS[0], ""), places=4)

    def test_v1_score_speaks_the_protos_json_mapping(self):
        request = {"model": {"name": "http-rm"},
                   "items": [{"prompt_response": {"prompt": p, "response": r}}
                             for p, r in zip(PROMPTS, RESPONSES)] +
                            [{"text": PROMPTS[0] + RESPONSES[0]},
                             {"conversation": {"messages": [
                                 {"role": "user", "content": "What is the capital of Kenya?"},
                                 {"role": "assistant", "content": ""}]}}]}
        status, body, _ = self.server.post("/v1/score", request)
        self.assertEqual(status, 200, body)
        self.assertEqual(len(body["scores"]), 4)
        self.assertEqual(len(body["tokenCounts"]), 4)
        self.assertEqual(body["model"], {"name": "http-rm", "version": "1"})
        self.assertIn("queueTime", body)
        self.assertAlmostEqual(body["scores"][0], self.grpc_score(PROMPTS[0], RESPONSES[0]),
                               places=4)
        # The same tokens; batched beside other items, so equal up to float rounding.
        self.assertAlmostEqual(body["scores"][2], body["scores"][0], places=5)

    def assert_error(self, reply, http, code, field=None):
        status, body, _ = reply
        self.assertEqual(status, http, body)
        self.assertEqual(body["error"]["code"], http)
        self.assertEqual(body["error"]["status"], code)
        if field is not None:
            self.assertTrue(body["error"]["message"].startswith(field), body)

    def test_errors_map_to_http_status_codes(self):
        post = self.server.post
        self.assert_error(post("/get_reward?model=no-such-rm", {"query": ["x"]}), 404,
                          "NOT_FOUND")
        self.assert_error(post("/get_reward?model=http-rm:99", {"query": ["x"]}), 404,
                          "NOT_FOUND")
        self.assert_error(post("/get_reward?model=Bad_Name", {"query": ["x"]}), 400,
                          "INVALID_ARGUMENT", "model")
        self.assert_error(post("/get_reward", b"{not json"), 400, "INVALID_ARGUMENT")
        self.assert_error(post("/get_reward", {"queries": ["x"]}), 400, "INVALID_ARGUMENT",
                          "query")
        self.assert_error(post("/get_reward", {"query": ["x", 3]}), 400, "INVALID_ARGUMENT",
                          "query[1]")
        self.assert_error(post("/get_reward", {"query": ["x"]},
                                {"X-Request-Timeout-Ms": "soon"}), 400, "INVALID_ARGUMENT",
                          "X-Request-Timeout-Ms")
        self.assert_error(post("/v1/score", {"model": {"name": "http-rm"}, "itemz": []}), 400,
                          "INVALID_ARGUMENT", "request body")
        self.assert_error(post("/v1/score", {"model": {"name": "http-rm"}, "items": []}), 400,
                          "INVALID_ARGUMENT", "items")
        self.assert_error(post("/v1/score", {"model": {"name": "http-rm"},
                                              "items": [{}]}), 400, "INVALID_ARGUMENT",
                          "items[0]")
        self.assert_error(post("/nowhere", {}), 404, "NOT_FOUND")
        self.assert_error(post("/get_reward", b"x" * (2 << 20)), 413, "RESOURCE_EXHAUSTED")

    def test_health(self):
        with urllib.request.urlopen(self.server.http + "/health", timeout=10) as response:
            self.assertEqual(response.status, 200)


class HttpQueueTest(unittest.TestCase):
    def test_a_full_queue_is_429_with_retry_after(self):
        tmp = Path(tempfile.mkdtemp(prefix="verdict-http-queue-"))
        # A queue of 8 items whose batches wait up to 3 s to fill: 5 items wait there while 5
        # more cannot fit.
        server = Server(tmp, "--max_queued_items=8", "--max_batch_items=8",
                        "--max_queue_delay_ms=3000")
        try:
            trained = server.cli("submit", "--train", str(SYNTHETIC), "--preset",
                                 "encoder-tiny", "--vocab-size", "400", "--max-steps", "2",
                                 "--name", "queue-rm", "--watch")
            self.assertEqual(trained.returncode, 0, trained.stdout + trained.stderr)
            waiting = threading.Thread(target=server.post,
                                       args=("/get_reward?model=queue-rm", {"query": ["x"] * 5}))
            waiting.start()
            time.sleep(0.5)
            status, body, headers = server.post("/get_reward?model=queue-rm",
                                                {"query": ["y"] * 5})
            waiting.join()
            self.assertEqual(status, 429, body)
            self.assertEqual(body["error"]["status"], "RESOURCE_EXHAUSTED")
            self.assertEqual(headers["Retry-After"], "1")
        finally:
            server.stop()
            shutil.rmtree(tmp, ignore_errors=True)


class HttpAuthTest(unittest.TestCase):
    def test_the_bearer_token_guards_http_as_it_guards_grpc(self):
        tmp = Path(tempfile.mkdtemp(prefix="verdict-http-auth-"))
        token_file = tmp / "token"
        token_file.write_text(TOKEN + "\n")
        server = Server(tmp / "server", f"--token_file={token_file}")
        try:
            missing = server.post("/get_reward?model=any-rm", {"query": ["x"]})
            self.assertEqual(missing[0], 401, missing[1])
            self.assertEqual(missing[1]["error"]["status"], "UNAUTHENTICATED")
            wrong = server.post("/get_reward?model=any-rm", {"query": ["x"]},
                                {"Authorization": "Bearer not-the-token"})
            self.assertEqual(wrong[0], 401, wrong[1])
            # With the token the request gets through to the registry, which has no such model.
            right = server.post("/get_reward?model=any-rm", {"query": ["x"]},
                                {"Authorization": f"Bearer {TOKEN}"})
            self.assertEqual(right[0], 404, right[1])
        finally:
            server.stop()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
