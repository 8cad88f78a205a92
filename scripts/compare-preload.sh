#!/usr/bin/env bash
# Production-like comparison: real programs with each allocator put in front of
# glibc through LD_PRELOAD — libhakmem.so, Debian's mimalloc, jemalloc and
# tcmalloc, and none (glibc itself). Reports wall time and peak RSS per program
# and allocator as a Markdown table (median of --repeat runs).
#
#   scripts/compare-preload.sh [--quick] [--repeat N] [--out FILE] [--allocators a,b,...]
#
# Programs: python3 running an allocation-heavy script, sort on a large
# generated file, a gcc -O2 compile of a generated C file, and redis-server
# under redis-benchmark (loopback only, bounded request count) where installed.
# Each allocator is first checked to really be loaded (the library must appear
# in the memory map of a preloaded process); one that is missing or does not
# load gets a "missing" row instead of numbers.
# --quick shrinks every input (for tests); the numbers are then not meaningful.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

quick=0
repeat=3
out=
only=
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; repeat=1 ;;
    --repeat) repeat=${2:?--repeat needs a number}; shift ;;
    --out) out=${2:?--out needs a file}; shift ;;
    --allocators) only=${2:?--allocators needs a list}; shift ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare-preload.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$repeat" in ''|*[!0-9]*|0) echo "compare-preload.sh: --repeat must be a positive integer" >&2; exit 2 ;; esac

# Options from the caller's environment would change what is measured.
for v in $(env | grep -o '^HAKMEM_[A-Za-z0-9_]*' || true); do unset "$v"; done

