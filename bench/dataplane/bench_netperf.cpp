// bench_netperf.cpp: the netperf-like workloads of vxlate-netperf as Google
// Benchmark cases, BM_Netperf/<workload>/<mode>, workload in {tcp_stream,
// udp_stream_64, tcp_rr}, mode in {identity, lazy, strict}.
//
// Each iteration is one complete run_netperf(): a fresh guest (memfd memory,
// rings, virtio-iommu and virtio-net drivers on the main lcore) and a fresh
// device side (engine, IOTLB, virtqueues on a worker lcore), exchanging
// kFrames data frames (tcp_rr: transactions) through real rings. identity
// (no vIOMMU) is the baseline for lazy and strict, in the same binary.
//
// items/s = frames (transactions) per second of the main lcore's CPU time,
// which busy-polls the whole run; the counters come from the run's own wall
// clock: pps, Gbit/s (goodput), translations/s, map/s, unmap/s, unmaps per
// sync, IOTLB hit rate, RR p50/p99 in microseconds, and where the time went
// (device busy share, share of device cycles in request handling, share of
// guest cycles waiting in sync_req). A run that was not clean (corrupt frame,
// poisoned buffer written, refused chain, failed request) is an error.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <string>

#include <rte_eal.h>

#include "vxlate/load/eal.h"
#include "vxlate/load/netperf.h"

namespace {

using namespace vxlate::load;

uint64_t frames_for(Workload w) {
  switch (w) {
    case Workload::kTcpStream: return 200000;
    case Workload::kUdpStream64: return 400000;
    case Workload::kTcpRr: return 50000;
  }
  return 0;
}

void BM_Netperf(benchmark::State& state, Workload w, Mode m) {
  NetperfConfig cfg;
  cfg.workload = w;
  cfg.mode = m;
  cfg.packets = frames_for(w);
  NetperfResult sum;
  double pps = 0, gbps = 0, xlate = 0, maps = 0, unmaps = 0, p50 = 0, p99 = 0, busy = 0, req = 0, sync = 0;
  uint64_t runs = 0;
  for (auto _ : state) {
    const NetperfResult r = run_netperf(cfg);
    if (!r.clean()) {
      state.SkipWithError("run not clean: corrupt frame, poison violation, bad chain or failed request");
      break;
    }
    ++runs;
    sum.packets += r.packets;
    sum.unmap_requests += r.unmap_requests;
    sum.syncs += r.syncs;
    sum.iotlb_hits += r.iotlb_hits;
    sum.iotlb_misses += r.iotlb_misses;
    pps += r.pps();
    gbps += r.gbps();
    xlate += r.translations / r.seconds;
    maps += r.map_requests / r.seconds;
    unmaps += r.unmap_requests / r.seconds;
    p50 += r.rr_p50_us;
    p99 += r.rr_p99_us;
    busy += r.device_busy_share;
    req += r.device_request_share;
    sync += r.guest_sync_share;
  }
  if (runs == 0) return;
  const double n = static_cast<double>(runs);
  state.SetItemsProcessed(static_cast<int64_t>(sum.packets));
  state.counters["pps"] = pps / n;
  state.counters["gbit_s"] = gbps / n;
  state.counters["xlate_s"] = xlate / n;
  state.counters["map_s"] = maps / n;
  state.counters["unmap_s"] = unmaps / n;
  state.counters["unmaps_per_sync"] = sum.unmaps_per_sync();
  state.counters["iotlb_hit"] = sum.hit_rate();
  if (w == Workload::kTcpRr) {
    state.counters["rr_p50_us"] = p50 / n;
    state.counters["rr_p99_us"] = p99 / n;
  }
  state.counters["dev_busy"] = busy / n;
  state.counters["dev_req"] = req / n;
  state.counters["guest_sync"] = sync / n;
}

}  // namespace

int main(int argc, char** argv) {
  if (!init_eal(argv[0], 2)) return 1;
  for (Workload w : {Workload::kTcpStream, Workload::kUdpStream64, Workload::kTcpRr})
    for (Mode m : {Mode::kIdentity, Mode::kLazy, Mode::kStrict})
      benchmark::RegisterBenchmark((std::string("BM_Netperf/") + to_string(w) + "/" + to_string(m)).c_str(),
                                   BM_Netperf, w, m)
          ->Unit(benchmark::kMillisecond);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  rte_eal_cleanup();
  return 0;
}
