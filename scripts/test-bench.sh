#!/usr/bin/env bash
# hakmem-bench's own tests (scripts/test.sh calls this): build in release,
# run the integration tests (every scenario x every available allocator at a
# tiny size, JSON/Markdown/SVG, LD_PRELOAD proof, syscall counting, argument
# errors), check the issue's "compare --scenario vm well under a minute", and
# smoke-test scripts/compare-preload.sh. About two minutes after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

# Options from the caller's environment would change what is measured.
for v in $(env | grep -o '^HAKMEM_[A-Za-z0-9_]*' || true); do unset "$v"; done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-test-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

echo "--- build (release): hakmem-bench, and libhakmem.so for the hakmem-preload allocator"
cargo build --release -p hakmem-bench -p hakmem-preload

echo "--- integration tests (release)"
cargo test --release -p hakmem-bench -- --test-threads=2

echo "--- compare --scenario vm at the default size: the table in well under a minute"
t0=$SECONDS
timeout 120 target/release/hakmem-bench compare --scenario vm --json "$tmp/vm.json" >"$tmp/vm.txt" ||
  fail "compare --scenario vm failed: $(tail -3 "$tmp/vm.txt")"
elapsed=$((SECONDS - t0))
cat "$tmp/vm.txt"
[ "$elapsed" -lt 60 ] || fail "compare --scenario vm took ${elapsed}s (limit 60s)"
rows=$(/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(1 for r in d["rows"] if r["runs"] == 5))' "$tmp/vm.json")
[ "$rows" -ge 7 ] || fail "expected at least 7 allocators with 5 runs each on vm, got $rows"
echo "ok   compare --scenario vm: ${elapsed}s, $rows allocators x 5 runs"

echo "--- scripts/compare-preload.sh --quick"
scripts/compare-preload.sh --quick --out "$tmp/preload.md" >/dev/null 2>"$tmp/preload.err" ||
  fail "compare-preload.sh: $(tail -3 "$tmp/preload.err")"
for program in python3 sort; do
  grep -q "^| $program | none (glibc) | [0-9.]* | baseline |" "$tmp/preload.md" ||
    fail "compare-preload.sh: no glibc row for $program"
  grep -q "^| $program | hakmem | [0-9.]* |" "$tmp/preload.md" ||
    fail "compare-preload.sh: no hakmem row for $program"
done
echo "ok   compare-preload.sh: $(grep -c '^| [a-z0-9]* | ' "$tmp/preload.md") rows"
scripts/compare-preload.sh --repeat 0 2>/dev/null && fail "compare-preload.sh accepted --repeat 0"

echo "--- hakmem-bench tests passed in $((SECONDS - start)) s"
