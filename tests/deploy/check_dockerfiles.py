#!/usr/bin/env python3
"""A small Dockerfile linter for verdict's images (hadolint is not packaged in Debian).

Usage: check_dockerfiles.py DOCKERFILE... [--context DIR]

Generic rules (hadolint's numbers where there is one):
  DL3006/DL3007  FROM names a tag, not latest          DL3000  WORKDIR is absolute
  DL3003  no `cd` in RUN (use WORKDIR)                  DL3004  no sudo
  DL3005  no apt-get upgrade                            DL3014  apt-get install -y
  DL3015  --no-install-recommends                       DL3009  apt lists removed in that RUN
  DL3020  COPY, not ADD                                 DL3025  ENTRYPOINT/CMD in JSON form
  DL3002  the image runs as a non-root USER             DL3022  COPY --from an earlier stage
  SH      every shell-form RUN passes `bash -n`, `sh -n` and shellcheck (if installed)
  CTX     COPY sources exist in the context and .dockerignore does not drop them
  PKG     packages installed from Debian are known to apt-cache (when apt-cache works)
verdict's own rules (V*): the final stage is debian:bookworm-slim, EXPOSEs 50051 and 9464,
has no HEALTHCHECK and starts verdictd; a build stage runs scripts/install-deps.sh and builds
the verdictd and verdict targets with the tests off.
Exit status 0 if all is well, 1 with one line per finding (`file:line: RULE message`).
"""

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile


def instructions(text):
    """[(line number, INSTRUCTION, arguments, raw)] with comments dropped: arguments joined
    the way Docker joins continuation lines, raw with its backslash-newlines kept."""
    result = []
    pending, start = None, 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and pending is None):
            continue
        if pending is None:
            pending, start = "", number
        if line.endswith("\\"):
            # Kept as a backslash-newline: the shell reads it as the same continuation, and
            # shellcheck's line numbers stay meaningful.
            pending += line + "\n"
            continue
        pending += line
        result.append(split_instruction(start, pending))
        pending = None
    if pending is not None:
        result.append(split_instruction(start, pending))
    return result


def split_instruction(line, raw):
    parts = raw.strip().split(None, 1)
    raw_arguments = parts[1] if len(parts) > 1 else ""
    return line, parts[0].upper(), raw_arguments.replace("\\\n", ""), raw_arguments


def json_form(arguments):
    try:
        value = json.loads(arguments)
    except ValueError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def dockerignore_patterns(context):
    path = os.path.join(context, ".dockerignore")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def ignored(relative, patterns):
    relative = relative.strip("/")
    for pattern in patterns or []:
        pattern = pattern.lstrip("/")
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatch(part, pattern[3:]) for part in relative.split("/")):
                return True
        elif fnmatch.fnmatch(relative, pattern) or relative.startswith(pattern.rstrip("/") + "/"):
            return True
    return False


