#!/usr/bin/env bash
# e2e.sh [VXLATE_SWITCH [GUEST_DIR]]: a real VM behind a vIOMMU through
# vxlate-switch, end to end (issue 14). A Debian 6.1 guest (scripts/
# vm_initramfs.sh) behind QEMU 7.2's emulated Intel IOMMU with a device IOTLB
# and ATS (scripts/vm_lib.sh) talks over vhost-user to vxlate-switch, whose
# other port is a tap in a network namespace of this test's own:
#
#   netns: tap 10.9.0.1/24, vm_xfer.py <-> switch port 0 (net_tap0)
#     switch port 1 (vhost-user) <-> QEMU virtio-net (iommu_platform, ats)
#     <-> guest eth0 10.9.0.2/24
#
# Runs, one after another (each with its own switch, tap and netns):
#   strict  iommu.strict=1, caching-mode=on, 2 queue pairs (2 guest CPUs on
#           one TCG thread; the guest pings on queue 0 and transfers on
#           queue 1, steered with XPS)
#   lazy    iommu.strict=0, caching-mode=off (with caching-mode=on a 6.1
#           guest forces strict), 1 queue pair
#   ooo     as strict, with the switch completing receive buffers out of
#           order (--vhost-user PATH,rx-out-of-order): a real virtio-net
#           driver takes used buffers in any order and the empty ones a
#           stop returns
#   each: E2E_VM_PINGS pings, then `seq 1 E2E_VM_LINES` guest -> host and
#   host -> guest over TCP, md5 printed at both ends and compared;
#   testpmd the same guest (strict, pings only) against dpdk-testpmd's
#           net_vhost (iommu-support=1) and a net_tap, io forwarding: its
#           answered pings and drops are reported, never a failure.
#
# For vxlate it asserts: every ping answered; both transfers' md5 and length
# equal at both ends; the switch saw UPDATEs, INVALIDATEs and MISSes, dropped
# nothing (dropped, drop_down, drop_no_room on every port, guest_rx_dropped),
# refused no message and exited 0; in the 2-pair run the guest enabled 2 pairs
# and both carried frames from the guest (q0_rx_packets, q1_rx_packets); the
# guest's log shows DMA remapping enabled, ATS enabled and no DMA fault; in
# the ooo run the switch set receive buffers aside (rx_buffers_parked > 0)
# and lost none at a stop (rx_parked_lost = 0); QEMU
# exited 0 after the guest finished; after QEMU quit the switch holds no fd and
# no memfd mapping more than before QEMU started (/proc/PID/fd, /proc/PID/maps).
# The last line is
#   e2e: strict pings A/B lazy pings C/D ooo pings E/F transfer ok|FAILED invalidations N misses M miss-drops vxlate X net_vhost Y
# (N, M: the vxlate runs' INVALIDATEs and MISSes sent; X: frames vxlate
# dropped, Y: frames testpmd dropped on its net_vhost port) and it exits 0
# only when everything above held (77: skipped, needs root and /dev/net/tun).
#
# Needs root, qemu-system-x86 (7.2), busybox-static, cpio, python3, iproute2,
# apt-get (the guest kernel is downloaded on first use: apt-get download of
# the newest linux-image-6.1.*-cloud-amd64-unsigned, cached in
# GUEST_DIR/cache), dpdk-testpmd (optional: without it that run is skipped
# and Y is "-").
#
# Arguments and environment (defaults in brackets):
#   VXLATE_SWITCH       [$1, else build/release/apps/vxlate-switch]
#   GUEST_DIR           [$2, else build/vm/guest] (VXLATE_VM_CACHE applies)
#   E2E_VM_PINGS        pings per run [20]
#   E2E_VM_PING_INTERVAL seconds between pings [0.5]
#   E2E_VM_LINES        payload `seq 1 N` each way [200000: 1.3 MB]
#   E2E_VM_QUEUES_STRICT, E2E_VM_QUEUES_LAZY  queue pairs [2, 1]
#   E2E_VM_CMODE_STRICT, E2E_VM_CMODE_LAZY    caching-mode [on, off]
#   E2E_VM_TESTPMD      0: skip the testpmd run [1]
#   E2E_VM_SMP          guest CPUs in every run [the run's queue pairs]
#   E2E_VM_TIMEOUT      seconds one guest may run [180]
#   E2E_VM_PORTOPT      appended to vxlate-switch's --vhost-user argument in
#                       the strict and lazy runs [none]
#   E2E_VM_RUNS         which runs, in order ["strict lazy ooo testpmd"];
#                       leaving out strict or lazy fails the test (for
#                       debugging)
#   E2E_VM_STRACE=1     strace QEMU's socket I/O into NAME-qemu.strace (decode
#                       with scripts/vu_strace_decode.py)
#   E2E_KEEP=1          keep the work directory (logs) after a pass
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tests/e2e/e2e_lib.sh
source "$ROOT/tests/e2e/e2e_lib.sh"
# shellcheck source=scripts/vm_lib.sh
source "$ROOT/scripts/vm_lib.sh"

