#!/usr/bin/env bash
# hakmem-bench's own tests (scripts/test.sh calls this): build in release,
# run the integration tests (every scenario x every available allocator at a
# tiny size, JSON/Markdown/SVG, LD_PRELOAD proof, syscall counting, argument
# errors; `programs` on GNU sort), and check the issue's "compare --scenario vm
# well under a minute". About two minutes after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

# Options from the caller's environment would change what is measured
# (HAKMEM_TEST_FULL is the suite's, not an allocator option).
suite=${HAKMEM_TEST_FULL:-}
for v in $(env | grep -o '^HAKMEM_[A-Za-z0-9_]*' || true); do unset "$v"; done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-test-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

echo "--- build (release): hakmem-bench, libhakmem.so (hakmem in programs, hakmem-preload) and libmimalloc3.so"
# Under scripts/test.sh (HAKMEM_TEST_FULL set) the build is the suite's own
# workspace build, already done: a narrower `-p` selection unifies features
# differently and would compile hakmem and everything above it again.
if [ -n "$suite" ]; then
  cargo build --release --workspace --all-targets
else
  cargo build --release -p hakmem-bench -p hakmem-preload -p mimalloc3-preload
fi

# (Skipped when scripts/test.sh, which already ran them with the workspace, calls this.)
if [ -z "$suite" ]; then
  echo "--- integration tests (release)"
  cargo test --release -p hakmem-bench -- --test-threads=2
fi

echo "--- compare --scenario vm at the default size: the table in well under a minute"
t0=$SECONDS
timeout 120 "${CARGO_TARGET_DIR:-target}"/release/hakmem-bench compare --scenario vm --json "$tmp/vm.json" >"$tmp/vm.txt" ||
  fail "compare --scenario vm failed: $(tail -3 "$tmp/vm.txt")"
elapsed=$((SECONDS - t0))
cat "$tmp/vm.txt"
[ "$elapsed" -lt 60 ] || fail "compare --scenario vm took ${elapsed}s (limit 60s)"
rows=$(/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(1 for r in d["rows"] if r["runs"] == 5))' "$tmp/vm.json")
[ "$rows" -ge 7 ] || fail "expected at least 7 allocators with 5 runs each on vm, got $rows"
echo "ok   compare --scenario vm: ${elapsed}s, $rows allocators x 5 runs"

# The linked-in jemalloc (feature `linked-jemalloc`): only in the long form,
# since jemalloc's configure+make takes minutes of both cores here.
if [ "$suite" = 1 ]; then
  echo "--- hakmem-bench with --features linked-jemalloc (the dispatching allocator and jemalloc's statistics)"
  cargo test --release -p hakmem-bench --features linked-jemalloc --test cli -- --test-threads=2 \
    the_dispatching_global_allocator_uses_the_requested_backend list_names_every_scenario_and_the_baseline_allocators
fi

echo "--- hakmem-bench tests passed in $((SECONDS - start)) s"
