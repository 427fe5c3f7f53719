#include "report.h"

#include <sched.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include <rte_cycles.h>

#include "thread_clock.h"

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

Windows::Windows(const RunState& run)
    : run_(run),
      ns_per_cycle_(1e9 / double(rte_get_tsc_hz())),
      period_(static_cast<uint64_t>(run.cfg.window_seconds * double(rte_get_tsc_hz()))) {
  clocks_.push_back(own_cpu_clock());
  clocks_.push_back(run.device_clock);
  for (size_t q = 1; q < run.guests.size(); ++q) clocks_.push_back(run.guests[q]->clock);
  if (period_ == 0) period_ = 1;
  const double n = run.cfg.packets == 0 ? run.cfg.seconds / run.cfg.window_seconds : 1024;
  windows_.reserve(static_cast<size_t>(std::min(n, 65536.0)) + 1);  // grows past that on long runs
}

void Windows::read_cpu(std::vector<uint64_t>& ns) const {
  ns.resize(clocks_.size());
  for (size_t i = 0; i < clocks_.size(); ++i) ns[i] = cpu_ns(clocks_[i]);
}

void Windows::start(uint64_t tsc) {
  t_start_ = tsc;
  resume(tsc);
  cpu_start_ = cpu_;
}

void Windows::resume(uint64_t tsc) {
  tsc_ = tsc;
  next_ = tsc + period_;
  read_cpu(cpu_);
  // relaxed: live counts, owner-written (see DeviceLive, GuestQp::busy_cycles).
  frames_ = run_.device_live.frames.load(std::memory_order_relaxed);
  device_busy_ = run_.device_live.busy_cycles.load(std::memory_order_relaxed);
  guest_busy_ = 0;
  for (auto& g : run_.guests) guest_busy_ += g->busy_cycles.load(std::memory_order_relaxed);
  prev_served_ = true;  // a warm-up (or a paired run's settling) ran before
}

void Windows::sample(uint64_t tsc) {
  read_cpu(scratch_);
  // relaxed: live counts, owner-written.
  const uint64_t frames = run_.device_live.frames.load(std::memory_order_relaxed);
  const uint64_t device_busy = run_.device_live.busy_cycles.load(std::memory_order_relaxed);
  uint64_t guest_busy = 0;
  for (auto& g : run_.guests) guest_busy += g->busy_cycles.load(std::memory_order_relaxed);
  const double wall_ns = double(tsc - tsc_) * ns_per_cycle_;
  bool served = true;
  for (size_t i = 0; i < scratch_.size(); ++i) served &= double(scratch_[i] - cpu_[i]) >= kCleanShare * wall_ns;
  // Clean: this window and the one before were served (no catch-up after a stall).
  const bool clean = served && prev_served_;
  prev_served_ = served;
  windows_.push_back({double(frames - frames_) * 1e9 / wall_ns, frames - frames_, device_busy - device_busy_,
                      guest_busy - guest_busy_, clean});
  if (clean) clean_cycles_ += tsc - tsc_;
  // relaxed: a sample of where the device lcore ran.
  if (run_.device_live.cpu.load(std::memory_order_relaxed) == sched_getcpu()) ++same_cpu_;
  tsc_ = tsc;
  next_ = tsc + period_;
  frames_ = frames;
  device_busy_ = device_busy;
  guest_busy_ = guest_busy;
  cpu_.swap(scratch_);
}

void Windows::stop(uint64_t tsc) {
  t_stop_ = tsc;
  next_ = UINT64_MAX;
  read_cpu(cpu_stop_);
}

void Windows::finish(NetperfResult& r) const {
  if (t_stop_ > t_start_ && !cpu_start_.empty()) {
    const double wall_ns = double(t_stop_ - t_start_) * ns_per_cycle_;
    auto share = [&](size_t i) { return double(cpu_stop_[i] - cpu_start_[i]) / wall_ns; };
    r.device_cpu_share = share(1);
    r.guest_cpu_share = share(0);
    for (size_t i = 2; i < clocks_.size(); ++i) r.guest_cpu_share = std::min(r.guest_cpu_share, share(i));
  }
  r.windows = windows_.size();
  r.same_cpu_windows = same_cpu_;
  std::vector<double> pps;
  uint64_t frames = 0, device_busy = 0, guest_busy = 0;
  for (const Window& w : windows_) {
    if (!w.clean) continue;
    pps.push_back(w.pps);
    frames += w.frames;
    device_busy += w.device_busy;
    guest_busy += w.guest_busy;
  }
  r.clean_windows = pps.size();
  if (!pps.empty()) {
    std::nth_element(pps.begin(), pps.begin() + static_cast<long>(pps.size() / 2), pps.end());
    r.clean_pps = pps[pps.size() / 2];
  }
  if (frames != 0) {
    r.device_cycles_per_frame = double(device_busy) / double(frames);
    r.guest_cycles_per_frame = double(guest_busy) / double(frames);
  }
}

