// vxlate-netperf: netperf-like load through vxlate's virtqueues, virtio-iommu
// queues and translation engine on DPDK lcores (see vxlate/load/netperf.h).
//
//   vxlate-netperf [--workload tcp_stream|udp_stream_64|tcp_rr|all]
//                  [--mode identity|lazy|strict|all] [--queue-pairs N]
//                  [--queue-size N] [--seconds S] [--packets N] [--json]
//                  [--lazy-recycle N] [--lazy-flush N] [--lazy-move 0|1] [--strict-batch N]
//                  [--warmup S] [--window S] [--clean S] [--repeat N] [--pin]
//                  [--random-buffers] [--request-batch N] [--request-wait-us U]
//                  [--pair lazy|strict [--slice S]]
//
// Default: tcp_stream in lazy mode (the vIOMMU on) for 2 seconds. A live
// progress line goes to stderr; results go to stdout, one line per run
// (--json: one JSON object per line). Exit status 1 when a run was not clean
// (a corrupt frame, a poisoned buffer written, a refused chain, a failed request).
//
// Measuring (netperf.h, Timing): --warmup S runs S seconds of traffic before
// the measured --seconds; --window S sets the clean-window length (default
// 0.001); --clean S ends the measured interval once its clean windows add
// up to S seconds (--seconds is then the cap); --pin puts each lcore on a CPU
// of its own where there are enough; --lazy-move 0 keeps each recycled
// buffer at its IOVA and sends the recycle's UNMAP and MAP for a spare IOVA
// instead (NetperfConfig::lazy_move: what the requests cost without the move);
// --random-buffers has the driver take a random free buffer, not the last
// transmit buffer freed nor the next receive buffer in address order, so the
// frames the device reads and writes lie at no constant stride;
// --request-batch N (default 16; 1: off) and --request-wait-us U (default
// 1000) set how the device lcore, while busy with frames, holds virtio-iommu
// requests for batching (NetperfConfig::request_batch);
// --repeat N runs every workload's modes N times, interleaved (identity,
// lazy, strict, identity, ..., and a last identity), and ends with a summary
// per workload and mode: the median over the N runs and their spread ((max -
// min) / median) of frames/s, clean-window frames/s and the device's and
// guest's cycles per frame, and each mode's speed against the identity runs
// around it where those agree; runs are grouped by the lcore round trip the
// run probed (where the host put the vCPUs), and runs that did not get their
// CPUs or were moved are left out (print_summary() below).
// --pair MODE runs identity and MODE side by side, in turns of --slice
// seconds (default 0.02) on the same two lcores, and prints MODE's speed
// against identity from the slices: the median of each MODE slice against
// the identity slices around it (run_netperf_paired in netperf.h; --seconds
// and --clean then count per mode, --warmup too); with --repeat N, N pairs
// per workload, each set up afresh (alternately the mode's run first), and
// the median and range of the pairs' figures.
// bench/netperf.sh runs it with the settings of BM_Netperf.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <unistd.h>

#include <cerrno>

#include <rte_eal.h>

#include "vxlate/load/cli.h"
#include "vxlate/load/eal.h"
#include "vxlate/load/netperf.h"

using namespace vxlate::load;

namespace {

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "vxlate-netperf: %s\n"
               "usage: vxlate-netperf [--workload tcp_stream|udp_stream_64|tcp_rr|all] [--mode identity|lazy|strict|all]\n"
               "                      [--queue-pairs N] [--queue-size N] [--seconds S] [--packets N] [--json]\n"
               "                      [--lazy-recycle N] [--lazy-flush N] [--lazy-move 0|1] [--strict-batch N]\n"
               "                      [--random-buffers] [--request-batch N] [--request-wait-us U]\n"
               "                      [--warmup S] [--window S] [--clean S] [--repeat N] [--pin]\n"
               "                      [--pair lazy|strict [--slice S]]\n",
               msg);
  std::exit(2);
}

unsigned long parse_uint(const char* opt, const char* v, unsigned long max) {
  return vxlate::load::parse_uint(opt, v, max, usage);
}

