#!/usr/bin/env python3
"""Tests of the deploy checkers themselves: each must catch what it claims to catch.

A checker that passes everything would make the other deploy tests pass for nothing; these
feed each one broken input and expect the specific finding.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def run(script, *args):
    result = subprocess.run([sys.executable, os.path.join(HERE, script), *args],
                            capture_output=True, text=True, cwd=ROOT)
    return result.returncode, result.stdout + result.stderr


class DockerfileLinterTest(unittest.TestCase):
    def test_reports_every_rule_on_the_bad_fixture(self):
        code, output = run("check_dockerfiles.py",
                           os.path.join(HERE, "testdata", "bad.Dockerfile"), "--context", ROOT)
        self.assertEqual(code, 1, output)
        expected = ["DL3006", "DL3007", "DL3020", "DL3000", "DL3003", "DL3004", "DL3014",
                    "DL3015", "DL3009", "DL3005", "DL3022", "DL3025", "DL3002", "SH", "CTX",
                    "V1", "V2", "V3", "V4", "V5", "V6"]
        for rule in expected:
            self.assertRegex(output, rf":\d+: {rule} ", f"{rule} not reported:\n{output}")
        self.assertIn("does-not-exist does not exist", output)
        self.assertIn(".git is excluded by .dockerignore", output)
        self.assertRegex(output, r"bad.Dockerfile:8: SH bash -n")
        if shutil.which("shellcheck"):
            self.assertIn("SC2154", output)  # a lowercase variable nobody sets
        if shutil.which("apt-cache") and "PKG" in output:
            self.assertIn("libverdict-no-such-package", output)


class MetricNamesTest(unittest.TestCase):
    EXPOSITION = """\
