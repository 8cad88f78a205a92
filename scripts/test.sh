#!/usr/bin/env bash
# The test suite (`.ci/run` calls exactly this): every correctness test. On the
# 2-core machine: 430 s from a clean clone (the first release, debug, hardened
# and debug-checks builds included; 2026-12-01), against a goal of 10 minutes.
#
#   ./scripts/test.sh          the default suite
#   ./scripts/test.sh --full   the same, with the long reliability forms
#                              (10,000-thread churn, 1,000 forks, 1,000 model
#                              sequences, 20 s stress, 60 s fuzzing)
#
# Hours-long forms: scripts/stress-long.sh. Each part prints its own time.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  --full) export HAKMEM_TEST_FULL=1 ;;
  "") export HAKMEM_TEST_FULL=0 ;;
  *) echo "usage: scripts/test.sh [--full]" >&2; exit 2 ;;
esac
start=$SECONDS
step() { printf '\n=== %s (t=%ss)\n' "$*" $((SECONDS - start)); }

step "dependencies"
./scripts/deps.sh

# The suite checks behaviour, not speed: release optimisation and panic=abort
# stay; thin LTO and one codegen unit per crate (the last few percent of a
# benchmark) go, so every crate and each of the ~30 test binaries compiles on
# both cores and links without an LTO pass. The debug-checks and test-delay
# builds use the same settings and so share the dependencies built here.
# Benchmarks (hakmem-bench compare/programs) are run from a normal release build.
#
# Panics unwind here: the test harness needs unwinding, so with the release
# profile's panic=abort cargo compiled every dependency twice, once for the
# binaries and libraries (abort) and once for the test binaries (unwind): 267
# compile units against 184. The allocator never panics on a path the suite
# checks (a panic escaping its `extern "C"` functions aborts either way), so
# the strategy changes nothing the suite observes.
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
export CARGO_PROFILE_RELEASE_PANIC=unwind

# One compile serves the build, the lints and the tests: clippy's driver
# compiles the workspace's own crates (its lints on, warnings are errors) while
# cargo builds their dependencies once, in release. A separate `cargo clippy`
# would type-check every dependency a second time (check builds share nothing
# with release builds). Exported, so every later cargo call in the suite sees
# the same wrapper and reuses these artifacts.
driver=$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver || true)
if [ -n "$driver" ]; then
  export RUSTC_WORKSPACE_WRAPPER=$driver
  export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
  step "build and clippy (release, every target; warnings are errors)"
else
  echo "SKIP clippy: clippy-driver is not installed (rustup component add clippy)"
  step "build (release, every target)"
fi
cargo build --release --workspace --all-targets
if [ -n "$driver" ]; then
  step "clippy: every item of the hakmem library documented, every unsafe block with its SAFETY reason"
  (unset RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS
   cargo clippy --release -p hakmem --lib -- -D missing_docs -D clippy::undocumented_unsafe_blocks)
fi

step "unit and integration tests (release, whole workspace)"
# The model test runs here at the reliability suite's default size (256
# sequences; its own default is 128), and the reliability part does not run it
# a second time (it does at --full, with 1,000).
export HAKMEM_SUITE_MODEL_CASES=256
PROPTEST_CASES=$HAKMEM_SUITE_MODEL_CASES cargo test --release --workspace -- --test-threads=2

# The debug library (debug assertions, overflow checks and the invariant
# checks on) that the LD_PRELOAD tests run programs against. The hakmem suite
# itself runs once more with those checks, in scripts/test-reliability.sh
# (`--features debug-checks` with debug assertions and overflow checks, release
# optimisation): a second pass of the unit tests in a debug build would compile
# the test dependencies a third time for no check that pass lacks.
step "debug build of libhakmem.so (invariant checks on)"
cargo build -p hakmem-preload

for part in scripts/test-preload.sh scripts/test-hardened.sh scripts/test-bench.sh scripts/test-ebpf.sh \
            scripts/test-breakdown.sh scripts/test-reliability.sh; do
  if [ -x "$part" ]; then
    step "$part"
    "$part"
  fi
done

step "all tests passed in $((SECONDS - start)) s"