SWITCH=${1:-${VXLATE_SWITCH:-$ROOT/build/release/apps/vxlate-switch}}
GUEST=${2:-${GUEST_DIR:-$ROOT/build/vm/guest}}
PINGS=${E2E_VM_PINGS:-20}
PINGI=${E2E_VM_PING_INTERVAL:-0.5}
LINES=${E2E_VM_LINES:-200000}
Q_STRICT=${E2E_VM_QUEUES_STRICT:-2}
Q_LAZY=${E2E_VM_QUEUES_LAZY:-1}
CM_STRICT=${E2E_VM_CMODE_STRICT:-on}
CM_LAZY=${E2E_VM_CMODE_LAZY:-off}
DO_TP=${E2E_VM_TESTPMD:-1}
VM_TMO=${E2E_VM_TIMEOUT:-180}
RUNS=${E2E_VM_RUNS:-strict lazy ooo testpmd}
# The vxlate runs, each with transfers.
XFER_WANT=0
for r in $RUNS; do [[ $r == testpmd ]] || XFER_WANT=$((XFER_WANT + 1)); done
HOST_IP=10.9.0.1
GUEST_IP=10.9.0.2
PORT_UP=5001     # guest -> host
PORT_DOWN=5002   # host -> guest

if [ "$(id -u)" != 0 ]; then
  echo "SKIPPED: e2e_vm needs root (network namespaces, a tap)"
  exit 77
fi
if [ ! -c /dev/net/tun ]; then
  echo "SKIPPED: e2e_vm needs /dev/net/tun"
  exit 77
fi
# A container may be root without the capabilities behind these.
probe=vxprobe$$
if ! ip netns add "$probe" 2>/dev/null; then
  echo "SKIPPED: e2e_vm cannot create a network namespace here"
  exit 77
fi
ip netns del "$probe"
if ! ip tuntap add dev "$probe" mode tap 2>/dev/null; then
  echo "SKIPPED: e2e_vm cannot create a tap device here"
  exit 77
fi
ip link del "$probe"

e2e_init e2e_vm
W=$E2E_WORK
NETNSES=()
# e2e_lib's cleanup (in a subshell: it ends with exit), then the last line.
vm_e2e_cleanup() {
  local rc=$? ns
  trap - EXIT
  for ns in "${NETNSES[@]}"; do ip netns del "$ns" 2>/dev/null; done
  ( (exit "$rc"); e2e_cleanup )
  wait 2>/dev/null
  final_line
  exit "$rc"
}
trap vm_e2e_cleanup EXIT

[ -x "$SWITCH" ] || e2e_fail "$SWITCH is not executable"
command -v qemu-system-x86_64 >/dev/null || e2e_fail "qemu-system-x86_64 not installed"
if [ "$DO_TP" = 1 ] && ! command -v "$TESTPMD" >/dev/null; then
  e2e_log "no $TESTPMD: the net_vhost run is skipped"
  DO_TP=0
fi

e2e_log "guest: scripts/vm_initramfs.sh $GUEST"
"$ROOT/scripts/vm_initramfs.sh" "$GUEST" > "$W/initramfs.log" 2>&1 ||
  e2e_fail "scripts/vm_initramfs.sh $GUEST failed (apt-get update? see initramfs.log)"
e2e_log "guest: $(tr '\n' ' ' < "$GUEST/kernel.txt")"

