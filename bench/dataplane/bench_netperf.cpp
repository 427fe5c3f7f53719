// bench_netperf.cpp: the netperf-like workloads of vxlate-netperf as Google
// Benchmark cases, BM_Netperf/<workload>/<mode>, workload in {tcp_stream,
// udp_stream_64, tcp_rr}, mode in {identity, lazy, strict}. identity (no
// vIOMMU) is the baseline for lazy and strict, in the same binary.
//
// Each benchmark is one iteration: one run_netperf() (netperf.h, Timing) on
// two pinned lcores (the guest on the main lcore, the device on the worker,
// each on a CPU of its own where there are two): setup outside the clock, a
// warm-up, then a measured interval that ends once its clean windows (every
// lcore had its CPU) add up to --netperf_clean seconds, or after
// --netperf_seconds. One iteration because the binary sets Google Benchmark's
// --benchmark_min_time to 1 µs unless given one (the names stay
// BM_Netperf/<workload>/<mode>, which Iterations(1) or UseManualTime would
// suffix). Time and CPU are Google Benchmark's own, of the whole call, setup
// included; items_per_second is a counter set from the run instead: frames
// (tcp_rr: transactions) per second of the measured interval's wall clock,
// which moves with the load other processes put on the machine. The figures
// meant for comparing modes are the clean-window counters:
//   clean_pps        median over clean windows of frames/s;
//   dev_cyc_frame    device lcore TSC cycles in iterations that found work, per frame;
//   guest_cyc_frame  guest TSC cycles in driver passes that made progress, per frame;
// and what the machine did to the run: clean_share (clean windows / all),
// guest_cpu and dev_cpu (CPU time / wall), dev_offline (offline-when-idle
// episodes of the device lcore), lcore_rtt_ns (the cache-line round trip
// between the two lcores, the slower of the probes before and after the run:
// where the host put the vCPUs; compare runs alike). The rest: Gbit/s goodput, translations/s,
// map/s, unmap/s, unmaps per sync, IOTLB hit rate, RR p50/p99 in
// microseconds, device busy share, share of device cycles in request
// handling, share of guest cycles waiting in sync_req.
//
// BM_NetperfPaired/<workload>/<mode> (below) measures the mode against
// identity in one process, in turns of 20 ms: the figure the lazy >= 0.95 x
// identity goal is judged by (bench/paired.sh repeats it).
//
// One run per benchmark is one sample. For medians with a spread, and mode
// ratios against the identity run next to it, bench/netperf.sh runs the same
// runs through vxlate-netperf, interleaved by rounds; here,
// --benchmark_repetitions=N --benchmark_enable_random_interleaving=true
// shuffles the repetitions of all nine, and Google Benchmark's median and cv
// aggregates follow.
// A run that was not clean (corrupt frame, poisoned buffer written, refused
// chain, failed request) is an error.
//
// Own flags (before Google Benchmark's): --netperf_warmup=S (0.2),
// --netperf_clean=S (0.5), --netperf_seconds=S (the cap, 5).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <rte_eal.h>

#include "vxlate/load/eal.h"
#include "vxlate/load/netperf.h"

