#!/usr/bin/env bash
# vm_run.sh strict|lazy: a Linux guest behind QEMU 7.2's emulated Intel IOMMU
# (device IOTLB, ATS) pings a host address through vxlate-switch.
#
#   tap vxtapN (10.9.0.1/24, own netns) <-> switch port 0 (net_tap0)
#        switch port 1 (vhost-user server) <-> QEMU virtio-net (iommu_platform, ats)
#        guest eth0 10.9.0.2/24 pings 10.9.0.1 VXLATE_VM_PINGS times
#
# strict = iommu.strict=1 (every unmap invalidates at once), lazy =
# iommu.strict=0 (flush queue). Prints one summary line ("vm_run: ...") and
# exits 0 only if the guest got at least VXLATE_VM_MIN_REPLIES replies, QEMU
# and the switch exited cleanly and the switch refused no message.
# Everything it starts (switch, QEMU, netns, tap, socket) is removed on exit.
# Needs root, qemu-system-x86 (7.2), busybox-static, cpio, jq or python3.
#
# Environment (defaults in brackets):
#   VXLATE_SWITCH          switch binary [build/release/apps/vxlate-switch]
#   VXLATE_VM_DIR          guest (vmlinuz, initrd.img) [build/vm/guest];
#                          built with scripts/vm_initramfs.sh when missing
#                          (VXLATE_VM_CACHE applies)
#   VXLATE_VM_LOGDIR       logs [build/vm/logs/run-MODE-YYYYmmdd-HHMMSS]
#   VXLATE_VM_PINGS        pings [10]
#   VXLATE_VM_MIN_REPLIES  replies needed to pass [VXLATE_VM_PINGS]
#   VXLATE_VM_VECTORS      virtio-net MSI-X vectors: a number, or "default" to
#                          leave QEMU's default (crashes QEMU 7.2 TCG) [0]
#   VXLATE_VM_TIMEOUT      seconds for the whole guest run [300]
#   VXLATE_VM_NETNS        1: put the tap in its own netns; 0: root netns [1]
#   VXLATE_VM_STATS        switch --stats seconds (0: off) [1]
#   VXLATE_VM_STRACE       1: strace QEMU's socket I/O into the log dir [0]
#   VXLATE_VM_APPEND       extra guest kernel arguments []
#   VXLATE_VM_CACHING_MODE intel-iommu caching-mode, on|off [on]. With "on" a
#                          Linux 6.1 guest forces strict invalidation ("IOMMU
#                          batching disallowed due to virtualization"), so
#                          lazy only really differs with "off".
set -uo pipefail

MODE=${1:-}
case $MODE in
  strict) STRICT=1 ;;
  lazy) STRICT=0 ;;
  *) echo "usage: $0 strict|lazy" >&2; exit 2 ;;
esac

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/vm_lib.sh
source "$ROOT/scripts/vm_lib.sh"
SWITCH=${VXLATE_SWITCH:-$ROOT/build/release/apps/vxlate-switch}
GUEST=${VXLATE_VM_DIR:-$ROOT/build/vm/guest}
PINGS=${VXLATE_VM_PINGS:-10}
MIN=${VXLATE_VM_MIN_REPLIES:-$PINGS}
VECTORS=${VXLATE_VM_VECTORS:-0}
CMODE=${VXLATE_VM_CACHING_MODE:-on}
TMO=${VXLATE_VM_TIMEOUT:-300}
USE_NETNS=${VXLATE_VM_NETNS:-1}
STATS=${VXLATE_VM_STATS:-1}
STRACE=${VXLATE_VM_STRACE:-0}
LOG=${VXLATE_VM_LOGDIR:-$ROOT/build/vm/logs/run-$MODE-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$LOG"
LOG=$(cd "$LOG" && pwd)

TAG=vxvm$$
SOCK=/tmp/$TAG.sock
TAP=vxt$$
TAP=${TAP:0:15}
NS=$TAG
HOST_IP=10.9.0.1
GUEST_IP=10.9.0.2

die() {
  echo "vm_run: mode=$MODE result=FAIL reason=\"$*\" logs=$LOG"
  exit 1
}

SW_PID= QEMU_PID= NS_MADE=0
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $QEMU_PID ]] && kill -0 "$QEMU_PID" 2>/dev/null; then
    kill -TERM "$QEMU_PID" 2>/dev/null
    for _ in $(seq 20); do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$QEMU_PID" 2>/dev/null
  fi
  if [[ -n $SW_PID ]] && kill -0 "$SW_PID" 2>/dev/null; then
    kill -INT "$SW_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$SW_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SW_PID" 2>/dev/null
  fi
  wait 2>/dev/null
  [[ $NS_MADE == 1 ]] && ip netns del "$NS" 2>/dev/null
  ip link del "$TAP" 2>/dev/null
  rm -f "$SOCK"
  rm -rf "/var/run/dpdk/$TAG"
  exit $rc
}
trap cleanup EXIT
trap 'echo "vm_run: mode=$MODE result=FAIL reason=\"interrupted\" logs=$LOG"; exit 130' INT TERM

