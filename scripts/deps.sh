#!/usr/bin/env bash
# Installs the Debian 12 packages vxlate builds and tests with, if any is missing.
# Idempotent: does nothing (and needs no network) when all are present.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
      libdpdk-dev dpdk dpdk-dev python3 libtbb-dev libxxhash-dev libbenchmark-dev libgtest-dev
      qemu-system-x86 busybox-static cpio iproute2)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
