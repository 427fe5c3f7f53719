// vxlate-netperf: netperf-like load through vxlate's virtqueues, virtio-iommu
// queues and translation engine on DPDK lcores (see vxlate/load/netperf.h).
//
//   vxlate-netperf [--workload tcp_stream|udp_stream_64|tcp_rr|all]
//                  [--mode identity|lazy|strict|all] [--queue-pairs N]
//                  [--queue-size N] [--seconds S] [--packets N] [--json]
//                  [--lazy-recycle N] [--lazy-flush N] [--strict-batch N]
//
// Default: tcp_stream in lazy mode (the vIOMMU on) for 2 seconds. A live
// progress line goes to stderr; results go to stdout, one line per run
// (--json: one JSON object per line). Exit status 1 when a run was not clean
// (a corrupt frame, a poisoned buffer written, a refused chain, a failed request).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>
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
               "                      [--lazy-recycle N] [--lazy-flush N] [--strict-batch N]\n",
               msg);
  std::exit(2);
}

unsigned long parse_uint(const char* opt, const char* v, unsigned long max) {
  return vxlate::load::parse_uint(opt, v, max, usage);
}

}  // namespace

int main(int argc, char** argv) {
  NetperfConfig base;
  std::vector<Workload> workloads{Workload::kTcpStream};
  std::vector<Mode> modes{Mode::kLazy};
  bool json = false;
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
      const char* v = value();
      char* end = nullptr;
      base.seconds = std::strtod(v, &end);
      if (end == v || *end != '\0' || !(base.seconds > 0) || base.seconds > 3600) usage("bad value for --seconds");
    } else if (a == "--packets") {
      base.packets = parse_uint("--packets", value(), 1ul << 40);
    } else if (a == "--lazy-recycle") {
      base.lazy_recycle = static_cast<uint32_t>(parse_uint("--lazy-recycle", value(), 1u << 20));
    } else if (a == "--lazy-flush") {
      base.lazy_flush = static_cast<uint32_t>(parse_uint("--lazy-flush", value(), 4096));
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
  if (!init_eal(argv[0], base.queue_pairs + 1u)) return 1;
  const bool tty = isatty(2);
  bool all_clean = true;
  for (Workload w : workloads) {
    for (Mode m : modes) {
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
      if (json) {
        std::printf("%s\n", to_json(cfg, r).c_str());
      } else {
        std::printf("%-13s %-8s qp=%u  %10.0f pkt/s  %7.3f Gbit/s  %9.0f xlate/s  map %8.0f/s  unmap %8.0f/s  "
                    "%6.1f unmaps/sync  iotlb hit %5.1f%%",
                    to_string(w), to_string(m), unsigned{cfg.queue_pairs}, r.pps(), r.gbps(), r.translations / r.seconds,
                    r.map_requests / r.seconds, r.unmap_requests / r.seconds, r.unmaps_per_sync(), 100 * r.hit_rate());
        if (w == Workload::kTcpRr) std::printf("  rtt p50 %.1f us p99 %.1f us", r.rr_p50_us, r.rr_p99_us);
        std::printf("  | device busy %.0f%% (requests %.0f%%), guest in sync_req %.0f%%%s\n", 100 * r.device_busy_share,
                    100 * r.device_request_share, 100 * r.guest_sync_share, r.clean() ? "" : "  NOT CLEAN");
        if (!r.clean())
          std::printf("  corrupt=%llu poison_violations=%llu bad_chains=%llu request_failures=%llu\n",
                      static_cast<unsigned long long>(r.corrupt), static_cast<unsigned long long>(r.poison_violations),
                      static_cast<unsigned long long>(r.bad_chains), static_cast<unsigned long long>(r.request_failures));
      }
      std::fflush(stdout);
    }
  }
  rte_eal_cleanup();
  return all_clean ? 0 : 1;
}
