#!/usr/bin/env bash
# probe-cli breakdown's tests (probe-cli/tests/breakdown.rs): every row, both
# estimates and parsable JSON on a tiny scenario; then a hakmem-bench built with
# `--features hakmem/test-delay` (ELO selection spins HAKMEM_TEST_DELAY_NS) must show
# that delay in both estimates. The slowed variant is built into its own target
# directory so that target/release never holds it. As root; a few minutes (the
# first build of the variant takes longest).
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir=${CARGO_TARGET_DIR:-target}
delay_dir=${HAKMEM_TEST_DELAY_TARGET_DIR:-$target_dir/test-delay}

cargo build --release -p probe-cli -p hakmem-bench
# Without LTO and with parallel codegen: only the injected delay matters in this
# build, and it shares nothing with target/release anyway.
CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_TARGET_DIR=$delay_dir \
  cargo build --release -p hakmem-bench --features hakmem/test-delay

# Called by scripts/test.sh, which ran the other breakdown tests with the
# workspace: only the test that needs the slowed variant.
only=()
[ -n "${HAKMEM_TEST_FULL:-}" ] && only=(a_known_delay_in_elo_selection_shows_in_both_estimates)
HAKMEM_BENCH="$(realpath "$target_dir")/release/hakmem-bench" \
HAKMEM_TEST_DELAY_BENCH="$(realpath "$delay_dir")/release/hakmem-bench" \
  cargo test --release -p probe-cli --test breakdown -- --test-threads=1 --nocapture "${only[@]}"