NetperfResult collect(RunState& run, uint64_t t_begin, uint64_t t1, const IommuBase& iommu, const Windows& windows) {
  const uint64_t hz = rte_get_tsc_hz();
  NetperfResult r;
  r.seconds = double(t1 - t_begin) / double(hz);
  std::vector<uint32_t> rtts;
  uint64_t sync_cycles = 0, guest_cycles = 0;
  for (auto& g : run.guests) {
    r.packets += g->packets.load(std::memory_order_relaxed) - g->base.packets;
    r.payload_bytes += g->bytes.load(std::memory_order_relaxed) - g->base.bytes;
    r.rx_frames += g->rx_frames - g->base.rx_frames;
    r.corrupt += g->corrupt;
    r.poison_violations += g->poison_violations;
    rtts.insert(rtts.end(), g->rtt_cycles.begin() + static_cast<long>(g->base.rtts), g->rtt_cycles.end());
    sync_cycles += g->sync_cycles - g->base.sync_cycles;
    guest_cycles += g->total_cycles;
  }
  r.corrupt += run.device.peer_corrupt;
  const DeviceBase& base = run.device_base;
  for (uint16_t q = 0; q < run.cfg.queue_pairs; ++q) {
    for (const dataplane::Virtqueue* vq : {&run.net->rxq(q), &run.net->txq(q)}) {
      r.translations += vq->stats().translations;
      r.bad_chains += vq->stats().bad_total();
    }
  }
  r.translations -= base.translations;
  r.map_requests = run.iommu.maps() - iommu.maps;
  r.unmap_requests = run.iommu.unmaps() - iommu.unmaps;
  r.syncs = run.iommu.syncs() - iommu.syncs;
  r.request_bursts = run.iq.stats().bursts - base.request_bursts;
  r.request_failures = run.iommu.failures();
  const iotlb::Stats ts = run.dev.iotlb().reader_stats(run.reader);
  r.iotlb_hits = ts.hits - base.iotlb_hits;
  r.iotlb_misses = ts.misses - base.iotlb_misses;
  engine::FaultEvent ev[64];
  while (size_t n = run.dev.drain_events(ev)) r.fault_events += n;
  r.fault_events += run.iq.stats().events;
  if (!rtts.empty()) {
    r.rr_p50_us = percentile(rtts, 0.50) * 1e6 / double(hz);
    r.rr_p99_us = percentile(rtts, 0.99) * 1e6 / double(hz);
  }
  {
    // The lcores have stopped: no sync() appends any more.
    auto measured = [&](const std::vector<uint32_t>& all) {
      const size_t from = std::min(iommu.round_trips, all.size());
      return std::vector<uint32_t>(all.begin() + static_cast<long>(from), all.end());
    };
    std::vector<uint32_t> add = measured(run.request_rtts.from_add), kick = measured(run.request_rtts.from_kick);
    r.request_round_trips = add.size();
    if (!add.empty()) {
      r.request_rtt_p50_us = percentile(add, 0.50) * 1e6 / double(hz);
      r.request_rtt_p99_us = percentile(add, 0.99) * 1e6 / double(hz);
      r.request_kick_p50_us = percentile(kick, 0.50) * 1e6 / double(hz);
      r.request_kick_p99_us = percentile(kick, 0.99) * 1e6 / double(hz);
    }
  }
  const DeviceCounters& d = run.device;
  const uint64_t iters = d.iters - base.c.iters;
  r.device_busy_share = iters ? double(d.busy_iters - base.c.busy_iters) / double(iters) : 0;
  if (const uint64_t busy = d.busy_iters - base.c.busy_iters; busy != 0)
    r.device_frames_per_busy_iter = double(d.frames - base.c.frames) / double(busy);
  const uint64_t device_cycles = d.cycles - base.c.cycles;
  r.device_request_share =
      device_cycles ? double(d.request_cycles - base.c.request_cycles) / double(device_cycles) : 0;
  r.device_offline = d.offline - base.c.offline;
  if (const uint64_t reqs = r.map_requests + r.unmap_requests; reqs != 0)
    r.device_ns_per_request = double(d.request_cycles - base.c.request_cycles) * 1e9 / double(hz) / double(reqs);
  r.guest_sync_share = guest_cycles ? double(sync_cycles) / double(guest_cycles) : 0;
  windows.finish(r);
  return r;
}

}  // namespace detail

