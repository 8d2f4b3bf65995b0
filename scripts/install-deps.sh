#!/usr/bin/env bash
# Installs every Debian 12 package that verdict needs to build, test and run.
# Idempotent: safe to run again; packages already present are left as they are.
# Usage: ./scripts/install-deps.sh [--with-sanitizers]
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config git ca-certificates
  # lld: links the test binaries ~8x faster than GNU ld (CMakeLists.txt uses it when present)
  lld
  # core: tensors (with a fast BLAS), tokenizers, JSON, gzip
  libtorch-dev libgloo-dev libopenblas0-pthread libsentencepiece-dev libutf8proc-dev libpcre2-dev nlohmann-json3-dev zlib1g-dev
  # server: RPC, flags/status, HTTP scoring, metrics, job store, hashing
  libgrpc++-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libabsl-dev libcivetweb-dev
  prometheus-cpp-dev libsqlite3-dev libssl-dev
  # CLI job files
  libyaml-cpp-dev
  # tests (tests/deploy: promtool from prometheus, YAML checks, shellcheck on Dockerfile RUN lines)
  libgtest-dev libgmock-dev prometheus python3 python3-grpcio python3-grpc-tools python3-yaml
  shellcheck
  # tests/client: a self-signed certificate for the CLI's TLS test; grpc_tools.protoc imports
  # pkg_resources, which Debian 12's python3-grpc-tools does not depend on (found on a fresh root)
  openssl python3-pkg-resources
  # client/python: `python3 -m venv` (with pip) for installing the package; its build backend
  # runs protoc with grpc_python_plugin (protobuf-compiler-grpc, above)
  python3-venv
  # bench/baseline: the Python baseline (TRL-style loop and per-request scorer in plain PyTorch)
  python3-torch python3-sentencepiece
)
# --with-sanitizers (scripts/sanitize.sh, scripts/fuzz.sh): clang with its sanitizer and
# libFuzzer runtimes, llvm-symbolizer for readable sanitizer reports, and LLVM's OpenMP
# (core/score's find_package(OpenMP) needs omp.h and libomp with clang; clang-14 does not
# depend on it).
if [ "${1:-}" = --with-sanitizers ]; then
  packages+=(clang-14 libclang-rt-14-dev llvm-14 libomp-14-dev)
fi
# kubectl renders deploy/k8s in the tests; some images already ship it from another source,
# and Debian's package would collide with that binary.
command -v kubectl >/dev/null || packages+=(kubernetes-client)

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
