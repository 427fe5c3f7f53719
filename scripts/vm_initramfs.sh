#!/usr/bin/env bash
# vm_initramfs.sh OUTDIR: builds the guest for the QEMU-behind-vxlate-switch
# test (scripts/vm_run.sh): a Debian 6.1 cloud kernel and a busybox initramfs
# that loads the virtio-net modules, configures eth0, runs one command from
# the kernel command line and powers off.
#
# Writes OUTDIR/vmlinuz, OUTDIR/initrd.img and OUTDIR/kernel.txt (package and
# version). Idempotent: downloads are cached, and nothing is rebuilt when the
# inputs (kernel package, busybox, this script) have not changed.
#
# Environment:
#   VXLATE_VM_CACHE       download cache (default OUTDIR/cache)
#   VXLATE_VM_KERNEL_PKG  kernel package (default: the newest
#                         linux-image-6.1.*-cloud-amd64-unsigned apt knows)
#   VXLATE_VM_BUSYBOX     a static busybox binary (default /bin/busybox when it
#                         is static, else busybox-static downloaded into the cache)
#
# Needs: apt-get, apt-cache, dpkg-deb, cpio, gzip.
#
# Guest kernel command line understood by /init:
#   vxip=ADDR/LEN    eth0's address (default 10.9.0.2/24)
#   vxpeer=ADDR      the peer (default 10.9.0.1)
#   vxping=N         ping the peer N times (1 s apart, -W 3) and print
#                    "VXVM-PING transmitted=T received=R"
#   vxcmd=A,B,C      run "A B C" (commas become spaces) instead of / after vxping
#   vxhold=S         sleep S seconds before powering off
#   vxpingi=SECS     interval between pings (default 1)
#   vxpingq=Q        send the pings on transmit queue Q (XPS: every CPU
#                    mapped to queue Q alone; needs eth0 to have queue Q)
#   vxsend=PORT:N    after the pings, send `seq 1 N` to PEER:PORT over TCP
#                    (busybox nc) and print "VXVM-SEND ... md5=M rc=R"
#   vxrecv=PORT      then listen on PORT, take one TCP connection to its end
#                    and print "VXVM-RECV bytes=B md5=M rc=R"
#   vxxferq=Q        transmit queue for the transfers (as vxpingq)
#   vxxfert=SECS     time limit of each transfer (default 120)
# Lines /init prints start with "VXVM-" (VXVM-UP, VXVM-DMAR, VXVM-ATS,
# VXVM-QUEUES, VXVM-XPS, VXVM-PING, VXVM-SEND, VXVM-RECV, VXVM-FAULTS,
# VXVM-DONE) so a harness can grep the serial console. VXVM-QUEUES gives the
# queue pairs virtio_net enabled (it enables min(max pairs, online CPUs) at
# probe) and the online CPUs; VXVM-FAULTS counts the DMA-remapping faults the
# kernel logged ("DMAR: [DMA Read|Write ...] ... fault addr").
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
CACHE=${VXLATE_VM_CACHE:-$OUT/cache}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)

log() { echo "vm_initramfs: $*" >&2; }

# apt-get download writes into the current directory; as root it warns that
# _apt cannot write there, which is harmless.
apt_download() {  # PKG -> path of the .deb in $CACHE
  local pkg=$1 deb
  deb=$(ls "$CACHE"/"${pkg}"_*.deb 2>/dev/null | sort -V | tail -1 || true)
  if [[ -z $deb ]]; then
    log "downloading $pkg into $CACHE"
    (cd "$CACHE" && apt-get download "$pkg" >&2 2>/dev/null) || (cd "$CACHE" && apt-get download "$pkg" >&2)
    deb=$(ls "$CACHE"/"${pkg}"_*.deb | sort -V | tail -1)
  fi
  echo "$deb"
}

# --- kernel ---------------------------------------------------------------
KPKG=${VXLATE_VM_KERNEL_PKG:-}
if [[ -z $KPKG ]]; then
  # Prefer what is already cached (no apt lookup needed to stay idempotent).
  KPKG=$(ls "$CACHE"/linux-image-6.1.*-cloud-amd64-unsigned_*.deb 2>/dev/null | xargs -r -n1 basename |
         sed 's/_.*//' | sort -V | tail -1 || true)
  if [[ -z $KPKG ]]; then
    KPKG=$(apt-cache search --names-only '^linux-image-6\.1\.[0-9-]*-cloud-amd64-unsigned$' |
           awk '{print $1}' | sort -V | tail -1)
  fi
  [[ -n $KPKG ]] || { log "no linux-image-6.1 cloud package found (apt-get update?)"; exit 1; }
fi
KDEB=$(apt_download "$KPKG")
KDIR=$CACHE/x-$(basename "$KDEB" .deb)
if [[ ! -f $KDIR/.done ]]; then
  log "unpacking $(basename "$KDEB")"
  rm -rf "$KDIR"
  mkdir -p "$KDIR"
  dpkg-deb -x "$KDEB" "$KDIR"
  touch "$KDIR/.done"
