#!/usr/bin/env bash
# The main job: install what is missing, build (Release), run the page-table
# benchmarks and print their figures. Extra arguments go to the benchmark binary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh release
exec build/release/bench/bench_pagetable "$@"
