#!/usr/bin/env bash
# bench/paired.sh [PAIRS] [vxlate-netperf args...]: lazy mode against identity
# for every workload, measured as paired runs (run_netperf_paired in
# load/include/vxlate/load/netperf.h): both runs set up side by side in one
# process and served in turns of 20 ms by the same two pinned lcores, each
# lazy slice compared with the identity slices around it. PAIRS (default 6)
# pairs per workload, each set up afresh. A pair: 0.1 s warm-up per mode,
# then until each mode's clean windows add up to 1 s (at most 5 s per mode).
# Later arguments override these (e.g. --pair strict, --slice 0.05,
# --workload tcp_rr).
#
# Prints each pair's two runs and its ratios (median and quartiles over its
# triples), then per workload the pairs grouped by the lcore round trip (the
# host's placement of the two vCPUs, which moves the ratio itself): the
# median and range of the pairs' medians. The output is kept in OUT
# (default build/netperf/). BUILD_DIR: the build (default build/release).
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-6}
[ $# -gt 0 ] && shift
bin=${BUILD_DIR:-build/release}/apps/vxlate-netperf
[ -x "$bin" ] || { echo "paired.sh: no $bin (build it first, or set BUILD_DIR)" >&2; exit 1; }
out=${OUT:-build/netperf}
mkdir -p "$out"
log=$out/paired_$(date +%Y%m%d_%H%M%S).txt
{
  echo "# $(date -u +%FT%TZ) $bin, $pairs pairs; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$bin" --workload all --pair lazy --pin --warmup 0.1 --clean 1 --seconds 5 --repeat "$pairs" "$@" 2>/dev/null
  echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$log"
