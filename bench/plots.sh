#!/usr/bin/env bash
# bench/plots.sh [OPTIONS]: draws the benchmark curves as PNG with gnuplot, and
# writes next to each PNG the .dat table it plotted (medians, as numbers):
#   iotlb_hit_vs_entries.png  M translations/s (log) against resident entries
#       (log), one curve per implementation, from bench_iotlb's BM_IotlbHit/
#       <impl>/<entries> (items_per_second): vxlate and the baselines.
#   unmap_cost_vs_batch.png   ns per UNMAP (log) against batch size (log 2),
#       from BM_UnmapSync/<batch> (the ns_per_unmap counter: unmap + invalidate
#       with one sync per batch, wall time, a reader translating meanwhile).
#   pvp_mpps_vs_size.png      Mpps (linear from 0, log when the curves span
#       more than 10x) against frame size (log 2) for vxlate-switch and
#       testpmd's net_vhost, without vIOMMU (config plain-txonly) and with it
#       (config iommu, mode lazy), from bench/pvp.sh's results.tsv.
# Values are medians over repetitions (bench_iotlb runs 3; pvp.sh's rep column).
# bench_iotlb is run here (--benchmark_filter='BM_IotlbHit/|BM_UnmapSync/'
# --benchmark_format=json --benchmark_min_time=0.2 --benchmark_repetitions=3,
# its JSON kept as OUT/bench_iotlb.json) unless --iotlb-json gives its output.
# Titles name this machine (nproc, /proc/cpuinfo model name) and the date the
# data was taken: the JSON's, or results.tsv's modification time.
# Options:
#   --out DIR          where PNGs and .dat go (default bench/plots)
#   --bench-dir DIR    where bench_iotlb is (default build/release/bench)
#   --iotlb-json FILE  plot this bench_iotlb JSON instead of running it
#   --pvp DIR          bench/pvp.sh's output directory (default build/pvp);
#                      if it has no results.tsv the pvp plot is skipped
#   --require-pvp      a missing results.tsv is an error instead
#   --only iotlb|pvp   draw only those plots
#   --no-install       fail if gnuplot is missing instead of installing
#                      gnuplot-nox (apt-get, sudo when not root)
# Needs python3 (bench/plot_data.py turns JSON and TSV into .dat).
set -euo pipefail
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit "${1:-2}"; }

root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/bench/plots
bench_dir=$root/build/release/bench
iotlb_json=
pvp_dir=$root/build/pvp
require_pvp=0
install=1
only=
abspath() { realpath -m -- "$1"; }  # resolved before the cd below
while (($#)); do
  case $1 in
    --out) out=$(abspath "${2:?--out DIR}"); shift ;;
    --bench-dir) bench_dir=$(abspath "${2:?--bench-dir DIR}"); shift ;;
    --iotlb-json) iotlb_json=$(abspath "${2:?--iotlb-json FILE}"); shift ;;
    --pvp) pvp_dir=$(abspath "${2:?--pvp DIR}"); shift ;;
    --require-pvp) require_pvp=1 ;;
    --only) only=${2:?--only iotlb|pvp}; shift
            [[ $only == iotlb || $only == pvp ]] || { echo "plots: --only iotlb|pvp, not '$only'" >&2; exit 2; } ;;
    --no-install) install=0 ;;
    -h|--help) usage 0 ;;
    *) echo "plots: unknown argument '$1'" >&2; usage ;;
  esac
  shift
done
cd "$root"

# gnuplot: installed the way scripts/deps.sh installs packages (idempotent).
if ! command -v gnuplot >/dev/null; then
  if ((!install)); then
    echo "plots: gnuplot is not installed (Debian: apt-get install gnuplot-nox); --no-install given" >&2
    exit 1
  fi
  echo "plots: installing gnuplot-nox" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends gnuplot-nox
fi
command -v python3 >/dev/null || { echo "plots: python3 is needed (scripts/deps.sh installs it)" >&2; exit 1; }
term=png
gnuplot -e 'set terminal pngcairo' 2>/dev/null && term=pngcairo
if [ "$term" = pngcairo ]; then
  termset='set terminal pngcairo size 800,500 font "DejaVu Sans,11" noenhanced linewidth 1.5'
else
  termset='set terminal png size 800,500 noenhanced'
fi
mkdir -p "$out"

model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo | tr -s ' ')
machine="$(nproc) x ${model:-unknown CPU}"

# Columns of a .dat table: fields of its first line (the header).
ncols() { head -n1 "$1" | python3 -c 'import shlex, sys; print(len(shlex.split(sys.stdin.read())))'; }
# gnuplot tics at the x values of a .dat table: (64, 256, 1024).
xtics() { awk 'NR > 1 && !/^#/ { printf "%s%s", (n++ ? ", " : "("), $1 } END { print ")" }' "$1"; }

common="$termset
set key autotitle columnheader
set datafile missing 'NaN'
set grid xtics ytics mytics lc rgb '#d0d0d0'
set border lw 1
set format y '%g'
set linetype 1 lc rgb '#1f62b4' pt 7 ps 1.2 lw 2
set linetype 2 lc rgb '#d62728' pt 5 ps 1.1 lw 2
set linetype 3 lc rgb '#2ca02c' pt 9 ps 1.3 lw 2
set linetype 4 lc rgb '#ff7f0e' pt 11 ps 1.3 lw 2
set linetype 5 lc rgb '#9467bd' pt 13 ps 1.3 lw 2
set linetype 6 lc rgb '#7f7f7f' pt 3 ps 1.2 lw 2
set linetype 7 lc rgb '#8c564b' pt 1 ps 1.2 lw 2
set linetype 8 lc rgb '#17becf' pt 2 ps 1.2 lw 2"