FAILS=()       # what did not hold, for vxlate
SUM_INV=0 SUM_MISS=0 SUM_DROP=0 XFER_OK=1 XFER_RUNS=0 ALL_RUN=0 R_testpmd_drops=-
R_strict_pings=0/0 R_lazy_pings=0/0 R_ooo_pings=- R_testpmd_pings=-
# The last line (also after a failure that ended the test early).
final_line() {
  local x=FAILED
  [ "$XFER_OK" = 1 ] && [ "$XFER_RUNS" = "$XFER_WANT" ] && x=ok
  [ "$ALL_RUN" = 1 ] || echo "e2e: stopped early after $(e2e_elapsed)s"
  echo "e2e: strict pings $R_strict_pings lazy pings $R_lazy_pings ooo pings $R_ooo_pings transfer $x invalidations $SUM_INV misses $SUM_MISS miss-drops vxlate $SUM_DROP net_vhost $R_testpmd_drops"
}
fail_later() { FAILS+=("$*"); e2e_log "NOT OK: $*"; }

# fd and memfd-mapping counts of a process.
fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
memfd_maps() { grep -c 'memfd:' "/proc/$1/maps" 2>/dev/null || true; }

# jv JSONFILE PORTKIND KEY: a counter of the switch's final JSON (first port of
# that kind: vhost-user or ethdev), or "?".
jv() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
try:
    ports = json.load(open(sys.argv[1]))["ports"]
    p = [x for x in ports if x["kind"] == sys.argv[2]][0]
    print(p.get(sys.argv[3], "?"))
except Exception:
    print("?")
PY
}

# con LOG KEY FIELD: FIELD=value of the last console line "VXVM-KEY ...".
con() { grep -a "VXVM-$2 " "$1" 2>/dev/null | tail -1 | tr ' \r' '\n\n' | sed -n "s/^$3=//p" | tail -1; }

