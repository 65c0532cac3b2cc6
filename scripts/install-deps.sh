#!/usr/bin/env bash
# Installs what building and testing Sluice needs on a fresh Debian 12 machine and is not
# already there. Safe to run again: it installs only what is missing, and when nothing is, it
# only asks dpkg (well under a second). scripts/test.sh runs it before the tests, and
# scripts/start-cluster.sh runs it with --build-only before building, so neither needs it run
# by hand.
#
# Usage: install-deps.sh [--build-only]
#   --build-only  only what building the binaries needs (RocksDB, libclang), not the tools of
#                 the failure-injection suite and the disk-failure tests
set -euo pipefail

build_only=false
case "${1:-}" in
  "") ;;
  --build-only) build_only=true ;;
  *) echo "usage: $0 [--build-only]" >&2; exit 2 ;;
esac

# Debian packages the build needs beyond the Rust toolchain and a C compiler:
# RocksDB (linked, not compiled: docs/adr/0003) and libclang for its bindings generator.
# The tests and the failure-injection suite (jepsen/README.md) also need iproute2 (network
# namespaces), nftables (partitions), faketime (the clock fault's libfaketime) and fiu-utils
# (libfiu: the fsync-EIO fault family and the disk-failure system tests), and util-linux
# (mount for the full-disk tests' tmpfs, prlimit for the capacity system test; present on any
# Debian, listed so that a trimmed image says what is missing).
apt_packages=(librocksdb-dev libclang-dev)
$build_only || apt_packages+=(iproute2 nftables faketime fiu-utils util-linux)

missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: installing ${missing[*]} needs root or sudo" >&2; exit 1; }
    sudo_cmd="sudo"
  fi
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi

tools=(cargo cc)
$build_only || tools+=(rustfmt cargo-clippy)
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || { echo "missing $tool: install the Rust toolchain (rustup) and gcc" >&2; exit 1; }
done
echo "build dependencies present"