plot_iotlb() {
  local json=$iotlb_json
  if [ -z "$json" ]; then
    local bin=$bench_dir/bench_iotlb
    [ -x "$bin" ] || { echo "plots: $bin not found (scripts/build.sh release, or --bench-dir / --iotlb-json)" >&2; exit 1; }
    json=$out/bench_iotlb.json
    echo "plots: running $bin (about 40 s)" >&2
    "$bin" --benchmark_filter='BM_IotlbHit/|BM_UnmapSync/' --benchmark_format=json \
      --benchmark_min_time=0.2 --benchmark_repetitions=3 >"$json.tmp"
    mv "$json.tmp" "$json"
  fi
  [ -r "$json" ] || { echo "plots: $json not readable" >&2; exit 1; }
  python3 bench/plot_data.py iotlb "$json" "$out"
  local date
  date=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get("context", {}).get("date", "")[:10])' "$json")
  local sub="bench_iotlb, $machine, ${date:-$(date +%F)}"

  local dat=$out/iotlb_hit_vs_entries.dat n
  n=$(ncols "$dat")
  gnuplot <<GP
$common
set output '$out/iotlb_hit_vs_entries.png'
set title "IOTLB hit path: translations per second against resident entries\n$sub"
set xlabel 'resident 4 KiB translations (entries)'
set ylabel 'M translations/s (one reader, bursts of 32)'
set logscale xy
set mytics 10
set key outside right center Left reverse
stats '$dat' using 1 nooutput
set xrange [STATS_min / 1.5 : STATS_max * 1.5]
set xtics $(xtics "$dat")
plot for [i=2:$n] '$dat' using 1:i with linespoints
GP
  echo "plots: wrote $out/iotlb_hit_vs_entries.png" >&2

  dat=$out/unmap_cost_vs_batch.dat
  gnuplot <<GP
$common
set output '$out/unmap_cost_vs_batch.png'
set title "UNMAP + invalidate, one sync (grace period) per batch, reader running\n$sub"
set xlabel 'UNMAPs per sync (batch)'
set ylabel 'ns per UNMAP (wall time)'
set logscale x 2
set logscale y
set mytics 10
set key top right
stats '$dat' using 1 nooutput
set xrange [STATS_min / 1.6 : STATS_max * 2.2]
stats '$dat' using 3 name 'LO' nooutput
stats '$dat' using 4 name 'HI' nooutput
set yrange [LO_min / 2 : HI_max * 2.5]
set xtics $(xtics "$dat")
plot '$dat' using 1:2:3:4 with yerrorlines title 'median; bars: min to max of the repetitions', \
     '' using 1:2:(sprintf('%.0f ns', \$2)) with labels left offset char 0.7,0.8 notitle
GP
  echo "plots: wrote $out/unmap_cost_vs_batch.png" >&2
}

plot_pvp() {
  local tsv=$pvp_dir/results.tsv
  if [ ! -f "$tsv" ]; then
    if ((require_pvp)); then
      echo "plots: $tsv not found (run bench/pvp.sh, or --pvp DIR) and --require-pvp given" >&2
      exit 1
    fi
    echo "plots: $tsv not found: pvp_mpps_vs_size.png skipped (run bench/pvp.sh first, or --pvp DIR)" >&2
    return 0
  fi
  python3 bench/plot_data.py pvp "$tsv" "$out"
  local dat=$out/pvp_mpps_vs_size.dat
  local sub yaxis
  sub="bench/pvp.sh, $machine, $(date -r "$tsv" +%F)"
  # Linear from 0, unless the curves span more than 10x (vIOMMU far below
  # plain): then log, so the low curves are not flattened onto the axis.
  yaxis=$(awk 'NR > 1 && !/^#/ { for (i = 2; i <= NF; i++) if ($i != "NaN" && $i > 0) {
                 if (!lo || $i < lo) lo = $i; if ($i > hi) hi = $i } }
               END { if (lo && hi / lo > 10) printf "set logscale y\nset yrange [%g:%g]\nset mytics 10\n", lo / 1.5, hi * 1.5
                     else print "set yrange [0:*]" }' "$dat")
  gnuplot <<GP
$common
set output '$out/pvp_mpps_vs_size.png'
set title "PVP forwarding rate against frame size\n$sub"
set xlabel 'frame size (bytes)'
set ylabel 'Mpps (median of repetitions)'
set logscale x 2
set key below horizontal maxcols 2 Left reverse width 2
stats '$dat' using 1 nooutput
set xrange [STATS_min / 1.3 : STATS_max * 1.3]
$yaxis
set xtics $(xtics "$dat")
plot '$dat' using 1:2 with linespoints lt 1, \
     '' using 1:3 with linespoints lt 2, \
     '' using 1:4 with linespoints lt 1 dt 2 pt 6, \
     '' using 1:5 with linespoints lt 2 dt 2 pt 4
GP
  echo "plots: wrote $out/pvp_mpps_vs_size.png" >&2
}

[ "$only" = pvp ] || plot_iotlb
[ "$only" = iotlb ] || plot_pvp
