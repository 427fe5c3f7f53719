#!/usr/bin/env bash
# The main job: install what is missing, build (Release), and run the default
# netperf-like load with the vIOMMU on: vxlate-netperf's tcp_stream in lazy
# mode, guest driver model and device side on DPDK lcores. Extra arguments go
# to vxlate-netperf (e.g. --workload all --mode all --seconds 5 --json).
# The micro-benchmarks: scripts/bench.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh release
build/release/apps/vxlate-netperf "$@"
