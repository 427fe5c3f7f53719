#include "report.h"

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include <rte_cycles.h>

namespace vxlate::load {

namespace detail {

namespace {

// The q-quantile of v (reorders v).
double percentile(std::vector<uint32_t>& v, double q) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return static_cast<double>(v[k]);
}

}  // namespace

NetperfProgress progress(const RunState& run, double seconds) {
  NetperfProgress pr{seconds, 0, 0};
  for (auto& g : run.guests) {
    // relaxed: progress counters, owner-written.
    pr.packets += g->packets.load(std::memory_order_relaxed);
    pr.payload_bytes += g->bytes.load(std::memory_order_relaxed);
  }
  return pr;
}

NetperfResult collect(RunState& run, uint64_t t0, uint64_t t1, uint64_t setup_maps) {
  const uint64_t hz = rte_get_tsc_hz();
  NetperfResult r;
  r.seconds = double(t1 - t0) / double(hz);
  std::vector<uint32_t> rtts;
  uint64_t sync_cycles = 0, guest_cycles = 0;
  for (auto& g : run.guests) {
    r.packets += g->packets.load(std::memory_order_relaxed);
    r.payload_bytes += g->bytes.load(std::memory_order_relaxed);
    r.rx_frames += g->rx_frames;
    r.corrupt += g->corrupt;
    r.poison_violations += g->poison_violations;
    rtts.insert(rtts.end(), g->rtt_cycles.begin(), g->rtt_cycles.end());
    sync_cycles += g->sync_cycles;
    guest_cycles += g->total_cycles;
  }
  r.corrupt += run.device.peer_corrupt;
  for (uint16_t q = 0; q < run.cfg.queue_pairs; ++q) {
    for (const dataplane::Virtqueue* vq : {&run.net->rxq(q), &run.net->txq(q)}) {
      r.translations += vq->stats().translations;
      r.bad_chains += vq->stats().bad_total();
    }
  }
  r.map_requests = run.iommu.maps() - setup_maps;
  r.unmap_requests = run.iommu.unmaps();
  // The setup sync is not part of the load (identity mode has none).
  r.syncs = run.iommu.syncs() > 0 ? run.iommu.syncs() - 1 : 0;
  r.request_bursts = run.iq.stats().bursts;
  r.request_failures = run.iommu.failures();
  const iotlb::Stats ts = run.dev.iotlb().reader_stats(run.reader);
  r.iotlb_hits = ts.hits;
  r.iotlb_misses = ts.misses;
  engine::FaultEvent ev[64];
  while (size_t n = run.dev.drain_events(ev)) r.fault_events += n;
  r.fault_events += run.iq.stats().events;
  if (!rtts.empty()) {
    r.rr_p50_us = percentile(rtts, 0.50) * 1e6 / double(hz);
    r.rr_p99_us = percentile(rtts, 0.99) * 1e6 / double(hz);
  }
  const DeviceCounters& d = run.device;
  r.device_busy_share = d.iters ? double(d.busy_iters) / double(d.iters) : 0;
  r.device_request_share = d.cycles ? double(d.request_cycles) / double(d.cycles) : 0;
  r.guest_sync_share = guest_cycles ? double(sync_cycles) / double(guest_cycles) : 0;
  return r;
}

}  // namespace detail

std::string to_json(const NetperfConfig& cfg, const NetperfResult& r) {
  char buf[1536];
  std::snprintf(buf, sizeof buf,
                "{\"workload\":\"%s\",\"mode\":\"%s\",\"queue_pairs\":%u,\"queue_size\":%u,\"seconds\":%.3f,"
                "\"packets\":%llu,\"packets_per_s\":%.0f,\"gbit_per_s\":%.3f,\"rx_frames\":%llu,"
                "\"translations_per_s\":%.0f,\"map_per_s\":%.0f,\"unmap_per_s\":%.0f,\"syncs\":%llu,"
                "\"unmaps_per_sync\":%.2f,\"request_bursts\":%llu,\"iotlb_hit_rate\":%.4f,"
                "\"rr_p50_us\":%.2f,\"rr_p99_us\":%.2f,\"device_busy_share\":%.3f,\"device_request_share\":%.3f,"
                "\"guest_sync_share\":%.3f,\"corrupt\":%llu,\"poison_violations\":%llu,\"bad_chains\":%llu,"
                "\"request_failures\":%llu,\"fault_events\":%llu}",
                to_string(cfg.workload), to_string(cfg.mode), unsigned{cfg.queue_pairs}, cfg.queue_size, r.seconds,
                static_cast<unsigned long long>(r.packets), r.pps(), r.gbps(),
                static_cast<unsigned long long>(r.rx_frames), r.translations / r.seconds, r.map_requests / r.seconds,
                r.unmap_requests / r.seconds, static_cast<unsigned long long>(r.syncs), r.unmaps_per_sync(),
                static_cast<unsigned long long>(r.request_bursts), r.hit_rate(), r.rr_p50_us, r.rr_p99_us,
                r.device_busy_share, r.device_request_share, r.guest_sync_share,
                static_cast<unsigned long long>(r.corrupt), static_cast<unsigned long long>(r.poison_violations),
                static_cast<unsigned long long>(r.bad_chains), static_cast<unsigned long long>(r.request_failures),
                static_cast<unsigned long long>(r.fault_events));
  return buf;
}

}  // namespace vxlate::load
