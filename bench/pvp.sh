#!/usr/bin/env bash
# bench/pvp.sh: vxlate-switch against dpdk-testpmd's net_vhost as the vhost-user
# back end between two front ends, without and with a vIOMMU, in one run.
#
#   bench/pvp.sh [--reps N] [--seconds S] [--smoke] [--switch PATH] [--vuload PATH]
#                [--out DIR]
#
# Every run starts one back end on one CPU and one front end on the other
# (taskset on the process, its EAL lcores mapped onto that same CPU), front
# end ports A and B cross-connected by the back end:
#   vxlate:    vxlate-switch --vhost-user A --vhost-user B (xconnect; it
#              forwards on its main lcore, no worker)
#   net_vhost: dpdk-testpmd --vdev net_vhost0,iface=A --vdev net_vhost1,iface=B
#              --forward-mode=io -a (iommu-support=1 in the iommu runs; vhost
#              logging at notice, as quiet as the switch)
# and the front end, the same for both, measured at the front end:
#   plain-txonly  testpmd, net_virtio_user on A and B, both sending frames of
#                 SIZE bytes as fast as they can: --forward-mode=flowgen, which
#                 is txonly that also receives (txonly never polls its receive
#                 queues, so nothing could come back), --txpkts=SIZE+4 (flowgen
#                 takes 4 bytes off for the FCS). Mpps: the frames both ports
#                 received, by testpmd's own Rx-pps over S seconds between two
#                 `show port stats all` (after a warm-up).
#   plain-io      the same testpmd in io loopback, `start tx_first`: one burst
#                 of 32 64-byte frames per port circulating; Mpps as above.
#   iommu         vxlate-vuload --mode lazy|strict --workload udp_stream_64
#                 (--frame-size SIZE): two QEMU-like front ends behind a vIOMMU,
#                 the back end learning translations by MISS, every unmap an
#                 INVALIDATE (strict: per buffer, waited for). Mpps: frames
#                 received per second (rx_pps); drops: frames sent and never
#                 received (after vuload's drain, which gives up after 3 s:
#                 then frames still in flight count too, and the progress
#                 line says so); ack_p99_us: the 99th percentile of the
#                 INVALIDATE ack latency. Full runs add --mode identity (the
#                 same tool without a vIOMMU) at 64 bytes: lazy / identity is
#                 what the vIOMMU costs through each back end.
# SIZE is the frame as the back end copies it (no FCS): 64, 256, 1024, 1514
# (RFC 2544's 64..1518 with the FCS, but 64 as udp_stream_64 sends it);
# PVP_SIZES overrides. The 64-byte runs are the headline ones; the larger sizes
# (plain-txonly and iommu lazy) give the Mpps-against-size curve.
#
# Each rep runs every configuration once on both back ends in turn, vxlate
# first in odd reps and net_vhost first in even ones (ABBA), so that drift on
# the machine weighs on both alike; each run starts fresh processes.
#
# Pinning (PVP_PIN). lcore (the default): each process's polling lcores run
# on its own CPU; the back end process may also use the other CPU, so its
# control threads (DPDK's rte_ctrl_thread_create threads, vxlate-switch's
# vhost-user control thread, both placed off the lcores' CPUs) share the front
# end's CPU, as on a host with housekeeping cores. process: each process is
# confined to its one CPU, control threads included; there the control thread
# that answers the IOTLB messages waits for the scheduler to preempt a
# busy-polling lcore (measured on the 2-core machine: net_vhost's UPDATE acks
# 15-30 ms at the median, a few frames per second through it with a vIOMMU),
# which judges the scheduler rather than the back ends.
# The front end is confined to its CPU either way.
#
# Options: --reps N (3), --seconds S (5: measured seconds per run), --out DIR
# (build/pvp), --switch PATH and --vuload PATH (build/release/apps/...; built
# with scripts/build.sh release when missing), --smoke (1 rep, 2 s, 64-byte
# only; exits 1 unless every configuration moved frames through both back
# ends, whatever the rate: sanitized builds are 3-10x slower; exits 77 where
# dpdk-testpmd, or a second CPU, is missing). Environment: TESTPMD
# (dpdk-testpmd), PVP_FE_CPU and PVP_BE_CPU (the first two CPUs this process
# may use), PVP_PIN (process | lcore), PVP_WARMUP (1 s; 0.2 in a smoke run),
# PVP_SIZES.
#
# Outputs in DIR (tab-separated, one header line, "-" where a figure does not
# apply, Mpps to 6 significant digits; read by the plotting script):
#   results.tsv  config backend mode size rep mpps drops ack_p99_us
#       one line per run. config: plain-txonly | plain-io | iommu; backend:
#       vxlate | net_vhost; mode: plain | lazy | strict; size: frame bytes;
#       rep: 1..N; drops, ack_p99_us: iommu only.
#   summary.tsv  config backend mode size reps mpps_median mpps_spread
#                drops_median ack_p99_us_median
#       one line per (config, backend, mode, size); spread: (max - min) /
#       median of the reps' Mpps, a fraction.
#   logs/REP-CONFIG-MODE-SIZE-BACKEND.{be,fe}.log  every process's output;
#   params.txt: the run's parameters, binaries and commit.
# On stdout: the table of medians, then last the line
#   pvp: plain R1 (A vs B Mpps); iommu-lazy R2; iommu-strict R3; drops vxlate D1 net_vhost D2; ack-p99 vxlate X us net_vhost Y us
# R: vxlate / net_vhost of the medians (plain: 64-byte plain-txonly, A and B
# its medians; iommu: 64-byte frames received per second); D: the medians of
# the lazy and the strict runs' drops, added; X, Y: the median INVALIDATE ack
# p99 in strict mode. Progress goes to stderr.
#
# Robustness: every process runs under `timeout` and is ended by its pid at
# exit (TERM, then KILL), whatever way the script ends; sockets and FIFOs live
# in a mktemp -d directory, DPDK file prefixes are unique to this script's pid
# and their runtime directories go after each run; every wait is bounded and a
# failure names the run, the step and the log, prints the log's tail and exits 1.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONDONTWRITEBYTECODE=1

