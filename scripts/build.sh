#!/usr/bin/env bash
# build.sh CONFIG: configures and builds one configuration into build/CONFIG.
# CONFIG: release | asan (ASan+UBSan) | tsan.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-release}
case "$config" in
  release) args=(-DCMAKE_BUILD_TYPE=Release) ;;
  asan) args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DVXLATE_SANITIZE=address -DVXLATE_DEBUG_CHECKS=ON
              -DVXLATE_BUILD_BENCH=OFF) ;;
  tsan) args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DVXLATE_SANITIZE=thread -DVXLATE_DEBUG_CHECKS=ON -DVXLATE_BUILD_BENCH=OFF) ;;
  *) echo "build.sh: unknown config '$config' (release | asan | tsan)" >&2; exit 2 ;;
esac
cmake -S . -B "build/$config" -G Ninja "${args[@]}" >/dev/null
cmake --build "build/$config" -j "$(nproc)"
