// run_netperf(): the main lcore's part of a run. set_up_run() builds the
// RunState, sets the guest up (ATTACH, ring and lazy-mode MAPs, serviced by
// the guest's own sync() while no device lcore runs yet) and builds the
// device's NetDevice; run_netperf() launches the device lcore and guest
// queue pairs 1.. and waits until they run, probes the lcore round trip
// (lcore_probe.h), then starts the clock: it runs guest queue pair 0 itself
// through the warm-up and the measured interval (taking the base counts and
// the clean windows, netperf.h's Timing), stops and joins the others in
// order (guests, then the device, probing the round trip again), and reads
// the figures out.
#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "backoff.h"
#include "config.h"
#include "device_lcore.h"
#include "guest_qp.h"
#include "report.h"
#include "run_state.h"
#include "vxlate/load/netperf.h"

namespace vxlate::load {

using namespace detail;

namespace {
// Request round trips kept per run (2 x 4 MiB; about 0.4 s of strict-mode
// udp_stream_64 on this machine, where 2.4 M requests/s run); later ones are
// not recorded.
constexpr size_t kMaxRequestRttSamples = size_t{1} << 20;
}  // namespace

std::unique_ptr<RunState> detail::set_up_run(const NetperfConfig& cfg) {
  check_config(cfg);
  static std::atomic<unsigned> run_id{0};
  const uint64_t per_qp = 2 * (cfg.queue_size + std::max(cfg.lazy_flush, cfg.strict_batch) + 8) * kPage +
                          2 * (dataplane::desc_bytes(cfg.queue_size) * (1 + DriverQueue::kMaxIndirect) + 3 * kPage);
  auto state = std::make_unique<RunState>(
      cfg, ((uint64_t{cfg.queue_pairs} * per_qp + (8 << 20)) + kPage - 1) & ~(kPage - 1));
  RunState& run = *state;
  if (run.dev.set_mem_table(std::array<engine::MemRegion, 1>{run.mem.region()}) != Status::kOk)
    throw std::runtime_error("netperf: memory table refused");
  const std::string pool = "vxlate_np" + std::to_string(run_id.fetch_add(1));
  run.mp = rte_pktmbuf_pool_create(pool.c_str(), 8191, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                   static_cast<int>(rte_socket_id()));
  if (run.mp == nullptr) throw std::runtime_error("netperf: mbuf pool: " + std::string(rte_strerror(rte_errno)));

  // Setup on the main lcore: it services the request queue itself while the
  // device lcore is not running yet.
  std::vector<dataplane::QueueConfig> queues;
  for (uint16_t q = 0; q < cfg.queue_pairs; ++q) run.guests.push_back(std::make_unique<GuestQp>(run, q));
  if (run.iommu_on()) run.iommu.add_attach(kDomain, kNetEndpoint);
  for (auto& g : run.guests) g->setup_mappings();
  if (run.iommu.sync() != Status::kOk) throw std::runtime_error("netperf: guest setup requests failed");
  for (auto& g : run.guests) {
    queues.push_back(g->rxq->device_config(run.iommu_on(), EndpointId{kNetEndpoint}));
    queues.push_back(g->txq->device_config(run.iommu_on(), EndpointId{kNetEndpoint}));
  }
  run.net = std::make_unique<dataplane::NetDevice>(run.dev, queues, true);
  run.reader = run.rcu.register_reader();
  run.has_reader = true;
  run.iommu.set_idle(pause_idle);
  if (run.iommu_on()) {
    run.request_rtts.from_add.reserve(kMaxRequestRttSamples);
    run.request_rtts.from_kick.reserve(kMaxRequestRttSamples);
    run.iommu.record_round_trips(&run.request_rtts, [] { return rte_rdtsc(); });
  }
  return state;
}

NetperfResult run_netperf(const NetperfConfig& cfg) {
  const uint64_t t_call = rte_rdtsc();
  const std::unique_ptr<RunState> state = set_up_run(cfg);
  RunState& run = *state;
  // release: pairs with each worker's acquire in wait_setup(); setup is visible.
  run.setup_done.store(true, std::memory_order_release);
  std::vector<unsigned> workers;
  unsigned l;
  RTE_LCORE_FOREACH_WORKER(l) workers.push_back(l);
  if (rte_eal_remote_launch(device_lcore_main, &run, workers[0]) != 0)
    throw std::runtime_error("netperf: device lcore busy");
  run.guests_running.store(cfg.queue_pairs, std::memory_order_relaxed);
  for (uint16_t q = 1; q < cfg.queue_pairs; ++q) rte_eal_remote_launch(guest_lcore_main, run.guests[q].get(), workers[q]);
  // The clock starts once every lcore runs. acquire: pairs with each one's
  // release of its started flag; its CPU clock is published.
  while (!run.device_started.load(std::memory_order_acquire)) pause_idle();
  for (uint16_t q = 1; q < cfg.queue_pairs; ++q)
    while (!run.guests[q]->started.load(std::memory_order_acquire)) pause_idle();
  const double rtt_before = probe_ask(run.probe, 0);

  // Guest queue pair 0 runs here, between clock, window and progress checks:
  // warm-up, then the measured interval.
  const uint64_t hz = rte_get_tsc_hz();
  GuestQp& g0 = *run.guests[0];
  Windows windows(run);
  IommuBase iommu_base;
  uint64_t t_begin = 0;
  uint64_t deadline = UINT64_MAX;
  auto begin_measure = [&] {
    // relaxed: a request; every lcore takes its own base counts.
    run.measuring.store(true, std::memory_order_relaxed);
    g0.begin_measure();
    t_begin = g0.base.tsc;
    {
      std::lock_guard lock(run.iommu_lock);
      iommu_base = {run.iommu.maps(), run.iommu.unmaps(), run.iommu.syncs(), run.request_rtts.from_add.size()};
    }
    windows.start(t_begin);
    if (cfg.packets == 0) deadline = t_begin + static_cast<uint64_t>(cfg.seconds * double(hz));
  };
  const uint64_t t0 = rte_rdtsc();
  const uint64_t warm_end = t0 + static_cast<uint64_t>(cfg.warmup_seconds * double(hz));
  if (cfg.warmup_seconds == 0) begin_measure();
  // release: pairs with each guest lcore's acquire; so is measuring.
  run.go.store(true, std::memory_order_release);
  uint64_t next_progress = t0 + hz / 2;
  Backoff backoff;
  for (uint64_t now = t0;;) {
    if (!g0.measuring && now >= warm_end) begin_measure();
    if (g0.timed_step())
      backoff.reset();
    else
      backoff.idle();
    now = rte_rdtsc();
    windows.poll(now);
    if (cfg.progress && now >= next_progress) {
      cfg.progress(progress(run, double(now - t0) / double(hz)));
      next_progress += hz / 2;
    }
    if (now >= deadline || (g0.measuring && g0.budget_done())) break;
    if (cfg.clean_seconds > 0 && double(windows.clean_cycles()) >= cfg.clean_seconds * double(hz)) break;
  }
  g0.total_cycles = rte_rdtsc() - t_begin;
  run.guests_running.fetch_sub(1, std::memory_order_release);
  // relaxed: a stop request; the guests' counts are read after the acquire below.
  if (cfg.packets == 0) run.guest_stop.store(true, std::memory_order_relaxed);
  // acquire: pairs with each guest's release decrement; their counts are final.
  while (run.guests_running.load(std::memory_order_acquire) != 0) pause_idle();
  const uint64_t t1 = rte_rdtsc();
  windows.stop(t1);
  run.device_stop.store(true, std::memory_order_relaxed);
  const double rtt_after = probe_ask(run.probe, 1);
  // acquire: pairs with the device lcore's release of device_done.
  while (!run.device_done.load(std::memory_order_acquire)) pause_idle();
  rte_eal_mp_wait_lcore();

  NetperfResult r = collect(run, t_begin, t1, iommu_base, windows);
  r.setup_seconds = double(t0 - t_call) / double(hz);
  r.lcore_rtt_ns_before = rtt_before * 1e9 / double(hz);
  r.lcore_rtt_ns_after = rtt_after * 1e9 / double(hz);
  return r;
}

}  // namespace vxlate::load
