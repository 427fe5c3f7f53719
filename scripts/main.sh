#!/usr/bin/env bash
# The main job: install what is missing, build (Release), run the page-table,
# IOTLB and engine benchmarks and print their figures. Extra arguments go to
# every binary (e.g. --benchmark_filter=BM_IotlbHit).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh release
build/release/bench/bench_pagetable "$@"
build/release/bench/bench_iotlb "$@"
build/release/bench/bench_engine "$@"