usage() {
  echo "usage: bench/pvp.sh [--reps N] [--seconds S] [--smoke] [--switch PATH] [--vuload PATH] [--out DIR]" >&2
  exit 2
}

REPS=3
SECS=5
SMOKE=0
SWITCH=
VULOAD=
OUT=$ROOT/build/pvp
while (($#)); do
  case $1 in
    --reps) REPS=${2:?--reps needs a value}; shift 2 ;;
    --seconds) SECS=${2:?--seconds needs a value}; shift 2 ;;
    --smoke) SMOKE=1; shift ;;
    --switch) SWITCH=${2:?--switch needs a path}; shift 2 ;;
    --vuload) VULOAD=${2:?--vuload needs a path}; shift 2 ;;
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    -h | --help) usage ;;
    *) echo "pvp: unknown option $1" >&2; usage ;;
  esac
done
if ((SMOKE)); then
  REPS=1
  SECS=2
fi
[[ $REPS =~ ^[1-9][0-9]*$ ]] || { echo "pvp: --reps must be a positive integer" >&2; exit 2; }
[[ $SECS =~ ^[1-9][0-9]*$ ]] || { echo "pvp: --seconds must be a positive integer" >&2; exit 2; }
WARMUP=${PVP_WARMUP:-$( ((SMOKE)) && echo 0.2 || echo 1)}
TESTPMD=${TESTPMD:-dpdk-testpmd}
if ((SMOKE)); then
  SIZES=(64)
else
  read -r -a SIZES <<<"${PVP_SIZES:-64 256 1024 1514}"
fi
for s in "${SIZES[@]}"; do
  if ! [[ $s =~ ^[0-9]+$ ]] || ((s < 60 || s > 1514)); then
    echo "pvp: frame size $s not in 60..1514" >&2
    exit 2
  fi
done
[ "${SIZES[0]}" = 64 ] || { echo "pvp: PVP_SIZES must start with 64 (the headline runs)" >&2; exit 2; }

# Missing tools: a smoke run skips (77, as tests/e2e/require.sh), a full run fails.
missing() {
  if ((SMOKE)); then
    echo "SKIPPED: $*"
    exit 77
  fi
  echo "pvp: $*" >&2
  exit 1
}
for t in "$TESTPMD" python3 taskset timeout stdbuf mkfifo; do
  command -v "$t" >/dev/null 2>&1 || missing "$t not found"
