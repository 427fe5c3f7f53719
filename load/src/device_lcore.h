// load/src/device_lcore.h: the device lcore of a netperf run: a vSwitch-like
// poll loop over every queue pair. Internal to vxlate::load.
//
// Each iteration dequeues a burst per queue pair into that pair's Peer, sends
// the peer's answers, reports one IOTLB quiescent state (no guest pointer is
// held between bursts), then services the virtio-iommu request queue with its
// own reader id (IommuQueues::poll: the grace period skips it, its cache
// applies the invalidations). An idle loop pauses and yields; after
// kIdleBeforeOffline idle iterations it goes offline for a moment so that no
// writer waits on it. It times itself: TSC cycles in iterations that found
// work and frames dequeued, published per iteration for the main lcore's
// windows, and its counters as they stood when the measured interval began.
//
// Thread-safety contract: Reader side (its own registered reader id) and
// Control side of the run's Device, on one worker lcore; it starts when the
// main lcore releases setup_done, releases device_started once its CPU clock
// is published, answers the main lcore's round-trip probe (lcore_probe.h)
// before its loop and after it stops on device_stop, then releases
// device_done.
#pragma once

namespace vxlate::load::detail {

// rte_eal_remote_launch entry of the device lcore; arg: the RunState.
int device_lcore_main(void* arg);

}  // namespace vxlate::load::detail
