#!/usr/bin/env bash
# Reliability suite (issue 7), bounded: a few minutes on the 2-core CI machine
# once the workspace is built (scripts/test.sh builds it first). The counts
# below are the default suite's; with HAKMEM_TEST_FULL=1 (`scripts/test.sh
# --full`) each part runs at its long form (in brackets).
#
#  1. model test (proptest, 256 [1000] action sequences) and fault injection
#     (map injector, RLIMIT_AS, handle_alloc_error), release
#  2. churn under LD_PRELOAD: 2,000 [10,000] threads with RSS bounded, 200
#     [1,000] forks from 9 threads (with exec), a SIGUSR1/SIGALRM storm,
#     RLIMIT_AS from C; release library, shorter forms on the debug library
#  3. the stress example for 5 [20] s (4 threads, seed printed)
#  4. valgrind memcheck of the C conformance programs with hakmem preloaded
#     (in the background, beside the builds of 6)
#  5. a bounded libFuzzer run (scripts/test-fuzz.sh, 15 [60] s; skips without nightly)
#  6. the hakmem test suite once with --features debug-checks, debug
#     assertions and overflow checks, release optimisation (the suite's one
#     full pass with the invariant checks on); the model and fault
#     injection also against the hardened build, 100 [300] sequences
#  7. probe-cli under stress (root and BPF; each test says SKIP otherwise)
#
# The hours-long forms are in scripts/stress-long.sh. Knobs: MODEL_CASES,
# STRESS_SECONDS, STRESS_SEED (day of the year), FUZZ_SECONDS.
# Ends with the figures for the README's reliability section.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
start=$SECONDS
# Absolute: CARGO_TARGET_DIR may be either.
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
release_lib=$target/release/libhakmem.so
debug_lib=$target/debug/libhakmem.so

# Options from the caller's environment would change what is checked. The
# suite's own knobs (scripts/test.sh's HAKMEM_TEST_FULL and
# HAKMEM_SUITE_MODEL_CASES, no allocator option) stay: unset, --full ran the
# short forms here, the model test ran a second time (34 s) and probe-cli's
# stress tests were built with other features than the suite's build.
for v in $(env | grep -o '^HAKMEM_[A-Za-z0-9_]*' | grep -vx 'HAKMEM_TEST_FULL\|HAKMEM_SUITE_MODEL_CASES' || true); do
  unset "$v"
done

