#!/usr/bin/env bash
# Traced vs isolation (issue 14, item 5): what probe-cli's traced breakdown reports
# per component of hakmem, next to what perf finds for it in untraced runs.
#
#   scripts/true-figures.sh SCENARIO [--runs N] [--repeat N] [--size S] [--out DIR]
#
# As root. Runs `probe-cli breakdown --scenario SCENARIO --realtime` (N untraced runs
# per configuration, N traced runs; default 5) and, before and after it, half of R
# untraced runs under `perf record -g` each (scripts/perf-profile.sh; default R 10),
# then `hakmem-bench perf-inclusive`: each part's share of the perf samples inside
# the measured loop, its frames anywhere on the stack (the kernel work it causes
# included, as in the probes), times the breakdown's untraced ns per operation.
# Writes DIR/breakdown.*, DIR/perf-{before,after}/ and DIR/true-figures.md (default
# target/true-figures/SCENARIO) and prints the table.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  sed -n '5p' "$0" | sed 's/^# *//' >&2
  exit 2
}
[ $# -ge 1 ] || usage
scenario=$1
shift
runs=5 repeat=10 size=default out=""
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "true-figures.sh: unknown argument $1" >&2; usage ;;
  esac
done
for n in "$runs" "$repeat"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "true-figures.sh: --runs and --repeat take positive integers" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "true-figures.sh: needs root (probe-cli breakdown, perf)" >&2; exit 3; }
out=${out:-target/true-figures/$scenario}
target_dir=${CARGO_TARGET_DIR:-target}
mkdir -p "$out"

# perf-profile.sh builds hakmem-bench on its own (the binary both measure).
cargo build --release -p probe-cli >&2
half=$(( (repeat + 1) / 2 ))
scripts/perf-profile.sh "$scenario" --out "$out/perf-before" --repeat "$half" --size "$size" >&2
"$target_dir/release/probe-cli" breakdown --scenario "$scenario" --realtime --runs "$runs" \
  --trace-runs "$runs" --size "$size" --bench "$target_dir/release/hakmem-bench" \
  --out "$out" >&2
scripts/perf-profile.sh "$scenario" --out "$out/perf-after" --repeat "$half" --size "$size" >&2

for d in perf-before perf-after; do
  perf script -i "$out/$d/perf.data" -F comm,ip,sym 2>/dev/null
  echo
done | "$target_dir/release/hakmem-bench" perf-inclusive --breakdown "$out/breakdown.json" \
  --markdown "$out/true-figures.md"
echo "true-figures.sh: wrote $out/true-figures.md" >&2
