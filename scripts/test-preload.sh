#!/usr/bin/env bash
# LD_PRELOAD tests of libhakmem.so: C programs (hakmem/tests/c/*.c) built here
# and run with hakmem in front of libc, then real programs (python3, sort,
# perl, gcc; sqlite3, jq, node and xz where installed) whose stdout must be
# byte-identical to a run without hakmem.
# Any "hakmem:" line on a program's stderr is a failure unless the check
# expects it. One line per check; the first failure stops the run with a reason.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
start=$SECONDS

python=/usr/bin/python3 # the system one: a pyenv shim in PATH is a bash script that may pick another interpreter
csrc=$root/hakmem/tests/c
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
release_lib=$target/release/libhakmem.so
debug_lib=$target/debug/libhakmem.so

# Options from the caller's environment would change what is checked.
for v in $(env | grep -o '^HAKMEM_[A-Za-z0-9_]*' || true); do unset "$v"; done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-preload.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
ok() { printf 'ok   %-34s %s\n' "$1" "$2"; }

# Fails unless $1 (a stderr file) is free of hakmem warnings.
no_warnings() {
  if grep -q 'hakmem:' "$1"; then
    sed 's/^/    /' "$1" | head -5 >&2
    fail "$2: hakmem printed on stderr"
  fi
}

# run LIB NAME CMD...: runs CMD with LIB preloaded, stdout to $tmp/NAME.out and
# stderr to $tmp/NAME.err; fails with the program's stderr if it fails or hangs.
run() {
  local lib=$1 name=$2
  shift 2
  local rc=0
  timeout 120 env LD_PRELOAD="$lib" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" || rc=$?
  if [ "$rc" -ne 0 ]; then
    sed 's/^/    /' "$tmp/$name.err" | tail -15 >&2
    [ "$rc" -eq 124 ] && fail "$name: timed out after 120 s"
    fail "$name: exit status $rc"
  fi
}

echo "--- building libhakmem.so (release and debug)"
cargo build --release -p hakmem-preload
cargo build -p hakmem-preload
for lib in "$release_lib" "$debug_lib"; do
  [ -f "$lib" ] || fail "$lib was not built"
done

# ---------------------------------------------------------------------------
# C programs
# ---------------------------------------------------------------------------

