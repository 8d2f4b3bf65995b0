#!/usr/bin/env bash
# The whole mission in one command: install what is missing, build verdictd and the verdict
# CLI, start the server on its defaults, upload real preference data, train a small reward
# model from scratch while `verdict watch` shows progress, score held-out pairs (chosen vs
# rejected, and the accuracy), and stop the server cleanly.
#
# Usage: ./scripts/demo.sh [--synthetic] [--keep] [--max-steps N]
#   (default)     Anthropic HH-RLHF helpful-base sample (tests/data/hh-rlhf, 2354 real pairs):
#                 the last 200 pairs are held out for scoring, the rest are uploaded and trained
#                 on. A tiny model trained for a few minutes on a laptop CPU learns a real but
#                 modest preference (well above chance, far from a large model's ~70%).
#   --synthetic   tests/data/synthetic/helpful-concise.jsonl, where the preferred answer is
#                 always the concise, helpful one: the model learns it almost perfectly.
#   --keep        keep the working directory (server state, trained model, scored pairs).
#   --max-steps N override the number of training steps.
# Environment: VERDICT_BUILD_DIR (default build, shared with scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

flavour=hh
keep=0
max_steps=""
while [ $# -gt 0 ]; do
  case "$1" in
    --synthetic) flavour=synthetic ;;
    --keep) keep=1 ;;
    --max-steps) max_steps=${2:?--max-steps needs a value}; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done

trap 'echo "demo.sh: failed (line $LINENO)" >&2' ERR
demo_start=$(date +%s)
elapsed() { echo $(( $(date +%s) - $1 )); }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Installing missing Debian packages"
phase=$(date +%s)
./scripts/install-deps.sh
install_s=$(elapsed "$phase")

say "Building verdictd and verdict"
phase=$(date +%s)
build_dir=${VERDICT_BUILD_DIR:-build}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build_dir" --target verdictd verdict -j "$(nproc)"
build_s=$(elapsed "$phase")
verdictd="$repo/$build_dir/server/verdictd"
verdict_bin="$repo/$build_dir/client/verdict"

work=$(mktemp -d "${TMPDIR:-/tmp}/verdict-demo.XXXXXX")
server_pid=""
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"
    wait "$server_pid" || true
  fi
  server_pid=""
}
cleanup() {
  stop_server
  if [ "$keep" = 1 ]; then
    echo "demo.sh: kept $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

say "Starting verdictd in $work"
cd "$work"
# Its embedded defaults: 127.0.0.1:50051, metrics on :9464, state in ./verdict-data. If another
# server already holds those ports, take free ones instead of failing.
port_args=()
if (exec 3<>/dev/tcp/127.0.0.1/50051) 2>/dev/null || (exec 3<>/dev/tcp/127.0.0.1/9464) 2>/dev/null; then
  echo "ports 50051 or 9464 are busy: using free ones"
  port_args=(--port 0 --metrics_port 0)
fi
: >verdictd.log  # exists before the server's first line, for the loop below
"$verdictd" "${port_args[@]}" >>verdictd.log 2>&1 &
server_pid=$!
address=""
for _ in $(seq 1 300); do
  address=$(sed -n 's/^verdictd listening on \([^,]*\).*/\1/p' verdictd.log || true)
  [ -n "$address" ] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
  sleep 0.1
done
if [ -z "$address" ]; then
  echo "demo.sh: verdictd did not start:" >&2
  cat verdictd.log >&2
  exit 1
fi
grep '^verdictd listening' verdictd.log
verdict() { "$verdict_bin" --server "$address" "$@"; }
verdict health

# Training data, and pairs held out from it for scoring afterwards.
if [ "$flavour" = synthetic ]; then
  source_file="$repo/tests/data/synthetic/helpful-concise.jsonl"
  model=demo-synthetic
  cp "$source_file" all.jsonl
  train_flags=(--preset encoder-tiny --vocab-size 1000 --max-length 128 --batch-size 16
               --lr 1e-3 --max-steps "${max_steps:-150}" --logging-steps 10 --eval-steps 50)
else
  source_file="$repo/tests/data/hh-rlhf/helpful-base/test.jsonl.gz"
  model=demo-hh
  gzip -dc "$source_file" >all.jsonl
  train_flags=(--preset encoder-tiny --vocab-size 4000 --max-length 256 --batch-size 16
               --lr 5e-4 --max-steps "${max_steps:-250}" --logging-steps 10 --eval-steps 50)
fi
head -n -200 all.jsonl >train.jsonl
tail -n 200 all.jsonl >heldout.jsonl
echo "$(wc -l <train.jsonl) pairs to train on, $(wc -l <heldout.jsonl) held out ($source_file)"

say "Training $model from scratch (tokenizer included); verdict watch follows it"
phase=$(date +%s)
verdict submit --train train.jsonl --name "$model" "${train_flags[@]}" --watch
train_s=$(elapsed "$phase")

say "Scoring the $(wc -l <heldout.jsonl) held-out pairs"
phase=$(date +%s)
verdict score --model "$model" --input heldout.jsonl --output-file scored.jsonl 2>score.log
score_s=$(elapsed "$phase")
cat score.log
/usr/bin/python3 - scored.jsonl <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
def last_turn(row):
    text = row.get("prompt") or row["chosen"]
    turn = text.split("Human:")[-1].split("Assistant:")[0].strip().replace("\n", " ")
    return turn[:60] + ("..." if len(turn) > 60 else "")
print(f"\n{'chosen':>8} {'rejected':>9}   prompt (last human turn)")
for row in rows[:8]:
    mark = "ok" if row["chosen_score"] > row["rejected_score"] else "--"
    print(f"{row['chosen_score']:8.3f} {row['rejected_score']:9.3f} {mark} {last_turn(row)}")
right = sum(r["chosen_score"] > r["rejected_score"] for r in rows)
print(f"\nheld-out accuracy: {right}/{len(rows)} = {right / len(rows):.3f} (chance: 0.5)")
EOF

say "The registry"
verdict models
echo "Three answers to a question the model has not seen:"
prompt=$'\n\nHuman: What is the capital of France?\n\nAssistant:'
for response in ' The capital of France is Paris.' \
    ' Honestly I am not totally sure, but I guess if I had to say something... Paris, maybe.' \
    ' Figure it out yourself.'; do
  printf '%s  %s\n' "$(verdict score --model "$model" --prompt "$prompt" --response "$response")" \
    "$response"
done

say "Stopping verdictd (SIGTERM)"
stop_server
tail -n 2 "$work/verdictd.log"

total_s=$(elapsed "$demo_start")
say "Done ($flavour)"
echo "wall times: install ${install_s}s, build ${build_s}s, train ${train_s}s, score ${score_s}s, total ${total_s}s"
