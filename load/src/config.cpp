#include "config.h"

#include <stdexcept>
#include <string>

#include <rte_lcore.h>

#include "vxlate/dataplane/virtio_ring.h"

namespace vxlate::load {

const char* to_string(Workload w) noexcept {
  switch (w) {
    case Workload::kTcpStream: return "tcp_stream";
    case Workload::kUdpStream64: return "udp_stream_64";
    case Workload::kTcpRr: return "tcp_rr";
  }
  return "?";
}

const char* to_string(Mode m) noexcept {
  switch (m) {
    case Mode::kIdentity: return "identity";
    case Mode::kLazy: return "lazy";
    case Mode::kStrict: return "strict";
  }
  return "?";
}

bool parse_workload(std::string_view s, Workload* w) noexcept {
  for (Workload x : {Workload::kTcpStream, Workload::kUdpStream64, Workload::kTcpRr})
    if (s == to_string(x)) return *w = x, true;
  return false;
}

bool parse_mode(std::string_view s, Mode* m) noexcept {
  for (Mode x : {Mode::kIdentity, Mode::kLazy, Mode::kStrict})
    if (s == to_string(x)) return *m = x, true;
  return false;
}

namespace detail {

void check_config(const NetperfConfig& cfg) {
  if (cfg.queue_pairs == 0 || !dataplane::valid_queue_size(cfg.queue_size) || cfg.queue_size < 16 ||
      cfg.lazy_recycle == 0 || cfg.lazy_flush == 0 || cfg.strict_batch == 0 || cfg.strict_batch > cfg.queue_size / 2 ||
      cfg.request_batch == 0)
    throw std::runtime_error("netperf: bad configuration (queue size a power of two >= 16, batches >= 1)");
  if (!(cfg.warmup_seconds >= 0) || !(cfg.window_seconds > 0) || !(cfg.clean_seconds >= 0) ||
      (cfg.packets != 0 && (cfg.warmup_seconds > 0 || cfg.clean_seconds > 0)))
    throw std::runtime_error(
        "netperf: bad timing (warm-up and clean seconds >= 0, only with a run length in seconds; window > 0)");
  if (rte_lcore_count() < unsigned{cfg.queue_pairs} + 1u)
    throw std::runtime_error("netperf: needs " + std::to_string(cfg.queue_pairs + 1) + " lcores");
}

}  // namespace detail
}  // namespace vxlate::load
