#!/usr/bin/env python3
"""Checks that a Grafana dashboard JSON imports cleanly and that its PromQL parses.

Usage: check_dashboard.py DASHBOARD.json [--promtool PATH]

Import: a uid and title, schemaVersion of Grafana 10 or later, a `datasource` variable of
type datasource for prometheus that every panel, target and query variable uses, unique
panel ids and refIds, panels inside the 24-column grid that do not overlap, and the panels
the service's operators rely on (rates, latency quantiles, queue, batches, training curves).
PromQL: every target expression and variable query (with Grafana's $__ macros replaced by
durations) goes into a temporary rules file that `promtool check rules` must accept; the
check is skipped (exit 77) only if promtool is not installed and nothing else failed.
Exit status 0 if all is well, 1 with one line per problem otherwise.
"""

import json
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

DATASOURCE_REF = "${datasource}"
MACROS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
# What must be on the dashboard: a metric (or series) name and the panel's purpose.
REQUIRED = [
    (r"rate\(verdict_rpc_requests_total\{[^}]*\}", "requests/s by method"),
    (r'verdict_rpc_requests_total\{[^}]*code!="OK"', "errors by method"),
    (r"histogram_quantile\(0\.99, [^\n]*"
     r'verdict_rpc_duration_seconds_bucket\{[^}]*method="ScoreBatch"', "ScoreBatch p99 latency"),
    (r"histogram_quantile\(0\.5, [^\n]*verdict_rpc_duration_seconds_bucket", "p50 latency"),
    (r"histogram_quantile\(0\.95, [^\n]*verdict_rpc_duration_seconds_bucket", "p95 latency"),
    (r"histogram_quantile\([^\n]*verdict_scoring_queue_seconds_bucket", "queue time"),
    (r"histogram_quantile\([^\n]*verdict_scoring_compute_seconds_bucket", "compute time"),
    (r"verdict_scoring_queue_depth", "queue depth"),
    (r"verdict_scoring_queue_depth\{[^}]*\} / verdict_scoring_queue_capacity\{", "queue fill"),
    (r"verdict_scoring_batch_items", "items per batch"),
    (r"verdict_scoring_batch_tokens", "tokens per batch"),
    (r"verdict_training_loss", "training loss"),
    (r"verdict_training_accuracy", "training accuracy"),
    (r"verdict_training_eval_accuracy", "eval accuracy"),
    (r"verdict_training_pairs_per_second", "pairs/s"),
    (r"verdict_training_tokens_per_second", "tokens/s"),
    (r"verdict_jobs\b", "jobs by state"),
    (r"verdict_models_loaded", "models loaded"),
    (r"time\(\) - [^\n]*verdict_start_time_seconds", "uptime"),
]


def expand_macros(expr):
    for macro, value in MACROS.items():
        expr = expr.replace(macro, value)
    return expr


def variable_query(variable):
    query = variable.get("query")
    if isinstance(query, dict):
        query = query.get("query", "")
    return query or ""


def check(dashboard):
    """Returns (problems, [(label, promql)])."""
    problems = []
    queries = []
    for key in ("uid", "title"):
        if not dashboard.get(key):
            problems.append(f"dashboard has no {key}")
    if dashboard.get("schemaVersion", 0) < 36:
        problems.append(f"schemaVersion {dashboard.get('schemaVersion')} predates Grafana 10")
    if "__inputs" in dashboard:
        problems.append("__inputs makes the import ask for a data source; use the variable")

    variables = dashboard.get("templating", {}).get("list", [])
    datasource_vars = [v for v in variables if v.get("name") == "datasource"]
    if not datasource_vars:
        problems.append("no `datasource` template variable")
    elif (datasource_vars[0].get("type") != "datasource"
          or datasource_vars[0].get("query") != "prometheus"):
        problems.append("`datasource` variable is not a datasource variable of prometheus")
    for variable in variables:
        if variable.get("type") != "query":
            continue
        if variable.get("datasource", {}).get("uid") != DATASOURCE_REF:
            problems.append(f"variable {variable.get('name')} does not use {DATASOURCE_REF}")
        query = variable_query(variable)
        match = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\)\s*", query)
        if match:
            queries.append((f"variable {variable.get('name')}", match.group(1)))
        else:
            problems.append(f"variable {variable.get('name')}: not a label_values() query")

    ids = set()
    boxes = []
    for panel in dashboard.get("panels", []):
        title = panel.get("title", "?")
        if panel.get("id") in ids:
            problems.append(f"panel id {panel.get('id')} is used twice")
        ids.add(panel.get("id"))
        grid = panel.get("gridPos", {})
        if not all(k in grid for k in ("x", "y", "w", "h")):
            problems.append(f"panel {title!r} has no complete gridPos")
            continue
        if grid["x"] < 0 or grid["w"] <= 0 or grid["x"] + grid["w"] > 24:
            problems.append(f"panel {title!r} is outside the 24-column grid")
        for other_title, other in boxes:
            if (grid["x"] < other["x"] + other["w"] and other["x"] < grid["x"] + grid["w"]
                    and grid["y"] < other["y"] + other["h"]
                    and other["y"] < grid["y"] + grid["h"]):
                problems.append(f"panels {other_title!r} and {title!r} overlap")
        boxes.append((title, grid))
        if panel.get("type") == "row":
            continue
        if panel.get("datasource", {}).get("uid") != DATASOURCE_REF:
            problems.append(f"panel {title!r} does not use {DATASOURCE_REF}")
        targets = panel.get("targets", [])
        if not targets:
            problems.append(f"panel {title!r} has no queries")
        ref_ids = [t.get("refId") for t in targets]
        if len(set(ref_ids)) != len(ref_ids):
            problems.append(f"panel {title!r} repeats a refId")
        for target in targets:
            if target.get("datasource", {}).get("uid") != DATASOURCE_REF:
                problems.append(f"a query of {title!r} does not use {DATASOURCE_REF}")
            if not target.get("expr", "").strip():
                problems.append(f"a query of {title!r} is empty")
                continue
            queries.append((f"panel {title!r} {target.get('refId')}", target["expr"]))

    all_exprs = "\n".join(expr for _, expr in queries)
    for pattern, purpose in REQUIRED:
        if not re.search(pattern, all_exprs):
            problems.append(f"no panel shows {purpose} (/{pattern}/)")
    return problems, queries


def check_promql(queries, promtool):
    """Runs `promtool check rules` on the queries as recording rules; returns problems."""
    rules = [{"record": f"dashboard:query_{i}", "expr": expand_macros(expr)}
             for i, (_, expr) in enumerate(queries)]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
        f.flush()
        result = subprocess.run([promtool, "check", "rules", f.name], capture_output=True,
                                text=True)
    if result.returncode == 0:
        return []
    problems = [f"promtool rejects the dashboard's PromQL:\n{result.stdout}{result.stderr}"]
    for i, (where, expr) in enumerate(queries):
        problems.append(f"  query_{i} = {where}: {expr}")
    return problems


def main(argv):
    args = list(argv[1:])
    promtool = shutil.which("promtool")
    if "--promtool" in args:
        at = args.index("--promtool")
        promtool = args[at + 1]
        del args[at:at + 2]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as f:
        dashboard = json.load(f)
    problems, queries = check(dashboard)
    if promtool:
        problems += check_promql(queries, promtool)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    if not promtool:
        print("promtool is not installed: PromQL not checked; skipping")
        return 77
    print(f"{len(dashboard['panels'])} panels, {len(queries)} queries: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
