// apps/vuload/vuload_config.h: vxlate-vuload's command line: the run's
// Config, its parser, and the frame sizes the workloads send (see
// vuload_main.cpp for what the tool does with them).
//
// Thread-safety contract: parse() runs on the main thread before any other
// thread starts; the Config it returns is read-only from then on and read by
// every thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "vxlate/load/netperf.h"

namespace vxlate::vuload {

using load::Mode;
using load::NetperfConfig;
using load::Workload;

// netperf's frame sizes (load/src/frames.h): 64-byte UDP, 1514-byte TCP MSS
// frame, 66-byte bare TCP ACK, 1-byte RR payload behind a 66-byte TCP header.
constexpr uint32_t kUdp64Frame = 64;
constexpr uint32_t kMssFrame = 1514;
constexpr uint32_t kAckFrame = 66;
constexpr uint32_t kRrFrame = 67;
// --frame-size (udp_stream_64): Ethernet's minimum and maximum frame without FCS.
constexpr uint32_t kMinFrame = 60;
constexpr uint32_t kMaxFrame = kMssFrame;

struct Config {
  std::string sockets[2];
  Workload workload = Workload::kUdpStream64;
  Mode mode = Mode::kLazy;
  uint16_t queue_pairs = 1;
  uint32_t queue_size = 256;
  double seconds = 5;
  uint32_t frame_size = kUdp64Frame;  // udp_stream_64's frames
  uint32_t lazy_recycle = NetperfConfig{}.lazy_recycle;
  uint32_t lazy_flush = NetperfConfig{}.lazy_flush;
  // lazy: which buffers are recycled (receive, transmit, both).
  bool recycle_rx = true, recycle_tx = true;
  // A lost frame is written off after this (tcp_stream window, tcp_rr
  // timeout); above twice vxlate-switch's 100 ms MISS retry (kMissRetry), so
  // a slow or once-lost miss counts as latency, not loss.
  std::chrono::milliseconds stall{250};
  bool json = false;
};

// The command line, checked; a usage error prints why and the usage on
// stderr and exits with status 2.
Config parse(int argc, char** argv);
// Which buffers are recycled: lazy mode recycles both sides or one
// (--recycle), strict every one, identity none.
const char* recycle_name(const Config& c);
// The size of the workload's data frames (udp_stream_64: --frame-size).
uint32_t data_frame_bytes(const Config& c);

}  // namespace vxlate::vuload
