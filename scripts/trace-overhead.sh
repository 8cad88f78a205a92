#!/usr/bin/env bash
# What `probe-cli trace --pid` costs a live program: throughput traced vs
# untraced, side by side, in interleaved rounds (the machine's speed drifts
# over minutes; a round compares two neighbouring windows). A benchmark, run
# on demand, as root; probe-cli/README.md quotes its output.
#
#   scripts/trace-overhead.sh [ROUNDS]          (default 5)
#
# 1. small objects, 2 threads: probe-cli/tests/workloads/throughput.c with
#    libhakmem.so preloaded prints its operations every 100 ms; each round
#    takes the median of 2 s untraced, then 2 s with a tracer attached.
# 2. redis-server with libhakmem.so preloaded under
#    `redis-benchmark -t set -d 2000`: each round runs the benchmark once
#    untraced and once while a tracer is attached.
# Prints one Markdown table: medians of the rounds and traced/untraced ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-5}
target_dir=${CARGO_TARGET_DIR:-target}
if [ "$(id -u)" != 0 ]; then
  echo "scripts/trace-overhead.sh: needs root (probe-cli loads BPF programs)" >&2
  exit 3
fi
cargo build --release -p hakmem-preload -p probe-cli >&2
lib=$(realpath "$target_dir/release/libhakmem.so")
cli=$(realpath "$target_dir/release/probe-cli")
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
cc -O2 -pthread -o "$work/throughput" probe-cli/tests/workloads/throughput.c

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

# --- 1. small objects, 2 threads -------------------------------------------
mkfifo "$work/in" "$work/out"
LD_PRELOAD=$lib "$work/throughput" 2 <"$work/in" >"$work/out" &
pids+=($!)
tp=$!
exec 3>"$work/in" 4<"$work/out"
# The median of N 100 ms windows of the running workload.
windows() {
  local n=$1 line
  for _ in $(seq "$n"); do
    read -r line <&4
    echo "${line#ops }"
  done | median
}
windows 10 >/dev/null # warm-up
mt_plain=() mt_traced=() mt_ratios=()
for r in $(seq "$rounds"); do
  plain=$(windows 20)
  "$cli" trace --pid "$tp" --duration 2.6 -o "$work/mt.txt" 2>"$work/mt.err" &
  tracer=$!
  until grep -q "tracing pid" "$work/mt.err" 2>/dev/null; do sleep 0.05; done
  traced=$(windows 20)
  wait "$tracer"
  windows 5 >/dev/null # the window holding the detach
  mt_plain+=("$plain") mt_traced+=("$traced") mt_ratios+=("$(ratio "$traced" "$plain")")
  echo "throughput round $r/$rounds: untraced $plain, traced $traced ops/100 ms" >&2
done
exec 3>&-
wait "$tp" || true

# --- 2. redis-server under redis-benchmark -t set -d 2000 ------------------
redis_plain=() redis_traced=() redis_ratios=()
if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
  port=6390
  LD_PRELOAD=$lib redis-server --port "$port" --save '' --appendonly no \
    --daemonize no >"$work/redis.log" 2>&1 &
  pids+=($!)
  rp=$!
  until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
  bench() {
    redis-benchmark -p "$port" -t set -d 2000 -n 100000 -c 50 -q 2>/dev/null |
      tr '\r' '\n' | awk '/^SET:/ { print int($2) }' | tail -1
  }
  bench >/dev/null # warm-up
  for r in $(seq "$rounds"); do
    plain=$(bench)
    "$cli" trace --pid "$rp" -o "$work/redis.txt" 2>"$work/redis.err" &
    tracer=$!
    until grep -q "tracing pid" "$work/redis.err" 2>/dev/null; do sleep 0.05; done
    traced=$(bench)
    kill -INT "$tracer"
    wait "$tracer"
    redis_plain+=("$plain") redis_traced+=("$traced") redis_ratios+=("$(ratio "$traced" "$plain")")
    echo "redis round $r/$rounds: untraced $plain, traced $traced requests/s" >&2
  done
  grep -E "^  (malloc|free|small_fast) " "$work/redis.txt" >&2 || true
else
  echo "redis-server or redis-benchmark missing: scripts/deps.sh installs them" >&2
fi

# --- the table --------------------------------------------------------------
row() {
  local name=$1 unit=$2
  shift 2
  local -n p=$1 t=$2 q=$3
  [ "${#p[@]}" -gt 0 ] || return 0
  printf '| %s | %s %s | %s %s | %s (%s) |\n' "$name" \
    "$(printf '%s\n' "${p[@]}" | median)" "$unit" \
    "$(printf '%s\n' "${t[@]}" | median)" "$unit" \
    "$(printf '%s\n' "${q[@]}" | median)" "$(printf '%s\n' "${q[@]}" | sort -n | paste -sd' ')"
}
echo
echo "| workload ($rounds interleaved rounds) | untraced (median) | traced (median) | traced/untraced: median (every round) |"
echo "|---|---|---|---|"
row "small objects, 2 threads (ops per 100 ms)" "" mt_plain mt_traced mt_ratios
row "redis-server, redis-benchmark -t set -d 2000" "req/s" redis_plain redis_traced redis_ratios