std::string to_json(const NetperfConfig& cfg, const NetperfResult& r) {
  char buf[4096];
  std::snprintf(buf, sizeof buf,
                "{\"workload\":\"%s\",\"mode\":\"%s\",\"queue_pairs\":%u,\"queue_size\":%u,\"setup_seconds\":%.4f,"
                "\"warmup_seconds\":%.3f,\"seconds\":%.3f,\"packets\":%llu,\"packets_per_s\":%.0f,"
                "\"gbit_per_s\":%.3f,\"rx_frames\":%llu,"
                "\"translations_per_s\":%.0f,\"map_per_s\":%.0f,\"unmap_per_s\":%.0f,\"syncs\":%llu,"
                "\"unmaps_per_sync\":%.2f,\"request_bursts\":%llu,\"iotlb_hit_rate\":%.4f,"
                "\"rr_p50_us\":%.2f,\"rr_p99_us\":%.2f,\"request_round_trips\":%llu,\"request_rtt_p50_us\":%.2f,"
                "\"request_rtt_p99_us\":%.2f,\"request_kick_p50_us\":%.2f,\"request_kick_p99_us\":%.2f,"
                "\"device_ns_per_request\":%.0f,\"device_busy_share\":%.3f,\"device_frames_per_busy_iter\":%.2f,"
                "\"device_request_share\":%.3f,"
                "\"guest_sync_share\":%.3f,\"guest_cpu_share\":%.3f,\"device_cpu_share\":%.3f,\"device_offline\":%llu,"
                "\"same_cpu_windows\":%llu,\"lcore_rtt_ns_before\":%.1f,\"lcore_rtt_ns_after\":%.1f,"
                "\"windows\":%llu,\"clean_windows\":%llu,\"clean_packets_per_s\":%.0f,"
                "\"device_cycles_per_frame\":%.1f,\"guest_cycles_per_frame\":%.1f,"
                "\"corrupt\":%llu,\"poison_violations\":%llu,\"bad_chains\":%llu,"
                "\"request_failures\":%llu,\"fault_events\":%llu}",
                to_string(cfg.workload), to_string(cfg.mode), unsigned{cfg.queue_pairs}, cfg.queue_size,
                r.setup_seconds, cfg.warmup_seconds, r.seconds, static_cast<unsigned long long>(r.packets), r.pps(),
                r.gbps(),
                static_cast<unsigned long long>(r.rx_frames), r.translations / r.seconds, r.map_requests / r.seconds,
                r.unmap_requests / r.seconds, static_cast<unsigned long long>(r.syncs), r.unmaps_per_sync(),
                static_cast<unsigned long long>(r.request_bursts), r.hit_rate(), r.rr_p50_us, r.rr_p99_us,
                static_cast<unsigned long long>(r.request_round_trips), r.request_rtt_p50_us, r.request_rtt_p99_us,
                r.request_kick_p50_us, r.request_kick_p99_us, r.device_ns_per_request,
                r.device_busy_share, r.device_frames_per_busy_iter, r.device_request_share, r.guest_sync_share,
                r.guest_cpu_share,
                r.device_cpu_share, static_cast<unsigned long long>(r.device_offline),
                static_cast<unsigned long long>(r.same_cpu_windows), r.lcore_rtt_ns_before, r.lcore_rtt_ns_after,
                static_cast<unsigned long long>(r.windows),
                static_cast<unsigned long long>(r.clean_windows), r.clean_pps, r.device_cycles_per_frame,
                r.guest_cycles_per_frame, static_cast<unsigned long long>(r.corrupt),
                static_cast<unsigned long long>(r.poison_violations), static_cast<unsigned long long>(r.bad_chains),
                static_cast<unsigned long long>(r.request_failures), static_cast<unsigned long long>(r.fault_events));
  return buf;
}

}  // namespace vxlate::load
