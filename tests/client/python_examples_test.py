"""client/python/examples run against a real verdictd with the installed package.

Run by CTest (client_python_examples_test) like python_client_test.py: the venv's python from
the client_python_package_test fixture, VERDICTD, VERDICT_CLI and VERDICT_SOURCE_DIR set.
"""

import math
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from verdict_server import SOURCE_DIR, Server, train_tiny_model  # noqa: E402

EXAMPLES = SOURCE_DIR / "client" / "python" / "examples"
sys.path.insert(0, str(EXAMPLES))

import openrlhf_remote_rm  # noqa: E402
import trl_reward_fn  # noqa: E402
from verdict_client import VerdictClient  # noqa: E402

FRANCE = "\n\nHuman: What is the capital of France?\n\nAssistant:"


class ExamplesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="verdict-python-examples-"))
        cls.server = Server(cls.tmp / "server", flags=["--http_port=0"])
        train_tiny_model(cls.server, "py-rm")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def script(self, name: str, *args: str) -> subprocess.CompletedProcess:
        # From a folder away from the repository: the examples need only the installed package.
        return subprocess.run([sys.executable, str(EXAMPLES / name), "--server",
                               self.server.address, *args], capture_output=True, text=True,
                              timeout=120, check=False, cwd=self.tmp)

    def test_trl_reward_fn_takes_both_of_trls_formats(self):
        fn = trl_reward_fn.make_reward_fn(self.server.address, "py-rm")
        self.addCleanup(fn.client.close)
        self.assertEqual(fn.__name__, "verdict/py-rm")
        prompts = [f"\n\nHuman: Question {i}?\n\nAssistant:" for i in range(10)]
        completions = [f" Answer {i}." if i % 4 else "" for i in range(10)]
        # TRL passes the dataset's other columns as keyword arguments.
        rewards = fn(prompts=prompts, completions=completions, ground_truth=["x"] * 10)
        with VerdictClient(self.server.address, model="py-rm") as client:
            expected = client.score(prompts, completions)
            self.assertEqual(len(rewards), 10)
            for got, want in zip(rewards, expected):
                self.assertAlmostEqual(got, want, places=4)
            conversational = fn(
                [[{"role": "user", "content": "Question 1?"}], "Question 2?"],
                [[{"role": "assistant", "content": "Answer 1."}],
                 [{"role": "assistant", "content": ""}]])
            self.assertAlmostEqual(conversational[0], expected[1], places=4)
            # HH renders an empty final assistant message as the response " ".
            [empty] = client.score(["\n\nHuman: Question 2?\n\nAssistant:"], [" "])
            self.assertAlmostEqual(conversational[1], empty, places=4)
        self.assertEqual(fn([], []), [])

    def test_trl_reward_fn_as_a_script(self):
        result = self.script("trl_reward_fn.py", "--model", "py-rm")
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stdout.strip().splitlines()
        self.assertEqual(len(lines), 4)  # three completions (one empty), one conversation
        self.assertTrue(all(math.isfinite(float(line.split()[0])) for line in lines))
        self.assertTrue(lines[2].endswith("''"))
        missing = self.script("trl_reward_fn.py", "--model", "absent")
        self.assertEqual(missing.returncode, 1)
        self.assertIn("trl_reward_fn: NOT_FOUND", missing.stderr)

    def test_ppo_loop_scores_every_step_with_one_version(self):
        result = self.script("ppo_loop.py", "--model", "py-rm", "--steps", "3",
                             "--batch-size", "24", "--micro-batch", "5")
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stdout.strip().splitlines()
        self.assertEqual(len(lines), 3)
        for step, line in enumerate(lines):
            match = re.match(rf"step {step}: 24 rewards from py-rm v1, .* ([0-9]+) empty "
                             r"\(mean ([-+][0-9.]+)\), ([0-9]+) tokens", line)
            self.assertIsNotNone(match, line)
            self.assertGreaterEqual(int(match.group(1)), 1)
            self.assertTrue(math.isfinite(float(match.group(2))))
            self.assertGreater(int(match.group(3)), 24)
        missing = self.script("ppo_loop.py", "--model", "absent", "--steps", "1")
        self.assertEqual(missing.returncode, 1)
        self.assertIn("ppo_loop: NOT_FOUND", missing.stderr)

    def test_openrlhf_remote_rm_fn_scores_as_score_batch(self):
        url = f"{self.server.http_url}/get_reward?model=py-rm"
        completions = [" Paris.", " Lyon, I think.", ""]
        rewards = openrlhf_remote_rm.remote_rm_fn(url, [FRANCE + c for c in completions])
        with VerdictClient(self.server.address, model="py-rm") as client:
            expected = client.score([FRANCE] * 3, completions)
        self.assertEqual(len(rewards), 3)
        for got, want in zip(rewards, expected):
            self.assertAlmostEqual(got, want, places=4)
        with self.assertRaises(openrlhf_remote_rm.RewardServerError) as refused:
            openrlhf_remote_rm.remote_rm_fn(f"{self.server.http_url}/get_reward?model=absent",
                                            ["x"])
        self.assertEqual(refused.exception.status, 404)

    def test_openrlhf_remote_rm_as_a_script(self):
        result = subprocess.run([sys.executable, str(EXAMPLES / "openrlhf_remote_rm.py"), "--url",
                                 f"{self.server.http_url}/get_reward?model=py-rm"],
                                capture_output=True, text=True, timeout=120, check=False,
                                cwd=self.tmp)
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stdout.strip().splitlines()
        self.assertEqual(len(lines), 3)
        self.assertTrue(all(math.isfinite(float(line.split()[0])) for line in lines))


if __name__ == "__main__":
    unittest.main(verbosity=2)
