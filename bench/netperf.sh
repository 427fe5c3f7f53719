#!/usr/bin/env bash
# bench/netperf.sh [ROUNDS] [vxlate-netperf args...]: the BM_Netperf
# workloads with a spread and paired mode ratios. Runs vxlate-netperf
# (BUILD_DIR, default build/release; build it first, e.g. scripts/build.sh
# release) over every workload and mode, ROUNDS times (default 7),
# interleaved: identity, lazy, strict, identity, ... and a last identity, per
# workload, so that each lazy and strict run sits between two identity runs. Every run is what one BM_Netperf/<workload>/<mode>
# iteration runs (bench_netperf.cpp): the default configuration, lcores
# pinned one per CPU, setup outside the clock, 0.2 s warm-up, then until the
# clean windows (both lcores had their CPUs) add up to 0.5 s, at most 5 s.
# Later arguments override these (e.g. --workload tcp_rr, --clean 2).
#
# Prints each run, then, per lcore placement (the runs grouped by the
# cache-line round trip between the two lcores, probed before and after each
# run: the host moves the vCPUs, and a frame's cost moves with it), per
# workload and mode, the median over the rounds and the spread ((max - min) /
# median) of frames/s (wall clock: what the loaded machine gave), clean-window
# frames/s, and the device's and guest's TSC cycles per frame in clean
# windows; for lazy and strict, "x": the speed against the two identity runs
# around each run (frames/s mode / identity, cycles identity / mode), taken
# only where those two agree within 3% in the same placement, i.e. where the
# machine stayed the same across the three: median, spread and the number of
# runs it comes from. Runs that did not get their CPUs, or that the host moved
# while they ran, are left out and counted. The load average before and after heads the output: read the
# figures against it. The output is kept in OUT (default build/netperf/).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-7}
[ $# -gt 0 ] && shift
bin=${BUILD_DIR:-build/release}/apps/vxlate-netperf
[ -x "$bin" ] || { echo "netperf.sh: no $bin (build it first, or set BUILD_DIR)" >&2; exit 1; }
out=${OUT:-build/netperf}
mkdir -p "$out"
log=$out/netperf_$(date +%Y%m%d_%H%M%S).txt
{
  echo "# $(date -u +%FT%TZ) $bin, $rounds rounds; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$bin" --workload all --mode all --pin --warmup 0.2 --clean 0.5 --seconds 5 --repeat "$rounds" "$@" 2>/dev/null
  echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$log"