fi
KVER=$(ls "$KDIR/lib/modules" | head -1)
VMLINUZ=$KDIR/boot/vmlinuz-$KVER
MODDIR=$KDIR/lib/modules/$KVER
[[ -f $VMLINUZ ]] || { log "no $VMLINUZ"; exit 1; }

# --- busybox --------------------------------------------------------------
is_static() { file -L "$1" 2>/dev/null | grep -q 'statically linked'; }
BB=${VXLATE_VM_BUSYBOX:-}
if [[ -z $BB ]]; then
  if [[ -x /bin/busybox ]] && is_static /bin/busybox; then
    BB=/bin/busybox
  else
    BDEB=$(apt_download busybox-static)
    BDIR=$CACHE/x-$(basename "$BDEB" .deb)
    if [[ ! -f $BDIR/.done ]]; then
      rm -rf "$BDIR"; mkdir -p "$BDIR"; dpkg-deb -x "$BDEB" "$BDIR"; touch "$BDIR/.done"
    fi
    BB=$BDIR/bin/busybox
  fi
fi
[[ -x $BB ]] || { log "no busybox at $BB"; exit 1; }

# --- modules: built in or loadable ----------------------------------------
MODS=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net)
declare -a KOS=()
for m in "${MODS[@]}"; do
  if grep -q "/$m\.ko\$" "$MODDIR/modules.builtin" 2>/dev/null; then
    log "$m is built in"
    continue
  fi
  ko=$(find "$MODDIR/kernel" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -1)
  [[ -n $ko ]] || { log "module $m neither built in nor found under $MODDIR"; exit 1; }
  case $ko in
    *.ko) ;;
    *) log "$ko is compressed: busybox insmod cannot load it"; exit 1 ;;
  esac
  KOS+=("$ko")
done

# --- up to date? -----------------------------------------------------------
STAMP=$( { echo "$KPKG $(basename "$KDEB")"; sha256sum "$BB" "$0" | awk '{print $1}'; printf '%s\n' "${KOS[@]}"; } | sha256sum | awk '{print $1}')
if [[ -f $OUT/initrd.img && -f $OUT/vmlinuz && -f $OUT/.stamp && $(cat "$OUT/.stamp") == "$STAMP" ]]; then
  log "up to date: $OUT/vmlinuz $OUT/initrd.img ($KVER)"
  exit 0
fi

# --- the tree --------------------------------------------------------------
ROOT=$(mktemp -d "$OUT/.root.XXXXXX")
trap 'rm -rf "$ROOT" "$OUT/.initrd.tmp"' EXIT
mkdir -p "$ROOT"/{bin,sbin,etc,proc,sys,dev,tmp,run,lib/modules}
cp "$BB" "$ROOT/bin/busybox"
for a in $("$BB" --list); do
  [[ $a == busybox ]] && continue
  ln -sf busybox "$ROOT/bin/$a"
done
: > "$ROOT/lib/modules/order"
for ko in "${KOS[@]}"; do
  cp "$ko" "$ROOT/lib/modules/"
  echo "$(basename "$ko")" >> "$ROOT/lib/modules/order"
done

cat > "$ROOT/init" <<'INIT'
#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mdev -s
up() { cut -d' ' -f1 /proc/uptime; }
echo "VXVM-UP stage=init uptime=$(up)"

