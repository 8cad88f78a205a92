#!/usr/bin/env bash
# Instructions per malloc and per free in hakmem, untraced and traced, from
# callgrind (deterministic, where wall-clock rounds on a shared machine
# spread): probe-cli/tests/workloads/throughput.c (one thread, small blocks)
# runs preloaded under `valgrind --tool=callgrind` for a few seconds, once
# plainly and once with HAKMEM_TRACE=1 (counting as under a tracer) and a
# fixed period of 2^20, so that almost no call is timed: what the traced
# fast path costs. A measurement, run on demand.
#
#   scripts/trace-instructions.sh [LIB...]   (default target/release/libhakmem.so)
#
# Several libraries (say, two builds) are measured one after the other and
# printed as one Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null || ! command -v callgrind_annotate >/dev/null; then
  echo "scripts/trace-instructions.sh: needs valgrind (scripts/deps.sh installs it)" >&2
  exit 3
fi
libs=("$@")
if [ "${#libs[@]}" -eq 0 ]; then
  cargo build --release -p hakmem-preload >&2
  libs=("${CARGO_TARGET_DIR:-target}/release/libhakmem.so")
fi
for lib in "${libs[@]}"; do
  [ -f "$lib" ] || {
    echo "scripts/trace-instructions.sh: $lib: no such file" >&2
    exit 2
  }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O2 -g -pthread -o "$work/throughput" probe-cli/tests/workloads/throughput.c

# Inclusive instructions per call of `malloc` and `free` as the workload
# calls them: "MALLOC FREE".
per_call() {
  local out=$1
  callgrind_annotate --inclusive=yes --tree=caller "$out" 2>/dev/null |
    awk '/< .*throughput\.c:worker \(/ {
           ir = $1; gsub(",", "", ir)
           calls = $0; sub(/.*\(/, "", calls); sub(/x\).*/, "", calls); gsub(",", "", calls)
           next
         }
         /\* / && calls > 0 {
           if ($0 ~ /:malloc( \[|$)/) per_malloc = ir / calls
           if ($0 ~ /:free( \[|$)/) per_free = ir / calls
         }
         /^ *$/ || /\* / { calls = 0 }
         END { printf "%.1f %.1f\n", per_malloc, per_free }'
}
run() {
  local lib=$1 name=$2
  shift 2
  # The workload stops at EOF on stdin: 6 s of input under callgrind.
  (sleep 6) | valgrind --tool=callgrind --trace-children=yes \
    --callgrind-out-file="$work/$name.%p" \
    env "$@" LD_PRELOAD="$(realpath "$lib")" "$work/throughput" 1 >/dev/null 2>"$work/$name.log"
  per_call "$(ls -S "$work/$name".[0-9]* | head -1)"
}
echo "| library | malloc untraced | malloc traced | free untraced | free traced | added per pair |"
echo "|---|---:|---:|---:|---:|---:|"
for lib in "${libs[@]}"; do
  read -r mu fu < <(run "$lib" plain HAKMEM_TRACE=0)
  read -r mt ft < <(run "$lib" traced HAKMEM_TRACE=1 HAKMEM_TRACE_INTERVAL=0 HAKMEM_TRACE_PERIOD=1048576)
  echo "| $lib | $mu | $mt | $fu | $ft | $(awk -v a="$mu" -v b="$fu" -v c="$mt" -v d="$ft" 'BEGIN { printf "%.1f", c + d - a - b }') |"
done