command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not installed"
[[ -x $SWITCH ]] || die "no switch binary at $SWITCH"
if [[ ! -f $GUEST/vmlinuz || ! -f $GUEST/initrd.img ]]; then
  "$ROOT/scripts/vm_initramfs.sh" "$GUEST" > "$LOG/initramfs.log" 2>&1 || die "vm_initramfs.sh failed (see $LOG/initramfs.log)"
fi

# --- the switch -------------------------------------------------------------
rm -f "$SOCK"
"$SWITCH" --no-huge --no-pci -m 256 --file-prefix "$TAG" -l 0,1 --vdev "net_tap0,iface=$TAP" -- \
  --vhost-user "$SOCK" --xconnect --stats "$STATS" --json > "$LOG/switch.out" 2> "$LOG/switch.err" &
SW_PID=$!
for _ in $(seq 100); do
  [[ -S $SOCK ]] && ip link show "$TAP" >/dev/null 2>&1 && break
  kill -0 "$SW_PID" 2>/dev/null || die "switch exited at start (see $LOG/switch.err)"
  sleep 0.1
done
[[ -S $SOCK ]] || die "switch did not create $SOCK"

# --- the host side of the tap ------------------------------------------------
NETNS_USED=0
if [[ $USE_NETNS == 1 ]] && ip netns add "$NS" 2>/dev/null; then
  NS_MADE=1
  if ip link set "$TAP" netns "$NS" 2>/dev/null; then
    NETNS_USED=1
  fi
fi
if [[ $NETNS_USED == 1 ]]; then
  IPH=(ip -n "$NS")
  "${IPH[@]}" link set lo up
else
  IPH=(ip)
fi
"${IPH[@]}" addr add "$HOST_IP/24" dev "$TAP" || die "cannot address $TAP"
"${IPH[@]}" link set "$TAP" up || die "cannot bring $TAP up"

# --- QEMU ----------------------------------------------------------------------
APPEND="console=ttyS0 intel_iommu=on iommu.strict=$STRICT panic=-1 vxip=$GUEST_IP/24 vxpeer=$HOST_IP vxping=$PINGS ${VXLATE_VM_APPEND:-}"
vm_qemu_argv "$SOCK" "$GUEST" "$APPEND" "$CMODE" "$VECTORS"
QEMU=("${VM_QEMU[@]}")
PRE=()
[[ $STRACE == 1 ]] && PRE=(strace -f -tt -xx -s 4096 -e trace=sendmsg,recvmsg,write,read,readv,writev -o "$LOG/qemu.strace")
printf '%q ' "${PRE[@]}" "${QEMU[@]}" > "$LOG/qemu.cmd"; echo >> "$LOG/qemu.cmd"
T0=$(date +%s.%N)
"${PRE[@]}" "${QEMU[@]}" < /dev/null > "$LOG/qemu.out" 2> "$LOG/qemu.err" &
QEMU_PID=$!
T_ETH= T_END= QRC=
while :; do
  now=$(date +%s.%N)
  if [[ -z $T_ETH ]] && grep -aq 'VXVM-UP stage=eth0' "$LOG/qemu.out" 2>/dev/null; then T_ETH=$now; fi
  if ! kill -0 "$QEMU_PID" 2>/dev/null; then
    wait "$QEMU_PID"; QRC=$?; QEMU_PID=; T_END=$now; break
  fi
  if awk -v a="$now" -v b="$T0" -v t="$TMO" 'BEGIN{exit !(a-b>t)}'; then
    T_END=$now; QRC=timeout; break
  fi
  sleep 0.2