arg() {  # arg NAME DEFAULT: value of NAME= on the kernel command line
  v=$(tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p" | tail -1)
  echo "${v:-$2}"
}
IP=$(arg vxip 10.9.0.2/24)
PEER=$(arg vxpeer 10.9.0.1)
NPING=$(arg vxping 0)
CMD=$(arg vxcmd "" | tr ',' ' ')
HOLD=$(arg vxhold 0)
PINGI=$(arg vxpingi 1)
PINGQ=$(arg vxpingq "")
SEND=$(arg vxsend "")
RECV=$(arg vxrecv "")
XFERQ=$(arg vxxferq "")
XFERT=$(arg vxxfert 120)

for ko in $(cat /lib/modules/order); do
  insmod /lib/modules/$ko || echo "VXVM-ERR insmod $ko failed"
done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
if [ ! -e /sys/class/net/eth0 ]; then
  echo "VXVM-ERR no eth0"
fi
ip link set lo up
ip addr add "$IP" dev eth0
ip link set eth0 up
echo "VXVM-UP stage=eth0 uptime=$(up) mac=$(cat /sys/class/net/eth0/address 2>/dev/null) ip=$IP"

dmesg | grep -i -e DMAR -e iommu | sed 's/^/VXVM-DMAR /'

# ATS on the virtio device: walk the PCIe extended capabilities (ATS = 0x000f).
for d in /sys/bus/pci/devices/*; do
  [ "$(cat $d/vendor)" = 0x1af4 ] || continue
  cfg=$d/config
  off=256
  while [ $off -ne 0 ]; do
    hdr=$(od -An -tx4 -j $off -N4 $cfg 2>/dev/null | tr -d ' ')
    [ -n "$hdr" ] && [ "$hdr" != 00000000 ] && [ "$hdr" != ffffffff ] || break
    id=$((0x$hdr & 0xffff)); nxt=$(((0x$hdr >> 20) & 0xffc))
    if [ $id -eq 15 ]; then
      ctl=$(od -An -tx2 -j $((off+6)) -N2 $cfg | tr -d ' ')
      en=$(((0x$ctl >> 15) & 1))
      echo "VXVM-ATS dev=$(basename $d) cap=$off ctl=0x$ctl enabled=$en"
    fi
    off=$nxt
  done
done

NCPU=$(grep -c '^processor' /proc/cpuinfo)
echo "VXVM-QUEUES rx=$(ls -d /sys/class/net/eth0/queues/rx-* 2>/dev/null | wc -l) tx=$(ls -d /sys/class/net/eth0/queues/tx-* 2>/dev/null | wc -l) cpus=$NCPU"

steer() {  # steer Q: XPS maps every CPU to transmit queue Q alone
  q=$1
  [ -n "$q" ] || return 0
  if [ ! -e /sys/class/net/eth0/queues/tx-$q/xps_cpus ]; then
    echo "VXVM-ERR no transmit queue $q"
    return 0
  fi
  all=$(printf '%x' $(( (1 << NCPU) - 1 )))
  for t in /sys/class/net/eth0/queues/tx-*; do echo 0 > $t/xps_cpus; done
  echo $all > /sys/class/net/eth0/queues/tx-$q/xps_cpus && echo "VXVM-XPS queue=$q cpus=0x$all"
}

if [ "$NPING" -gt 0 ]; then
  steer "$PINGQ"
  echo "VXVM-UP stage=ping uptime=$(up)"
  ping -c "$NPING" -i "$PINGI" -W 3 "$PEER" > /tmp/ping.out 2>&1
  cat /tmp/ping.out
  tx=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' /tmp/ping.out)
  rx=$(sed -n 's/.* \([0-9]*\) packets received.*/\1/p' /tmp/ping.out)
  echo "VXVM-PING transmitted=${tx:-0} received=${rx:-0} peer=$PEER uptime=$(up)"
fi
if [ -n "$SEND$RECV" ]; then
  steer "$XFERQ"
fi
if [ -n "$SEND" ]; then
  port=${SEND%%:*}; n=${SEND#*:}
  echo "VXVM-UP stage=send uptime=$(up)"
  want=$(seq 1 "$n" | md5sum | cut -d' ' -f1)
  seq 1 "$n" | timeout "$XFERT" nc "$PEER" "$port" > /dev/null
  rc=$?
  echo "VXVM-SEND peer=$PEER port=$port lines=$n bytes=$(seq 1 "$n" | wc -c) md5=$want rc=$rc uptime=$(up)"
fi
if [ -n "$RECV" ]; then
  echo "VXVM-UP stage=recv uptime=$(up) port=$RECV"
  timeout "$XFERT" nc -l -p "$RECV" < /dev/null > /tmp/recv.bin
  rc=$?
  echo "VXVM-RECV port=$RECV bytes=$(wc -c < /tmp/recv.bin) md5=$(md5sum /tmp/recv.bin | cut -d' ' -f1) rc=$rc uptime=$(up)"
  rm -f /tmp/recv.bin
fi
if [ -n "$CMD" ]; then
  echo "VXVM-CMD $CMD"
  sh -c "$CMD"
  echo "VXVM-CMD rc=$?"
fi
st=/sys/class/net/eth0/statistics
echo "VXVM-LINK rx_packets=$(cat $st/rx_packets) tx_packets=$(cat $st/tx_packets) rx_dropped=$(cat $st/rx_dropped) tx_dropped=$(cat $st/tx_dropped)"
grep -e virtio -e PCI-MSI -e IO-APIC /proc/interrupts | tr -s ' ' | sed 's/^/VXVM-IRQ /'
dmesg | grep -e 'fault addr' -e 'handling fault' -e 'DMA fault' > /tmp/faults.txt
echo "VXVM-FAULTS n=$(wc -l < /tmp/faults.txt)"
sed 's/^/VXVM-FAULT /' /tmp/faults.txt | head -20
[ "$HOLD" -gt 0 ] && sleep "$HOLD"
echo "VXVM-DONE uptime=$(up)"
sync
poweroff -f
echo o > /proc/sysrq-trigger
sleep 5
INIT
chmod +x "$ROOT/init"

# Reproducible archive: fixed mtimes, sorted names, root ownership.
find "$ROOT" -exec touch -h -d @0 {} +
(cd "$ROOT" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) |
  gzip -9 -n > "$OUT/.initrd.tmp"
mv -f "$OUT/.initrd.tmp" "$OUT/initrd.img"
cp -f "$VMLINUZ" "$OUT/vmlinuz"
printf 'package=%s\nversion=%s\ndeb=%s\n' "$KPKG" "$KVER" "$(basename "$KDEB")" > "$OUT/kernel.txt"
echo "$STAMP" > "$OUT/.stamp"
log "wrote $OUT/vmlinuz $OUT/initrd.img ($KVER, modules: ${#KOS[@]})"
