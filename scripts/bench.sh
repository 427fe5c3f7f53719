#!/usr/bin/env bash
# Install what is missing, build (Release) and run the Google Benchmark suites:
# page table, IOTLB, engine and the netperf workloads. Extra arguments go to
# every binary (e.g. --benchmark_filter=BM_IotlbHit).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh release
build/release/bench/bench_pagetable "$@"
build/release/bench/bench_iotlb "$@"
build/release/bench/bench_engine "$@"
build/release/bench/bench_netperf "$@"
