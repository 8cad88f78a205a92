#!/usr/bin/env bash
# What a build feature costs: libhakmem.so built with FEATURE against the default
# libhakmem.so, both through LD_PRELOAD on hakmem-bench's system-allocator child,
# side by side in one hakmem-bench run (interleaved runs, medians).
#
#   scripts/compare-builds.sh no-probes [hakmem-bench compare options]
#       the probe points' cost with nobody tracing (the variant has none)
#   scripts/compare-builds.sh hardened  [hakmem-bench compare options]
#       the hardened mode's overhead (encoded free lists, double-free tags, guard pages)
#
# Default options: --scenario small-churn,vm --runs 9. The variant is built in
# target/variants/FEATURE so target/release never holds it; both libraries are
# copied to target/variants/ under names that say which is which, and those
# names are the table's row labels. e.g.
#   scripts/compare-builds.sh hardened --scenario all --markdown benches/results/hardened.md
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: scripts/compare-builds.sh FEATURE [hakmem-bench compare options]  (FEATURE: no-probes, hardened, debug-checks)" >&2
  exit 2
}
[ $# -ge 1 ] || usage
feature=$1
shift
case $feature in
  no-probes | hardened | debug-checks) ;;
  *) echo "compare-builds.sh: unknown feature '$feature'" >&2; usage ;;
esac

target=${CARGO_TARGET_DIR:-target}
variants=$target/variants
mkdir -p "$variants"

echo "building the default libhakmem.so and hakmem-bench" >&2
cargo build --release -q -p hakmem-preload -p hakmem-bench
echo "building libhakmem.so with hakmem feature $feature (in $variants/$feature)" >&2
CARGO_TARGET_DIR=$variants/$feature cargo build --release -q -p hakmem-preload --features "hakmem-core/$feature"

default_lib=$(realpath "$variants")/libhakmem-default.so  # same stack layout: hakmem-bench pads argv + environment
variant_lib=$(realpath "$variants")/libhakmem-$feature.so
cp "$target/release/libhakmem.so" "$default_lib"
cp "$variants/$feature/release/libhakmem.so" "$variant_lib"

args=("$@")
has() {
  local a
  for a in "${args[@]}"; do [ "$a" = "$1" ] && return 0; done
  return 1
}
has --scenario || args+=(--scenario small-churn,vm)
has --runs || args+=(--runs 9)

exec "$target/release/hakmem-bench" compare \
  --allocators "preload:$default_lib,preload:$variant_lib,mimalloc" "${args[@]}"
