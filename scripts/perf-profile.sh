#!/usr/bin/env bash
# perf profile of a hakmem-bench scenario, grouped by hakmem component: the origin
# analysis's plan 8.2 (perf record -g), next to `probe-cli breakdown --out DIR`.
#
#   scripts/perf-profile.sh SCENARIO [--out DIR] [--size S] [--repeat N] [--config C]
#
# Runs the scenario's measured child (hakmem linked in; C = default, global,
# no_bigcache, no_elo, frozen or minimal) N times under `perf record -g`, then writes
# into DIR (default target/breakdown/SCENARIO, where `probe-cli breakdown --out`
# puts its files):
#   perf.data                  the samples (frame-pointer call graphs; the release
#                              profile keeps line tables and frame pointers)
#   perf-report.txt            perf report: top symbols, self time
#   perf-components.txt / .md  self time grouped by hakmem component (module path
#                              of the symbol: hakmem::small, large::bigcache, large::elo, ...)
# Uses the cycles event where the CPU exposes hardware counters, else the cpu-clock
# software timer (and says so). Code inlined into another function is charged to
# that function's component: the grouping follows symbols, not source lines (with
# LTO the small-block fast path lives inside __rust_alloc/__rust_dealloc, counted as
# "api + inlined fast path").
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  sed -n '4,5p' "$0" | sed 's/^# *//' >&2
  exit 2
}
[ $# -ge 1 ] || usage
scenario=$1
shift
out="" size=large repeat=10 config=default
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "perf-profile.sh: unknown argument $1" >&2; usage ;;
  esac
done
case $config in
  default) env_config=() ;;
  global) env_config=(HAKMEM_BIGCACHE=global) ;;
  no_bigcache) env_config=(HAKMEM_DISABLE_BIGCACHE=1) ;;
  no_elo) env_config=(HAKMEM_DISABLE_ELO=1) ;;
  frozen) env_config=(HAKMEM_EVO_POLICY=frozen) ;;
  minimal) env_config=(HAKMEM_MINIMAL=1) ;;
  *) echo "perf-profile.sh: unknown --config $config" >&2; exit 2 ;;
esac
[[ $repeat =~ ^[1-9][0-9]*$ ]] || { echo "perf-profile.sh: --repeat must be a positive integer" >&2; exit 2; }
out=${out:-target/breakdown/$scenario}

perf=$(command -v perf || true)
if [ -z "$perf" ]; then
  echo "perf-profile.sh: perf not found (Debian: linux-perf; scripts/deps.sh installs it)" >&2
  exit 1
fi
target_dir=${CARGO_TARGET_DIR:-target}
bench=$target_dir/release/hakmem-bench
cargo build --release -p hakmem-bench >&2
if ! "$bench" list | awk '{print $1}' | grep -qx -- "$scenario"; then
  echo "perf-profile.sh: unknown scenario '$scenario' (see: $bench list)" >&2
  exit 2
fi
mkdir -p "$out"

# Hardware cycles where the CPU (or hypervisor) exposes them, else the software timer.
if "$perf" stat -x, -e cycles:u true 2>&1 >/dev/null | grep -q '^[0-9]'; then
  event=cycles:u
  event_note="event cycles:u (hardware counter)"
else
  event=cpu-clock
  event_note="event cpu-clock (software timer): this machine exposes no hardware counters"
fi
echo "perf-profile.sh: $scenario, config $config, size $size x $repeat runs; $event_note" >&2

runs=$(mktemp)
trap 'rm -f "$runs"' EXIT
for _ in $(seq "$repeat"); do
  printf '%q ' "$bench" run --scenario "$scenario" --allocator hakmem --json --size "$size" \
    --idle-ms 0 --syscalls off
  echo '>/dev/null'
done >"$runs"
env -u LD_PRELOAD -u HAKMEM_BIGCACHE -u HAKMEM_DISABLE_BIGCACHE -u HAKMEM_DISABLE_ELO \
    -u HAKMEM_EVO_POLICY -u HAKMEM_MINIMAL -u HAKMEM_TRACE \
    HAKMEM_BENCH_CHILD=1 HAKMEM_BENCH_ALLOCATOR=hakmem "${env_config[@]}" \
  "$perf" record -q -e "$event" -F 4999 -g -o "$out/perf.data" -- bash "$runs" 2>&1 \
  | grep -v '^\[ perf record' >&2 || true

report=(--stdio --no-children --sort sym -g none -i "$out/perf.data")
{
  echo "# perf profile: $scenario ($config, size $size x $repeat), $event_note"
  echo "# self time per symbol; $("$perf" report "${report[@]}" 2>/dev/null | grep -m1 '^# Samples')"
  "$perf" report "${report[@]}" --percent-limit 0.3 2>/dev/null | grep -v '^#' | grep -v '^$' | head -60
} >"$out/perf-report.txt"

# Self time grouped by component (the module path of each symbol): hakmem-bench perf-group.
"$perf" report "${report[@]}" -F overhead,sym -t $'\t' 2>/dev/null | grep -v '^#' | grep -v '^$' \
  | "$bench" perf-group --title "$scenario ($config); $event_note" --markdown "$out/perf-components.md" \
  | tee "$out/perf-components.txt"
echo "perf-profile.sh: wrote perf.data, perf-report.txt, perf-components.{txt,md} to $out" >&2
