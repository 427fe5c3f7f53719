#include "device_lcore.h"

#include <sched.h>

#include <vector>

#include <rte_cycles.h>
#include <rte_mbuf.h>

#include "backoff.h"
#include "peer.h"
#include "run_state.h"

namespace vxlate::load::detail {

using dataplane::kMaxNetBurst;

namespace {

// Idle poll iterations before the device lcore goes offline for a moment
// (a few hundred microseconds of nothing to do).
constexpr unsigned kIdleBeforeOffline = 1u << 16;

}  // namespace

int device_lcore_main(void* arg) {
  RunState& run = *static_cast<RunState*>(arg);
  run.wait_setup();
  const uint16_t qps = run.net->queue_pairs();
  std::vector<Peer> peers;
  peers.reserve(qps);
  for (uint16_t q = 0; q < qps; ++q) peers.emplace_back(run.cfg.workload, q);
  rte_mbuf* pkts[kMaxNetBurst];
  iotlb::Iotlb& tlb = run.dev.iotlb();
  tlb.online(run.reader);
  const uint64_t t_start = rte_rdtsc();
  Backoff backoff;
  // relaxed: a stop request; results are read after the lcore joins.
  while (!run.device_stop.load(std::memory_order_relaxed)) {
    bool work = false;
    for (uint16_t q = 0; q < qps; ++q) {
      Peer& p = peers[q];
      const uint16_t n = run.net->dequeue_burst(run.reader, q, run.mp, pkts, kMaxNetBurst);
      for (uint16_t i = 0; i < n; ++i)
        if (!p.receive(pkts[i], run.mp)) ++run.device.peer_corrupt;
      work |= p.flush(*run.net, run.reader);
      work |= n > 0;
    }
    tlb.quiescent(run.reader);  // between bursts: no guest pointer held
    const uint64_t t0 = rte_rdtsc();
    if (run.iq.poll(run.reader) > 0) {
      run.device.request_cycles += rte_rdtsc() - t0;
      work = true;
    }
    ++run.device.iters;
    if (work) {
      ++run.device.busy_iters;
      backoff.reset();
    } else {
      backoff.idle();  // pauses, and yields now and then (lcores may share a CPU)
      if (backoff.spins % kIdleBeforeOffline == 0) {
        // Idle for a while: go offline so no writer waits on us, let others
        // run, and come back (with an empty IOTLB cache) to poll again.
        tlb.offline(run.reader);
        sched_yield();
        tlb.online(run.reader);
      }
    }
  }
  run.device.cycles = rte_rdtsc() - t_start;
  for (Peer& p : peers) p.drop_queued();
  tlb.offline(run.reader);
  // release: pairs with the main lcore's acquire; the counters above are final.
  run.device_done.store(true, std::memory_order_release);
  return 0;
}

}  // namespace vxlate::load::detail
