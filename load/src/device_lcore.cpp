#include "device_lcore.h"

#include <sched.h>

#include <rte_cycles.h>

#include "run_state.h"
#include "thread_clock.h"

namespace vxlate::load::detail {

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

DeviceLoop::DeviceLoop(RunState& run) : run_(run), t_iter_(rte_rdtsc()), based_(run.cfg.warmup_seconds == 0) {
  const uint16_t qps = run.net->queue_pairs();
  peers_.reserve(qps);
  for (uint16_t q = 0; q < qps; ++q) peers_.emplace_back(run.cfg.workload, q);
  run.dev.iotlb().online(run.reader);
  // No warm-up: nothing moves before the main lcore's clock starts.
  if (based_) take_base(run, t_iter_);
}

void DeviceLoop::resume() { t_iter_ = rte_rdtsc(); }

bool DeviceLoop::iterate() {
  RunState& run = run_;
  // relaxed: a request to take the base counts (see RunState::measuring).
  if (!based_ && run.measuring.load(std::memory_order_relaxed)) {
    take_base(run, t_iter_);
    based_ = true;
  }
  bool work = false;
  for (uint16_t q = 0; q < peers_.size(); ++q) {
    Peer& p = peers_[q];
    const uint16_t n = run.net->dequeue_burst(run.reader, q, run.mp, pkts_, dataplane::kMaxNetBurst);
    for (uint16_t i = 0; i < n; ++i)
      if (!p.receive(pkts_[i], run.mp)) ++run.device.peer_corrupt;
    run.device.frames += n;
    work |= p.flush(*run.net, run.reader);
    work |= n > 0;
  }
  iotlb::Iotlb& tlb = run.dev.iotlb();
  tlb.quiescent(run.reader);  // between bursts: no guest pointer held
  const uint64_t t0 = rte_rdtsc();
  // Requests wait (batching: netperf.h) only while the data queues keep us busy.
  if (run.iq.poll(run.reader, nullptr, !work) > 0) {
    run.device.request_cycles += rte_rdtsc() - t0;
    work = true;
  }
  ++run.device.iters;
  const uint64_t t_end = rte_rdtsc();
  run.device.cycles += t_end - t_iter_;
  DeviceLive& live = run.device_live;
  if (work) {
    ++run.device.busy_iters;
    busy_cycles_ += t_end - t_iter_;
    // relaxed: live counts the main lcore samples per window; owner-written.
    live.frames.store(run.device.frames, std::memory_order_relaxed);
    live.busy_cycles.store(busy_cycles_, std::memory_order_relaxed);
    backoff_.reset();
  } else {
    backoff_.idle();  // pauses, and yields now and then (lcores may share a CPU)
    if (backoff_.spins % kIdleBeforeOffline == 0) {
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
  t_iter_ = t_end;
  return work;
}

void DeviceLoop::finish() {
  if (!based_) take_base(run_, t_iter_);
  for (Peer& p : peers_) p.drop_queued();
  run_.dev.iotlb().offline(run_.reader);
}

int device_lcore_main(void* arg) {
  RunState& run = *static_cast<RunState*>(arg);
  run.wait_setup();
  DeviceLoop loop(run);
  run.device_clock = own_cpu_clock();
  // release: pairs with the main lcore's acquire; device_clock is set.
  run.device_started.store(true, std::memory_order_release);
  probe_answer(run.probe, 0);
  // relaxed: a stop request; results are read after the lcore joins.
  while (!run.device_stop.load(std::memory_order_relaxed)) loop.iterate();
  probe_answer(run.probe, 1);
  loop.finish();
  // release: pairs with the main lcore's acquire; the counters above are final.
  run.device_done.store(true, std::memory_order_release);
  return 0;
}

int device_lcore_paired(void* arg) {
  Pairing& pair = *static_cast<Pairing*>(arg);
  pair.runs[0]->wait_setup();
  pair.runs[1]->wait_setup();
  DeviceLoop loops[2] = {DeviceLoop(*pair.runs[0]), DeviceLoop(*pair.runs[1])};
  pair.device_clock = own_cpu_clock();
  // release: pairs with the main lcore's acquire; device_clock is set.
  pair.started.store(true, std::memory_order_release);
  uint32_t serving = 0;
  uint32_t probes = 0;
  // relaxed: a stop request; results are read after `done`.
  while (!pair.stop.load(std::memory_order_relaxed)) {
    // relaxed: see Pairing.
    if (const uint32_t p = pair.probe_request.load(std::memory_order_relaxed); p != probes) {
      probe_answer(pair.probe, p - 1, kPairProbeBatches);
      probes = p;
    }
    // relaxed: see Pairing::active.
    if (const uint32_t a = pair.active.load(std::memory_order_relaxed) & 1; a != serving) {
      serving = a;
      loops[serving].resume();
    }
    loops[serving].iterate();
  }
  loops[0].finish();
  loops[1].finish();
  // release: pairs with the main lcore's acquire; both runs' counters are final.
  pair.done.store(true, std::memory_order_release);
  return 0;
}

}  // namespace vxlate::load::detail