# HELP verdict_rpc_requests_total Finished RPCs.
# TYPE verdict_rpc_requests_total counter
verdict_rpc_requests_total{code="OK",method="ScoreBatch"} 1
# HELP verdict_rpc_duration_seconds RPC time.
# TYPE verdict_rpc_duration_seconds histogram
verdict_rpc_duration_seconds_count{method="ScoreBatch"} 1
verdict_rpc_duration_seconds_sum{method="ScoreBatch"} 0.1
verdict_rpc_duration_seconds_bucket{method="ScoreBatch",le="0.1"} 1
verdict_rpc_duration_seconds_bucket{method="ScoreBatch",le="+Inf"} 1
# HELP verdict_jobs Jobs per state.
# TYPE verdict_jobs gauge
verdict_jobs{state="queued"} 0
"""

    def check(self, exprs):
        with tempfile.TemporaryDirectory() as scratch:
            exposition = os.path.join(scratch, "metrics.txt")
            with open(exposition, "w") as f:
                f.write(self.EXPOSITION)
            dashboard = os.path.join(scratch, "dashboard.json")
            with open(dashboard, "w") as f:
                json.dump({"panels": [{"targets": [{"expr": e, "legendFormat": legend}
                                                   for e, legend in exprs]}]}, f)
            return run("check_metric_names.py", "--exposition", exposition, "--file", dashboard)

    def test_accepts_exported_names_histogram_series_and_target_labels(self):
        code, output = self.check([
            ('sum by (method) (rate(verdict_rpc_requests_total{job="verdict", code!="OK"}[5m]))',
             "{{method}}"),
            ('histogram_quantile(0.99, sum by (le) (rate('
             'verdict_rpc_duration_seconds_bucket{method="ScoreBatch"}[5m])))', "p99"),
            ("verdict_rpc_duration_seconds_sum / verdict_rpc_duration_seconds_count", ""),
            ('sum by (state) (verdict_jobs{instance=~".*"})', "{{state}}"),
        ])
        self.assertEqual(code, 0, output)

    def test_rejects_unknown_names_labels_groupings_and_legends(self):
        code, output = self.check([
            ("rate(verdict_rpc_requests[5m])", ""),                       # no _total
            ("verdict_jobs_bucket", ""),                                  # not a histogram
            ('verdict_jobs{job_id="x"}', ""),                             # no such label
            ('verdict_rpc_requests_total{le="1"}', ""),                   # le only on _bucket
            ("sum by (model) (verdict_jobs)", ""),                        # grouping
            ("verdict_jobs", "{{method}}"),                               # legend
        ])
        self.assertEqual(code, 1, output)
        self.assertIn("verdict_rpc_requests is not exported", output)
        self.assertIn("verdict_jobs_bucket is not exported", output)
        self.assertIn("verdict_jobs has no label 'job_id'", output)
        self.assertIn("verdict_rpc_requests_total has no label 'le'", output)
        self.assertIn("grouping by 'model'", output)
        self.assertIn("legend {{method}}", output)


class DashboardCheckerTest(unittest.TestCase):
    def test_rejects_a_broken_dashboard(self):
        with open(os.path.join(ROOT, "deploy", "grafana", "verdict.json")) as f:
            dashboard = json.load(f)
        dashboard["templating"]["list"] = [
            v for v in dashboard["templating"]["list"] if v["name"] != "datasource"]
        panels = [p for p in dashboard["panels"] if p["type"] != "row"]
        panels[1]["gridPos"] = dict(panels[0]["gridPos"])               # overlap
        panels[2]["datasource"] = {"type": "prometheus", "uid": "abc"}  # fixed data source
        panels[3]["targets"][0]["expr"] = "sum(rate(verdict_jobs[5m])"  # unbalanced
        dashboard["panels"] = [p for p in dashboard["panels"]
                               if "verdict_training_eval_accuracy" not in json.dumps(p)]
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(dashboard, f)
            f.flush()
            code, output = run("check_dashboard.py", f.name)
        self.assertEqual(code, 1, output)
        self.assertIn("no `datasource` template variable", output)
        self.assertIn("overlap", output)
        self.assertIn("does not use ${datasource}", output)
        self.assertIn("no panel shows eval accuracy", output)
        if shutil.which("promtool"):
            self.assertIn("promtool rejects the dashboard's PromQL", output)


@unittest.skipUnless(shutil.which("kubectl"), "kubectl is not installed")
class KubernetesCheckerTest(unittest.TestCase):
    def test_rejects_unsafe_or_inconsistent_manifests(self):
        with tempfile.TemporaryDirectory() as scratch:
            k8s = os.path.join(scratch, "k8s")
            shutil.copytree(os.path.join(ROOT, "deploy", "k8s"), k8s)
            base = os.path.join(k8s, "base")
            edits = {
                "control.yaml": [("terminationGracePeriodSeconds: 45",
                                  "terminationGracePeriodSeconds: 30"),
                                 ("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"),
                                 ("runAsNonRoot: true", "runAsNonRoot: false"),
                                 ("- ReadWriteOnce", "- ReadWriteMany"),
                                 ("serviceName: verdict-control", "serviceName: verdict")],
                "scoring.yaml": [("maxUnavailable: 0", "maxUnavailable: 1"),
                                 ("service: verdict.v1.ScoringService", "service: ''")],
                "hpa.yaml": [("minReplicas: 2", "minReplicas: 1")],
                "scoring.flags": [("dns:///verdict:50051", "dns:///verdict-scoring:50051")],
            }
            for name, replacements in edits.items():
                with open(os.path.join(base, name)) as f:
                    text = f.read()
                for old, new in replacements:
                    self.assertIn(old, text, name)
                    text = text.replace(old, new)
                if name == "control.yaml":
                    text = re.sub(r"readinessProbe:\n(\s+)grpc:\n\s+port: 50051",
                                  r"readinessProbe:\n\1tcpSocket:\n\1  port: 50051", text)
                with open(os.path.join(base, name), "w") as f:
                    f.write(text)
            with open(os.path.join(base, "control.flags"), "a") as f:
                f.write("--no_such_flag=1\n--metrics_port=9090\n")
            with open(os.path.join(base, "kustomization.yaml")) as f:
                kustomization = f.read().replace("  - pdb.yaml\n", "")
            with open(os.path.join(base, "kustomization.yaml"), "w") as f:
                f.write(kustomization)
            gpu = os.path.join(k8s, "overlays", "gpu")
            os.remove(os.path.join(gpu, "scoring-gpu.yaml"))
            with open(os.path.join(gpu, "kustomization.yaml")) as f:
                overlay = f.read().replace("  - scoring-gpu.yaml\n", "")
            with open(os.path.join(gpu, "kustomization.yaml"), "w") as f:
                f.write(overlay)
            code, output = run("check_k8s.py", k8s)
        self.assertEqual(code, 1, output)
        self.assertIn("terminationGracePeriodSeconds 30 is not above", output)
        self.assertIn("root filesystem is not read-only", output)
        self.assertIn("does not run as a non-root user", output)
        self.assertIn("readinessProbe is not a gRPC probe", output)
        self.assertIn("--no_such_flag is not one verdictd defines", output)
        self.assertIn("--metrics_port=9090, expected 9464", output)
        self.assertIn("state claim is not ReadWriteOnce", output)
        self.assertIn("serviceName verdict is not a headless Service", output)
        self.assertIn("does not roll with maxUnavailable 0", output)
        self.assertIn("readiness probe checks service '', not verdict.v1.ScoringService", output)
        self.assertIn("allows fewer than 2 scoring replicas", output)
        self.assertIn("no PodDisruptionBudget keeps a scoring replica", output)
        self.assertIn("--control_plane=dns:///verdict-scoring:50051 does not name", output)
        self.assertIn("overlays/gpu Deployment verdict-scoring: no nvidia.com/gpu limit", output)
        self.assertIn("verdict-scoring: no toleration", output)
        self.assertNotIn("StatefulSet verdict-control: no nvidia.com/gpu limit", output)

    def test_rejects_broken_training_examples(self):
        with tempfile.TemporaryDirectory() as scratch:
            k8s = os.path.join(scratch, "k8s")
            shutil.copytree(os.path.join(ROOT, "deploy", "k8s"), k8s)
            training = os.path.join(k8s, "training")
            edits = {
                os.path.join(training, "shared", "pvc.yaml"): [
                    ("- ReadWriteMany", "- ReadWriteOnce")],
                os.path.join(training, "pytorchjob", "pytorchjob.yaml"): [
                    ("- name: pytorch", "- name: main"),
                    ("--save_steps=200", "--save_every=200"),
                    ("--device=cpu", "--device=cuda")],
                os.path.join(training, "indexed-job", "job.yaml"): [
                    ("job-completion-index", "job-index"),
                    ("parallelism: 4", "parallelism: 2"),
                    ("value: verdict-train-0.verdict-train", "value: verdict-train-0")],
                os.path.join(training, "indexed-job", "service.yaml"): [
                    ("port: 29500", "port: 29501")],
            }
            for path, replacements in edits.items():
                with open(path) as f:
                    text = f.read()
                for old, new in replacements:
                    self.assertIn(old, text, path)
                    text = text.replace(old, new)
                with open(path, "w") as f:
                    f.write(text)
            code, output = run("check_k8s.py", k8s)
        self.assertEqual(code, 1, output)
        self.assertIn("is not ReadWriteMany", output)
        self.assertIn("Master: the operator needs the container named pytorch", output)
        self.assertIn("--save_every is not one verdict-train defines", output)
        self.assertIn("--device is cuda: data-parallel ranks train on cpu", output)
        self.assertIn("RANK does not come from the pod's completion index", output)
        self.assertIn("WORLD_SIZE 4 is not both completions (4) and parallelism (2)", output)
        self.assertIn("MASTER_ADDR is verdict-train-0, not verdict-train-0.verdict-train", output)
        self.assertIn("does not carry MASTER_PORT 29500", output)

    def test_reports_a_kustomization_that_does_not_render(self):
        with tempfile.TemporaryDirectory() as scratch:
            k8s = os.path.join(scratch, "k8s")
            shutil.copytree(os.path.join(ROOT, "deploy", "k8s"), k8s)
            os.remove(os.path.join(k8s, "base", "hpa.yaml"))
            code, output = run("check_k8s.py", k8s)
        self.assertEqual(code, 1, output)
        self.assertIn("kubectl kustomize", output)


if __name__ == "__main__":
    unittest.main(verbosity=2)
