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
// DeviceLoop is that loop for one RunState, one iteration per call, so that
// one lcore can serve one run (device_lcore_main) or two runs in turn
// (device_lcore_paired: paired runs, netperf.h).
//
// Thread-safety contract: Reader side (its own registered reader id) and
// Control side of the run's Device, on one worker lcore. device_lcore_main
// starts when the main lcore releases setup_done, releases device_started
// once its CPU clock is published, answers the main lcore's round-trip probe
// (lcore_probe.h) before its loop and after it stops on device_stop, then
// releases device_done. device_lcore_paired does the same with the Pairing's
// flags, and serves whichever run `active` names (see Pairing).
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include <rte_mbuf.h>

#include "backoff.h"
#include "lcore_probe.h"
#include "peer.h"
#include "vxlate/dataplane/net.h"

namespace vxlate::load::detail {

struct RunState;

// The device side of one run, driven one iteration at a time; device lcore only.
class DeviceLoop {
 public:
  // Goes online as the run's reader and sets up a peer per queue pair.
  explicit DeviceLoop(RunState& run);
  // One poll iteration over every queue pair and the request queue; true when it found work.
  bool iterate();
  // The loop comes back to this run after serving another: the time between
  // is not this run's (neither its busy cycles nor its device cycles).
  void resume();
  // The loop is done: base counts if the measured interval never began,
  // queued answers dropped, offline.
  void finish();

 private:
  RunState& run_;
  std::vector<Peer> peers_;
  rte_mbuf* pkts_[dataplane::kMaxNetBurst];
  uint64_t busy_cycles_ = 0;
  uint64_t t_iter_;
  bool based_;
  Backoff backoff_;
};

// rte_eal_remote_launch entry of the device lcore; arg: the RunState.
int device_lcore_main(void* arg);

// Two runs on one device lcore and the main lcore, in turn (run_netperf_paired).
// The main lcore sets everything up, releases setup_done of both runs, and
// launches device_lcore_paired; from then on it owns `active` and the probe
// requests, the device lcore the two runs' device sides.
struct Pairing {
  RunState* runs[2] = {nullptr, nullptr};
  // The run the device lcore serves: written by the main lcore between two
  // of its guest steps, read by the device lcore at each iteration. relaxed:
  // the runs' rings carry their own ordering; which run is served is only a
  // matter of speed.
  alignas(64) std::atomic<uint32_t> active{0};
  // A probe request: n > 0 asks the device lcore to answer probe number n - 1
  // (short probes, kPairProbeBatches batches). relaxed: the probe line's own
  // release/acquire pairs order the round trips.
  std::atomic<uint32_t> probe_request{0};
  std::atomic<bool> stop{false};  // relaxed: a stop request; results read after done
  // release by the device lcore once device_clock is set / once it stopped;
  // acquire by the main lcore.
  std::atomic<bool> started{false};
  std::atomic<bool> done{false};
  clockid_t device_clock = CLOCK_THREAD_CPUTIME_ID;
  ProbeLine probe;
};

// Batches of a slice's probe (lcore_probe.h): 8 x 64 round trips, ~0.2 ms at 400 ns.
inline constexpr uint32_t kPairProbeBatches = 8;

// rte_eal_remote_launch entry of the paired device lcore; arg: the Pairing.
int device_lcore_paired(void* arg);

}  // namespace vxlate::load::detail
