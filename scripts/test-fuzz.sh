#!/usr/bin/env bash
# A bounded libFuzzer run of fuzz/fuzz_targets/actions.rs: sequences of hakmem
# actions (alloc / free / realloc / aligned / calloc / cross-thread hand-off /
# exiting threads / injected map failures; the Action enum of
# hakmem/tests/actions/mod.rs) with every live block's alignment, usable size,
# overlap and contents checked, hakmem built with debug-checks and the fuzzer
# with AddressSanitizer.
#
#   FUZZ_SECONDS=60 (default)  how long to fuzz
#   FUZZ_JOBS=1 (default)      parallel fuzzing processes (each gets FUZZ_SECONDS)
#   FUZZ_FEATURES=hardened     fuzz hakmem's hardened build instead
#
# Longer runs (the corpus in fuzz/corpus/actions/ grows and is reused):
#   FUZZ_SECONDS=3600 scripts/test-fuzz.sh
#   cd fuzz && cargo +nightly fuzz run -O actions -- -max_len=4096 -rss_limit_mb=3072
# A crash leaves its input in fuzz/artifacts/actions/; replay and print it with
#   cd fuzz && cargo +nightly fuzz run -O actions artifacts/actions/<file>
#   cd fuzz && cargo +nightly fuzz fmt -O actions artifacts/actions/<file>
#
# cargo-fuzz needs a nightly toolchain (-Zsanitizer); without one, or without
# cargo-fuzz, this says why and skips (the proptest model test in
# hakmem/tests/model.rs runs the same actions on stable in `cargo test`).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-1}
features=()
[ -n "${FUZZ_FEATURES:-}" ] && features=(--features "$FUZZ_FEATURES")

skip() {
  echo "SKIP fuzz: $*"
  exit 0
}
rustup run nightly rustc --version >/dev/null 2>&1 || skip "no nightly toolchain (rustup toolchain install nightly)"
cargo +nightly fuzz --version >/dev/null 2>&1 || skip "cargo-fuzz is not installed (cargo install cargo-fuzz)"

# Options from the caller's environment would change what is fuzzed.
for v in $(env | grep -o '^HAKMEM_[A-Za-z0-9_]*' || true); do unset "$v"; done

cd fuzz
echo "--- building the fuzz target (nightly, ASan, hakmem with debug-checks)"
cargo +nightly fuzz build -O "${features[@]}" actions
mkdir -p corpus/actions
log=$(mktemp "${TMPDIR:-/tmp}/hakmem-fuzz.XXXXXX")
trap 'rm -f "$log"' EXIT
echo "--- fuzzing for ${seconds} s (${jobs} job(s))"
rc=0
args=(-max_total_time="$seconds" -max_len=4096 -rss_limit_mb=3072 -timeout=30 -print_final_stats=1)
if [ "$jobs" -gt 1 ]; then
  args+=(-jobs="$jobs" -workers="$jobs")
fi
rm -f fuzz-*.log
cargo +nightly fuzz run -O "${features[@]}" actions -- "${args[@]}" >"$log" 2>&1 || rc=$?
# With -jobs each worker logs to fuzz-N.log in the working directory.
if ls fuzz-*.log >/dev/null 2>&1; then
  cat fuzz-*.log >>"$log"
  rm -f fuzz-*.log
fi
if [ "$rc" -ne 0 ]; then
  grep -v '^#\|^"' "$log" | tail -60 >&2
  echo "FAIL: the fuzzer found a failing input (exit $rc); see fuzz/artifacts/actions/ and the replay commands at the top of $0" >&2
  exit 1
fi
runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{s += $2} END {print s + 0}')
corpus=$(find corpus/actions -type f | wc -l)
echo "ok   fuzz actions${FUZZ_FEATURES:+ ($FUZZ_FEATURES)}: $runs executions in ${seconds} s x $jobs job(s), no failure; corpus $corpus inputs"
