#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks for building, testing and comparing
# hakmem: clang + BPF headers (hakmem-ebpf's build.rs), the peer allocators as
# Debian libraries (LD_PRELOAD comparisons), and the real programs the tests
# and production-like runs use. Needs root for apt; without it, says what is missing.
set -euo pipefail

packages=(clang llvm libbpf-dev linux-libc-dev libmimalloc2.0 libjemalloc2 libtcmalloc-minimal4
          gcc perl python3 coreutils strace redis-server redis-tools valgrind linux-perf xz-utils zstd pbzip2)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "scripts/deps.sh: missing Debian packages (${missing[*]}); run as root or: sudo apt-get install ${missing[*]}" >&2
  exit 0
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