def check_shell(script, shellcheck):
    """Problems from bash -n, sh -n and shellcheck on one RUN script."""
    problems = []
    with tempfile.NamedTemporaryFile("w", suffix=".sh") as f:
        f.write("#!/bin/sh\n" + script + "\n")
        f.flush()
        for shell in ("bash", "sh"):
            result = subprocess.run([shell, "-n", f.name], capture_output=True, text=True)
            if result.returncode != 0:
                problems.append(f"{shell} -n: {result.stderr.strip()}")
        if shellcheck:
            result = subprocess.run([shellcheck, "--shell=sh", "--format=gcc", f.name],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                problems.append("shellcheck: " + " | ".join(
                    line.split(": ", 1)[-1] for line in result.stdout.splitlines()))
    return problems


def apt_packages(script):
    """Package names after `apt-get install`, flags dropped."""
    packages = []
    for command in re.split(r"&&|;|\|\|", script):
        words = command.split()
        if "apt-get" in words and "install" in words:
            after = words[words.index("install") + 1:]
            packages += [w.strip('"') for w in after if not w.startswith("-")]
    return packages


def known_to_apt(packages):
    """The packages apt-cache does not know, or None if apt-cache cannot answer."""
    if not shutil.which("apt-cache") or not packages:
        return None
    result = subprocess.run(["apt-cache", "show", "--no-all-versions", *packages],
                            capture_output=True, text=True)
    found = set(re.findall(r"^Package: (\S+)$", result.stdout, re.MULTILINE))
    if not found:
        return None  # no package lists here (apt-get update never ran): cannot tell
    return [p for p in packages if p not in found]


def lint(path, context, shellcheck):
    with open(path, encoding="utf-8") as f:
        items = instructions(f.read())
    findings = []
    patterns = dockerignore_patterns(context)

    def finding(line, rule, message):
        findings.append(f"{path}:{line}: {rule} {message}")

    if patterns is None:
        finding(1, "CTX", "the context has no .dockerignore")
    elif not (ignored(".git", patterns) and ignored("build", patterns)):
        finding(1, "CTX", ".dockerignore does not exclude .git and build trees")

    stages = []  # [{"name", "image", "line", "items": [...]}]
    for line, instruction, arguments, raw in items:
        if instruction == "FROM":
            words = arguments.split()
            image = next((w for w in words if not w.startswith("--")), "")
            name = words[words.index("AS") + 1] if "AS" in words else (
                words[words.index("as") + 1] if "as" in words else None)
            earlier = {s["name"] for s in stages}
            if image not in earlier and "$" not in image:
                tag = image.split("@")[0].rsplit("/", 1)[-1]
                if ":" not in tag and "@" not in image:
                    finding(line, "DL3006", f"FROM {image} has no tag")
                elif tag.endswith(":latest"):
                    finding(line, "DL3007", f"FROM {image} uses latest")
            stages.append({"name": name, "image": image, "line": line, "items": []})
            continue
        if not stages:
            if instruction != "ARG":
                finding(line, "DL3061", f"{instruction} before the first FROM")
            continue
        stages[-1]["items"].append((line, instruction, arguments))
        earlier = {s["name"] for s in stages[:-1]}

        if instruction == "RUN":
            if arguments.startswith("["):
                continue
            script = arguments
            if re.search(r"(^|[\s;&|(])cd\s", script):
                finding(line, "DL3003", "use WORKDIR instead of cd")
            if re.search(r"(^|[\s;&|(])sudo\s", script):
                finding(line, "DL3004", "do not use sudo")
            if re.search(r"apt-get\s+(dist-)?upgrade", script):
                finding(line, "DL3005", "do not apt-get upgrade")
            for command in re.split(r"&&|;", script):
                if re.search(r"apt-get\s+install", command):
                    if not re.search(r"\s(-y|--yes|-[a-z]*y[a-z]*)\b", command):
                        finding(line, "DL3014", "apt-get install without -y")
                    if "--no-install-recommends" not in command:
                        finding(line, "DL3015", "apt-get install without --no-install-recommends")
            installs = re.search(r"apt-get\s+(update|install)", script) or re.search(
                r"install-deps\.sh", script)
            if installs and "rm -rf /var/lib/apt/lists/*" not in script:
                finding(line, "DL3009", "apt lists are not removed in the same RUN")
            for problem in check_shell(raw, shellcheck):
                finding(line, "SH", problem)
        elif instruction == "ADD":
            finding(line, "DL3020", "use COPY instead of ADD")
        elif instruction == "WORKDIR":
            if not arguments.startswith("/") and not arguments.startswith("$"):
                finding(line, "DL3000", f"WORKDIR {arguments} is not absolute")
        elif instruction in ("ENTRYPOINT", "CMD"):
            if json_form(arguments) is None:
                finding(line, "DL3025", f"{instruction} is not in JSON (exec) form")
        elif instruction == "COPY":
            words = arguments.split()
            source_stage = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")),
                                None)
            paths = [w for w in words if not w.startswith("--")]
            if source_stage is not None:
                if source_stage not in earlier:
                    finding(line, "DL3022", f"COPY --from={source_stage} is not an earlier stage")
                continue
            for source in paths[:-1]:
                if source == ".":
                    continue
                if not os.path.exists(os.path.join(context, source)):
                    finding(line, "CTX", f"COPY source {source} does not exist in the context")
                elif ignored(source, patterns):
                    finding(line, "CTX", f"COPY source {source} is excluded by .dockerignore")

    if not stages:
        finding(1, "DL3061", "no FROM")
        return findings
    final = stages[-1]
    final_items = final["items"]
    users = [(l, a.strip()) for l, i, a in final_items if i == "USER"]
    if not users:
        finding(final["line"], "DL3002", "the final stage sets no USER (runs as root)")
    elif users[-1][1].split(":")[0] in ("root", "0"):
        finding(users[-1][0], "DL3002", "the final USER is root")

    # verdict's rules.
    if final["image"] != "debian:bookworm-slim":
        finding(final["line"], "V1",
                f"the final stage is {final['image']}, not debian:bookworm-slim")
    exposed = {p.split("/")[0] for l, i, a in final_items if i == "EXPOSE" for p in a.split()}
    for port in ("50051", "9464"):
        if port not in exposed:
            finding(final["line"], "V2", f"the final stage does not EXPOSE {port}")
    for line, instruction, _ in final_items:
        if instruction == "HEALTHCHECK":
            finding(line, "V3", "no HEALTHCHECK: Kubernetes probes gRPC health itself")
    entrypoints = [(l, json_form(a)) for l, i, a in final_items if i == "ENTRYPOINT"]
    if not entrypoints or not entrypoints[-1][1] or not entrypoints[-1][1][0].endswith("verdictd"):
        finding(final["line"], "V4", "the final stage's ENTRYPOINT is not verdictd")
    build_runs = " ".join(a for s in stages[:-1] for l, i, a in s["items"] if i == "RUN")
    if "scripts/install-deps.sh" not in build_runs:
        finding(1, "V5", "no build stage runs scripts/install-deps.sh")
    if not re.search(r"cmake --build \S+ --target verdictd verdict", build_runs) or \
            "-DVERDICT_BUILD_TESTS=OFF" not in build_runs:
        finding(1, "V6", "no build stage builds verdictd and verdict with the tests off")

    # Debian packages the runtime stage installs must exist (names with variables are
    # someone else's repository, e.g. NVIDIA's).
    runtime_packages = [p for l, i, a in final_items if i == "RUN" for p in apt_packages(a)
                        if "$" not in p]
    unknown = known_to_apt(runtime_packages)
    for package in unknown or []:
        finding(final["line"], "PKG", f"apt-cache does not know package {package}")
    return findings


def main(argv):
    args = list(argv[1:])
    context = None
    if "--context" in args:
        at = args.index("--context")
        context = args[at + 1]
        del args[at:at + 2]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    shellcheck = shutil.which("shellcheck")
    findings = []
    for path in args:
        # The context is the repository root: the directory of the top-level Dockerfile.
        findings += lint(path, context or os.path.dirname(os.path.abspath(args[0])), shellcheck)
    for line in findings:
        print(line)
    if not findings:
        print(f"{len(args)} Dockerfile(s) OK" +
              ("" if shellcheck else " (shellcheck not installed: RUN lines got bash -n only)"))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