python=/usr/bin/python3 # the system one: a pyenv shim would add a bash process
multiarch=/usr/lib/$(uname -m)-linux-gnu
declare -A libs=(
  [none]=""
  [hakmem]="$root/target/release/libhakmem.so"
  [mimalloc]="$multiarch/libmimalloc.so.2"
  [jemalloc]="$multiarch/libjemalloc.so.2"
  [tcmalloc]="$multiarch/libtcmalloc_minimal.so.4"
)
order=(none hakmem mimalloc jemalloc tcmalloc)
if [ -n "$only" ]; then
  IFS=, read -r -a order <<<"$only"
  for a in "${order[@]}"; do
    [ -n "${libs[$a]+set}" ] || { echo "compare-preload.sh: unknown allocator '$a' (known: none hakmem mimalloc jemalloc tcmalloc)" >&2; exit 2; }
  done
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-compare-preload.XXXXXX")
redis_pid=
cleanup() {
  if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# measure LIB CMD...: runs CMD with LIB preloaded (none when empty); prints
# "wall_seconds peak_rss_kib" from wait4, so the measuring process itself
# (and its allocator) is never part of the figures.
cat >"$tmp/measure.py" <<'PY'
import os, subprocess, sys, tempfile, threading, time
lib, cmd = sys.argv[1], sys.argv[2:]
env = dict(os.environ)
env.pop("LD_PRELOAD", None)
if lib:
    env["LD_PRELOAD"] = lib
err = tempfile.TemporaryFile()
start = time.monotonic()
child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
# Bounded: a hung program is killed and fails the comparison.
timer = threading.Timer(600, child.kill)
timer.start()
_, status, usage = os.wait4(child.pid, 0)
wall = time.monotonic() - start
timer.cancel()
if status != 0:
    err.seek(0)
    lines = err.read().decode(errors="replace").strip().splitlines()
    sys.exit(f"{' '.join(cmd)} failed (wait status {status}): {lines[-1] if lines else ''}")
print(f"{wall:.3f} {usage.ru_maxrss}")
PY
measure() { "$python" "$tmp/measure.py" "$@"; }

# The inputs, generated with fixed seeds so every allocator sees the same work.
if [ $quick = 1 ]; then lines=20000; pyn=20000; funcs=20; redis_n=2000; else lines=2000000; pyn=400000; funcs=400; redis_n=200000; fi

cat >"$tmp/alloc_heavy.py" <<PY
# Many small, short-lived objects (dicts, strings, lists) plus a growing index:
# the pattern of a typical Python service.
import random
random.seed(7)
index = {}
for round in range(8):
    batch = [{"id": i, "name": "item-%d" % i, "tags": [str(j) for j in range(i % 7)]} for i in range($pyn // 8)]
    for item in batch:
        if random.random() < 0.1:
            index[(round, item["id"])] = item["name"] * 3
    del batch
print(len(index))
PY
awk -v n=$lines 'BEGIN { srand(42); for (i = 0; i < n; i++) printf "%08x %d %s\n", int(rand() * 4294967295), i, substr("abcdefghijklmnopqrstuvwxyz", 1 + int(rand() * 20)) }' >"$tmp/lines.txt"
{
  echo '#include <stdio.h>'
  echo '#include <string.h>'
  for i in $(seq 1 $funcs); do
    echo "struct s$i { int a[$((i % 17 + 1))]; double d; char name[32]; };"
    echo "static int f$i(struct s$i *s, int n) { int acc = 0; for (int k = 0; k < n; k++) { acc += s->a[k % $((i % 17 + 1))] * k; if (acc > $((i * 31))) acc ^= (int)strlen(s->name); } return acc + (int)s->d; }"
  done
  echo 'int main(void) { int total = 0;'
  for i in $(seq 1 $funcs); do echo "  { struct s$i v; memset(&v, $((i % 7)), sizeof v); total += f$i(&v, $i); }"; done
  echo '  printf("%d\n", total); return 0; }'
} >"$tmp/generated.c"

# A preloaded process must have the library in its memory map: proof the
# allocator under test, not glibc, is what the numbers describe.
loaded() {
  local lib=$1
  [ -z "$lib" ] && return 0
  [ -f "$lib" ] || return 1
  # Captured first: `cat | grep -q` under pipefail fails whenever grep exits
  # before cat has written everything (SIGPIPE).
  local maps
  maps=$(LD_PRELOAD=$lib cat /proc/self/maps)
  grep -qF "$(readlink -f "$lib")" <<<"$maps"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# redis_once LIB: one sample ("wall_seconds peak_rss_kib") of redis-server
# with LIB preloaded, driven by redis-benchmark (never preloaded) over
# loopback with a bounded number of requests. Not run in a subshell, so the
# EXIT trap can always stop the server.
redis_once() {
  local lib=$1 port=$((20000 + RANDOM % 20000))
  env ${lib:+LD_PRELOAD=$lib} redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --logfile "$tmp/redis.log" &
  redis_pid=$!
  # Wait (bounded) for the port to accept connections; redis-benchmark
  # itself can spin forever against a server that is not listening yet.
  local up=0
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
    sleep 0.05
  done
  if [ $up = 0 ]; then
    echo "compare-preload.sh: redis-server${lib:+ with $lib} did not start: $(tail -1 "$tmp/redis.log")" >&2
    exit 1
  fi
  if [ -n "$lib" ] && ! grep -qF "$(readlink -f "$lib")" "/proc/$redis_pid/maps"; then
    echo "compare-preload.sh: redis-server did not load $lib" >&2
    exit 1
  fi
  local start end
  start=$(date +%s.%N)
  timeout 300 redis-benchmark -h 127.0.0.1 -p "$port" -n "$redis_n" -c 20 -P 8 -q -t set,get,lpush,lpop,sadd >/dev/null
  end=$(date +%s.%N)
  printf '%s %s\n' "$(echo "$end $start" | awk '{ printf "%.3f", $1 - $2 }')" \
    "$(awk '/^VmHWM:/ { print $2 }' "/proc/$redis_pid/status")"
  kill "$redis_pid"
  wait "$redis_pid" 2>/dev/null || true
  redis_pid=
}

programs=("python3" "sort" "gcc")
command -v gcc >/dev/null || programs=("python3" "sort")
if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then programs+=(redis); fi

: >"$tmp/results"
# What "none" means per program: glibc, unless the binary links an allocator
# of its own (Debian's redis-server links libjemalloc.so.2, so its baseline is
# jemalloc, and a preloaded allocator replaces that one).
own_allocator() {
  local libs_of
  libs_of=$(ldd "$(command -v "$1")" 2>/dev/null || true)
  case $libs_of in
    *libjemalloc*) echo jemalloc ;;
    *libtcmalloc*) echo tcmalloc ;;
    *libmimalloc*) echo mimalloc ;;
    *) echo glibc ;;
  esac
}
declare -A binary_of=([python3]=$python [sort]=sort [gcc]=gcc [redis]=redis-server)
for p in "${programs[@]}"; do echo "own $p $(own_allocator "${binary_of[$p]}")" >>"$tmp/results"; done
available=()
for a in "${order[@]}"; do
  lib=${libs[$a]}
  if loaded "$lib"; then
    available+=("$a")
  else
    echo "$a missing ${lib}" >>"$tmp/results"
    echo "compare-preload.sh: $a: ${lib} not found or not loadable, skipped" >&2
  fi
