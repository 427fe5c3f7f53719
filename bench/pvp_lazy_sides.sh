#!/usr/bin/env bash
# bench/pvp_lazy_sides.sh: where vxlate-switch's iommu-lazy pvp figure goes.
#
#   bench/pvp_lazy_sides.sh [--rounds N] [--seconds S] [--out FILE]
#
# vxlate-switch (lcore on the second CPU, control threads on both, as
# bench/pvp.sh's default pinning) cross-connects two vxlate-vuload front ends
# (on the first CPU) running udp_stream_64, in interleaved rounds of seven
# configurations: identity (no vIOMMU), lazy (both directions' buffers
# recycled, the default), lazy --recycle rx, lazy --recycle tx, lazy with
# no recycling (--lazy-recycle 1048576: every page learned once), and lazy and
# lazy --recycle rx again with the switch's ports completing receive buffers
# out of order (`,rx-out-of-order`: *_ooo). One line per run, tab-separated:
# round, config, frames/s received, MISSes answered, UPDATE and INVALIDATE
# ack p50/p99 (us), the MISSes the switch sent for the sending guest's
# transmit ring (port A) and the receiving guest's receive ring (port B), the
# frames that waited for a receive buffer's MISS, and the receive buffers set
# aside for one (out of order). Then the medians per config.
# Needs scripts/build.sh release. Takes rounds x 7 x (S + ~2) seconds.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REL=$ROOT/build/release/apps
rounds=3 secs=3 out=
while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) secs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--seconds S] [--out FILE]" >&2; exit 2 ;;
  esac
done
for b in vxlate-switch vxlate-vuload; do
  [ -x "$REL/$b" ] || { echo "$0: $REL/$b missing: run scripts/build.sh release" >&2; exit 1; }
done
mapfile -t CPUS < <(taskset -pc $$ | sed 's/.*: //' | tr ',' '\n' | while IFS=- read -r a b; do seq "$a" "${b:-$a}"; done)
((${#CPUS[@]} >= 2)) || { echo "$0: needs two CPUs" >&2; exit 1; }
FE_CPU=${CPUS[0]} BE_CPU=${CPUS[1]}
TMP=$(mktemp -d)
SW=
cleanup() { [ -n "$SW" ] && kill "$SW" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

declare -A ARGS=(
  [identity]="--mode identity"
  [lazy]="--mode lazy"
  [lazy_rx]="--mode lazy --recycle rx"
  [lazy_tx]="--mode lazy --recycle tx"
  [lazy_off]="--mode lazy --lazy-recycle 1048576"
  [lazy_ooo]="--mode lazy"
  [lazy_rx_ooo]="--mode lazy --recycle rx"
)
declare -A PORTOPT=([lazy_ooo]=",rx-out-of-order" [lazy_rx_ooo]=",rx-out-of-order")
CONFIGS=(identity lazy lazy_ooo lazy_rx lazy_rx_ooo lazy_tx lazy_off)
results=$TMP/results.tsv
printf 'round\tconfig\trx_pps\tmisses\tupdate_ack_p50_us\tupdate_ack_p99_us\tinvalidate_ack_p50_us\tinvalidate_ack_p99_us\tmisses_a\tmisses_b\theld_b\tparked_b\n' > "$results"

run() {  # run ROUND CONFIG
  rm -f "$TMP/a.sock" "$TMP/b.sock"
  taskset -c "$BE_CPU,$FE_CPU" "$REL/vxlate-switch" --no-huge --no-pci -m 256 --lcores "0@$BE_CPU" \
    --file-prefix "sides$$" --log-level=lib.eal:notice \
    -- --vhost-user "$TMP/a.sock${PORTOPT[$2]:-}" --vhost-user "$TMP/b.sock${PORTOPT[$2]:-}" --json > "$TMP/sw.log" 2>&1 &
  SW=$!
  for _ in $(seq 300); do [ -S "$TMP/a.sock" ] && [ -S "$TMP/b.sock" ] && break; sleep 0.1; done
  # shellcheck disable=SC2086  # ARGS values are word lists
  taskset -c "$FE_CPU" "$REL/vxlate-vuload" --socket "$TMP/a.sock" --socket "$TMP/b.sock" \
    --workload udp_stream_64 --seconds "$secs" --json ${ARGS[$2]} > "$TMP/fe.log" 2>&1 ||
    { echo "$0: vxlate-vuload failed ($2):" >&2; tail -5 "$TMP/fe.log" >&2; exit 1; }
  kill -TERM "$SW"
  wait "$SW" || { echo "$0: vxlate-switch exited with $?" >&2; tail -5 "$TMP/sw.log" >&2; exit 1; }
  SW=
  python3 - "$1" "$2" "$TMP/fe.log" "$TMP/sw.log" >> "$results" <<'EOF'
import json, sys
def last_json(path):
    return json.loads([l for l in open(path) if l.startswith('{')][-1])
fe, sw = last_json(sys.argv[3]), last_json(sys.argv[4])
a, b = sw['ports']
print('\t'.join(map(str, [sys.argv[1], sys.argv[2], round(fe['rx_pps']), fe['misses'],
                          fe['update_ack_p50_us'], fe['update_ack_p99_us'],
                          fe['invalidate_ack_p50_us'], fe['invalidate_ack_p99_us'],
                          a['misses_sent'], b['misses_sent'], b['frames_held_for_miss'],
                          b['rx_buffers_parked']])))
EOF
}

for ((r = 1; r <= rounds; r++)); do
  for c in "${CONFIGS[@]}"; do run "$r" "$c"; tail -1 "$results"; done
done
[ -n "$out" ] && cp "$results" "$out"
python3 - "$results" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
ident = statistics.median(float(r['rx_pps']) for r in rows if r['config'] == 'identity')
print('config\tmedian rx Mpps [min..max]\tof identity\tmedian MISSes')
for c in dict.fromkeys(r['config'] for r in rows):
    v = [float(r['rx_pps']) for r in rows if r['config'] == c]
    m = statistics.median(float(r['misses']) for r in rows if r['config'] == c)
    print(f"{c}\t{statistics.median(v)/1e6:.3f} [{min(v)/1e6:.3f}..{max(v)/1e6:.3f}]\t{statistics.median(v)/ident:.3f}\t{m:.0f}")
EOF
