#include "vuload_config.h"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "vxlate/load/cli.h"
#include "vxlate/load/vhost_user_frontend.h"

namespace vxlate::vuload {

namespace {

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "vxlate-vuload: %s\n"
               "usage: vxlate-vuload --socket PATH --socket PATH [--mode identity|lazy|strict]\n"
               "                     [--workload udp_stream_64|tcp_stream|tcp_rr] [--queue-pairs N] [--queue-size N]\n"
               "                     [--seconds S] [--frame-size N] [--lazy-recycle N] [--lazy-flush N]\n"
               "                     [--recycle both|rx|tx] [--timeout-ms N] [--json]\n",
               msg);
  std::exit(2);
}

unsigned long parse_uint(const char* opt, const char* v, unsigned long max) {
  return load::parse_uint(opt, v, max, usage);
}

}  // namespace

Config parse(int argc, char** argv) {
  Config c;
  int sockets = 0;
  bool frame_size = false;
  bool recycle = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage((std::string(a) + " needs a value").c_str());
      return argv[++i];
    };
    if (a == "--socket") {
      if (sockets == 2) usage("exactly two --socket");
      c.sockets[sockets++] = value();
    } else if (a == "--mode") {
      if (!parse_mode(value(), &c.mode)) usage("unknown mode");
    } else if (a == "--workload") {
      if (!parse_workload(value(), &c.workload)) usage("unknown workload");
    } else if (a == "--queue-pairs") {
      c.queue_pairs = static_cast<uint16_t>(parse_uint("--queue-pairs", value(), 64));
    } else if (a == "--queue-size") {
      c.queue_size = static_cast<uint32_t>(parse_uint("--queue-size", value(), 4096));
      if ((c.queue_size & (c.queue_size - 1)) != 0 || c.queue_size < 2 * load::VhostUserFrontend::kMaxBurst)
        usage("--queue-size must be a power of two >= 128");
    } else if (a == "--seconds") {
      const char* v = value();
      char* end = nullptr;
      c.seconds = std::strtod(v, &end);
      if (end == v || *end != '\0' || !(c.seconds > 0) || c.seconds > 3600) usage("bad value for --seconds");
    } else if (a == "--frame-size") {
      c.frame_size = static_cast<uint32_t>(parse_uint("--frame-size", value(), UINT32_MAX));
      if (c.frame_size < kMinFrame || c.frame_size > kMaxFrame) usage("--frame-size must be 60..1514 (bytes, no FCS)");
      frame_size = true;
    } else if (a == "--lazy-recycle") {
      c.lazy_recycle = static_cast<uint32_t>(parse_uint("--lazy-recycle", value(), 1u << 20));
    } else if (a == "--lazy-flush") {
      c.lazy_flush = static_cast<uint32_t>(parse_uint("--lazy-flush", value(), 4096));
    } else if (a == "--recycle") {
      const std::string_view v = value();
      if (v != "both" && v != "rx" && v != "tx") usage("--recycle takes both, rx or tx");
      c.recycle_rx = v != "tx";
      c.recycle_tx = v != "rx";
      recycle = true;
    } else if (a == "--timeout-ms") {
      c.stall = std::chrono::milliseconds(parse_uint("--timeout-ms", value(), 60000));
    } else if (a == "--json") {
      c.json = true;
    } else if (a == "--help" || a == "-h") {
      usage("vhost-user front-end load with a vIOMMU");
    } else {
      usage((std::string("unknown option ") + argv[i]).c_str());
    }
  }
  if (sockets != 2) usage("exactly two --socket (the back end cross-connects them)");
  if (frame_size && c.workload != Workload::kUdpStream64) usage("--frame-size is for udp_stream_64 only");
  if (recycle && c.mode != Mode::kLazy) usage("--recycle is for --mode lazy only (strict recycles every buffer)");
  return c;
}

const char* recycle_name(const Config& c) {
  if (c.mode != Mode::kLazy) return c.mode == Mode::kStrict ? "every" : "none";
  return c.recycle_rx && c.recycle_tx ? "both" : c.recycle_rx ? "rx" : "tx";
}

uint32_t data_frame_bytes(const Config& c) {
  switch (c.workload) {
    case Workload::kUdpStream64: return c.frame_size;
    case Workload::kTcpStream: return kMssFrame;
    case Workload::kTcpRr: return kRrFrame;
  }
  return 0;
}

}  // namespace vxlate::vuload
