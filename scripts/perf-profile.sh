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
group_py=$(mktemp)
trap 'rm -f "$runs" "$group_py"' EXIT
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

# Self time grouped by component: the module path of each symbol.
cat >"$group_py" <<'PY'
import re, sys
scenario, config, note, md_path = sys.argv[1:5]
RULES = [  # first match wins: (component, pattern on the symbol)
    ("probe", r"hakmem::probe|hakmem_probe_event"),
    ("bigcache", r"hakmem::large::bigcache"),
    ("elo", r"hakmem::large::elo"),
    ("evolution", r"hakmem::large::evolution"),
    ("span heap", r"hakmem::large::span_heap|hakmem::large::purge_thread"),
    ("profile", r"hakmem::large::profile"),
    ("large_path", r"hakmem::large::"),
    ("segment", r"hakmem::small::segment|hakmem::segment_map|hakmem::stack"),
    ("os", r"hakmem::os::|hakmem::vm::"),
    ("heap (small blocks)", r"hakmem::small::|hakmem::thread::"),
    # With LTO the small fast path is inlined into the global allocator's shims.
    ("api + inlined fast path", r"hakmem::api|hakmem::global_alloc|<hakmem::Hakmem|hakmem_bench::dispatch|__rust_(alloc|dealloc|realloc|alloc_zeroed)\b"),
    ("hakmem (other)", r"hakmem::"),
    ("workload (hakmem-bench)", r"hakmem_bench::|hdrhistogram"),
    ("kernel: page faults", r"\[k\] .*(fault|clear_page|folio|pte|lru|memcg|charge|zap|rmqueue|alloc_pages|huge|anon)"),
    ("kernel: other", r"\[k\]"),
    ("other (libc, loader, std)", r""),
]
groups, tops = {}, {}
for line in sys.stdin:
    parts = line.rstrip("\n").split("\t")
    if len(parts) < 2:
        continue
    try:
        pct = float(parts[0].strip().rstrip("%"))
    except ValueError:
        continue
    sym = parts[1].strip()
    comp = next(c for c, p in RULES if re.search(p, sym))
    groups[comp] = groups.get(comp, 0.0) + pct
    tops.setdefault(comp, []).append((pct, sym.split("] ", 1)[-1]))
rows = sorted(groups.items(), key=lambda kv: -kv[1])
head = "perf self time by hakmem component: %s (%s); %s" % (scenario, config, note)
def top(c):
    best = sorted(tops[c], reverse=True)[:3]
    return ", ".join("%s %.1f%%" % (s[:60], p) for p, s in best)
print(head)
print("%-28s %7s  top symbols" % ("component", "self"))
for c, p in rows:
    print("%-28s %6.1f%%  %s" % (c, p, top(c)))
with open(md_path, "w") as md:
    md.write("### %s\n\n| component | self time | top symbols |\n|---|---:|---|\n" % head)
    for c, p in rows:
        md.write("| %s | %.1f%% | %s |\n" % (c, p, top(c).replace("|", "\\|")))
PY
"$perf" report "${report[@]}" -F overhead,sym -t $'\t' 2>/dev/null | grep -v '^#' | grep -v '^$' \
  | /usr/bin/python3 "$group_py" "$scenario" "$config" "$event_note" "$out/perf-components.md" \
  | tee "$out/perf-components.txt"
echo "perf-profile.sh: wrote perf.data, perf-report.txt, perf-components.{txt,md} to $out" >&2
