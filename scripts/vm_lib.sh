# shellcheck shell=bash
# vm_lib.sh: what scripts/vm_run.sh and scripts/e2e.sh share (sourced, not
# run): the QEMU command line of a guest behind QEMU 7.2's emulated Intel
# IOMMU (device IOTLB, ATS behind a PCIe root port, virtio-net over
# vhost-user) and the reading of its serial console.

# vm_qemu_argv SOCK GUESTDIR APPEND [CMODE [VECTORS [QUEUES [SMP]]]]: sets the
# array VM_QEMU to the QEMU command line.
#   CMODE    intel-iommu caching-mode, on|off [on]. With "on" a Linux 6.1
#            guest forces strict invalidation ("IOMMU batching disallowed due
#            to virtualization"): iommu.strict=0 is only lazy with "off".
#   VECTORS  virtio-net MSI-X vectors, or "default" (crashes QEMU 7.2 TCG) [0]
#   QUEUES   queue pairs (>1: vhost-user queues=N, virtio-net mq=on) [1]
#   SMP      guest CPUs [1]. More than one runs them all on one TCG thread
#            (thread=single): virtio_net enables min(queue pairs, CPUs) pairs
#            at probe, and busybox has no ethtool -L, so 2 pairs need 2 CPUs;
#            one thread keeps the host's load that of a 1-CPU guest.
# shellcheck disable=SC2054
vm_qemu_argv() {
  local sock=$1 guest=$2 append=$3 cmode=${4:-on} vectors=${5:-0} queues=${6:-1} smp=${7:-1}
  local vec=",vectors=$vectors" nq="" mq="" accel=tcg
  [[ $vectors == default ]] && vec=
  if ((queues > 1)); then
    nq=",queues=$queues"
    mq=",mq=on"
  fi
  VM_QEMU=(qemu-system-x86_64 -M q35)
  if ((smp > 1)); then
    VM_QEMU+=(-accel tcg,thread=single -smp "$smp")
  else
    VM_QEMU+=(-accel "$accel")
  fi
  VM_QEMU+=(-cpu max -m 512M
    -object memory-backend-memfd,id=mem,size=512M,share=on -numa node,memdev=mem
    -device "intel-iommu,intremap=off,device-iotlb=on,caching-mode=$cmode"
    -chardev "socket,id=c0,path=$sock" -netdev "vhost-user,id=n0,chardev=c0$nq"
    -device pcie-root-port,id=rp0,chassis=1
    -device "virtio-net-pci,bus=rp0,netdev=n0,iommu_platform=on,ats=on,disable-legacy=on,romfile=$mq$vec"
    -kernel "$guest/vmlinuz" -initrd "$guest/initrd.img" -append "$append" -nographic -no-reboot)
}

# vm_guest_policy CONSOLE_LOG: the invalidation policy the guest really used:
# strict, lazy, or lazy->strict(caching-mode) when the kernel was asked for
# lazy but forced strict because the IOMMU has caching mode; ? if unknown.
vm_guest_policy() {
  local p
  p=$(grep -ao 'invalidation policy: [a-z]*' "$1" 2>/dev/null | tail -1 | sed 's/.*: //')
  [[ -n $p && $p != strict ]] && grep -aq "IOMMU batching disallowed" "$1" && p="${p}->strict(caching-mode)"
  echo "${p:-?}"
}
