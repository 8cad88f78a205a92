#!/usr/bin/env bash
# The whole test suite (`.ci/run` calls exactly this). Bounded: well inside CI's 90 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
step() { printf '\n=== %s (t=%ss)\n' "$*" $((SECONDS - start)); }

step "dependencies"
./scripts/deps.sh

step "build (release, every target)"
cargo build --release --workspace --all-targets

# The workspace stays clippy-clean: warnings are errors. Skipped with a message
# where the toolchain has no clippy (it ships in rustup's default profile).
step "clippy (every target, warnings are errors)"
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --release --workspace --all-targets -- -D warnings
  cargo clippy --release -p hakmem --lib -- -D missing_docs -D clippy::undocumented_unsafe_blocks
else
  echo "SKIP: cargo clippy is not installed (rustup component add clippy)"
fi

step "unit and integration tests (release, whole workspace)"
cargo test --release --workspace -- --test-threads=2

# The allocator once more in a debug build: invariant checks, header magic
# checks and the abort on foreign pointers are on (its only dependency is libc,
# so this build is quick).
step "allocator tests (debug: invariant checks on)"
cargo test -p hakmem -- --test-threads=2

for part in scripts/test-preload.sh scripts/test-hardened.sh scripts/test-bench.sh scripts/test-ebpf.sh \
            scripts/test-breakdown.sh scripts/test-reliability.sh; do
  if [ -x "$part" ]; then
    step "$part"
    "$part"
  fi
done

step "all tests passed in $((SECONDS - start)) s"