done
read -r -a CPUS <<<"$(python3 -c 'import os; print(*sorted(os.sched_getaffinity(0)))')"
((${#CPUS[@]} >= 2)) || missing "needs 2 CPUs (one per process), this process may use ${#CPUS[@]}"
FE_CPU=${PVP_FE_CPU:-${CPUS[0]}}
BE_CPU=${PVP_BE_CPU:-${CPUS[1]}}
[ "$FE_CPU" != "$BE_CPU" ] || { echo "pvp: PVP_FE_CPU and PVP_BE_CPU must differ" >&2; exit 2; }
PIN=${PVP_PIN:-lcore}
case $PIN in
  process) BE_SET=$BE_CPU ;;
  lcore) BE_SET=$BE_CPU,$FE_CPU ;;
  *) echo "pvp: PVP_PIN must be process or lcore" >&2; exit 2 ;;
esac

# The binaries: given, or the release build's (built if missing).
if [ -z "$SWITCH" ] || [ -z "$VULOAD" ]; then
  rel=$ROOT/build/release/apps
  if [ ! -x "$rel/vxlate-switch" ] || [ ! -x "$rel/vxlate-vuload" ]; then
    echo "pvp: building the release configuration (scripts/build.sh release)" >&2
    "$ROOT/scripts/build.sh" release >&2
  fi
  SWITCH=${SWITCH:-$rel/vxlate-switch}
  VULOAD=${VULOAD:-$rel/vxlate-vuload}
fi
for b in "$SWITCH" "$VULOAD"; do
  [ -x "$b" ] || { echo "pvp: $b is not an executable" >&2; exit 1; }
done
SWITCH=$(readlink -f "$SWITCH")
VULOAD=$(readlink -f "$VULOAD")

