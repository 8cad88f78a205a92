#!/usr/bin/env bash
# The whole test suite (`.ci/run` calls exactly this). Bounded: well inside CI's 90 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
step() { printf '\n=== %s (t=%ss)\n' "$*" $((SECONDS - start)); }

step "dependencies"
./scripts/deps.sh

step "build (release)"
cargo build --release --workspace --all-targets

step "unit and integration tests (debug: invariant checks on)"
cargo test --workspace -- --test-threads=2

step "integration tests (release)"
cargo test --release -p hakmem -- --test-threads=2

for part in scripts/test-preload.sh scripts/test-hardened.sh scripts/test-bench.sh scripts/test-ebpf.sh \
            scripts/test-breakdown.sh scripts/test-reliability.sh; do
  if [ -x "$part" ]; then
    step "$part"
    "$part"
  fi
done

step "all tests passed in $((SECONDS - start)) s"