// Seconds in [min, 3600].
double parse_seconds(const char* opt, const char* v, double min) {
  char* end = nullptr;
  const double x = std::strtod(v, &end);
  if (end == v || *end != '\0' || !(x >= min) || x > 3600) usage((std::string("bad value for ") + opt).c_str());
  return x;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// (max - min) / median, in percent.
double spread(const std::vector<double>& v) {
  const double m = median(v);
  if (v.empty() || m == 0) return 0;
  const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  return (*hi - *lo) / m * 100;
}

// The --repeat summary. A run counts when it was served (its clean windows
// add up to 90% of --clean, or 100 windows without it; the others lost their
// CPUs to other processes for most of the run) and was not moved: its two
// round-trip probes fall in one placement. Placements: the probes of all
// runs, sorted, fall into clusters wherever one is more than 1.4 times the
// one before (on the 2-vCPU development guest about 25, 60 and 300 ns; the
// host moves the vCPUs between them every few seconds to minutes, and a
// frame's cost moves with them). Per placement, workload and mode: the
// median of each figure over the runs that count, and its spread. For lazy
// and strict, "x": the speed against identity, per run, against the two
// identity runs around it (the one before and the one after, a run apart):
// frames/s mode / identity, cycles per frame identity / mode, the identity
// figure being the mean of the two; only where both identity runs count in
// the same placement and agree within kBracket, so that the machine was the
// same for all three (anything that moved the host's speed shows as
// identity disagreeing with itself); its median, spread and count.
constexpr double kBracket = 0.03;

void print_summary(const std::vector<Workload>& workloads, const std::vector<Mode>& modes,
                   const std::vector<std::pair<NetperfConfig, NetperfResult>>& runs, unsigned long repeat) {
  struct Figure {
    const char* name;
    double (*get)(const NetperfResult&);
    bool cost;  // lower is faster
  };
  const Figure figures[] = {
      {"pkt/s", [](const NetperfResult& r) { return r.pps(); }, false},
      {"clean pkt/s", [](const NetperfResult& r) { return r.clean_pps; }, false},
      {"device cyc/frame", [](const NetperfResult& r) { return r.device_cycles_per_frame; }, true},
      {"guest cyc/frame", [](const NetperfResult& r) { return r.guest_cycles_per_frame; }, true},
  };
  std::vector<double> probes;
  for (const auto& [cfg, r] : runs) probes.insert(probes.end(), {r.lcore_rtt_ns_before, r.lcore_rtt_ns_after});
  std::sort(probes.begin(), probes.end());
  std::vector<std::pair<double, double>> clusters;  // [lo, hi] of each placement's probes
  for (double p : probes) {
    if (clusters.empty() || p > 1.4 * clusters.back().second)
      clusters.emplace_back(p, p);
    else
      clusters.back().second = p;
  }
  auto cluster_of = [&](double p) {
    size_t c = 0;
    while (c + 1 < clusters.size() && p > clusters[c].second) ++c;
    return c;
  };
  // The placement a run counts in, or -1.
  std::vector<long> placement;
  size_t unserved = 0, moved = 0;
  for (const auto& [cfg, r] : runs) {
    const double need = cfg.clean_seconds > 0 ? 0.9 * cfg.clean_seconds / cfg.window_seconds : 100;
    const bool served = double(r.clean_windows) >= need;
    const bool still = cluster_of(r.lcore_rtt_ns_before) == cluster_of(r.lcore_rtt_ns_after);
    unserved += !served;
    moved += !still;
    placement.push_back(served && still ? static_cast<long>(cluster_of(r.lcore_rtt_ns_before)) : -1);
  }
  std::printf("summary over %lu rounds: median (spread = (max - min) / median); x: speed vs the identity runs "
              "around it, where they agree within %.0f%%: median (spread, count); left out: %zu runs not served, "
              "%zu moved between placements\n",
              repeat, 100 * kBracket, unserved, moved);
  for (size_t c = 0; c < clusters.size(); ++c) {
    const size_t n = static_cast<size_t>(std::count(placement.begin(), placement.end(), static_cast<long>(c)));
    if (n == 0) continue;
    std::printf("lcore round trip %.0f-%.0f ns: %zu runs\n", clusters[c].first, clusters[c].second, n);
    for (Workload w : workloads) {
      for (Mode m : modes) {
        std::vector<size_t> mine;  // indices into runs
        for (size_t i = 0; i < runs.size(); ++i)
          if (runs[i].first.workload == w && runs[i].first.mode == m && placement[i] == static_cast<long>(c))
            mine.push_back(i);
        if (mine.empty()) continue;
        std::printf("%-13s %-8s", to_string(w), to_string(m));
        for (const Figure& f : figures) {
          std::vector<double> v, ratio;
          for (size_t i : mine) {
            v.push_back(f.get(runs[i].second));
            if (m == Mode::kIdentity) continue;
            // The identity runs of this workload just before and just after.
            auto identity = [&](size_t j, int step) -> const NetperfResult* {
              for (j += step; j < runs.size(); j += step)
                if (runs[j].first.workload == w && runs[j].first.mode == Mode::kIdentity)
                  return placement[j] == static_cast<long>(c) ? &runs[j].second : nullptr;
              return nullptr;
            };
            const NetperfResult* a = identity(i, -1);
            const NetperfResult* b = identity(i, +1);
            if (a == nullptr || b == nullptr) continue;
            const double x = f.get(runs[i].second), ia = f.get(*a), ib = f.get(*b), id = (ia + ib) / 2;
            if (x > 0 && ia > 0 && ib > 0 && std::abs(ia - ib) <= kBracket * id)
              ratio.push_back(f.cost ? id / x : x / id);
          }
          std::printf("  %s %.4g (%.1f%%)", f.name, median(v), spread(v));
          if (m == Mode::kIdentity) continue;
          if (ratio.empty())
            std::printf(" x- (0)");
          else
            std::printf(" x%.3f (%.1f%%, %zu)", median(ratio), spread(ratio), ratio.size());
        }
        std::printf("\n");
      }
    }
  }
}

// One run's result line (or JSON object).
void print_run(const NetperfConfig& cfg, const NetperfResult& r, bool json) {
  const Workload w = cfg.workload;
  const Mode m = cfg.mode;
  if (json) {
    std::printf("%s\n", to_json(cfg, r).c_str());
  } else {
    std::printf("%-13s %-8s qp=%u  %10.0f pkt/s  %7.3f Gbit/s  %9.0f xlate/s  map %8.0f/s  unmap %8.0f/s  "
                "%6.1f unmaps/sync  iotlb hit %5.1f%%",
                to_string(w), to_string(m), unsigned{cfg.queue_pairs}, r.pps(), r.gbps(),
                r.translations / r.seconds, r.map_requests / r.seconds, r.unmap_requests / r.seconds,
                r.unmaps_per_sync(), 100 * r.hit_rate());
    if (w == Workload::kTcpRr) std::printf("  rtt p50 %.1f us p99 %.1f us", r.rr_p50_us, r.rr_p99_us);
    if (r.request_round_trips != 0)
      std::printf("  request rtt p50/p99 %.2f/%.2f us from add, %.2f/%.2f us from kick (device %.0f ns each)",
                  r.request_rtt_p50_us, r.request_rtt_p99_us, r.request_kick_p50_us, r.request_kick_p99_us,
                  r.device_ns_per_request);
    std::printf("  | device busy %.0f%% (requests %.0f%%, %.1f frames per busy iteration), guest in sync_req %.0f%%",
                100 * r.device_busy_share, 100 * r.device_request_share, r.device_frames_per_busy_iter,
                100 * r.guest_sync_share);
    std::printf("  | lcore rtt %.0f/%.0f ns, cpu guest %.0f%% device %.0f%%, clean windows %llu/%llu: "
                "%10.0f pkt/s, cyc/frame device %.0f guest %.0f, device offline %llu%s\n",
                r.lcore_rtt_ns_before, r.lcore_rtt_ns_after, 100 * r.guest_cpu_share, 100 * r.device_cpu_share,
                static_cast<unsigned long long>(r.clean_windows), static_cast<unsigned long long>(r.windows),
                r.clean_pps, r.device_cycles_per_frame, r.guest_cycles_per_frame,
                static_cast<unsigned long long>(r.device_offline), r.clean() ? "" : "  NOT CLEAN");
    if (!r.clean())
      std::printf("  corrupt=%llu poison_violations=%llu bad_chains=%llu request_failures=%llu\n",
                  static_cast<unsigned long long>(r.corrupt), static_cast<unsigned long long>(r.poison_violations),
                  static_cast<unsigned long long>(r.bad_chains),
                  static_cast<unsigned long long>(r.request_failures));
  }
}

// The --pair --repeat summary of one workload: the pairs grouped by
// placement (their slices' median lcore round trip, a new group wherever one
// is more than kPairedPlacement times the one before, as print_summary()
// clusters its probes: the ratio itself moves with the placement), per group the
// median and range of the pairs' medians. pairs: {rtt ns, x frames/s, x
// device cycles, x guest cycles} per pair.
void print_paired_summary(Workload w, Mode mode, unsigned long repeat, std::vector<std::array<double, 4>> pairs) {
  std::sort(pairs.begin(), pairs.end());
  for (size_t i = 0; i < pairs.size();) {
    size_t j = i + 1;
    while (j < pairs.size() && pairs[j][0] <= kPairedPlacement * pairs[j - 1][0]) ++j;
    std::printf("paired %-13s %s / identity at lcore rtt %.0f-%.0f ns, %zu of %lu pairs (each set up afresh):",
                to_string(w), to_string(mode), pairs[i][0], pairs[j - 1][0], j - i, repeat);
    const char* names[] = {"", "x frames/s", "device cyc/frame", "guest cyc/frame"};
    for (size_t f = 1; f < 4; ++f) {
      std::vector<double> v;
      for (size_t k = i; k < j; ++k) v.push_back(pairs[k][f]);
      const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
      std::printf(" %s %.3f [%.3f..%.3f]", names[f], median(v), *lo, *hi);
    }
    std::printf(" (median [min..max] of the pairs' medians)\n");
    i = j;
  }
}

// --pair: per workload, identity and the mode in turns of --slice seconds
// (run_netperf_paired), each run's line, then the mode against identity from
// the slices (PairedSummary). False when a run failed or was not clean.
bool run_paired(const NetperfConfig& base, const std::vector<Workload>& workloads, Mode mode, double slice,
                unsigned long repeat, bool json) {
  bool all_clean = true;
  for (Workload w : workloads) {
    std::vector<std::array<double, 4>> pairs;  // each pair's lcore round trip and medians
    for (unsigned long round = 0; round < repeat; ++round) {
      NetperfConfig a = base, b = base;
      a.workload = b.workload = w;
      a.mode = Mode::kIdentity;
      b.mode = mode;
      PairedResult res;
      try {
        res = run_netperf_paired(a, b, slice, round % 2 == 1);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "vxlate-netperf: %s\n", e.what());
        return false;
      }
      all_clean &= res.a.clean() && res.b.clean();
      print_run(a, res.a, json);
      print_run(b, res.b, json);
      const PairedSummary& x = res.summary;
      size_t clean = 0;
      for (const PairedSlice& sl : res.slices) clean += sl.clean;
      if (json) {
        std::printf("{\"paired\":\"%s/%s\",\"workload\":\"%s\",\"slice_seconds\":%.4f,\"slices\":%zu,"
                    "\"clean_slices\":%zu,\"triples\":%zu,\"counted\":%zu,\"lcore_rtt_ns\":%.1f,"
                    "\"x_pps\":[%.4f,%.4f,%.4f],\"x_device_cycles\":[%.4f,%.4f,%.4f],"
                    "\"x_guest_cycles\":[%.4f,%.4f,%.4f]}\n",
                    to_string(mode), to_string(Mode::kIdentity), to_string(w), slice, res.slices.size(), clean,
                    x.triples, x.counted, x.rtt_ns_median, x.pps.p25, x.pps.median, x.pps.p75, x.device_cycles.p25,
                    x.device_cycles.median, x.device_cycles.p75, x.guest_cycles.p25, x.guest_cycles.median,
                    x.guest_cycles.p75);
      } else {
        std::printf("paired %-13s %s / identity, %.0f ms slices: x frames/s %.3f [%.3f..%.3f], device cyc/frame "
                    "%.3f [%.3f..%.3f], guest cyc/frame %.3f [%.3f..%.3f] (median [quartiles] of %zu triples counted, "
                    "of %zu; %zu of %zu slices clean; lcore rtt median %.0f ns)\n",
                    to_string(w), to_string(mode), slice * 1e3, x.pps.median, x.pps.p25, x.pps.p75,
                    x.device_cycles.median, x.device_cycles.p25, x.device_cycles.p75, x.guest_cycles.median,
                    x.guest_cycles.p25, x.guest_cycles.p75, x.counted, x.triples, clean, res.slices.size(),
                    x.rtt_ns_median);
      }
      std::fflush(stdout);
      if (x.counted != 0)
        pairs.push_back({x.rtt_ns_median, x.pps.median, x.device_cycles.median, x.guest_cycles.median});
    }
    if (repeat > 1 && !json) print_paired_summary(w, mode, repeat, pairs);
  }
  return all_clean;
}

}  // namespace

