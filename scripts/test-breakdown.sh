#!/usr/bin/env bash
# probe-cli breakdown's tests (probe-cli/tests/breakdown.rs): every row, both
# estimates and parsable JSON on a tiny scenario; then a hakmem-bench built with
# `--features hakmem/test-delay` (ELO selection spins HAKMEM_TEST_DELAY_NS) must show
# that delay in both estimates. The slowed variant is copied to its own directory
# and target/release keeps the normal binary. As root; a minute or two.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir=${CARGO_TARGET_DIR:-target}
delay_dir=${HAKMEM_TEST_DELAY_TARGET_DIR:-$target_dir/test-delay}

# Under scripts/test.sh (HAKMEM_TEST_FULL set) the build is the suite's own
# workspace build, already done: a narrower `-p` selection unifies features
# differently and would compile hakmem and everything above it again.
build() {
  if [ -n "${HAKMEM_TEST_FULL:-}" ]; then
    cargo build --release --workspace --all-targets
  else
    cargo build --release -p probe-cli -p hakmem-bench
  fi
}
build
# The slowed variant is built in the same target directory, so it shares every
# dependency (only hakmem and what is above it compile again, under another
# feature hash), copied out, and the normal binary is put back (both are
# cached: cargo only links the file again). Under scripts/test.sh the whole
# workspace is the selection, with an example so that dev-dependencies count
# as in the suite's --all-targets build: `-p hakmem-bench` alone, or the
# workspace without a target that needs dev-dependencies, unified the
# dependencies' features differently and compiled ten of them again (syn,
# clap, serde, aya...: 53-58 s against 30 s).
if [ -n "${HAKMEM_TEST_FULL:-}" ]; then
  cargo build --release --workspace --bin hakmem-bench --example stress --features hakmem/test-delay
else
  cargo build --release -p hakmem-bench --features hakmem/test-delay
fi
mkdir -p "$delay_dir/release"
cp "$target_dir/release/hakmem-bench" "$delay_dir/release/hakmem-bench"
build
cmp -s "$target_dir/release/hakmem-bench" "$delay_dir/release/hakmem-bench" \
  && { echo "test-breakdown.sh: the normal hakmem-bench was not restored" >&2; exit 1; }

# Called by scripts/test.sh, which ran the other breakdown tests with the
# workspace: only the test that needs the slowed variant.
only=() selection=(-p probe-cli)
[ -n "${HAKMEM_TEST_FULL:-}" ] && only=(a_known_delay_in_elo_selection_shows_in_both_estimates) selection=(--workspace)
HAKMEM_BENCH="$(realpath "$target_dir")/release/hakmem-bench" \
HAKMEM_TEST_DELAY_BENCH="$(realpath "$delay_dir")/release/hakmem-bench" \
  cargo test --release "${selection[@]}" --test breakdown -- --test-threads=1 --nocapture "${only[@]}"
