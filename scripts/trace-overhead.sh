#!/usr/bin/env bash
# What `probe-cli trace --pid` costs a live program: throughput traced vs
# untraced, side by side, in interleaved rounds (the machine's speed drifts
# over minutes; a round compares two neighbouring windows). A benchmark, run
# on demand, as root; probe-cli/README.md quotes its output.
#
#   scripts/trace-overhead.sh [ROUNDS] [DIR]    (default 5 rounds, this tree's build)
#   TRACE_ARGS=--kernel-syscalls scripts/trace-overhead.sh ...   (extra `probe-cli trace` arguments)
#
# DIR: a directory holding another build's libhakmem.so and probe-cli (say,
# the commit before a change) to measure instead of building this tree; runs
# of two builds alternated make a before/after comparison.
#
# 1. small objects, 2 threads: probe-cli/tests/workloads/throughput.c with
#    libhakmem.so preloaded prints its operations every 100 ms; each round
#    takes the median of 2 s untraced, then 2 s with a tracer attached.
# 2. redis-server with libhakmem.so preloaded under
#    `redis-benchmark -t set -d 2000`: each round runs the benchmark once
#    untraced and once while a tracer is attached.
# Prints one Markdown table: medians of the rounds and traced/untraced ratios,
# of throughput and of work per CPU second of the target (utime + stime from
# /proc: what tracing costs the target itself, without the tracer's own CPU
# use competing for the cores).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-5}
build=${2:-}
read -r -a trace_args <<<"${TRACE_ARGS:-}"
target_dir=${CARGO_TARGET_DIR:-target}
if ! [ "$rounds" -gt 0 ] 2>/dev/null || { [ -n "$build" ] && ! [ -x "$build/probe-cli" ]; }; then
  echo "usage: scripts/trace-overhead.sh [ROUNDS] [DIR with libhakmem.so and probe-cli]" >&2
  exit 2
fi
if [ "$(id -u)" != 0 ]; then
  echo "scripts/trace-overhead.sh: needs root (probe-cli loads BPF programs)" >&2
  exit 3
fi
if [ -z "$build" ]; then
  cargo build --release -p hakmem-preload -p probe-cli >&2
  build=$target_dir/release
fi
lib=$(realpath "$build/libhakmem.so")
cli=$(realpath "$build/probe-cli")
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
cc -O2 -pthread -o "$work/throughput" probe-cli/tests/workloads/throughput.c

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

# --- 1. small objects, 2 threads -------------------------------------------
mkfifo "$work/in" "$work/out"
LD_PRELOAD=$lib "$work/throughput" 2 <"$work/in" >"$work/out" &
pids+=($!)
tp=$!
exec 3>"$work/in" 4<"$work/out"
# The median of N 100 ms windows of the running workload (a window ends when
# its line is printed), and its operations per CPU second over them.
windows() {
  local n=$1 line c0 c1 ops
  read -r line <&4
  c0=$(cpu_ticks "$tp")
  ops=$(for _ in $(seq "$n"); do
    read -r line <&4
    echo "${line#ops }"
  done)
  c1=$(cpu_ticks "$tp")
  echo "$(echo "$ops" | median) $(echo "$ops" | awk -v t=$((c1 - c0)) -v hz="$hz" \
    '{ s += $1 } END { printf "%.0f", (t > 0 ? s * hz / t : 0) }')"
}
windows 10 >/dev/null # warm-up
mt_plain=() mt_traced=() mt_ratios=() mt_cpu_plain=() mt_cpu_traced=() mt_cpu_ratios=()
for r in $(seq "$rounds"); do
  read -r plain plain_cpu < <(windows 20)
  "$cli" trace --pid "$tp" "${trace_args[@]}" --duration 2.6 -o "$work/mt.txt" 2>"$work/mt.err" &
  tracer=$!
  until grep -q "tracing pid" "$work/mt.err" 2>/dev/null; do sleep 0.05; done
  read -r traced traced_cpu < <(windows 20)
  wait "$tracer"
  windows 5 >/dev/null # the window holding the detach
  mt_plain+=("$plain") mt_traced+=("$traced") mt_ratios+=("$(ratio "$traced" "$plain")")
  mt_cpu_plain+=("$plain_cpu") mt_cpu_traced+=("$traced_cpu")
  mt_cpu_ratios+=("$(ratio "$traced_cpu" "$plain_cpu")")
  echo "throughput round $r/$rounds: untraced $plain, traced $traced ops/100 ms;" \
    "per CPU second $plain_cpu, $traced_cpu" >&2
done
exec 3>&-
wait "$tp" || true

# --- 2. redis-server under redis-benchmark -t set -d 2000 ------------------
redis_plain=() redis_traced=() redis_ratios=() redis_cpu_plain=() redis_cpu_traced=() redis_cpu_ratios=()
if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
  port=6390
  LD_PRELOAD=$lib redis-server --port "$port" --save '' --appendonly no \
    --daemonize no >"$work/redis.log" 2>&1 &
  pids+=($!)
  rp=$!
  until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
  requests=100000
  # Requests/s, and requests per CPU second of redis-server.
  bench() {
    local c0 c1 rps
    c0=$(cpu_ticks "$rp")
    rps=$(redis-benchmark -p "$port" -t set -d 2000 -n "$requests" -c 50 -q 2>/dev/null |
      tr '\r' '\n' | awk '/^SET:/ { print int($2) }' | tail -1)
    c1=$(cpu_ticks "$rp")
    echo "$rps $(awk -v t=$((c1 - c0)) -v hz="$hz" -v n="$requests" \
      'BEGIN { printf "%.0f", (t > 0 ? n * hz / t : 0) }')"
  }
  bench >/dev/null # warm-up
  for r in $(seq "$rounds"); do
    read -r plain plain_cpu < <(bench)
    "$cli" trace --pid "$rp" "${trace_args[@]}" -o "$work/redis.txt" 2>"$work/redis.err" &
    tracer=$!
    until grep -q "tracing pid" "$work/redis.err" 2>/dev/null; do sleep 0.05; done
    read -r traced traced_cpu < <(bench)
    kill -INT "$tracer"
    wait "$tracer"
    redis_plain+=("$plain") redis_traced+=("$traced") redis_ratios+=("$(ratio "$traced" "$plain")")
    redis_cpu_plain+=("$plain_cpu") redis_cpu_traced+=("$traced_cpu")
    redis_cpu_ratios+=("$(ratio "$traced_cpu" "$plain_cpu")")
    echo "redis round $r/$rounds: untraced $plain, traced $traced requests/s;" \
      "per CPU second $plain_cpu, $traced_cpu" >&2
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
echo "| workload ($rounds interleaved rounds${TRACE_ARGS:+, probe-cli trace $TRACE_ARGS}) | untraced (median) | traced (median) | traced/untraced: median (every round) |"
echo "|---|---|---|---|"
row "small objects, 2 threads (ops per 100 ms)" "" mt_plain mt_traced mt_ratios
row "redis-server, redis-benchmark -t set -d 2000" "req/s" redis_plain redis_traced redis_ratios
row "small objects, 2 threads: ops per CPU second of the target" "" mt_cpu_plain mt_cpu_traced mt_cpu_ratios
row "redis-server: requests per CPU second of redis-server" "" redis_cpu_plain redis_cpu_traced redis_cpu_ratios
