#!/usr/bin/env bash
# Installs what building and testing Sluice needs on a fresh Debian 12 machine and is not
# already there. Safe to run again: it installs only what is missing.
set -euo pipefail

# Debian packages the build needs beyond the Rust toolchain and a C compiler:
# RocksDB (linked, not compiled: docs/adr/0003) and libclang for its bindings generator.
# The failure-injection suite (jepsen/README.md) also needs iproute2 (network namespaces),
# nftables (partitions), faketime (the clock fault's libfaketime) and fiu-utils (libfiu, for
# the fsync-eio fault).
apt_packages=(librocksdb-dev libclang-dev iproute2 nftables faketime fiu-utils)

missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi

for tool in cargo rustfmt cargo-clippy cc; do
  command -v "$tool" >/dev/null || { echo "missing $tool: install the Rust toolchain (rustup) and gcc" >&2; exit 1; }
done
echo "build dependencies present"