# run_vm NAME ENGINE MODE QUEUES CMODE XFER [PORTOPT]: one guest, start to
#   finish. ENGINE vxlate|testpmd, MODE strict|lazy, XFER 1: transfers too,
#   PORTOPT: appended to the switch's --vhost-user argument.
# Sets R_<NAME>_* (pings, policy, ...) for the summary.
run_vm() {
  local name=$1 engine=$2 mode=$3 queues=$4 cmode=$5 xfer=$6 portopt=${7-${E2E_VM_PORTOPT:-}}
  local strict=1 smp=1 sock=$W/$name.sock tap ns tag
  [ "$mode" = lazy ] && strict=0
  ((queues > 1)) && smp=$queues
  [ -n "${E2E_VM_SMP:-}" ] && smp=$E2E_VM_SMP
  tag=$(e2e_prefix "$name")
  tap="vxv$$$name"; tap=${tap:0:15}
  ns="vxe2e$$$name"
  local log=$W/$name
  e2e_log "== $name: $engine, iommu.strict=$strict caching-mode=$cmode, $queues queue pair(s), $smp guest CPU(s)"

  # --- the back end ----------------------------------------------------------
  local be bepid
  if [ "$engine" = vxlate ]; then
    E2E_PROC_LIMIT=$((VM_TMO + 60)) e2e_spawn be "$log-switch.log" "$SWITCH" "${SW_EAL[@]}" --file-prefix "$tag" \
      --vdev "net_tap0,iface=$tap" -- --vhost-user "$sock,queues=$queues$portopt" --xconnect --stats 2 --json
  else
    tp_open 7 "$W/$name.fifo"
    E2E_STDIN=$W/$name.fifo E2E_PROC_LIMIT=$((VM_TMO + 60)) e2e_spawn be "$log-testpmd.log" stdbuf -oL "$TESTPMD" \
      "${TP_EAL[@]}" --file-prefix "$tag" --vdev "net_vhost0,iface=$sock,iommu-support=1,queues=$queues" \
      --vdev "net_tap0,iface=$tap" -- --forward-mode=io -a --rxq="$queues" --txq="$queues" --total-num-mbufs=16384
  fi
  E2E_WATCH=$be
  e2e_wait_for 30 "$engine's socket $sock and tap $tap" eval "[ -S '$sock' ] && ip link show '$tap' >/dev/null 2>&1"
  bepid=$(e2e_real_pid "$be") || e2e_fail "no pid for $engine"

  # --- the tap, in its own netns -------------------------------------------------
  ip netns add "$ns" || e2e_fail "ip netns add $ns"
  NETNSES+=("$ns")
  ip link set "$tap" netns "$ns" || e2e_fail "cannot move $tap into $ns"
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$HOST_IP/24" dev "$tap" || e2e_fail "cannot address $tap"
  ip -n "$ns" link set "$tap" up || e2e_fail "cannot bring $tap up"

  # --- before QEMU: what the back end holds ---------------------------------------
  sleep 0.5
  local fd0 mf0
  fd0=$(fd_count "$bepid")
  mf0=$(memfd_maps "$bepid")

  # --- the host end of the transfers ---------------------------------------------
  local xf="" append
  append="console=ttyS0 intel_iommu=on iommu.strict=$strict panic=-1 vxip=$GUEST_IP/24 vxpeer=$HOST_IP"
  append+=" vxping=$PINGS vxpingi=$PINGI"
  ((queues > 1)) && append+=" vxpingq=0 vxxferq=1"
  if [ "$xfer" = 1 ]; then
    E2E_PROC_LIMIT=$((VM_TMO + 30)) e2e_spawn xf "$log-xfer.log" ip netns exec "$ns" python3 "$ROOT/tests/e2e/vm_xfer.py" \
      --lines "$LINES" --listen "$PORT_UP" --peer "$GUEST_IP" --peer-port "$PORT_DOWN" --timeout "$VM_TMO"
    E2E_WATCH="$be $xf"
    e2e_wait_for 20 "vm_xfer.py listening" log_has "$log-xfer.log" '^XFER ready'
    append+=" vxsend=$PORT_UP:$LINES vxrecv=$PORT_DOWN vxxfert=$((VM_TMO - 30))"
  fi

  # --- the guest ---------------------------------------------------------------------
  vm_qemu_argv "$sock" "$GUEST" "$append" "$cmode" 0 "$queues" "$smp"
  printf '%q ' "${VM_QEMU[@]}" > "$log-qemu.cmd"
  local t0=$SECONDS qe qrc=timeout
  local pre=()
  # shellcheck disable=SC2054
  [ "${E2E_VM_STRACE:-0}" = 1 ] && pre=(strace -f -tt -xx -s 4096 -e trace=sendmsg,recvmsg -o "$log-qemu.strace")
  E2E_PROC_LIMIT=$((VM_TMO + 10)) e2e_spawn qe "$log-qemu.log" "${pre[@]}" "${VM_QEMU[@]}"
  if e2e_wait_exit "$qe" "$VM_TMO"; then qrc=$E2E_RC; else kill -TERM "$qe" 2>/dev/null; e2e_wait_exit "$qe" 10; fi
  local qlog=$log-qemu.log
  e2e_log "$name: QEMU exited ($qrc) after $((SECONDS - t0)) s"

  local xrc=- xdone=0
  if [ -n "$xf" ]; then
    if e2e_wait_exit "$xf" 15; then xrc=$E2E_RC; else kill -TERM "$xf" 2>/dev/null; e2e_wait_exit "$xf" 5; xrc=timeout; fi
    log_has "$log-xfer.log" '^XFER done' && xdone=1
  fi

  # --- after QEMU: the back end must have let go of the guest ----------------------
  local fd1 mf1 i
  for ((i = 0; i < 50; i++)); do
    fd1=$(fd_count "$bepid"); mf1=$(memfd_maps "$bepid")
    [ "$fd1" -le "$fd0" ] && [ "$mf1" -le "$mf0" ] && break
    sleep 0.2
  done

  # --- stop the back end, read its counters ---------------------------------------
  local brc
  E2E_WATCH=""
  if [ "$engine" = vxlate ]; then
    kill -TERM "$be" 2>/dev/null
  else
    tp_cmd 7 ""
  fi
  if e2e_wait_exit "$be" 30; then brc=$E2E_RC; else brc=hung; kill -KILL "$be" 2>/dev/null; fi
  [ "$engine" = testpmd ] && tp_close 7
  ip netns del "$ns" 2>/dev/null

  # --- what the guest saw ----------------------------------------------------------------
  local tx rx policy ats faults dmar=0 gq gdone=0
  tx=$(con "$qlog" PING transmitted); rx=$(con "$qlog" PING received)
  policy=$(vm_guest_policy "$qlog")
  ats=$(con "$qlog" ATS enabled)
  faults=$(con "$qlog" FAULTS n)
  gq=$(con "$qlog" QUEUES rx)
  grep -aq 'DMAR: IOMMU enabled' "$qlog" && grep -aq 'Intel(R) Virtualization Technology for Directed I/O' "$qlog" && dmar=1
  grep -aq 'VXVM-DONE' "$qlog" && gdone=1
  # QEMU 7.2 with 2 queue pairs: MISSes come in on queue pair 0's back-end
  # channel; one that arrives after pair 0 was stopped (pair 1 still running)
  # gets this complaint and no answer. Reported, not a failure.
  local qcomplaints
  qcomplaints=$(grep -ac 'Unexpected IOTLB message when virtio device is stopped' "$qlog")
  printf -v "R_${name}_pings" '%s/%s' "${rx:-0}" "${tx:-0}"
  printf -v "R_${name}_policy" '%s' "$policy"

  local summary="$name: engine=$engine pings=${rx:-0}/${tx:-0} asked_strict=$strict caching_mode=$cmode guest_policy=$policy"
  summary+=" guest_queue_pairs=${gq:-?} guest_cpus=$(con "$qlog" QUEUES cpus) dmar=$dmar ats=${ats:-?} dma_faults=${faults:-?}"
  summary+=" qemu_rc=$qrc guest_done=$gdone backend_rc=$brc fds=$fd0->$fd1 memfd_maps=$mf0->$mf1"
  summary+=" qemu_unexpected_iotlb_msgs=$qcomplaints"

  if [ "$engine" = testpmd ]; then
    # Which port is net_vhost: the one whose MAC is DPDK vhost's 56:48:4F:53:54:xx ("VHOST").
    local vport
    vport=$(sed -n 's/^Port \([0-9]*\): 56:48:4F:53:54:.*/\1/p' "$log-testpmd.log" | head -1)
    read -r TP_DROPS TP_RXDROP TP_OTHER < <(python3 - "$ROOT/tests/e2e" "$log-testpmd.log" "${vport:-0}" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import e2e_stats
s = e2e_stats.testpmd(sys.argv[2])
v = sys.argv[3]
fwd = s["fwd"][-1] if s["fwd"] else {}
p = fwd.get(v, fwd.get(int(v), {}))
other = sum(q.get("tx_dropped", 0) + q.get("rx_dropped", 0) for k, q in fwd.items() if str(k) != v)
print(p.get("tx_dropped", "?"), p.get("rx_dropped", "?"), other if fwd else "?")
PY
)
    R_testpmd_drops=$TP_DROPS
    summary+=" net_vhost_port=${vport:-0?} net_vhost_tx_dropped=$TP_DROPS net_vhost_rx_dropped=$TP_RXDROP tap_dropped=$TP_OTHER"
    e2e_log "$summary"
    return 0
  fi

  # vxlate: counters and assertions.
  local js=$log-switch.json
  sw_json "$log-switch.log" > "$js"
  local k v
  declare -A c=()
  for k in iotlb_updates iotlb_invalidates misses_sent frames_held_for_miss ring_misses dropped drop_down drop_no_room \
           guest_rx_dropped refused iotlb_updates_refused bad_chains messages connects disconnects rx_packets tx_packets \
           invalidate_ack_ns_max iotlb_hits iotlb_lookups q0_rx_packets q0_tx_packets q1_rx_packets q1_tx_packets \
           rx_buffers_parked rx_parked_returned rx_parked_lost; do
    c[$k]=$(jv "$js" vhost-user "$k")
  done
  local tdrop tdown tnoroom
  tdrop=$(jv "$js" ethdev dropped); tdown=$(jv "$js" ethdev drop_down); tnoroom=$(jv "$js" ethdev drop_no_room)
  for k in iotlb_updates iotlb_invalidates misses_sent frames_held_for_miss ring_misses dropped drop_down guest_rx_dropped \
           refused iotlb_updates_refused rx_packets tx_packets invalidate_ack_ns_max q0_rx_packets q0_tx_packets \
           q1_rx_packets q1_tx_packets rx_buffers_parked rx_parked_returned rx_parked_lost; do
    [ "${c[$k]}" = "?" ] && [[ $k == q1_* ]] && continue
    summary+=" $k=${c[$k]}"
  done
  summary+=" tap_dropped=$tdrop"

  # transfers
  local gs_md5 gs_bytes gs_rc hr_md5 hr_bytes hr_ok hs_md5 hs_bytes hs_rc gr_md5 gr_bytes gr_rc xok=1
  if [ "$xfer" = 1 ]; then
    gs_md5=$(con "$qlog" SEND md5); gs_bytes=$(con "$qlog" SEND bytes); gs_rc=$(con "$qlog" SEND rc)
    gr_md5=$(con "$qlog" RECV md5); gr_bytes=$(con "$qlog" RECV bytes); gr_rc=$(con "$qlog" RECV rc)
    hr_md5=$(grep '^XFER recv' "$log-xfer.log" | tr ' ' '\n' | sed -n 's/^md5=//p')
    hr_bytes=$(grep '^XFER recv' "$log-xfer.log" | tr ' ' '\n' | sed -n 's/^bytes=//p')
    hr_ok=$(grep '^XFER recv' "$log-xfer.log" | tr ' ' '\n' | sed -n 's/^ok=//p')
    hs_md5=$(grep '^XFER send' "$log-xfer.log" | tr ' ' '\n' | sed -n 's/^md5=//p')
    hs_bytes=$(grep '^XFER send' "$log-xfer.log" | tr ' ' '\n' | sed -n 's/^bytes=//p')
    hs_rc=$(grep '^XFER send' "$log-xfer.log" | tr ' ' '\n' | sed -n 's/^rc=//p')
    summary+=" up(guest->host)=${gs_bytes:-?}B:guest_md5=${gs_md5:-?}:host_md5=${hr_md5:-?}"
    summary+=" down(host->guest)=${hs_bytes:-?}B:host_md5=${hs_md5:-?}:guest_md5=${gr_md5:-?}"
    if [ -z "$gs_md5" ] || [ "$gs_md5" != "$hr_md5" ] || [ "${gs_bytes:-x}" != "${hr_bytes:-y}" ] ||
       [ "${gs_rc:-1}" != 0 ] || [ "${hr_ok:-0}" != 1 ]; then
      xok=0; fail_later "$name: guest->host transfer: guest sent ${gs_bytes:-?} B md5 ${gs_md5:-?} (nc rc ${gs_rc:-?}), host got ${hr_bytes:-?} B md5 ${hr_md5:-?} (ok=${hr_ok:-?})"
    fi
    if [ -z "$hs_md5" ] || [ "$hs_md5" != "$gr_md5" ] || [ "${hs_bytes:-x}" != "${gr_bytes:-y}" ] ||
       [ "${hs_rc:-1}" != 0 ] || [ "${gr_rc:-1}" != 0 ]; then
      xok=0; fail_later "$name: host->guest transfer: host sent ${hs_bytes:-?} B md5 ${hs_md5:-?} (rc ${hs_rc:-?}), guest got ${gr_bytes:-?} B md5 ${gr_md5:-?} (nc rc ${gr_rc:-?})"
    fi
    [ "$xdone" = 1 ] || { xok=0; fail_later "$name: vm_xfer.py did not finish (rc $xrc)"; }
    summary+=" transfer=$([ $xok = 1 ] && echo ok || echo FAILED)"
  fi
  [ "$xok" = 1 ] || XFER_OK=0
  [ "$xfer" = 1 ] && XFER_RUNS=$((XFER_RUNS + 1))
  e2e_log "$summary"
  echo "$summary" >> "$W/summary.txt"

  [ "${tx:-0}" = "$PINGS" ] && [ "${rx:-0}" = "$PINGS" ] || fail_later "$name: pings ${rx:-0}/${tx:-0}, want $PINGS/$PINGS"
  [ "$qrc" = 0 ] || fail_later "$name: QEMU exit status $qrc"
  [ "$gdone" = 1 ] || fail_later "$name: the guest did not finish (no VXVM-DONE)"
  [ "$brc" = 0 ] || fail_later "$name: vxlate-switch exit status $brc"
  [ "$dmar" = 1 ] || fail_later "$name: the guest's log does not show DMA remapping enabled"
  [ "${ats:-0}" = 1 ] || fail_later "$name: ATS not enabled on the guest's virtio-net"
  [ "${faults:-x}" = 0 ] || fail_later "$name: DMA faults in the guest's log: ${faults:-none reported}"
  for k in iotlb_updates iotlb_invalidates misses_sent; do
    [[ ${c[$k]} =~ ^[0-9]+$ ]] && [ "${c[$k]}" -gt 0 ] || fail_later "$name: $k=${c[$k]} (want > 0)"
  done
  for k in dropped drop_down drop_no_room guest_rx_dropped refused iotlb_updates_refused bad_chains rx_parked_lost; do
    [ "${c[$k]}" = 0 ] || fail_later "$name: vhost-user port $k=${c[$k]} (want 0)"
  done
  if [[ $portopt == *rx-out-of-order* ]]; then
    [[ ${c[rx_buffers_parked]} =~ ^[0-9]+$ ]] && [ "${c[rx_buffers_parked]}" -gt 0 ] ||
      fail_later "$name: rx_buffers_parked=${c[rx_buffers_parked]} with rx-out-of-order (want > 0)"
  fi
  [ "$tdrop" = 0 ] && [ "$tdown" = 0 ] && [ "$tnoroom" = 0 ] ||
    fail_later "$name: tap port dropped=$tdrop drop_down=$tdown drop_no_room=$tnoroom (want 0)"
  if ((queues > 1)); then
    [ "${gq:-0}" = "$queues" ] || fail_later "$name: the guest enabled ${gq:-?} queue pairs, want $queues"
    for ((i = 0; i < queues; i++)); do
      v=${c[q${i}_rx_packets]:-?}
      [[ $v =~ ^[0-9]+$ ]] && [ "$v" -gt 0 ] || fail_later "$name: q${i}_rx_packets=$v: pair $i carried nothing from the guest"
    done
  fi
  [ "$fd1" -le "$fd0" ] || fail_later "$name: vxlate-switch holds $fd1 fds after QEMU quit, $fd0 before it started"
  [ "$mf1" -le "$mf0" ] || fail_later "$name: vxlate-switch maps $mf1 memfd ranges after QEMU quit, $mf0 before it started"
  if [[ ${c[iotlb_invalidates]} =~ ^[0-9]+$ ]]; then SUM_INV=$((SUM_INV + c[iotlb_invalidates])); fi
  if [[ ${c[misses_sent]} =~ ^[0-9]+$ ]]; then SUM_MISS=$((SUM_MISS + c[misses_sent])); fi
  local d
  for d in "${c[dropped]}" "${c[drop_down]}" "${c[drop_no_room]}" "${c[guest_rx_dropped]}" "$tdrop" "$tdown" "$tnoroom"; do
    [[ $d =~ ^[0-9]+$ ]] && SUM_DROP=$((SUM_DROP + d))
  done
  return 0
}

