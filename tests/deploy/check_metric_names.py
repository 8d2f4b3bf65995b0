#!/usr/bin/env python3
"""Checks that every verdict_ metric the dashboard and the alert rules use is one verdictd exports.

The exported names and labels come from the real exposition of ServerMetrics (the
verdict_dump_server_metrics program, or a saved exposition with --exposition). For each file
given with --file (JSON or YAML), every string in it is searched for verdict_ names, and:
  - the name must be an exported family, or <histogram>_bucket/_sum/_count;
  - label matchers in a selector (name{label="..."}) must be labels of that family, or the
    target labels job and instance, or le on a _bucket series;
  - labels in `by (...)`/`without (...)` and Grafana legends ({{label}}) must be labels of one
    of the verdict_ metrics in the same expression (or job, instance, le).
Exit status 0 if all is well, 1 with one line per problem otherwise.
"""

import argparse
import json
import re
import subprocess
import sys

import yaml

NAME = re.compile(r"(?<![A-Za-z0-9_:])(verdict_[a-z0-9_]*[a-z0-9])(?![A-Za-z0-9_])")
SELECTOR = re.compile(r"(?<![A-Za-z0-9_:])(verdict_[a-z0-9_]*[a-z0-9])\s*\{([^}]*)\}")
MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
LEGEND = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
TARGET_LABELS = {"job", "instance"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def parse_exposition(text):
    """Returns {family name: (type, set of label names)} from Prometheus text format."""
    families = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            families[name] = (kind.strip(), set())
    series = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s")
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = series.match(line)
        if not match:
            continue
        name, labels = match.group(1), match.group(2) or ""
        family = name
        if name not in families:
            for suffix in HISTOGRAM_SUFFIXES:
                if name.endswith(suffix) and name[: -len(suffix)] in families:
                    family = name[: -len(suffix)]
        if family in families:
            for label in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=\"", labels):
                if label != "le":
                    families[family][1].add(label)
    return families


def strings_in(value):
    """Every string inside a parsed JSON/YAML document."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings_in(key)
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def load(path):
    with open(path, encoding="utf-8") as f:
        if path.endswith(".json"):
            return json.load(f)
        return list(yaml.safe_load_all(f))


def resolve(name, families):
    """(family, is_bucket) for a used name, or (None, False) if it is not exported."""
    if name in families:
        return name, False
    for suffix in HISTOGRAM_SUFFIXES:
        base = name[: -len(suffix)]
        if name.endswith(suffix) and families.get(base, ("",))[0] == "histogram":
            return base, suffix == "_bucket"
    return None, False


def check_text(text, families, where):
    problems = []
    used = set()
    labels_here = set(TARGET_LABELS)
    for name in NAME.findall(text):
        family, is_bucket = resolve(name, families)
        if family is None:
            problems.append(f"{where}: {name} is not exported by ServerMetrics")
            continue
        used.add(family)
        labels_here |= families[family][1]
        if is_bucket:
            labels_here.add("le")
    for name, matchers in SELECTOR.findall(text):
        family, is_bucket = resolve(name, families)
        if family is None:
            continue
        allowed = families[family][1] | TARGET_LABELS | ({"le"} if is_bucket else set())
        for label in MATCHER.findall(matchers):
            if label not in allowed:
                problems.append(f"{where}: {name} has no label {label!r} "
                                f"(it has {', '.join(sorted(allowed))})")
    if used:
        for group in GROUPING.findall(text):
            for label in (l.strip() for l in group.split(",")):
                if label and label not in labels_here:
                    problems.append(f"{where}: grouping by {label!r}, which none of "
                                    f"{', '.join(sorted(used))} has")
    return problems, used, labels_here


def check_file(path, families):
    problems = []
    used = set()
    document = load(path)
    # Grafana targets: the legend may only name labels the expression's result can have.
    targets = []

    def collect_targets(value):
        if isinstance(value, dict):
            if "expr" in value and "legendFormat" in value:
                targets.append(value)
            for item in value.values():
                collect_targets(item)
        elif isinstance(value, list):
            for item in value:
                collect_targets(item)

    collect_targets(document)
    for text in strings_in(document):
        found, used_here, _ = check_text(text, families, path)
        problems += found
        used |= used_here
    for target in targets:
        _, used_here, labels_here = check_text(target["expr"], families, path)
        if not used_here:
            continue
        for label in LEGEND.findall(target["legendFormat"]):
            if label not in labels_here:
                problems.append(f"{path}: legend {{{{{label}}}}} of {target['expr']!r} names a "
                                "label its metrics do not have")
    return problems, used


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dump-command", help="program that prints the exposition")
    source.add_argument("--exposition", help="file holding an exposition")
    parser.add_argument("--file", action="append", required=True,
                        help="dashboard JSON or rules YAML to check (repeatable)")
    args = parser.parse_args()

    if args.dump_command:
        result = subprocess.run([args.dump_command], capture_output=True, text=True)
        if result.returncode != 0:
            print(f"{args.dump_command} failed:\n{result.stderr}", file=sys.stderr)
            return 1
        exposition = result.stdout
    else:
        with open(args.exposition, encoding="utf-8") as f:
            exposition = f.read()
    families = parse_exposition(exposition)
    if not families:
        print("no metric families in the exposition", file=sys.stderr)
        return 1

    problems = []
    used = set()
    for path in args.file:
        found, used_here = check_file(path, families)
        if not used_here:
            problems.append(f"{path}: uses no verdict_ metric at all")
        problems += found
        used |= used_here
    for problem in sorted(set(problems)):
        print(problem)
    unused = sorted(set(families) - used)
    print(f"{len(families)} families exported, {len(used)} used"
          + (f"; not used: {', '.join(unused)}" if unused else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
