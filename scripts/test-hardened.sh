#!/usr/bin/env bash
# Hardened mode: builds libhakmem.so with --features hardened into its own
# target dir, then checks that each memory error aborts with its message and
# that ordinary use runs clean. Also runs the unit tests in hardened form.
set -euo pipefail
cd "$(dirname "$0")/.."
tdir=${CARGO_TARGET_DIR:-target}/hardened
cargo build --release -q -p hakmem-preload --features hardened --target-dir "$tdir"
# The unit tests in the suite's own target dir: their dev dependencies are
# built there already (in a directory of their own, from a clean clone, they
# compiled again); the feature gives hakmem its own artifact, nothing is clobbered.
# Release, with the invariant checks, debug assertions and overflow checks on:
# the same hakmem build as test-reliability.sh's hardened model test (one
# compile for both), and no debug build of the test dependencies. With them,
# the large-block pipeline across threads: hardened span blocks (a guard page
# at the end of each span) are reused at any size like the plain build's.
cargo test -q --release -p hakmem --features hardened,debug-checks --lib --test cross_thread_large --test hardened_spans \
  --config 'profile.release.package.hakmem.debug-assertions=true' \
  --config 'profile.release.package.hakmem.overflow-checks=true' 2>&1 |
  grep -E "test result" || { echo "FAIL: hardened unit tests"; exit 1; }
lib=$(realpath "$tdir")/release/libhakmem.so
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
gcc -O1 -g -o "$work/hardened_checks" hakmem/tests/c/hardened_checks.c

expect_abort() { # mode, message
  local out rc=0
  out=$(env -u HAKMEM_STATS LD_PRELOAD="$lib" "$work/hardened_checks" "$1" 2>&1) || rc=$?
  if [ "$rc" -eq 0 ] || ! grep -q "$2" <<<"$out"; then
    echo "FAIL: hardened $1: expected an abort with \"$2\", got rc=$rc: $out"; exit 1
  fi
  echo "ok   hardened: $1 stopped (\"$2\")"
}
expect_abort double-free "double free of"
expect_abort remote-style-double-free "double free of"
expect_abort overflow "corrupted free list"
expect_abort large-double-free "double free of .* (large block)"
# The guard page: SIGSEGV (rc 139), no message needed.
rc=0; LD_PRELOAD="$lib" "$work/hardened_checks" guard >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 139 ] || { echo "FAIL: hardened guard: expected SIGSEGV (139), got $rc"; exit 1; }
echo "ok   hardened: overflow past a large block hits its guard page"
out=$(LD_PRELOAD="$lib" "$work/hardened_checks" normal)
[ "$out" = "normal ok" ] || { echo "FAIL: hardened normal run: $out"; exit 1; }
echo "ok   hardened: normal use runs clean"
# The same errors go unnoticed without hardening (so the checks above test the mode).
out=$(LD_PRELOAD=$(realpath "${CARGO_TARGET_DIR:-target}")/release/libhakmem.so "$work/hardened_checks" overflow 2>&1 || true)
grep -q "corrupted free list" <<<"$out" && { echo "FAIL: the plain build should not have the hardened check"; exit 1; }
echo "ok   plain build: no hardened checks (as designed)"