for r in $RUNS; do
  case $r in
    strict) run_vm strict vxlate strict "$Q_STRICT" "$CM_STRICT" 1 ;;
    lazy) run_vm lazy vxlate lazy "$Q_LAZY" "$CM_LAZY" 1 ;;
    ooo) run_vm ooo vxlate strict "$Q_STRICT" "$CM_STRICT" 1 ",rx-out-of-order" ;;
    testpmd) [ "$DO_TP" = 1 ] && run_vm testpmd testpmd strict 1 on 0 ;;
    *) e2e_fail "E2E_VM_RUNS: unknown run $r" ;;
  esac
done
[[ " $RUNS " == *" strict "* && " $RUNS " == *" lazy "* ]] || fail_later "E2E_VM_RUNS=\"$RUNS\" leaves out a vxlate run"

e2e_log "guest invalidation policy: strict run ${R_strict_policy:-?} (caching-mode=$CM_STRICT), lazy run ${R_lazy_policy:-?} (caching-mode=$CM_LAZY)"
e2e_log "net_vhost (dpdk-testpmd, strict): pings ${R_testpmd_pings} answered, ${R_testpmd_drops} frames dropped toward the guest; vxlate: strict ${R_strict_pings}, lazy ${R_lazy_pings}, ${SUM_DROP} dropped"
ALL_RUN=1
if ((${#FAILS[@]})); then
  printf 'e2e: NOT OK: %s\n' "${FAILS[@]}"
  E2E_FAILED=1
  exit 1
fi
exit 0
