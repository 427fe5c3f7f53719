#!/usr/bin/env bash
# bench/ab.sh BASE_REV [ROUNDS] [PATCH]: A/B of the micro-benchmarks, BASE_REV
# against the working tree, interleaved on the same machine in the same run.
# Builds BASE_REV's own benchmarks in build/ab-base (a git worktree; PATCH, if
# given, is applied to it first, e.g. a harness fix both sides need), and this
# tree's in build/release. Each round runs bench_iotlb (the hit path at 2048
# entries and its baselines, UNMAP+sync per batch, the hit rate under churn),
# bench_engine (all) and bench_netperf (all) for BASE, then for HEAD; JSON goes
# to build/ab/. Prints, per benchmark, the median of the rounds and its spread
# ((max - min) / median) on each side and the ratio HEAD / BASE (items/s, or
# ns per UNMAP for BM_UnmapSync). Needs python3 for the summary.
set -euo pipefail
cd "$(dirname "$0")/.."
base_rev=${1:?usage: bench/ab.sh BASE_REV [ROUNDS] [PATCH]}
rounds=${2:-5}
patch=${3:-}
root=$PWD
scripts/build.sh release >/dev/null
rm -rf build/ab-base && git worktree prune
git worktree add -f --detach build/ab-base "$base_rev" >/dev/null
[ -z "$patch" ] || git -C build/ab-base apply "$root/$patch"
cmake -S build/ab-base -B build/ab-base/build -G Ninja -DCMAKE_BUILD_TYPE=Release -DVXLATE_BUILD_TESTS=OFF >/dev/null
cmake --build build/ab-base/build -j "$(nproc)" --target bench_iotlb bench_engine bench_netperf >/dev/null
out=build/ab && rm -rf "$out" && mkdir -p "$out"
iotlb='BM_IotlbHit/(vxlate|tbb_hash_map|array_index)/2048|BM_UnmapSync/(1|32|256)$|BM_HitUnderChurn/vxlate|BM_IotlbMissFill/vxlate/2048'
for r in $(seq "$rounds"); do
  for side in base head; do
    dir=build/release/bench
    [ "$side" = base ] && dir=build/ab-base/build/bench
    "$dir/bench_iotlb" --benchmark_filter="$iotlb" --benchmark_min_time=0.3 --benchmark_format=json >"$out/iotlb_${side}_$r.json" 2>/dev/null
    "$dir/bench_engine" --benchmark_min_time=0.3 --benchmark_format=json >"$out/engine_${side}_$r.json" 2>/dev/null
    "$dir/bench_netperf" --benchmark_format=json >"$out/netperf_${side}_$r.json" 2>/dev/null
    echo "ab: round $r $side done" >&2
  done
done
python3 - "$out" <<'PY'
import collections, glob, json, re, statistics, sys
vals = collections.defaultdict(lambda: collections.defaultdict(list))
for f in sorted(glob.glob(sys.argv[1] + '/*.json')):
    side = re.match(r'.*_(base|head)_\d+\.json', f).group(1)
    for b in json.load(open(f))['benchmarks']:
        # BM_HitUnderChurn: the reader's ratio to its churn-free rate in the same
        # run (from c7d78f1 on; an older base reports its wall rate instead,
        # and that row then compares different figures).
        v = b.get('ns_per_unmap') or b.get('reader_ratio') or b.get('reader_items_per_second') or b.get('items_per_second')
        if v: vals[b['name']][side].append(v)
spread = lambda xs: (max(xs) - min(xs)) / statistics.median(xs) * 100
for name, s in vals.items():
    if s['base'] and s['head']:
        b, h = statistics.median(s['base']), statistics.median(s['head'])
        print(f"{name:36s} base {b:11.4g} ±{spread(s['base']):3.0f}%  head {h:11.4g} ±{spread(s['head']):3.0f}%  head/base {h / b:4.2f}")
PY