# full LONG SHORT: the long form's value under --full, else the short one.
full() { if [ "${HAKMEM_TEST_FULL:-0}" = 1 ]; then echo "$1"; else echo "$2"; fi; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-reliability.XXXXXX")
vg_pid=""
cleanup() {
  if [ -n "$vg_pid" ]; then kill "$vg_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
figures=()

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
ok() { printf 'ok   %-40s %s\n' "$1" "$2"; }
section() { printf -- '--- %s (t=%ss)\n' "$*" $((SECONDS - start)); }

# Fails unless $1 (a stderr file) is free of hakmem warnings.
no_warnings() {
  if grep -q 'hakmem:' "$1"; then
    sed 's/^/    /' "$1" | head -5 >&2
    fail "$2: hakmem printed on stderr"
  fi
}

# run NAME LIB CMD...: CMD with LIB preloaded (none if LIB is -); output in
# $tmp/NAME.out/.err; fails with the tail of stderr on failure or timeout.
run() {
  local name=$1 lib=$2
  shift 2
  local rc=0 pre=()
  [ "$lib" != - ] && pre=(env LD_PRELOAD="$lib")
  timeout 300 "${pre[@]}" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" || rc=$?
  if [ "$rc" -ne 0 ]; then
    sed 's/^/    /' "$tmp/$name.err" | tail -15 >&2
    sed 's/^/    /' "$tmp/$name.out" | tail -5 >&2
    [ "$rc" -eq 124 ] && fail "$name: timed out after 300 s"
    fail "$name: exit status $rc"
  fi
}

section "build"
# (Separate commands: `--example` would restrict every -p to its examples.
# The examples are built for the whole workspace: `-p hakmem` alone resolves
# hakmem's features differently and recompiled it, 16-22 s.)
cargo build --release -p hakmem-preload
cargo build -p hakmem-preload
cargo build --release --workspace --examples
for lib in "$release_lib" "$debug_lib"; do
  [ -f "$lib" ] || fail "$lib was not built"
done

# ---------------------------------------------------------------------------
section "model test and fault injection (release)"
cases=${MODEL_CASES:-$(full 1000 256)}
t0=$SECONDS
if [ "${HAKMEM_SUITE_MODEL_CASES:-0}" = "$cases" ]; then
  # scripts/test.sh's workspace tests just ran both, with this many sequences.
  ok "model + fault injection" "ran in scripts/test.sh's workspace tests, $cases random action sequences"
else
  PROPTEST_CASES=$cases cargo test --release -p hakmem --test model --test fault_injection \
    -- --test-threads=2 >"$tmp/model.out" 2>&1 || {
    grep -v '^\s*at \|^ *[0-9]*: ' "$tmp/model.out" | grep -A30 -- '^----\|minimal failing' | head -60 >&2
    fail "model / fault injection tests"
  }
  passed=$(grep -o '[0-9]* passed' "$tmp/model.out" | awk '{s += $1} END {print s + 0}')
  ok "model + fault injection" "$passed tests, $cases random action sequences [$((SECONDS - t0))s]"
fi
figures+=("model test: $cases random sequences of up to 400 actions per run (plus 2 fixed ones)")
figures+=("fault injection: 6 Rust cases (small/medium/big/large exhaustion, every entry point, realloc keeps the block, BigCache hit while maps fail, new thread without heap, try_reserve, 2 x handle_alloc_error abort, RLIMIT_AS) + rlimit_as.c (5 entry points) + FailMaps actions in every model/fuzz sequence")

# ---------------------------------------------------------------------------
section "churn, signals and RLIMIT_AS under LD_PRELOAD"
mkdir -p "$tmp/bin"
for t in thread_churn_10k fork_churn signal_storm rlimit_as; do
  gcc -O1 -g -pthread -Wall -Wextra -o "$tmp/bin/$t" "hakmem/tests/c/$t.c" || fail "compiling $t.c"
done
ulimit -c 0
for build in release debug; do
  lib=$release_lib threads=$(full 10000 2000) forks=$(full 1000 200) secs=$(full 3 2)
  [ "$build" = debug ] && lib=$debug_lib threads=$(full 2000 500) forks=$(full 100 50) secs=$(full 2 1)
  t0=$SECONDS
  run "churn.$build" "$lib" "$tmp/bin/thread_churn_10k" "$threads"
  no_warnings "$tmp/churn.$build.err" "thread_churn_10k ($build)"
  ok "thread churn ($build)" "$(cut -d: -f2- "$tmp/churn.$build.out") [$((SECONDS - t0))s]"
  t0=$SECONDS
  run "fork.$build" "$lib" "$tmp/bin/fork_churn" "$forks"
  no_warnings "$tmp/fork.$build.err" "fork_churn ($build)"
  ok "fork churn ($build)" "$(cut -d: -f2- "$tmp/fork.$build.out") [$((SECONDS - t0))s]"
  t0=$SECONDS
  run "signals.$build" "$lib" "$tmp/bin/signal_storm" "$secs"
  no_warnings "$tmp/signals.$build.err" "signal_storm ($build)"
  ok "signal storm ($build)" "$(cut -d: -f2- "$tmp/signals.$build.out") [$((SECONDS - t0))s]"
  run "rlimit.$build" "$lib" "$tmp/bin/rlimit_as"
  no_warnings "$tmp/rlimit.$build.err" "rlimit_as ($build)"
  ok "RLIMIT_AS ($build)" "$(tail -1 "$tmp/rlimit.$build.out" | cut -d: -f2- | cut -d';' -f1)"
done
figures+=("churn: $(cut -d: -f2- "$tmp/churn.release.out")")
figures+=("fork: $(cut -d: -f2- "$tmp/fork.release.out")")
figures+=("signals: $(cut -d: -f2- "$tmp/signals.release.out")")

# ---------------------------------------------------------------------------
section "stress example"
seed=${STRESS_SEED:-$((10#$(date +%j)))}
run stress - "$target/release/examples/stress" --threads 4 --seconds "${STRESS_SECONDS:-$(full 20 5)}" --seed "$seed"
no_warnings "$tmp/stress.err" "stress"
ok "stress" "$(tail -1 "$tmp/stress.out" | cut -d: -f2- | cut -c1-150)"
figures+=("stress (seed $seed):$(tail -1 "$tmp/stress.out" | cut -d: -f3-)")

# ---------------------------------------------------------------------------
# Valgrind's memcheck replaces malloc in libc and in every object without a
# soname, libhakmem.so included, so plain `LD_PRELOAD=libhakmem.so valgrind
# prog` mixes the two allocators (invalid frees). somalloc=nouserintercepts
# leaves hakmem in place: memcheck then checks hakmem's own memory accesses
# and the program's accesses outside hakmem's mappings, and must count 0
# allocations of its own (proof that hakmem served them). It cannot see
# block-level errors inside hakmem's mappings (hakmem has no client requests).
#
# Memcheck runs one thread at a time (~60 s for api_conformance), so it runs
# in the background beside the compile-heavy debug-checks and hardened builds
# below, on the core they leave idle, and reports when it is waited for.
valgrind_part() {
  for t in api_conformance override_check; do
    gcc -O1 -g -pthread -o "$tmp/bin/$t" "hakmem/tests/c/$t.c" -ldl || fail "compiling $t.c"
    t0=$SECONDS
    rc=0
    LD_PRELOAD=$release_lib timeout 300 valgrind --soname-synonyms=somalloc=nouserintercepts \
      --error-exitcode=99 "$tmp/bin/$t" >"$tmp/vg.$t.out" 2>"$tmp/vg.$t.err" || rc=$?
    if [ "$rc" -ne 0 ] || ! grep -q 'ERROR SUMMARY: 0 errors' "$tmp/vg.$t.err"; then
      grep -v '^==[0-9]*== *$' "$tmp/vg.$t.err" | head -40 >&2
      fail "valgrind $t: status $rc"
    fi
    grep -q 'total heap usage: 0 allocs' "$tmp/vg.$t.err" ||
      fail "valgrind $t: memcheck's allocator served blocks, so hakmem was not tested"
    ok "valgrind memcheck $t" "$(head -1 "$tmp/vg.$t.out" | cut -d: -f2-); 0 errors [$((SECONDS - t0))s]"
  done
}
if ! command -v valgrind >/dev/null; then
  echo "SKIP valgrind: not installed (scripts/deps.sh installs it)"
  figures+=("valgrind: skipped (not installed)")
else
  section "valgrind memcheck with hakmem preloaded: started in the background"
  valgrind_part >"$tmp/valgrind.log" 2>&1 &
  vg_pid=$!
fi

# ---------------------------------------------------------------------------
section "fuzzing (bounded)"
FUZZ_SECONDS=${FUZZ_SECONDS:-$(full 60 15)} ./scripts/test-fuzz.sh | tee "$tmp/fuzz.out"
figures+=("fuzz: $(grep -E '^(ok|SKIP)' "$tmp/fuzz.out" | tail -1)")

# ---------------------------------------------------------------------------
section "hakmem tests with --features debug-checks (release optimisation)"
# Without LTO and with parallel codegen: the checks are what matters here, and
# this keeps the extra build under a minute.
t0=$SECONDS
# Debug assertions and overflow checks for hakmem only (its dependencies keep
# the release build's settings, so nothing else is rebuilt): what a debug build
# checks, at release speed.
debug_hakmem=(--config 'profile.release.package.hakmem.debug-assertions=true'
              --config 'profile.release.package.hakmem.overflow-checks=true')
checks() {
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo test --release "${debug_hakmem[@]}" -p hakmem --features debug-checks --lib --tests --no-fail-fast \
    -- --test-threads=2 "$@"
}
# rerun_flaky LABEL NAME FN: runs the tests of function FN, output in
# $tmp/NAME.out. A test that fails once and passes when run again alone is
# reported as flaky (loudly, and named in $flaky) rather than failing the
# suite; a second failure fails it.
rerun_flaky() {
  local label=$1 name=$2 fn=$3 failed
  flaky=""
  "$fn" >"$tmp/$name.out" 2>&1 && return 0
  failed=$(sed -n 's/^---- \([a-z_0-9:]*\) stdout ----$/\1/p' "$tmp/$name.out" | sort -u)
  grep -v '^\s*at \|^ *[0-9]*: ' "$tmp/$name.out" | grep -A30 -- '^----\|minimal failing' | head -60 >&2
  [ -n "$failed" ] || fail "$label (no test named in the failure)"
  # shellcheck disable=SC2086
  "$fn" --exact $failed >"$tmp/$name.rerun" 2>&1 || {
    grep -v '^\s*at \|^ *[0-9]*: ' "$tmp/$name.rerun" | grep -A30 -- '^----\|minimal failing' | head -60 >&2
    fail "$label: $(echo $failed) failed twice"
  }
  flaky=$(echo $failed)
  echo "FLAKY: $label: failed once, passed on a rerun: $flaky" >&2
}
rerun_flaky "tests with debug-checks" checks checks
passed=$(grep -o '[0-9]* passed' "$tmp/checks.out" | awk '{s += $1} END {print s + 0}')
ok "debug-checks pass" "$passed tests passed${flaky:+ (flaky, passed on rerun: $flaky)} [$((SECONDS - t0))s]"
figures+=("debug-checks: the whole hakmem suite, $passed tests, in a release build with invariant checks on")

# The model and the fault injection once more against the hardened build
# (same build settings, so the dependencies are shared).
t0=$SECONDS
hardened_cases=$(full 300 100)
hardened() {
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 PROPTEST_CASES=$hardened_cases \
    cargo test --release "${debug_hakmem[@]}" -p hakmem --features hardened,debug-checks --test model --test fault_injection \
    -- --test-threads=2 "$@"
}
# Same rule as the debug-checks run above. (`rlimit_as_...` failed about 1
# run in 30 until the large path dropped a strategy's slack when only the
# block fits: 2 of 60 at f5a34b1, 0 of 200 after.)
rerun_flaky "model / fault injection with --features hardened" hardened hardened
ok "model + fault injection (hardened)" "$hardened_cases random action sequences${flaky:+ (flaky, passed on rerun: $flaky)} [$((SECONDS - t0))s]"

# ---------------------------------------------------------------------------
section "probe-cli under stress"
t0=$SECONDS
# (--workspace under scripts/test.sh: the same features as its build, nothing recompiled)
selection=(-p probe-cli)
[ -n "${HAKMEM_TEST_FULL:-}" ] && selection=(--workspace)
# (They are #[ignore]d: the workspace tests leave them to this part. hakmem's
# own stress test is not, and --ignored leaves it out here.)
cargo test --release "${selection[@]}" --test stress -- --ignored --test-threads=1 --nocapture >"$tmp/probe.out" 2>&1 || {
  grep -v '^\s*at \|^ *[0-9]*: ' "$tmp/probe.out" | tail -40 >&2
  fail "probe-cli stress tests"
}
if grep -q '^SKIP' "$tmp/probe.out"; then
  ok "probe-cli stress" "skipped: $(grep -m1 '^SKIP' "$tmp/probe.out")"
else
  # (The tests' figures follow their "test NAME ... " prefix on the same line.)
  grep -oE '(churn under trace|two tracers|attempt [0-9]|BPF maps of).*' "$tmp/probe.out" | sed 's/^/     /' || true
  ok "probe-cli stress" "4 tests [$((SECONDS - t0))s]"
  figures+=("probe-cli after detach: $(grep -oE 'attempt [0-9]: .*' "$tmp/probe.out" | tail -1 | cut -d: -f2-)")
  figures+=("probe-cli: $(grep -oE 'BPF maps of.*' "$tmp/probe.out" | head -1)")
fi

# ---------------------------------------------------------------------------
if [ -n "$vg_pid" ]; then
  section "valgrind memcheck with hakmem preloaded (waiting for the background run)"
  rc=0
  wait "$vg_pid" || rc=$?
  vg_pid=""
  cat "$tmp/valgrind.log"
  [ "$rc" -eq 0 ] || fail "valgrind memcheck (see above)"
  figures+=("valgrind memcheck: api_conformance and override_check with libhakmem.so preloaded, 0 errors")
fi

echo
echo "=== reliability figures (t=$((SECONDS - start))s)"
printf '  %s\n' "${figures[@]}"
echo "--- reliability suite passed in $((SECONDS - start)) s"