echo "--- C programs under LD_PRELOAD (t=$((SECONDS - start))s)"
mkdir -p "$tmp/bin"
for src in "$csrc"/*.c; do
  name=$(basename "$src" .c)
  gcc -O1 -g -pthread -Wall -Wextra -o "$tmp/bin/$name" "$src" -ldl ||
    fail "compiling $src"
done

for build in release debug; do
  lib=$release_lib
  [ "$build" = debug ] && lib=$debug_lib
  for t in api_conformance override_check cross_thread fork_threads; do
    t0=$SECONDS
    run "$lib" "$t.$build" "$tmp/bin/$t"
    no_warnings "$tmp/$t.$build.err" "$t ($build)"
    ok "$t ($build)" "$(head -1 "$tmp/$t.$build.out") [$((SECONDS - t0))s]"
  done
done

# HAKMEM_STATS=1 prints the report at exit; without it nothing is printed.
HAKMEM_STATS=1 run "$release_lib" stats "$tmp/bin/override_check"
grep -q 'hakmem stats' "$tmp/stats.err" || fail "HAKMEM_STATS=1: no 'hakmem stats' on stderr"
no_warnings "$tmp/override_check.release.err" "override_check without HAKMEM_STATS"
ok "HAKMEM_STATS=1 report" "$(grep -c 'hakmem stats' "$tmp/stats.err") lines on stderr"
# coreutils and xz close stderr before exit (gnulib's close_stdout): the
# report goes to the copy of stderr kept when the option was read.
HAKMEM_STATS=1 run "$release_lib" stats-closed ls /
grep -q 'hakmem stats' "$tmp/stats-closed.err" || fail "HAKMEM_STATS=1 ls: no report (stderr closed before exit)"
ok "HAKMEM_STATS=1 after close(2)" "$(grep -c 'hakmem stats' "$tmp/stats-closed.err") lines from ls"

# Foreign pointers: release reports the first one once and carries on.
run "$release_lib" foreign.release "$tmp/bin/foreign_free"
n=$(grep -c 'not allocated by hakmem' "$tmp/foreign.release.err" || true)
[ "$n" -eq 1 ] || fail "foreign_free (release): $n 'not allocated by hakmem' lines on stderr, want exactly 1"
ok "foreign free (release)" "reported once, program continued"
# A debug build aborts, naming the pointer.
rc=0
ulimit -c 0 # no core file from the expected abort
# (the braces keep bash's "Aborted" job notice off the log)
{ timeout 60 env LD_PRELOAD="$debug_lib" "$tmp/bin/foreign_free" >/dev/null 2>"$tmp/foreign.debug.err"; } 2>/dev/null || rc=$?
[ "$rc" -eq $((128 + 6)) ] || fail "foreign_free (debug): exit status $rc, want $((128 + 6)) (SIGABRT)"
grep -Eq 'free\(0x[0-9a-f]+\).*not allocated by hakmem' "$tmp/foreign.debug.err" ||
  fail "foreign_free (debug): abort message does not name the pointer"
ok "foreign free (debug)" "aborted naming the pointer"

# A bad option value gets one warning naming the variable; the program runs.
HAKMEM_PURGE_DELAY_MS=soon run "$release_lib" badopt /bin/true
n=$(grep -c 'HAKMEM_PURGE_DELAY_MS' "$tmp/badopt.err" || true)
[ "$n" -eq 1 ] || fail "HAKMEM_PURGE_DELAY_MS=soon: $n warning lines naming the variable, want 1"
ok "bad option value" "$(head -1 "$tmp/badopt.err")"

# ---------------------------------------------------------------------------
# Real programs: stdout with hakmem must equal stdout without it.
# ---------------------------------------------------------------------------

echo "--- real programs, output compared with and without hakmem (t=$((SECONDS - start))s)"

# same NAME CMD...: runs CMD plainly and under hakmem; stdout must match.
same() {
  local name=$1
  shift
  local t0=$SECONDS rc=0
  timeout 120 "$@" >"$tmp/$name.plain.out" 2>"$tmp/$name.plain.err" || rc=$?
  [ "$rc" -eq 0 ] || fail "$name: fails even without hakmem (status $rc): $(tail -1 "$tmp/$name.plain.err")"
  run "$release_lib" "$name.hakmem" "$@"
  no_warnings "$tmp/$name.hakmem.err" "$name"
  cmp -s "$tmp/$name.plain.out" "$tmp/$name.hakmem.out" ||
    fail "$name: stdout under hakmem differs from the plain run ($(wc -c <"$tmp/$name.hakmem.out") vs $(wc -c <"$tmp/$name.plain.out") bytes)"
  [ -s "$tmp/$name.plain.out" ] || fail "$name: produced no output to compare"
  ok "$name" "$(wc -c <"$tmp/$name.plain.out") bytes identical [$((SECONDS - t0))s]"
}

PYTHONHASHSEED=0 same python3 "$python" "$root/hakmem/tests/programs/alloc.py"
# Again with every Python object from malloc instead of pymalloc's arenas.
PYTHONHASHSEED=0 PYTHONMALLOC=malloc same python3-malloc "$python" "$root/hakmem/tests/programs/alloc.py"

# sort: tens of MB of lines, big buffers and two sorting threads.
awk 'BEGIN { srand(7); for (i = 0; i < 900000; i++)
  printf "%08x %s %d line-%d-%s\n", int(rand() * 4294967296), substr("abcdefghijklmnopqrstuvwxyz", 1 + i % 26), int(rand() * 1e6), i, substr("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 1 + i % 30) }' >"$tmp/lines.txt"
LC_ALL=C same sort sort --parallel=2 -S 64M "$tmp/lines.txt"
LC_ALL=C same sort-keys sort --parallel=2 -S 64M -t ' ' -k3,3n -k1,1 -u "$tmp/lines.txt"

same perl perl "$root/hakmem/tests/programs/hash.pl"

# gcc: cc1, as and collect2 all run under hakmem; the objects must be
# byte-identical to those of a plain compile, and the program must run.
gcc_compile() {
  local out=$1
  mkdir -p "$out"
  for src in "$csrc"/*.c; do
    gcc -O2 -g -pthread -c -o "$out/$(basename "$src" .c).o" "$src"
  done
  gcc -pthread -o "$out/api_conformance" "$out/api_conformance.o"
  cd "$out" && sha256sum ./*.o && cd "$root"
}
export -f gcc_compile
export csrc root
same gcc bash -c 'gcc_compile "$1"' _ "$tmp/gcc"
# Both runs wrote to one directory: the program run next is the one built
# under hakmem, whose object checksums matched the plain build above.
run "$release_lib" gcc-built "$tmp/gcc/api_conformance"
ok "gcc-built program runs" "$(head -1 "$tmp/gcc-built.out")"

# Programs a machine may lack (none of them is in scripts/deps.sh): checked
# where installed, a skip line otherwise.
installed() { command -v "$1" >/dev/null || { ok "$1" "skipped: not installed"; return 1; }; }
if installed sqlite3; then
  same sqlite3 sh -c 'sqlite3 :memory: <"$1"' _ "$root/hakmem/tests/programs/db.sql"
fi
if installed jq; then
  "$python" -c 'import json, sys; json.dump([{"id": i, "name": "n%d" % i, "tags": [i % 7, i % 11], "nested": {"a": i * 2, "b": str(i) * 3}} for i in range(120000)], sys.stdout)' >"$tmp/big.json"
  same jq jq -c '[.[] | select(.id % 3 == 0) | .nested] | length, (map(.id) | add)' "$tmp/big.json"
fi
if installed node; then
  same node node "$root/hakmem/tests/programs/alloc.js"
fi
# xz -T2 -1: blocks of 3 MiB compressed by two threads, MiB buffers handed
# between them.
if installed xz; then
  head -c 12000000 "$tmp/lines.txt" >"$tmp/xz-in"
  same xz sh -c 'xz -T2 -1 -c "$1" | xz -dc -T2 | cksum' _ "$tmp/xz-in"
fi

echo "--- LD_PRELOAD tests passed in $((SECONDS - start)) s"
