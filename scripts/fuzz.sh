#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, ASan + UBSan, in the tree scripts/sanitize.sh asan
# uses) and runs each for a while on its seed corpus.
# Usage: ./scripts/fuzz.sh [seconds-per-target] [target...]
#   seconds-per-target: 10 by default (CI); for a real search run 600 or more, e.g.
#     ./scripts/fuzz.sh 3600 preference_reader_fuzzer
#   target: names from tests/fuzz/CMakeLists.txt; all of them by default.
# The working corpus grows in $dir/fuzz/corpus/<target> across runs (seeded from
# tests/fuzz/corpus/<target>, which is never written); a crash, leak or timeout leaves its input
# in $dir/fuzz/artifacts/<target>/ and makes the script fail. Reproduce one with
#   $dir/tests/fuzz/<target> <artifact>
# and commit it as a regression test in the normal suite (and to the seed corpus).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-10}
if [ $# -gt 0 ]; then shift; fi
all_targets=(preference_reader_fuzzer safetensors_fuzzer model_config_fuzzer
             sentencepiece_model_fuzzer tokenizer_json_fuzzer tokenizer_text_fuzzer
             training_job_spec_fuzzer)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then targets=("${all_targets[@]}"); fi

./scripts/install-deps.sh --with-sanitizers
dir=${VERDICT_ASAN_BUILD_DIR:-build-asan}
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
# The same configuration as scripts/sanitize.sh asan, so the two share one tree.
compiler=()
if [ ! -f "$dir/CMakeCache.txt" ]; then compiler=(-DCMAKE_CXX_COMPILER=clang++-14); fi
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${compiler[@]}" \
  -DVERDICT_SANITIZE=address,undefined -DVERDICT_BUILD_BENCH=OFF -DVERDICT_FUZZ=ON \
  -DVERDICT_CTEST_PER_BINARY=ON "${launcher[@]}" >/dev/null
start=$(date +%s)
cmake --build "$dir" -j "$(nproc)" --target "${targets[@]}"
echo "fuzz.sh: build took $(( $(date +%s) - start )) s"

supp="$PWD/scripts/sanitizers"
export ASAN_OPTIONS="detect_leaks=1:suppressions=$supp/asan.supp"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$supp/ubsan.supp"
symbolizer=$(command -v llvm-symbolizer-14 || command -v llvm-symbolizer || true)
if [ -n "$symbolizer" ]; then export ASAN_SYMBOLIZER_PATH=$symbolizer; fi

failed=()
summary=()
for target in "${targets[@]}"; do
  corpus="$dir/fuzz/corpus/$target"
  artifacts="$dir/fuzz/artifacts/$target/"
  log="$dir/fuzz/$target.log"
  mkdir -p "$corpus" "$artifacts"
  # -rss_limit_mb: LibTorch and the real tokenizers are large; -timeout: one input, seconds.
  if "$dir/tests/fuzz/$target" -max_total_time="$seconds" -print_final_stats=1 \
      -rss_limit_mb=4096 -timeout=30 -artifact_prefix="$artifacts" \
      "$corpus" "tests/fuzz/corpus/$target" >"$log" 2>&1; then
    result=ok
  else
    result="FAILED (see $log, input in $artifacts)"
    failed+=("$target")
  fi
  # A target that dies before its first stats line has no "cov:" (|| true: pipefail).
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1 || true)
  cov=$( (grep -o 'cov: [0-9]*' "$log" || true) | tail -1 | cut -d' ' -f2)
  summary+=("$(printf '%-28s %8s s %10s execs %6s edges  %s' "$target" "$seconds" \
    "${execs:-?}" "${cov:-?}" "$result")")
done
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: findings in ${failed[*]}" >&2
  exit 1
fi