done

# Rounds are interleaved (every program with every allocator, then again) so
# a drift of the machine during the run is shared instead of landing on
# whichever allocator happened to run last.
for round in $(seq 1 "$repeat"); do
  for p in "${programs[@]}"; do
    for a in "${available[@]}"; do
      lib=${libs[$a]}
      echo "compare-preload.sh: round $round/$repeat: $p with $a" >&2
      case $p in
        python3) measure "$lib" "$python" "$tmp/alloc_heavy.py" ;;
        sort) measure "$lib" env LC_ALL=C sort -S 256M -o "$tmp/sorted.txt" "$tmp/lines.txt" ;;
        gcc) measure "$lib" gcc -O2 -c -o "$tmp/generated.o" "$tmp/generated.c" ;;
        redis) redis_once "$lib" ;;
      esac >>"$tmp/samples.$a.$p"
    done
  done
done
for p in "${programs[@]}"; do
  for a in "${available[@]}"; do
    f=$tmp/samples.$a.$p
    echo "$a $p $(cut -d' ' -f1 "$f" | median) $(cut -d' ' -f2 "$f" | median)" >>"$tmp/results"
  done
done

# The table: one row per program and allocator, time relative to none.
table=$(awk -v repeat="$repeat" -v quick="$quick" '
  $2 == "missing" { missing[$1] = $3; next }
  $1 == "own" { own[$2] = $3; next }
  { key = $2 SUBSEP $1; wall[key] = $3; rss[key] = $4; if (!($2 in seen)) { seen[$2] = 1; progs[++np] = $2 }
    if (!($1 in aseen)) { aseen[$1] = 1; allocs[++na] = $1 } }
  END {
    printf "| program | allocator | wall time (s) | vs none | peak RSS (MiB) |\n|---|---|---:|---:|---:|\n"
    for (p = 1; p <= np; p++) for (a = 1; a <= na; a++) {
      key = progs[p] SUBSEP allocs[a]
      if (!(key in wall)) continue
      base = (progs[p] SUBSEP "none") in wall ? wall[progs[p] SUBSEP "none"] : 0
      vs = base > 0 ? sprintf("%+.1f%%", (wall[key] / base - 1) * 100) : "-"
      if (allocs[a] == "none") vs = "baseline"
      printf "| %s | %s | %.3f | %s | %.1f |\n", progs[p], allocs[a] == "none" ? "none (" own[progs[p]] ")" : allocs[a], wall[key], vs, rss[key] / 1024
    }
    for (m in missing) printf "| (all) | %s | missing: %s | | |\n", m, missing[m]
    printf "\nMedian of %d run(s) per cell%s; peak RSS is the program'"'"'s (redis: the server'"'"'s VmHWM); \"none\" is the allocator the program links: glibc'"'"'s, or its own.\n", repeat, quick ? ", --quick inputs (not meaningful numbers)" : ""
  }' "$tmp/results")
if [ -n "$out" ]; then printf '%s\n' "$table" >"$out"; fi
printf '%s\n' "$table"