namespace {

using namespace vxlate::load;

struct Timing {
  double warmup = 0.2;
  double clean = 0.5;
  double seconds = 5.0;
} timing;

void BM_Netperf(benchmark::State& state, Workload w, Mode m) {
  NetperfConfig cfg;
  cfg.workload = w;
  cfg.mode = m;
  cfg.warmup_seconds = timing.warmup;
  cfg.clean_seconds = timing.clean;
  cfg.seconds = timing.seconds;
  NetperfResult r;
  for (auto _ : state) {
    r = run_netperf(cfg);
    if (!r.clean()) {
      state.SkipWithError("run not clean: corrupt frame, poison violation, bad chain or failed request");
      return;
    }
  }
  state.counters["items_per_second"] = r.pps();
  state.counters["pps"] = r.pps();
  state.counters["clean_pps"] = r.clean_pps;
  state.counters["dev_cyc_frame"] = r.device_cycles_per_frame;
  state.counters["guest_cyc_frame"] = r.guest_cycles_per_frame;
  state.counters["clean_share"] = r.windows ? double(r.clean_windows) / double(r.windows) : 0;
  state.counters["guest_cpu"] = r.guest_cpu_share;
  state.counters["dev_cpu"] = r.device_cpu_share;
  state.counters["dev_offline"] = static_cast<double>(r.device_offline);
  state.counters["lcore_rtt_ns"] = std::max(r.lcore_rtt_ns_before, r.lcore_rtt_ns_after);
  state.counters["gbit_s"] = r.gbps();
  state.counters["xlate_s"] = r.translations / r.seconds;
  state.counters["map_s"] = r.map_requests / r.seconds;
  state.counters["unmap_s"] = r.unmap_requests / r.seconds;
  state.counters["unmaps_per_sync"] = r.unmaps_per_sync();
  state.counters["iotlb_hit"] = r.hit_rate();
  if (w == Workload::kTcpRr) {
    state.counters["rr_p50_us"] = r.rr_p50_us;
    state.counters["rr_p99_us"] = r.rr_p99_us;
  }
  if (r.request_round_trips != 0) {
    state.counters["req_p50_us"] = r.request_rtt_p50_us;
    state.counters["req_p99_us"] = r.request_rtt_p99_us;
    state.counters["req_kick_p50_us"] = r.request_kick_p50_us;
    state.counters["req_kick_p99_us"] = r.request_kick_p99_us;
    state.counters["dev_ns_req"] = r.device_ns_per_request;
  }
  state.counters["dev_busy"] = r.device_busy_share;
  state.counters["dev_frames_per_busy_iter"] = r.device_frames_per_busy_iter;
  state.counters["dev_req"] = r.device_request_share;
  state.counters["guest_sync"] = r.guest_sync_share;
}

// BM_NetperfPaired/<workload>/<mode>: identity and <mode> as paired runs
// (run_netperf_paired, netperf.h): set up side by side, served in turns of
// 20 ms by the same two lcores, each <mode> slice against the identity
// slices around it. The mode's speed against identity, measured where both
// saw the same host placement: x_pps (frames/s, mode / identity), x_dev_cyc
// and x_guest_cyc (cycles per frame, identity / mode), each the median over
// the counted triples, with x_pps_p25 and x_pps_p75; triples and counted
// (clean, in one placement); lcore_rtt_ns, the counted slices' median round
// trip (the ratio itself moves with the placement). Warm-up, clean seconds
// and cap as above, per mode.
void BM_NetperfPaired(benchmark::State& state, Workload w, Mode m) {
  NetperfConfig a;
  a.workload = w;
  a.mode = Mode::kIdentity;
  a.warmup_seconds = timing.warmup;
  a.clean_seconds = timing.clean;
  a.seconds = timing.seconds;
  NetperfConfig b = a;
  b.mode = m;
  PairedResult res;
  for (auto _ : state) {
    res = run_netperf_paired(a, b, 0.02);
    if (!res.a.clean() || !res.b.clean()) {
      state.SkipWithError("run not clean: corrupt frame, poison violation, bad chain or failed request");
      return;
    }
  }
  const PairedSummary& x = res.summary;
  state.counters["x_pps"] = x.pps.median;
  state.counters["x_pps_p25"] = x.pps.p25;
  state.counters["x_pps_p75"] = x.pps.p75;
  state.counters["x_dev_cyc"] = x.device_cycles.median;
  state.counters["x_guest_cyc"] = x.guest_cycles.median;
  state.counters["triples"] = static_cast<double>(x.triples);
  state.counters["counted"] = static_cast<double>(x.counted);
  state.counters["lcore_rtt_ns"] = x.rtt_ns_median;
  state.counters["identity_clean_pps"] = res.a.clean_pps;
  state.counters["mode_clean_pps"] = res.b.clean_pps;
}

// Takes --netperf_<name>=S out of argv into *v; false on a bad value.
bool take_flag(int& argc, char** argv, int i, std::string_view name, double* v) {
  const std::string prefix = "--netperf_" + std::string(name) + "=";
  if (std::strncmp(argv[i], prefix.c_str(), prefix.size()) != 0) return true;
  char* end = nullptr;
  const char* s = argv[i] + prefix.size();
  *v = std::strtod(s, &end);
  if (end == s || *end != '\0' || !(*v >= 0) || *v > 3600) {
    std::fprintf(stderr, "bench_netperf: bad value in %s\n", argv[i]);
    return false;
  }
  for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
  --argc;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc;) {
    const int before = argc;
    if (!take_flag(argc, argv, i, "warmup", &timing.warmup) || !take_flag(argc, argv, i, "clean", &timing.clean) ||
        !take_flag(argc, argv, i, "seconds", &timing.seconds))
      return 2;
    if (argc == before) ++i;
  }
  if (!(timing.seconds > 0)) {
    std::fprintf(stderr, "bench_netperf: --netperf_seconds must be > 0\n");
    return 2;
  }
  if (!init_eal(argv[0], 2, /*pin=*/true)) return 1;
  for (Workload w : {Workload::kTcpStream, Workload::kUdpStream64, Workload::kTcpRr})
    for (Mode m : {Mode::kIdentity, Mode::kLazy, Mode::kStrict})
      benchmark::RegisterBenchmark((std::string("BM_Netperf/") + to_string(w) + "/" + to_string(m)).c_str(),
                                   BM_Netperf, w, m)
          ->Unit(benchmark::kMillisecond);
  for (Workload w : {Workload::kTcpStream, Workload::kUdpStream64, Workload::kTcpRr})
    for (Mode m : {Mode::kLazy, Mode::kStrict})
      benchmark::RegisterBenchmark((std::string("BM_NetperfPaired/") + to_string(w) + "/" + to_string(m)).c_str(),
                                   BM_NetperfPaired, w, m)
          ->Unit(benchmark::kMillisecond);
  // One iteration per run (see the file note), unless asked otherwise.
  std::vector<char*> args(argv, argv + argc);
  char min_time[] = "--benchmark_min_time=0.000001";
  auto is_min_time = [](const char* a) { return std::strncmp(a, "--benchmark_min_time", 20) == 0; };
  if (std::none_of(args.begin(), args.end(), is_min_time)) args.push_back(min_time);
  args.push_back(nullptr);
  argc = static_cast<int>(args.size()) - 1;
  argv = args.data();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  rte_eal_cleanup();
  return 0;
}
