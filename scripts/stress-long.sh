#!/usr/bin/env bash
# The long forms of scripts/test-reliability.sh, for a release candidate or a
# night on a spare machine. Every part can be sized or skipped:
#
#   LONG_SECONDS=3600        seconds for each timed part (stress, fuzz)
#   STRESS_THREADS=8         threads of the stress example
#   STRESS_SEED=1            its seed (per-worker operations are reproducible)
#   FUZZ_JOBS=2              parallel libFuzzer processes
#   FUZZ_FEATURES=hardened   fuzz the hardened build
#   MODEL_CASES=20000        proptest sequences of the model test (release)
#   CHURN_THREADS=100000     threads for thread_churn_10k
#   FORKS=10000              forks for fork_churn
#   SIGNAL_SECONDS=60        signal_storm duration
#   SKIP="fuzz valgrind"     parts to leave out (stress fuzz model churn valgrind)
#
# e.g. LONG_SECONDS=600 SKIP=fuzz scripts/stress-long.sh
# The stress example alone: cargo run --release -p hakmem --example stress -- --threads 8 --seconds 3600
# Prints the figures at the end (stress thread-hours, fuzz executions, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
start=$SECONDS
target=${CARGO_TARGET_DIR:-target}
long=${LONG_SECONDS:-3600}
skip=" ${SKIP:-} "
release_lib=$root/$target/release/libhakmem.so
debug_lib=$root/$target/debug/libhakmem.so
for v in $(env | grep -o '^HAKMEM_[A-Za-z0-9_]*' || true); do unset "$v"; done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-long.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
figures=()
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
want() { [[ "$skip" != *" $1 "* ]]; }
section() { printf -- '--- %s (t=%ss)\n' "$*" $((SECONDS - start)); }

section "build"
cargo build --release -p hakmem-preload
cargo build -p hakmem-preload
cargo build --release -p hakmem --example stress
mkdir -p "$tmp/bin"
for src in hakmem/tests/c/*.c; do
  gcc -O1 -g -pthread -o "$tmp/bin/$(basename "$src" .c)" "$src" -ldl || fail "compiling $src"
done

if want stress; then
  section "stress example: ${STRESS_THREADS:-8} threads, $long s"
  "$target/release/examples/stress" --threads "${STRESS_THREADS:-8}" --seconds "$long" \
    --seed "${STRESS_SEED:-1}" | tee "$tmp/stress.out" || fail "stress"
  figures+=("stress:$(tail -1 "$tmp/stress.out" | cut -d: -f3-)")
fi

if want fuzz; then
  section "fuzzing: $long s x ${FUZZ_JOBS:-2} jobs"
  FUZZ_SECONDS=$long FUZZ_JOBS=${FUZZ_JOBS:-2} ./scripts/test-fuzz.sh | tee "$tmp/fuzz.out"
  figures+=("fuzz: $(grep -E '^(ok|SKIP)' "$tmp/fuzz.out" | tail -1)")
fi

if want model; then
  section "model test: ${MODEL_CASES:-20000} sequences (release)"
  PROPTEST_CASES=${MODEL_CASES:-20000} cargo test --release -p hakmem --test model -- --nocapture ||
    fail "model test"
  PROPTEST_CASES=${MODEL_CASES:-20000} cargo test --release -p hakmem --features hardened --test model -- --nocapture ||
    fail "model test (hardened)"
  figures+=("model: ${MODEL_CASES:-20000} random action sequences, default and hardened builds")
fi

if want churn; then
  for build in release debug; do
    lib=$release_lib
    [ "$build" = debug ] && lib=$debug_lib
    section "churn ($build library)"
    for cmd in "thread_churn_10k ${CHURN_THREADS:-100000}" "fork_churn ${FORKS:-10000}" \
      "signal_storm ${SIGNAL_SECONDS:-60}" "rlimit_as"; do
      set -- $cmd
      LD_PRELOAD=$lib "$tmp/bin/$1" "${@:2}" | tee "$tmp/$1.$build.out" || fail "$cmd ($build)"
    done
    figures+=("$build: $(cut -d: -f2- "$tmp/thread_churn_10k.$build.out")")
    figures+=("$build: $(cut -d: -f2- "$tmp/fork_churn.$build.out")")
    figures+=("$build: $(cut -d: -f2- "$tmp/signal_storm.$build.out")")
  done
fi

if want valgrind && command -v valgrind >/dev/null; then
  # See scripts/test-reliability.sh for why somalloc=nouserintercepts.
  for build in release debug; do
    lib=$release_lib
    [ "$build" = debug ] && lib=$debug_lib
    for t in api_conformance override_check cross_thread fork_threads; do
      section "valgrind memcheck: $t ($build)"
      LD_PRELOAD=$lib valgrind --soname-synonyms=somalloc=nouserintercepts --trace-children=yes \
        --error-exitcode=99 "$tmp/bin/$t" >"$tmp/vg.out" 2>"$tmp/vg.err" ||
        { tail -30 "$tmp/vg.err" >&2; fail "valgrind $t ($build)"; }
      grep -c 'ERROR SUMMARY: 0 errors' "$tmp/vg.err" >/dev/null || fail "valgrind $t ($build): errors"
      head -1 "$tmp/vg.out"
    done
  done
  figures+=("valgrind memcheck: api_conformance, override_check, cross_thread, fork_threads x release/debug, 0 errors")
fi

echo
echo "=== long reliability figures ($((SECONDS - start)) s)"
printf '  %s\n' "${figures[@]}"
