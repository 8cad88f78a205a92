#!/usr/bin/env bash
# First command on a fresh machine: installs what is missing (as root), builds
# in release, prints the allocator comparison for the `vm` scenario, then
# traces a hakmem workload with eBPF and prints its per-component breakdown.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== 1/4 dependencies (clang, BPF headers, peer allocators)"
./scripts/deps.sh

echo "== 2/4 build (release)"
# mimalloc3-preload: libmimalloc3.so, the mimalloc 3 peer (benches/mimalloc3).
cargo build --release -p hakmem-preload -p hakmem-bench -p probe-cli -p mimalloc3-preload

echo "== 3/4 hakmem-bench compare --scenario vm"
target/release/hakmem-bench compare --scenario vm --runs 5

echo "== 4/4 probe-cli run: the vm workload traced live, per component"
if [ "$(id -u)" != 0 ]; then
  echo "(skipped: eBPF tracing needs root, or CAP_BPF + CAP_PERFMON; run: sudo $0)"
  exit 0
fi
# The bench's child mode runs the workload in this very process, so the
# tracer sees hakmem linked into it (the Rust #[global_allocator] path).
HAKMEM_BENCH_CHILD=1 HAKMEM_BENCH_ALLOCATOR=hakmem \
  target/release/probe-cli run -- target/release/hakmem-bench run --scenario vm --allocator hakmem
