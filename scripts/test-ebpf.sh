#!/usr/bin/env bash
# eBPF integration tests: probe-cli attaches to real workloads with known counts and
# its reports must show those counts (called by scripts/test.sh, which installs
# clang and libbpf-dev; this script installs nothing). As root they run; without
# the privileges each test prints why it skips. A few minutes at most.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v "${CLANG:-clang}" >/dev/null; then
  echo "scripts/test-ebpf.sh: clang not found (hakmem-ebpf's build.rs needs it): run scripts/deps.sh" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "scripts/test-ebpf.sh: not root: the tests that load BPF programs will print SKIP" >&2
fi

target_dir=${CARGO_TARGET_DIR:-target}

# The library `run` preloads, and the tools in release as users run them.
# Under scripts/test.sh (HAKMEM_TEST_FULL set) the build is the suite's own
# workspace build, already done: a narrower `-p` selection unifies features
# differently and would compile hakmem and everything above it again.
if [ -n "${HAKMEM_TEST_FULL:-}" ]; then
  cargo build --release --workspace --all-targets
else
  cargo build --release -p hakmem-preload -p probe-cli
fi

# The shared layouts and the embedded object, then the integration tests
# (skipped when scripts/test.sh, which already ran them with the workspace, calls this).
if [ -z "${HAKMEM_TEST_FULL:-}" ]; then
  cargo test --release -p hakmem-ebpf
  cargo test --release -p probe-cli -- --test-threads=2
fi

if [ "$(id -u)" = 0 ]; then
  # What a user sees: the probe cost on this machine and one traced run.
  workload=$(mktemp -d)/alloc_counts
  trap 'rm -rf "$(dirname "$workload")"' EXIT
  cc -O2 -o "$workload" probe-cli/tests/workloads/alloc_counts.c
  "$target_dir"/release/probe-cli calibrate --iterations 50000 --rounds 3
  HAKMEM_BIGCACHE=off "$target_dir"/release/probe-cli run -- "$workload" 32 20000
fi
