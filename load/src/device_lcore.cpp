#include "device_lcore.h"

#include <sched.h>

#include <vector>

#include <rte_cycles.h>
#include <rte_mbuf.h>

#include "backoff.h"
#include "peer.h"
#include "run_state.h"
#include "thread_clock.h"

namespace vxlate::load::detail {

using dataplane::kMaxNetBurst;

namespace {

// Idle poll iterations before the device lcore goes offline for a moment
// (a few hundred microseconds of nothing to do).
constexpr unsigned kIdleBeforeOffline = 1u << 16;

// The device side's counters now, as the base of the measured interval.
void take_base(RunState& run, uint64_t tsc) {
  DeviceBase& b = run.device_base;
  b.c = run.device;
  b.tsc = tsc;
  for (uint16_t q = 0; q < run.net->queue_pairs(); ++q)
    b.translations += run.net->rxq(q).stats().translations + run.net->txq(q).stats().translations;
  b.request_bursts = run.iq.stats().bursts;
  const iotlb::Stats ts = run.dev.iotlb().reader_stats(run.reader);
  b.iotlb_hits = ts.hits;
  b.iotlb_misses = ts.misses;
}

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
  DeviceLive& live = run.device_live;
  tlb.online(run.reader);
  run.device_clock = own_cpu_clock();
  // release: pairs with the main lcore's acquire; device_clock is set.
  run.device_started.store(true, std::memory_order_release);
  probe_answer(run.probe, 0);
  uint64_t busy_cycles = 0;
  uint64_t t_iter = rte_rdtsc();
  // No warm-up: nothing moves before the main lcore's clock starts.
  bool based = run.cfg.warmup_seconds == 0;
  if (based) take_base(run, t_iter);
  Backoff backoff;
  // relaxed: a stop request; results are read after the lcore joins.
  while (!run.device_stop.load(std::memory_order_relaxed)) {
    // relaxed: a request to take the base counts (see RunState::measuring).
    if (!based && run.measuring.load(std::memory_order_relaxed)) {
      take_base(run, t_iter);
      based = true;
    }
    bool work = false;
    for (uint16_t q = 0; q < qps; ++q) {
      Peer& p = peers[q];
      const uint16_t n = run.net->dequeue_burst(run.reader, q, run.mp, pkts, kMaxNetBurst);
      for (uint16_t i = 0; i < n; ++i)
        if (!p.receive(pkts[i], run.mp)) ++run.device.peer_corrupt;
      run.device.frames += n;
      work |= p.flush(*run.net, run.reader);
      work |= n > 0;
    }
    tlb.quiescent(run.reader);  // between bursts: no guest pointer held
    const uint64_t t0 = rte_rdtsc();
    // Requests wait (batching: netperf.h) only while the data queues keep us busy.
    if (run.iq.poll(run.reader, nullptr, !work) > 0) {
      run.device.request_cycles += rte_rdtsc() - t0;
      work = true;
    }
    ++run.device.iters;
    const uint64_t t_end = rte_rdtsc();
    if (work) {
      ++run.device.busy_iters;
      busy_cycles += t_end - t_iter;
      // relaxed: live counts the main lcore samples per window; owner-written.
      live.frames.store(run.device.frames, std::memory_order_relaxed);
      live.busy_cycles.store(busy_cycles, std::memory_order_relaxed);
      backoff.reset();
    } else {
      backoff.idle();  // pauses, and yields now and then (lcores may share a CPU)
      if (backoff.spins % kIdleBeforeOffline == 0) {
        // Idle for a while: go offline so no writer waits on us, let others
        // run (where lcores share CPUs), and come back (with an empty IOTLB
        // cache) to poll again.
        tlb.offline(run.reader);
        if (idle_yield.load(std::memory_order_relaxed)) sched_yield();  // relaxed: set before start (backoff.h)
        tlb.online(run.reader);
        ++run.device.offline;
      }
    }
    // relaxed: a sample for the main lcore (same_cpu_windows).
    if ((run.device.iters & 255) == 0) live.cpu.store(sched_getcpu(), std::memory_order_relaxed);
    t_iter = t_end;
  }
  if (!based) take_base(run, t_iter);
  run.device.cycles = rte_rdtsc() - run.device_base.tsc;
  probe_answer(run.probe, 1);
  for (Peer& p : peers) p.drop_queued();
  tlb.offline(run.reader);
  // release: pairs with the main lcore's acquire; the counters above are final.
  run.device_done.store(true, std::memory_order_release);
  return 0;
}

}  // namespace vxlate::load::detail