done
if [[ $QRC == timeout ]]; then
  kill -TERM "$QEMU_PID" 2>/dev/null; sleep 1; kill -KILL "$QEMU_PID" 2>/dev/null; wait "$QEMU_PID" 2>/dev/null; QEMU_PID=
fi

# --- the switch's final counters ----------------------------------------------
SW_RC=dead
if kill -0 "$SW_PID" 2>/dev/null; then
  kill -INT "$SW_PID"
  for _ in $(seq 100); do kill -0 "$SW_PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$SW_PID" 2>/dev/null; then kill -KILL "$SW_PID"; SW_RC=hung; wait "$SW_PID" 2>/dev/null
  else wait "$SW_PID"; SW_RC=$?; fi
fi
SW_PID=
grep '^{"ports"' "$LOG/switch.out" | tail -1 > "$LOG/switch.json"

vu() {  # counter of the vhost-user port
  local k=$1
  [[ -s $LOG/switch.json ]] || { echo "?"; return; }
  if command -v jq >/dev/null; then
    jq -r --arg k "$k" '[.ports[] | select(.kind=="vhost-user")][0][$k] // "?"' "$LOG/switch.json"
  else
    python3 -c 'import json,sys; p=[x for x in json.load(open(sys.argv[1]))["ports"] if x["kind"]=="vhost-user"][0]; print(p.get(sys.argv[2],"?"))' "$LOG/switch.json" "$k"
  fi
}

OUT=$LOG/qemu.out
TX=$(sed -n 's/.*VXVM-PING transmitted=\([0-9]*\).*/\1/p' "$OUT" | tail -1)
RX=$(sed -n 's/.*VXVM-PING .*received=\([0-9]*\).*/\1/p' "$OUT" | tail -1)
ATS=$(sed -n 's/.*VXVM-ATS .*enabled=\([0-9]\).*/\1/p' "$OUT" | tail -1)
GUP=$(sed -n 's/.*VXVM-UP stage=eth0 uptime=\([0-9.]*\).*/\1/p' "$OUT" | tail -1)
DMAR_POLICY=$(vm_guest_policy "$OUT")
grep -a 'VXVM-DMAR' "$OUT" > "$LOG/guest-dmar.txt"
ETH_S=?; [[ -n $T_ETH ]] && ETH_S=$(awk -v a="$T_ETH" -v b="$T0" 'BEGIN{printf "%.1f", a-b}')
WALL_S=$(awk -v a="$T_END" -v b="$T0" 'BEGIN{printf "%.1f", a-b}')

REFUSED=$(vu refused)
SUMMARY="mode=$MODE pings=${RX:-0}/${TX:-0} need=$MIN vectors=$VECTORS caching_mode=$CMODE netns=$NETNS_USED ats=${ATS:-?} guest_policy=${DMAR_POLICY:-?}"
SUMMARY+=" eth0_up_s=$ETH_S guest_uptime_eth0=${GUP:-?} qemu_wall_s=$WALL_S qemu_rc=$QRC switch_rc=$SW_RC"
for k in iotlb_updates iotlb_invalidates misses_sent frames_held_for_miss ring_misses dropped guest_rx_dropped \
         interrupts connects disconnects messages refused iotlb_flushes invalidate_ack_ns_max rx_packets tx_packets; do
  SUMMARY+=" $k=$(vu "$k")"
done
REASON=
[[ $QRC == 0 ]] || REASON+="qemu_rc=$QRC;"
[[ $SW_RC == 0 ]] || REASON+="switch_rc=$SW_RC;"
[[ ${RX:-0} -ge $MIN ]] || REASON+="replies ${RX:-0}<$MIN;"
[[ $REFUSED == 0 ]] || REASON+="refused=$REFUSED;"
grep -aq 'VXVM-DONE' "$OUT" || REASON+="guest did not finish;"
if [[ -z $REASON ]]; then
  echo "vm_run: result=PASS $SUMMARY logs=$LOG" | tee "$LOG/summary.txt"
  exit 0
fi
echo "vm_run: result=FAIL reason=\"$REASON\" $SUMMARY logs=$LOG" | tee "$LOG/summary.txt"
exit 1