mkdir -p "$OUT/logs"
rm -f "$OUT"/logs/*.log "$OUT/results.tsv" "$OUT/summary.tsv" "$OUT/params.txt"
LOGS=$OUT/logs
RESULTS=$OUT/results.tsv
printf 'config\tbackend\tmode\tsize\trep\tmpps\tdrops\tack_p99_us\n' >"$RESULTS"
# Short: a unix socket path must fit in 108 bytes.
TMP=$(mktemp -d /tmp/pvp.XXXXXX)
TAG=pvp$$
PROC_LIMIT=$((SECS + 120))   # seconds any one process may live
T0=$SECONDS

# --- processes ---------------------------------------------------------------

declare -A NAME=() LOGOF=()   # by the pid of a live `timeout` wrapper
RUN=setup                     # the run failures are reported against

log() { echo "pvp [+$((SECONDS - T0))s] $*" >&2; }

# fail MESSAGE [LOG]: names the run, the step (MESSAGE) and the log; exit 1.
fail() {
  trap - INT TERM HUP
  echo "pvp: FAIL: $RUN: $1${2:+ (log: $2)}" >&2
  if [ -n "${2:-}" ] && [ -f "$2" ]; then
    echo "----- last lines of $2 -----" >&2
    tail -n 15 "$2" | cut -c1-300 >&2
  fi
  exit 1
}

# The process a `timeout` wrapper runs (taskset and stdbuf exec theirs).
child_of() {
  local c
  c=$(cat "/proc/$1/task/$1/children" 2>/dev/null) || true
  c=${c%% *}
  echo "${c// /}"
}

alive() { kill -0 "$1" 2>/dev/null; }

cleanup() {
  local rc=$?
  local p c deadline
  exec 8>&-
  for p in "${!NAME[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  deadline=$((SECONDS + 5))
  for p in "${!NAME[@]}"; do
    while alive "$p" && ((SECONDS < deadline)); do sleep 0.1; done
    if alive "$p"; then
      # timeout forwards TERM but not KILL: end the child by its pid too.
      c=$(child_of "$p")
      [ -z "$c" ] || kill -KILL "$c" 2>/dev/null || true
      kill -KILL "$p" 2>/dev/null || true
    fi
    { wait "$p"; } 2>/dev/null || true
  done
  rm -rf "$TMP" "/var/run/dpdk/$TAG-"* "${XDG_RUNTIME_DIR:-/tmp}/dpdk/$TAG-"* "/tmp/dpdk/$TAG-"* 2>/dev/null || true
  exit "$rc"
}
trap cleanup EXIT
trap 'fail "interrupted (signal)"' INT TERM HUP

# spawn VAR WHAT LOG STDIN CPUS CMD [ARGS...]: CMD in the background on CPUS,
# under timeout, output to LOG; VAR: the wrapper's pid (signals sent to it
# reach CMD).
spawn() {
  local var=$1 what=$2 out=$3 in=$4 cpu=$5
  shift 5
  timeout -k 5 "$PROC_LIMIT" taskset -c "$cpu" "$@" <"$in" >"$out" 2>&1 8>&- &
  local pid=$!
  NAME[$pid]=$what
  LOGOF[$pid]=$out
  printf -v "$var" '%s' "$pid"
}

# reap PID SECONDS: waits for a spawned process to end; sets RC to its exit
# status; fails after SECONDS.
reap() {
  local pid=$1 limit=$2 deadline
  deadline=$(($(date +%s%N) + limit * 1000000000))
  while alive "$pid"; do
    (($(date +%s%N) < deadline)) || fail "${NAME[$pid]} did not exit within ${limit}s" "${LOGOF[$pid]}"
    sleep 0.1
  done
  RC=0
  { wait "$pid"; } 2>/dev/null || RC=$?
  unset "NAME[$pid]" "LOGOF[$pid]"
}

# stop PID SECONDS: SIGTERM, then reap.
stop() {
  alive "$1" || fail "${NAME[$1]} exited before the end of the run" "${LOGOF[$1]}"
  kill -TERM "$1" 2>/dev/null || true
  reap "$1" "$2"
}

# wait_for SECONDS WHAT CMD [ARGS...]: polls CMD every 0.1 s; fails naming
# WHAT after SECONDS, or at once when a process in WATCH (pids) has died.
WATCH=
wait_for() {
  local limit=$1 what=$2 deadline p
  shift 2
  deadline=$(($(date +%s%N) + limit * 1000000000))
  until "$@"; do
    for p in $WATCH; do
      if ! alive "$p"; then
        local rc=0
        { wait "$p"; } 2>/dev/null || rc=$?
        fail "waiting for $what: ${NAME[$p]} exited with status $rc" "${LOGOF[$p]}"
      fi
    done
    if (($(date +%s%N) >= deadline)); then
      p=${WATCH%% *}
      fail "timed out after ${limit}s waiting for $what" "${p:+${LOGOF[$p]:-}}"
    fi
    sleep 0.1
  done
}

# log_has FILE REGEX [COUNT]: FILE has at least COUNT (1) lines matching REGEX.
log_has() {
  local n
  n=$(grep -cE -- "$2" "$1" 2>/dev/null) || true
  ((${n:-0} >= ${3:-1}))
}

sockets_up() { [ -S "$TMP/a.sock" ] && [ -S "$TMP/b.sock" ]; }

# --- one run -----------------------------------------------------------------

# start_backend BACKEND IOMMU(0|1) PREFIX LOG: sets BE; returns once both
# sockets listen.
start_backend() {
  local backend=$1 iommu=$2 prefix=$3 out=$4
  rm -f "$TMP/a.sock" "$TMP/b.sock"
  if [ "$backend" = vxlate ]; then
    spawn BE vxlate-switch "$out" /dev/null "$BE_SET" "$SWITCH" --no-huge --no-pci -m 256 --lcores "0@$BE_CPU" \
      --file-prefix "$prefix" --log-level=lib.eal:notice \
      -- --vhost-user "$TMP/a.sock" --vhost-user "$TMP/b.sock" --json
    WATCH=$BE
    wait_for 30 "vxlate-switch to listen" sockets_up
    wait_for 10 "vxlate-switch to start" log_has "$out" '^vxlate-switch: 2 ports'
  else
    local opt=
    ((iommu)) && opt=,iommu-support=1
    spawn BE "dpdk-testpmd (net_vhost)" "$out" /dev/null "$BE_SET" stdbuf -oL "$TESTPMD" --no-huge --no-pci -m 512 \
      --lcores "0@$BE_CPU,1@$BE_CPU" --main-lcore 1 --file-prefix "$prefix" \
      --log-level=lib.eal:notice --log-level=lib.vhost.config:notice \
      --vdev "net_vhost0,iface=$TMP/a.sock$opt" --vdev "net_vhost1,iface=$TMP/b.sock$opt" \
      -- --forward-mode=io -a --stats-period 3600 --total-num-mbufs=16384
    WATCH=$BE
    wait_for 30 "testpmd (net_vhost) to listen" sockets_up
    # The first statistics screen comes once forwarding has started.
    wait_for 30 "testpmd (net_vhost) to forward" log_has "$out" 'Port statistics'
  fi
}

# stop_backend BACKEND: SIGTERM; the switch must exit 0 with its JSON
# counters; testpmd exits by the signal it re-raises (143) or 0.
stop_backend() {
  local out=${LOGOF[$BE]}
  stop "$BE" 20
  if [ "$1" = vxlate ]; then
    ((RC == 0)) || fail "vxlate-switch exited with status $RC" "$out"
    log_has "$out" '^\{"ports":' || fail "vxlate-switch printed no final counters" "$out"
  else
    ((RC == 0 || RC == 143)) || fail "testpmd (net_vhost) exited with status $RC" "$out"
  fi
  WATCH=
}

tp() { echo "$1" >&8; }

# run_plain CONFIG SIZE BACKEND REP: one plain-txonly or plain-io run.
run_plain() {
  local config=$1 size=$2 backend=$3 rep=$4
  local id=$rep-$config-plain-$size-$backend
  local fe=$LOGS/$id.fe.log mode txpkts start t0=$SECONDS
  RUN=$id
  if [ "$config" = plain-txonly ]; then
    mode=flowgen txpkts=$((size + 4)) start=start
  else
    mode=io txpkts=$size start="start tx_first"
  fi
  start_backend "$backend" 0 "$TAG-$rep-be" "$LOGS/$id.be.log"
  rm -f "$TMP/fe.fifo"
  mkfifo "$TMP/fe.fifo"
  # Read-write: never blocks, and testpmd never sees end of input.
  exec 8<>"$TMP/fe.fifo"
  spawn FE "dpdk-testpmd (virtio-user)" "$fe" "$TMP/fe.fifo" "$FE_CPU" stdbuf -oL "$TESTPMD" --no-huge --no-pci \
    -m 512 --lcores "0@$FE_CPU,1@$FE_CPU" --main-lcore 1 --file-prefix "$TAG-$rep-fe" --log-level=lib.eal:notice \
    --vdev "net_virtio_user0,path=$TMP/a.sock,queues=1" --vdev "net_virtio_user1,path=$TMP/b.sock,queues=1" \
    -- -i --forward-mode="$mode" --txpkts="$txpkts" --total-num-mbufs=16384
  WATCH="$FE $BE"
  wait_for 30 "testpmd's ports to start (prompt)" log_has "$fe" '^(testpmd> )+'
  if ! log_has "$fe" '^Port 0: ' || ! log_has "$fe" '^Port 1: '; then
    fail "testpmd lacks a virtio-user port (did it connect to the back end?)" "$fe"
  fi
  tp "$start"
  wait_for 15 "testpmd to forward" log_has "$fe" "packet forwarding - ports=2"
  sleep "$WARMUP"
  tp "show port stats all"
  wait_for 15 "testpmd's first statistics" log_has "$fe" 'Tx-pps:' 2
  sleep "$SECS"
  tp "show port stats all"
  wait_for 15 "testpmd's second statistics" log_has "$fe" 'Tx-pps:' 4
  tp "stop"
  wait_for 15 "testpmd to stop forwarding" log_has "$fe" '^Done\.'
  tp "quit"
  reap "$FE" 30
  ((RC == 0)) || fail "testpmd (virtio-user) exited with status $RC" "$fe"
  exec 8>&-
  WATCH=$BE
  stop_backend "$backend"
  local res
  res=$(python3 "$ROOT/bench/pvp_summary.py" testpmd "$fe") || fail "no rate in testpmd's statistics" "$fe"
  read -r MPPS FRAMES <<<"$res"
  printf '%s\t%s\tplain\t%s\t%s\t%s\t-\t-\n' "$config" "$backend" "$size" "$rep" "$MPPS" >>"$RESULTS"
  log "$id: $MPPS Mpps ($FRAMES frames received in ${SECS}s; run took $((SECONDS - t0))s)"
}

# run_iommu MODE SIZE BACKEND REP: one vxlate-vuload run.
run_iommu() {
  local mode=$1 size=$2 backend=$3 rep=$4
  local id=$rep-iommu-$mode-$size-$backend
  local fe=$LOGS/$id.fe.log t0=$SECONDS
  RUN=$id
  start_backend "$backend" 1 "$TAG-$rep-be" "$LOGS/$id.be.log"
  spawn FE vxlate-vuload "$fe" /dev/null "$FE_CPU" "$VULOAD" --socket "$TMP/a.sock" --socket "$TMP/b.sock" \
    --mode "$mode" --workload udp_stream_64 --frame-size "$size" --seconds "$SECS" --json
  WATCH=$BE
  # Connect (15 s at most), S seconds, drain (3 s at most), report.
  reap "$FE" $((SECS + 60))
  ((RC == 0)) || fail "vxlate-vuload exited with status $RC" "$fe"
  stop_backend "$backend"
  local res
  res=$(python3 "$ROOT/bench/pvp_summary.py" vuload "$fe") || fail "no report from vxlate-vuload" "$fe"
  read -r MPPS FRAMES DROPS ACK DRAINED <<<"$res"
  printf 'iommu\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$backend" "$mode" "$size" "$rep" "$MPPS" "$DROPS" "$ACK" >>"$RESULTS"
  local note=
  [ "$DRAINED" = true ] || note=" (drain incomplete: counts frames still in flight)"
  log "$id: $MPPS Mpps ($FRAMES frames received), drops $DROPS$note, INVALIDATE ack p99 $ACK us;" \
    "run took $((SECONDS - t0))s"
}

# --- the runs ----------------------------------------------------------------

# What a smoke run must see: frames through every (configuration, back end).
declare -A MOVED=()

# run KIND ARG SIZE BACKEND REP: one run, then its DPDK runtime directories go.
run() {
  if [ "$1" = plain ]; then
    run_plain "$2" "$3" "$4" "$5"
    MOVED[$2-$4]=$((${MOVED[$2-$4]:-0} + FRAMES))
  else
    run_iommu "$2" "$3" "$4" "$5"
    MOVED[iommu-$2-$4]=$((${MOVED[iommu-$2-$4]:-0} + FRAMES))
  fi
  rm -rf "/var/run/dpdk/$TAG-"* "${XDG_RUNTIME_DIR:-/tmp}/dpdk/$TAG-"* "/tmp/dpdk/$TAG-"* 2>/dev/null || true
}

CONFIGS=("plain plain-txonly 64" "plain plain-io 64" "iommu lazy 64" "iommu strict 64")
((SMOKE)) || CONFIGS+=("iommu identity 64")
for s in "${SIZES[@]:1}"; do CONFIGS+=("plain plain-txonly $s"); done
for s in "${SIZES[@]:1}"; do CONFIGS+=("iommu lazy $s"); done
log "${#CONFIGS[@]} configurations x 2 back ends x $REPS reps, ${SECS}s each; front end on CPU $FE_CPU," \
  "back end on CPU $BE_CPU (pinning: $PIN); logs in $LOGS"
{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "reps: $REPS  seconds: $SECS  warm-up: $WARMUP  sizes: ${SIZES[*]}  smoke: $SMOKE"
  echo "cpus: front end $FE_CPU, back end $BE_CPU, pinning $PIN"
  echo "switch: $SWITCH"
  echo "vuload: $VULOAD"
  echo "testpmd: $(command -v "$TESTPMD")"
} >"$OUT/params.txt"
for ((rep = 1; rep <= REPS; rep++)); do
  order=(vxlate net_vhost)
  ((rep % 2)) || order=(net_vhost vxlate)
  for c in "${CONFIGS[@]}"; do
    read -r kind arg size <<<"$c"
    for backend in "${order[@]}"; do run "$kind" "$arg" "$size" "$backend" "$rep"; done
  done
done
RUN=summary

python3 "$ROOT/bench/pvp_summary.py" summary "$OUT" >"$TMP/summary.txt" || fail "summarising $RESULTS"
if ((SMOKE)); then
  bad=()
  for k in plain-txonly plain-io iommu-lazy iommu-strict; do
    for backend in vxlate net_vhost; do
      ((${MOVED[$k-$backend]:-0} > 0)) || bad+=("$k through $backend")
    done
  done
  if ((${#bad[@]})); then
    cat "$TMP/summary.txt"
    list=$(printf '%s, ' "${bad[@]}")
    fail "no frames received: ${list%, } (logs in $LOGS)"
  fi
  log "smoke: frames through both back ends in every configuration"
fi
log "done in $((SECONDS - T0))s; $RESULTS, $OUT/summary.tsv"
cat "$TMP/summary.txt"
