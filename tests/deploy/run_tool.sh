#!/bin/sh
# run_tool.sh TOOL ARGS...: runs TOOL, or exits 77 (CTest's "skipped") if it is not installed.
if ! command -v "$1" >/dev/null 2>&1; then
  echo "$1 is not installed (scripts/install-deps.sh installs it); skipping" >&2
  exit 77
fi
exec "$@"
