#!/usr/bin/env bash
# Runs verdict's tests under the sanitizers (clang 14, Debian's):
#   asan  every CTest test under AddressSanitizer + UndefinedBehaviorSanitizer (any UB report
#         fails the test: -fno-sanitize-recover=all), in build-asan. The same tree has
#         VERDICT_FUZZ=ON, so scripts/fuzz.sh reuses it instead of building a third tree.
#   tsan  the concurrency tests (scoring queue and dynamic batcher, job queue and manager,
#         event hub and metrics watchers, model registry loads and alias swaps, drain on
#         SIGTERM) under ThreadSanitizer, in build-tsan; only their binaries are built.
#         Debian's Abseil is not built with TSan, so TSan alone cannot see absl::Mutex lock and
#         unlock and reports every access under one as a race. scripts/sanitizers/
#         tsan_absl_sync.cc (built here, LD_PRELOADed into the tests) wraps absl's
#         synchronization entry points and tells TSan the happens-before edges they create;
#         that file says how and what it does not cover. Measured (halt_on_error=0): without it
#         dynamic_batcher_test had 588 warnings, with it 0; event_hub_test, job_manager_test and
#         model_registry_test 0; scoring_integration_test still 208, with gRPC / gpr /
#         protobuf frames (uninstrumented), not yet triaged; training and restart tests not run.
#   ci    what .ci/run runs, sized to its time limit (CI: 2 cores, no ccache, ~30 min for this
#         step): asan over tests/core and the seed corpora of the six fuzz targets that need no
#         server library, building only their targets; then ./scripts/fuzz.sh 10 runs those six
#         in the same tree. Measured (no ccache, user+sys CPU of the build; idle 2-core wall is
#         about half of it): see .ci/run. Not in ci, for lack of time on 2 cores: tests/server
#         and tests/e2e under asan (the server library and its tests are another ~60 TUs),
#         training_job_spec_fuzzer (needs the server library), and tsan (a second tree of
#         core + server). Run `asan`, `tsan` or `all` for those.
# Usage: ./scripts/sanitize.sh [asan|tsan|ci|all] [extra ctest arguments...]   (default: all)
# Trees: $VERDICT_ASAN_BUILD_DIR (build-asan), $VERDICT_TSAN_BUILD_DIR (build-tsan). Both use
# -O1 -gline-tables-only and skip bench/. The sentencepiece module is loaded under ASan and
# TSan too (core/tokenize/sentencepiece_backend.h says how); nothing is skipped for it.
# Suppressions: scripts/sanitizers/*.supp, each entry with its reason; races in verdict's own
# code are fixed, not suppressed.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=all
if [ $# -gt 0 ] && [[ "$1" =~ ^(asan|tsan|ci|all)$ ]]; then
  mode=$1
  shift
fi

./scripts/install-deps.sh --with-sanitizers
jobs=$(nproc)
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
supp="$PWD/scripts/sanitizers"
symbolizer=$(command -v llvm-symbolizer-14 || command -v llvm-symbolizer || true)

configure() {
  local dir=$1 sanitize=$2
  shift 2
  # The compiler is chosen when the tree is first configured (changing it later would make
  # CMake start the tree over).
  local compiler=()
  if [ ! -f "$dir/CMakeCache.txt" ]; then compiler=(-DCMAKE_CXX_COMPILER=clang++-14); fi
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${compiler[@]}" \
    -DVERDICT_SANITIZE="$sanitize" -DVERDICT_BUILD_BENCH=OFF "${launcher[@]}" "$@" >/dev/null
}

timed() {
  local what=$1
  shift
  local start
  start=$(date +%s)
  local status=0
  "$@" || status=$?
  echo "sanitize.sh: $what took $(( $(date +%s) - start )) s"
  return $status
}

# Tests run more slowly instrumented; a stuck one still ends.
ctest_args=(--output-on-failure -j "$jobs" --timeout 1800)

# The ci scope: the fuzz targets that link only core libraries (training_job_spec_fuzzer needs
# verdict_server_lib) and the test directories whose targets ci builds.
ci_fuzzers=(preference_reader_fuzzer safetensors_fuzzer model_config_fuzzer
            sentencepiece_model_fuzzer tokenizer_json_fuzzer tokenizer_text_fuzzer)

run_asan() {
  # $1: "all" (every target, every test) or "ci" (tests/core and the ci fuzzers' seed corpora,
  # their targets only); the rest: extra ctest arguments.
  local scope=$1
  shift
  local dir=${VERDICT_ASAN_BUILD_DIR:-build-asan}
  configure "$dir" address,undefined -DVERDICT_FUZZ=ON
  local targets=(all)
  # verdict-train: tests/core/train's CLI tests run the tool (it lives in core/train).
  if [ "$scope" = ci ]; then targets=(tests/core/all verdict-train "${ci_fuzzers[@]}"); fi
  # A failed build must stop here (errexit does not apply inside `run_asan || status=1`).
  timed "asan build" cmake --build "$dir" -j "$jobs" --target "${targets[@]}" || return 1
  export ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:suppressions=$supp/asan.supp"
  export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$supp/ubsan.supp"
  if [ -n "$symbolizer" ]; then export ASAN_SYMBOLIZER_PATH=$symbolizer; fi
  local status=0
  if [ "$scope" = ci ]; then
    local seeds
    seeds=$(printf '|%s_seeds' "${ci_fuzzers[@]}")
    timed "asan tests in $dir/tests/core" \
      ctest --test-dir "$dir/tests/core" "${ctest_args[@]}" "$@" || status=1
    timed "asan fuzz seed corpora" ctest --test-dir "$dir/tests/fuzz" "${ctest_args[@]}" \
      -R "^(${seeds:1})\$" "$@" || status=1
  else
    timed "asan tests in $dir" ctest --test-dir "$dir" "${ctest_args[@]}" "$@" || status=1
  fi
  unset ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS
  return $status
}

run_tsan() {
  local dir=${VERDICT_TSAN_BUILD_DIR:-build-tsan}
  configure "$dir" thread
  local targets=(dynamic_batcher_test event_hub_test job_manager_test model_registry_test
                 scoring_integration_test training_integration_test restart_integration_test)
  timed "tsan build" cmake --build "$dir" -j "$jobs" --target "${targets[@]}"
  # The shim itself is not instrumented: it only forwards and annotates.
  local shim="$PWD/$dir/libtsan_absl_sync.so"
  clang++-14 -std=c++17 -shared -fPIC -O1 -o "$shim" scripts/sanitizers/tsan_absl_sync.cc -ldl
  # LibTorch's OpenMP pool is not instrumented and its barriers look like races to TSan; one
  # thread keeps it out (verdict's own threads are what these tests exercise).
  export OMP_NUM_THREADS=1
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$supp/tsan.supp"
  export LD_PRELOAD=$shim
  if [ -n "$symbolizer" ]; then export TSAN_SYMBOLIZER_PATH=$symbolizer; fi
  local regex='DynamicBatcher|EventHub|MetricsStream|JobManager|ModelRegistry|ScoringIntegration|ScoringServer|TrainingIntegration|RestartIntegrationTest.SigtermDrains'
  local status=0
  timed "tsan tests" ctest --test-dir "$dir" "${ctest_args[@]}" -R "$regex" "$@" || status=1
  unset TSAN_OPTIONS OMP_NUM_THREADS LD_PRELOAD
  return $status
}

status=0
case $mode in
  asan) run_asan all "$@" || status=1 ;;
  tsan) run_tsan "$@" || status=1 ;;
  ci)
    run_asan ci "$@" || status=1
    # Same tree, already built: a short libFuzzer search (10 s per target) on each seed corpus.
    timed "fuzz.sh 10" ./scripts/fuzz.sh 10 "${ci_fuzzers[@]}" || status=1
    ;;
  all) run_asan all "$@" || status=1; run_tsan "$@" || status=1 ;;
esac
exit $status