int main(int argc, char** argv) {
  NetperfConfig base;
  std::vector<Workload> workloads{Workload::kTcpStream};
  std::vector<Mode> modes{Mode::kLazy};
  bool json = false;
  bool pin = false;
  unsigned long repeat = 1;
  bool paired = false;
  Mode pair_mode = Mode::kLazy;
  double slice = 0.02;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage((std::string(a) + " needs a value").c_str());
      return argv[++i];
    };
    if (a == "--workload") {
      const std::string_view v = value();
      workloads.clear();
      if (v == "all") {
        workloads = {Workload::kTcpStream, Workload::kUdpStream64, Workload::kTcpRr};
      } else {
        Workload w;
        if (!parse_workload(v, &w)) usage("unknown workload");
        workloads.push_back(w);
      }
    } else if (a == "--mode") {
      const std::string_view v = value();
      modes.clear();
      if (v == "all") {
        modes = {Mode::kIdentity, Mode::kLazy, Mode::kStrict};
      } else {
        Mode m;
        if (!parse_mode(v, &m)) usage("unknown mode");
        modes.push_back(m);
      }
    } else if (a == "--queue-pairs") {
      base.queue_pairs = static_cast<uint16_t>(parse_uint("--queue-pairs", value(), 64));
    } else if (a == "--queue-size") {
      base.queue_size = static_cast<uint32_t>(parse_uint("--queue-size", value(), 32768));
    } else if (a == "--seconds") {
      base.seconds = parse_seconds("--seconds", value(), 1e-6);
    } else if (a == "--warmup") {
      base.warmup_seconds = parse_seconds("--warmup", value(), 0);
    } else if (a == "--clean") {
      base.clean_seconds = parse_seconds("--clean", value(), 0);
    } else if (a == "--window") {
      base.window_seconds = parse_seconds("--window", value(), 1e-4);
    } else if (a == "--pair") {
      if (!parse_mode(value(), &pair_mode) || pair_mode == Mode::kIdentity) usage("bad value for --pair (lazy or strict)");
      paired = true;
    } else if (a == "--slice") {
      slice = parse_seconds("--slice", value(), 1e-4);
    } else if (a == "--repeat") {
      repeat = parse_uint("--repeat", value(), 1000);
    } else if (a == "--pin") {
      pin = true;
    } else if (a == "--packets") {
      base.packets = parse_uint("--packets", value(), 1ul << 40);
    } else if (a == "--lazy-recycle") {
      base.lazy_recycle = static_cast<uint32_t>(parse_uint("--lazy-recycle", value(), 1u << 20));
    } else if (a == "--random-buffers") {
      base.random_buffers = true;
    } else if (a == "--lazy-move") {
      const std::string v = value();
      if (v != "0" && v != "1") usage("bad value for --lazy-move (0 or 1)");
      base.lazy_move = v == "1";
    } else if (a == "--lazy-flush") {
      base.lazy_flush = static_cast<uint32_t>(parse_uint("--lazy-flush", value(), 4096));
    } else if (a == "--request-batch") {
      base.request_batch = static_cast<uint32_t>(parse_uint("--request-batch", value(), 4096));
      if (base.request_batch == 0) usage("bad value for --request-batch (1: off)");
    } else if (a == "--request-wait-us") {
      base.request_wait_us = static_cast<uint32_t>(parse_uint("--request-wait-us", value(), 1000000));
    } else if (a == "--strict-batch") {
      base.strict_batch = static_cast<uint32_t>(parse_uint("--strict-batch", value(), 4096));
    } else if (a == "--json") {
      json = true;
    } else if (a == "--help" || a == "-h") {
      usage("netperf-like load through vxlate");
    } else {
      usage((std::string("unknown option ") + argv[i]).c_str());
    }
  }
  if (base.packets != 0 && (base.warmup_seconds > 0 || base.clean_seconds > 0))
    usage("--warmup and --clean need a run length in --seconds, not --packets");
  if (paired && (base.packets != 0 || base.queue_pairs != 1))
    usage("--pair needs one queue pair and a run length in --seconds");
  if (!init_eal(argv[0], base.queue_pairs + 1u, pin)) return 1;
  if (paired) {
    const bool ok = run_paired(base, workloads, pair_mode, slice, repeat, json);
    rte_eal_cleanup();
    return ok ? 0 : 1;
  }
  const bool tty = isatty(2);
  bool all_clean = true;
  std::vector<std::pair<NetperfConfig, NetperfResult>> runs;
  // Each workload's runs back to back: identity, lazy, strict, identity, ...,
  // and with --repeat one more identity at the end, so that every other run
  // sits between two identity runs (print_summary()).
  std::vector<std::pair<Workload, Mode>> schedule;
  const bool bracket = repeat > 1 && modes.size() > 1 &&
                       std::find(modes.begin(), modes.end(), Mode::kIdentity) != modes.end();
  for (Workload w : workloads) {
    for (unsigned long round = 0; round < repeat; ++round)
      for (Mode m : modes) schedule.emplace_back(w, m);
    if (bracket) schedule.emplace_back(w, Mode::kIdentity);
  }
  for (const auto& [workload, mode] : schedule) {
    const Workload w = workload;
    const Mode m = mode;
    NetperfConfig cfg = base;
    cfg.workload = w;
    cfg.mode = m;
    cfg.progress = [&](const NetperfProgress& p) {
      std::fprintf(stderr, "%s%-13s %-8s %5.1f s  %10.0f pkt/s  %7.3f Gbit/s%s", tty ? "\r" : "", to_string(w),
                   to_string(m), p.seconds, p.packets / p.seconds, p.payload_bytes * 8.0 / p.seconds / 1e9,
                   tty ? "" : "\n");
    };
    NetperfResult r;
    try {
      r = run_netperf(cfg);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "\nvxlate-netperf: %s\n", e.what());
      rte_eal_cleanup();
      return 1;
    }
    if (tty) std::fprintf(stderr, "\r\033[K");
    all_clean &= r.clean();
    cfg.progress = nullptr;
    runs.emplace_back(cfg, r);
    print_run(cfg, r, json);
    std::fflush(stdout);
  }
  if (repeat > 1 && !json) print_summary(workloads, modes, runs, repeat);
  rte_eal_cleanup();
  return all_clean ? 0 : 1;
}
