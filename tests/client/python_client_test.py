"""The installed Python client (sync and asyncio) against a real verdictd.

Run by CTest (client_python_test) with the python of the venv that client_python_package_test
made and pip-installed client/python into (its fixture), and VERDICTD, VERDICT_CLI and
VERDICT_SOURCE_DIR set. client/python is not put on sys.path: the installed package is tested.
"""

import asyncio
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc  # noqa: E402

import verdict_client  # noqa: E402
from verdict_client import AsyncVerdictClient, RetryPolicy, VerdictClient  # noqa: E402
from verdict_server import (SOURCE_DIR, VERDICT_CLI, Server, cli_score,  # noqa: E402
                            train_tiny_model)

KENYA = "\n\nHuman: What is the capital of Kenya?\n\nAssistant:"


class PythonClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="verdict-python-test-"))
        cls.server = Server(cls.tmp / "server")
        train_tiny_model(cls.server, "py-rm")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def client(self, **options) -> VerdictClient:
        client = VerdictClient(self.server.address, model="py-rm", **options)
        self.addCleanup(client.close)
        return client

    def cli_score(self, prompt: str, response: str) -> float:
        return cli_score(self.server, "py-rm", prompt, response)

    def test_the_installed_package_is_used(self):
        self.assertIn(sys.prefix, verdict_client.__file__)
        self.assertNotEqual(sys.prefix, sys.base_prefix)  # a venv

    def test_score_matches_the_cli(self):
        prompts = [KENYA] * 2
        responses = [" The capital of Kenya is Nairobi.", " Figure it out yourself."]
        client = self.client()
        scores = client.score(prompts, responses)
        self.assertEqual(len(scores), 2)
        for prompt, response, score in zip(prompts, responses, scores):
            self.assertAlmostEqual(score, self.cli_score(prompt, response), places=4)
        self.assertEqual(client.score([], []), [])
        # The same version by number: the same score, up to float rounding (alone, the item
        # is a batch of one; above it was batched with a second, padded item).
        [alone] = client.score(prompts[:1], responses[:1], model="py-rm:1")
        self.assertAlmostEqual(alone, scores[0], places=6)
        with self.assertRaises(ValueError):
            client.score(prompts, responses[:1])
        with self.assertRaises(TypeError):
            client.score(KENYA, " Nairobi.")

    def test_details_name_the_version_and_count_the_tokens(self):
        client = self.client()
        responses = [" Nairobi.", " The capital of Kenya is Nairobi, its largest city.", ""]
        details = client.score([KENYA] * 3, responses, model="py-rm:latest", return_details=True)
        self.assertEqual((details.model, details.version), ("py-rm", 1))
        self.assertFalse(details.normalized)
        self.assertEqual(details.requests, 1)
        self.assertEqual(len(details.rewards), 3)
        self.assertEqual(details.rewards, client.score([KENYA] * 3, responses))
        self.assertEqual(len(details.token_counts), 3)
        # More text, more tokens; the empty response still has the prompt's (and specials).
        self.assertLess(details.token_counts[0], details.token_counts[1])
        self.assertLess(details.token_counts[2], details.token_counts[0])
        self.assertGreater(details.token_counts[2], 0)
        self.assertGreaterEqual(details.queue_time, 0.0)
        self.assertGreater(details.compute_time, 0.0)

    def test_empty_completions_score(self):
        client = self.client()
        rewards = client.score([KENYA, KENYA, ""], ["", None, ""])
        self.assertEqual(len(rewards), 3)
        self.assertTrue(all(math.isfinite(r) for r in rewards))
        self.assertEqual(rewards[0], rewards[1])  # None is the empty response
        self.assertAlmostEqual(rewards[0], self.cli_score(KENYA, ""), places=4)

    def test_conversations_render_with_the_models_chat_format(self):
        client = self.client()
        conversation = [{"role": "user", "content": "What is the capital of Kenya?"},
                        {"role": "assistant", "content": "The capital of Kenya is Nairobi."}]
        empty_answer = [("user", "What is the capital of Kenya?"), ("assistant", "")]
        got = client.score_conversations([conversation, empty_answer], return_details=True)
        # The model was trained on HH transcripts, whose format renders the final assistant
        # message as " " + content: the same text as this prompt and response (an empty
        # answer included, which is the response " ").
        want = client.score([KENYA] * 2, [" The capital of Kenya is Nairobi.", " "],
                            return_details=True)
        self.assertEqual(got.token_counts, want.token_counts)
        for a, b in zip(got.rewards, want.rewards):
            self.assertAlmostEqual(a, b, places=5)
        with self.assertRaises(grpc.RpcError) as raised:
            client.score_conversations([[{"role": "user", "content": "no answer"}]])
        self.assertEqual(raised.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def test_big_calls_are_split_and_keep_the_order(self):
        prompts = [f"\n\nHuman: Question {i}?\n\nAssistant:" for i in range(50)]
        responses = [f" Answer {'yes' if i % 2 else 'no'} to {i}." for i in range(50)]
        whole = self.client().score(prompts, responses, return_details=True)
        split = self.client(max_items_per_request=7).score(prompts, responses,
                                                            return_details=True)
        self.assertEqual((whole.requests, split.requests), (1, 8))
        self.assertEqual(split.version, 1)
        self.assertEqual(split.token_counts, whole.token_counts)
        for a, b in zip(split.rewards, whole.rewards):
            self.assertAlmostEqual(a, b, places=5)
        for i in (0, 13, 49):
            self.assertAlmostEqual(split.rewards[i], self.cli_score(prompts[i], responses[i]),
                                   places=4)

    def test_errors_carry_the_servers_code_and_are_not_retried(self):
        client = self.client()
        with self.assertRaises(grpc.RpcError) as raised:
            client.score(["p"], ["r"], model="no-such-model")
        self.assertEqual(raised.exception.code(), grpc.StatusCode.NOT_FOUND)
        with self.assertRaises(grpc.RpcError) as unknown_version:
            client.score(["p"], ["r"], model="py-rm:99")
        self.assertEqual(unknown_version.exception.code(), grpc.StatusCode.NOT_FOUND)
        self.assertEqual(client.retries, 0)
        # RESOURCE_EXHAUSTED from gRPC's message size limit: the same request would fail again.
        small = self.client(options=[("grpc.max_send_message_length", 100)])
        with self.assertRaises(grpc.RpcError) as too_big:
            small.score(["p" * 200], ["r"])
        self.assertEqual(too_big.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(small.retries, 0)
        with self.assertRaises(ValueError):
            VerdictClient(self.server.address).score(["p"], ["r"])  # no model anywhere

    def test_the_model_and_server_come_from_the_environment(self):
        os.environ["VERDICT_SERVER"] = self.server.address
        os.environ["VERDICT_MODEL"] = "py-rm"
        try:
            with VerdictClient() as client:
                self.assertEqual(client.target, self.server.address)
                self.assertEqual(len(client.score(["p"], [" r"])), 1)
        finally:
            del os.environ["VERDICT_SERVER"], os.environ["VERDICT_MODEL"]

    def test_async_client_matches_the_sync_one(self):
        prompts = [f"\n\nHuman: Question {i}?\n\nAssistant:" for i in range(20)]
        responses = [f" Answer {i}." if i % 3 else "" for i in range(20)]
        expected = self.client().score(prompts, responses)

        async def main():
            async with AsyncVerdictClient(self.server.address, model="py-rm") as client:
                parts = await asyncio.gather(*[
                    client.score(prompts[i:i + 5], responses[i:i + 5], return_details=True)
                    for i in range(0, 20, 5)])
                with self.assertRaises(grpc.RpcError) as raised:
                    await client.score(["p"], ["r"], model="no-such-model")
                conversation = await client.score_conversations(
                    [[{"role": "user", "content": "Question 1?"},
                      {"role": "assistant", "content": "Answer 1."}]])
                return parts, raised.exception.code(), conversation, client.retries

        parts, code, conversation, retries = asyncio.run(main())
        got = [r for part in parts for r in part.rewards]
        for a, b in zip(got, expected):
            self.assertAlmostEqual(a, b, places=4)
        self.assertEqual({(p.model, p.version) for p in parts}, {("py-rm", 1)})
        self.assertEqual(code, grpc.StatusCode.NOT_FOUND)
        self.assertAlmostEqual(conversation[0], expected[1], places=4)
        self.assertEqual(retries, 0)

    def test_z_retries_until_a_restarted_server_answers_within_the_deadline(self):
        # Runs last (z): stops the suite's server and starts it again on the same port/state.
        self.server.stop()
        # A deadline bounds the retries: against a closed port the call gives up in time.
        started = time.monotonic()
        with self.assertRaises(grpc.RpcError) as raised:
            self.client(timeout=1.0, retry=RetryPolicy(max_attempts=100)).score(["p"], ["r"])
        self.assertLess(time.monotonic() - started, 5.0)
        self.assertIn(raised.exception.code(),
                      (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED))
        client = self.client(timeout=120,
                             retry=RetryPolicy(max_attempts=30, initial_backoff=0.2,
                                               max_backoff=1.0))
        result = {}

        def call():
            try:
                result["rewards"] = client.score(["\n\nHuman: Hi\n\nAssistant:"], [" Hello."])
            except grpc.RpcError as error:  # reported by the assertion below
                result["error"] = error

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(1.5)  # the first attempts meet a closed port: UNAVAILABLE
        type(self).server = Server(self.tmp / "server", self.server.port)
        caller.join(timeout=120)
        self.assertNotIn("error", result)
        self.assertEqual(len(result["rewards"]), 1)
        self.assertGreater(client.retries, 0)
        self.assertAlmostEqual(result["rewards"][0],
                               self.cli_score("\n\nHuman: Hi\n\nAssistant:", " Hello."),
                               places=4)


class ServiceConfigTest(unittest.TestCase):
    def test_is_the_clis(self):
        """The Python client's channel balances and retries exactly as the CLI's: the service
        config is written twice (client/connection.h, verdict_client/_common.py), and only this
        keeps the two the same."""
        header = (SOURCE_DIR / "client" / "connection.h").read_text()
        cli = re.search(r'kClientServiceConfig\[\] = R"json\((.*?)\)json"', header, re.S)
        self.assertIsNotNone(cli, "kClientServiceConfig not found in client/connection.h")
        self.assertEqual(json.loads(verdict_client._common.SERVICE_CONFIG),
                         json.loads(cli.group(1)))


class BalancingTest(unittest.TestCase):
    """One channel over two verdictd processes (an ipv4: target listing both; a dns:/// name
    of a Kubernetes headless Service resolves to many addresses the same way): round_robin
    spreads the calls, and stopping one server fails none of them."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="verdict-python-balancing-"))
        cls.servers = [Server(cls.tmp / name) for name in ("first", "second")]
        golden = SOURCE_DIR / "tests" / "data" / "golden" / "llama"
        for server in cls.servers:
            target = server.root / "models" / "golden-llama"
            target.mkdir(parents=True)
            shutil.copy(golden / "config.json", target)
            shutil.copy(golden / "model.safetensors", target)
            shutil.copy(SOURCE_DIR / "tests" / "data" / "models" / "stories260K-hf" /
                        "tokenizer.model", target)
            imported = subprocess.run(
                [VERDICT_CLI, "--server", server.address, "import", "golden-llama", "llama"],
                capture_output=True, text=True, timeout=180, check=False)
            if imported.returncode != 0:
                raise RuntimeError(imported.stderr)

    @classmethod
    def tearDownClass(cls):
        for server in cls.servers:
            server.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def loaded(self, server: Server) -> bool:
        listed = subprocess.run([VERDICT_CLI, "--server", server.address, "models", "--loaded"],
                                capture_output=True, text=True, timeout=60, check=True)
        return "llama" in listed.stdout

    def test_calls_spread_over_both_servers_and_a_stopped_one_fails_none(self):
        target = "ipv4:" + ",".join(server.address for server in self.servers)
        # NO_RETRY: only gRPC's own retries (the service config's) stand between a stopped
        # server and a failed call.
        client = VerdictClient(target, model="llama", retry=verdict_client.NO_RETRY)
        self.addCleanup(client.close)
        for _ in range(20):
            self.assertEqual(len(client.score([KENYA], [" Nairobi."])), 1)
        # Each server loads the model on its first ScoreBatch.
        self.assertTrue(all(self.loaded(server) for server in self.servers))

        errors, calls, stop = [], [0], threading.Event()

        def loop():
            while not stop.is_set():
                try:
                    client.score([KENYA], [" Nairobi."])
                    calls[0] += 1
                except grpc.RpcError as error:
                    errors.append(error)

        thread = threading.Thread(target=loop)
        thread.start()
        time.sleep(0.5)
        self.servers[1].stop()
        at_stop = calls[0]
        deadline = time.monotonic() + 60
        while calls[0] < at_stop + 40 and time.monotonic() < deadline and not errors:
            time.sleep(0.01)
        stop.set()
        thread.join()
        self.assertEqual(errors, [])
        self.assertGreaterEqual(calls[0], at_stop + 40)


class AuthAndTlsTest(unittest.TestCase):
    """The token and TLS options, as the CLI's --token, --tls, --ca and --tls-server-name."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="verdict-python-tls-"))
        subprocess.run(["/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-days", "1", "-keyout", str(cls.tmp / "key.pem"), "-out",
                        str(cls.tmp / "cert.pem"), "-subj", "/CN=verdict.test", "-addext",
                        "subjectAltName=IP:127.0.0.1,DNS:verdict.test"],
                       check=True, capture_output=True)
        (cls.tmp / "token").write_text("s3cret\n")
        cls.server = Server(cls.tmp / "server", flags=[
            f"--tls_cert={cls.tmp / 'cert.pem'}", f"--tls_key={cls.tmp / 'key.pem'}",
            f"--token_file={cls.tmp / 'token'}"])

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def code(self, **options) -> grpc.StatusCode:
        """The status of scoring with an unknown model: NOT_FOUND means it got through."""
        with VerdictClient(self.server.address, model="absent", timeout=10,
                           retry=verdict_client.NO_RETRY, **options) as client:
            with self.assertRaises(grpc.RpcError) as raised:
                client.score(["p"], ["r"])
            return raised.exception.code()

    def test_tls_and_token(self):
        ca = str(self.tmp / "cert.pem")
        self.assertEqual(self.code(tls=True, ca_file=ca, token="s3cret"),
                         grpc.StatusCode.NOT_FOUND)
        self.assertEqual(self.code(tls=True, root_certificates=(self.tmp / "cert.pem")
                                   .read_bytes(), tls_server_name="verdict.test",
                                   token="s3cret"), grpc.StatusCode.NOT_FOUND)
        self.assertEqual(self.code(tls=True, ca_file=ca), grpc.StatusCode.UNAUTHENTICATED)
        self.assertEqual(self.code(tls=True, ca_file=ca, token="wrong"),
                         grpc.StatusCode.UNAUTHENTICATED)
        os.environ["VERDICT_TOKEN"] = "s3cret"
        try:
            self.assertEqual(self.code(tls=True, ca_file=ca), grpc.StatusCode.NOT_FOUND)
        finally:
            del os.environ["VERDICT_TOKEN"]
        # Plain text to a TLS port does not get through.
        self.assertEqual(self.code(token="s3cret"), grpc.StatusCode.UNAVAILABLE)
        with self.assertRaises(ValueError):
            VerdictClient(self.server.address, ca_file=ca)  # --ca without --tls


if __name__ == "__main__":
    unittest.main(verbosity=2)
