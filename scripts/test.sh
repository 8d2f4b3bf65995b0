#!/usr/bin/env bash
# Builds verdict and runs every test. On a fresh Debian 12 machine it installs what is missing
# first (needs root or sudo). Usage: ./scripts/test.sh [ctest arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
build_dir=${VERDICT_BUILD_DIR:-build}
jobs=$(nproc)
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
start=$(date +%s)
cmake --build "$build_dir" -j "$jobs"
echo "test.sh: build took $(( $(date +%s) - start )) s"
start=$(date +%s)
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs" --timeout 900 "$@"
echo "test.sh: tests took $(( $(date +%s) - start )) s"
