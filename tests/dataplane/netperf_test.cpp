// End to end: the guest driver model and the device side exchange real frames
// and virtio-iommu requests through rings in a memfd, on DPDK lcores, for
// every workload in every mode, single and multi-queue. Invariants checked on
// every frame by the run itself: the peer checks each frame's header, sequence
// and payload; in strict mode the guest poisons every buffer once its UNMAP
// completed and checks the poison of each receive buffer before reuse (the
// device never touched it after the UNMAP); no chain refused, no request failed.
#include "vxlate/load/netperf.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "support/eal_env.h"
#include "vxlate/dataplane/net.h"

namespace vxlate::load {
namespace {

// Three lcores: guest queue pairs 0 and 1 and the device (the multi-queue run).
[[maybe_unused]] ::testing::Environment* const kEal =
    ::testing::AddGlobalTestEnvironment(new vxlate::test::EalEnv(3));

struct Case {
  Workload workload;
  Mode mode;
};

class NetperfTest : public ::testing::TestWithParam<Case> {};

TEST_P(NetperfTest, FramesAndRequestsFlowCleanly) {
  NetperfConfig cfg;
  cfg.workload = GetParam().workload;
  cfg.mode = GetParam().mode;
  cfg.queue_size = 64;
  cfg.lazy_recycle = 8;  // recycle often, so lazy mode's UNMAP/MAP/flush path runs many times
  cfg.lazy_flush = 8;
  cfg.strict_batch = 8;
  cfg.packets = cfg.workload == Workload::kTcpRr ? 2000 : 20000;
  const NetperfResult r = run_netperf(cfg);
  EXPECT_EQ(r.corrupt, 0u);
  EXPECT_EQ(r.poison_violations, 0u);
  EXPECT_EQ(r.bad_chains, 0u);
  EXPECT_EQ(r.request_failures, 0u);
  EXPECT_EQ(r.fault_events, 0u);
  EXPECT_GE(r.packets, cfg.packets);
  EXPECT_GT(r.translations, r.packets);
  // Frames the device took per iteration that found work: at most a burst per queue.
  EXPECT_GT(r.device_frames_per_busy_iter, 0);
  EXPECT_LE(r.device_frames_per_busy_iter, double(dataplane::kMaxNetBurst) * cfg.queue_pairs);
  if (cfg.workload == Workload::kTcpRr) {
    EXPECT_EQ(r.rx_frames, r.packets);  // one response per transaction
    EXPECT_GT(r.rr_p99_us, 0);
  }
  if (cfg.workload == Workload::kTcpStream) {
    EXPECT_GE(r.rx_frames, r.packets / 2 - 64);  // an ACK per two frames
  }
  switch (cfg.mode) {
    case Mode::kIdentity:
      EXPECT_EQ(r.map_requests + r.unmap_requests, 0u);
      EXPECT_EQ(r.iotlb_hits + r.iotlb_misses, 0u);
      break;
    case Mode::kLazy:
      // One recycle per lazy_recycle completions, one sync per lazy_flush recycles.
      EXPECT_GT(r.unmap_requests, (r.packets + r.rx_frames) / cfg.lazy_recycle / 2);
      EXPECT_GT(r.unmaps_per_sync(), 1.0);
      EXPECT_GT(r.hit_rate(), 0.5);
      // The buffers really move: the device misses on each new IOVA once.
      EXPECT_GE(2 * r.iotlb_misses, r.map_requests);
      break;
    case Mode::kStrict:
      // Every frame mapped and unmapped.
      EXPECT_GE(r.map_requests, r.packets);
      EXPECT_GE(r.unmap_requests + 2 * cfg.queue_size, r.map_requests);
      EXPECT_GT(r.iotlb_misses, 0u);
      break;
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllWorkloadsAllModes, NetperfTest,
    ::testing::Values(Case{Workload::kTcpStream, Mode::kIdentity}, Case{Workload::kTcpStream, Mode::kLazy},
                      Case{Workload::kTcpStream, Mode::kStrict}, Case{Workload::kUdpStream64, Mode::kIdentity},
                      Case{Workload::kUdpStream64, Mode::kLazy}, Case{Workload::kUdpStream64, Mode::kStrict},
                      Case{Workload::kTcpRr, Mode::kIdentity}, Case{Workload::kTcpRr, Mode::kLazy},
                      Case{Workload::kTcpRr, Mode::kStrict}),
    [](const ::testing::TestParamInfo<Case>& i) {
      return std::string(to_string(i.param.workload)) + "_" + to_string(i.param.mode);
    });

// A short tcp_stream run whose IOMMU paths (recycles, flushes, strict
// batches) run many times.
NetperfConfig short_tcp_stream(Mode m) {
  NetperfConfig cfg;
  cfg.workload = Workload::kTcpStream;
  cfg.mode = m;
  cfg.queue_size = 64;
  cfg.lazy_recycle = 8;
  cfg.lazy_flush = 8;
  cfg.strict_batch = 8;
  cfg.packets = 10000;
  return cfg;
}

TEST(NetperfMultiQueue, TwoQueuePairsStrictAndLazy) {
  for (Mode m : {Mode::kStrict, Mode::kLazy}) {
    NetperfConfig cfg = short_tcp_stream(m);
    cfg.queue_pairs = 2;
    const NetperfResult r = run_netperf(cfg);
    EXPECT_TRUE(r.clean()) << to_string(m) << " corrupt=" << r.corrupt << " poison=" << r.poison_violations
                           << " bad=" << r.bad_chains << " failures=" << r.request_failures;
    EXPECT_GE(r.packets, 2 * cfg.packets);
  }
}

// The diagnostic knobs: buffers taken in random order (every mode), and lazy
// recycles whose requests go to a spare IOVA while the buffer keeps its own.
// Still clean, with the same request traffic as a recycle that moves.
TEST(NetperfKnobs, RandomBuffersAndSpareIovaRecycles) {
  for (Mode m : {Mode::kIdentity, Mode::kLazy, Mode::kStrict}) {
    for (bool move : {true, false}) {
      if (m != Mode::kLazy && !move) continue;
      NetperfConfig cfg = short_tcp_stream(m);
      cfg.random_buffers = true;
      cfg.lazy_move = move;
      const NetperfResult r = run_netperf(cfg);
      SCOPED_TRACE(std::string(to_string(m)) + (move ? " moving" : " spare IOVA"));
      EXPECT_TRUE(r.clean()) << " corrupt=" << r.corrupt << " poison=" << r.poison_violations
                             << " bad=" << r.bad_chains << " failures=" << r.request_failures;
      EXPECT_EQ(r.fault_events, 0u);
      EXPECT_GE(r.packets, cfg.packets);
      if (m == Mode::kLazy) {
        EXPECT_GT(r.unmap_requests, (r.packets + r.rx_frames) / cfg.lazy_recycle / 2);
        EXPECT_GT(r.map_requests, (r.packets + r.rx_frames) / cfg.lazy_recycle / 2);
      }
    }
  }
}

// The device's request batching off, on, and on with a max wait short enough
// to fire: every mode stays clean (strict's poison checks included).
TEST(NetperfKnobs, RequestBatching) {
  for (Mode m : {Mode::kLazy, Mode::kStrict}) {
    for (auto [batch, wait_us] : {std::pair{1u, 1000u}, {32u, 1000u}, {256u, 1u}}) {
      NetperfConfig cfg = short_tcp_stream(m);
      cfg.request_batch = batch;
      cfg.request_wait_us = wait_us;
      const NetperfResult r = run_netperf(cfg);
      SCOPED_TRACE(std::string(to_string(m)) + " batch " + std::to_string(batch) + " wait " + std::to_string(wait_us));
      EXPECT_TRUE(r.clean()) << " corrupt=" << r.corrupt << " poison=" << r.poison_violations
                             << " bad=" << r.bad_chains << " failures=" << r.request_failures;
      EXPECT_GE(r.packets, cfg.packets);
      EXPECT_GT(r.unmap_requests, 0u);
    }
  }
}

TEST(NetperfConfig, RefusesWhatCannotRun) {
  NetperfConfig cfg;
  cfg.queue_size = 100;
  EXPECT_THROW(run_netperf(cfg), std::runtime_error);
  cfg.queue_size = 64;
  cfg.queue_pairs = 8;  // needs 9 lcores
  EXPECT_THROW(run_netperf(cfg), std::runtime_error);
  cfg.queue_pairs = 1;
  cfg.request_batch = 0;
  EXPECT_THROW(run_netperf(cfg), std::runtime_error);
}

}  // namespace
}  // namespace vxlate::load
