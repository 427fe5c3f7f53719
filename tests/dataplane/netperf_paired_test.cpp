// Paired netperf runs (run_netperf_paired, netperf.h): two runs set up side
// by side and served in turns by the same two lcores. Each run must stay
// clean across its turns (frames and requests left in flight at a switch
// wait for the run's next turn; strict mode's poison checks hold), the
// slices must alternate a, b, ..., a, and summarize() must count only clean
// triples within one placement and give the ratios the slices say.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "support/eal_env.h"
#include "vxlate/load/netperf.h"

namespace vxlate::load {
namespace {

[[maybe_unused]] ::testing::Environment* const kEal =
    ::testing::AddGlobalTestEnvironment(new vxlate::test::EalEnv(2));

NetperfConfig short_pair_config(Workload w, Mode m) {
  NetperfConfig cfg;
  cfg.workload = w;
  cfg.mode = m;
  cfg.queue_size = 64;
  cfg.lazy_recycle = 8;  // recycle often: lazy requests in flight at many switches
  cfg.lazy_flush = 8;
  cfg.strict_batch = 8;
  cfg.warmup_seconds = 0.02;
  cfg.seconds = 0.2;
  return cfg;
}

void expect_clean(const NetperfResult& r) {
  EXPECT_TRUE(r.clean()) << " corrupt=" << r.corrupt << " poison=" << r.poison_violations << " bad=" << r.bad_chains
                         << " failures=" << r.request_failures;
  EXPECT_EQ(r.fault_events, 0u);
  EXPECT_GT(r.packets, 0u);
}

class NetperfPairedTest : public ::testing::TestWithParam<std::pair<Workload, Mode>> {};

TEST_P(NetperfPairedTest, RunsInTurnsStayCleanAndSlicesAlternate) {
  const auto [w, m] = GetParam();
  const NetperfConfig a = short_pair_config(w, Mode::kIdentity);
  const NetperfConfig b = short_pair_config(w, m);
  const double slice = 0.01;
  for (bool b_first : {false, true}) {
    SCOPED_TRACE(std::string(to_string(w)) + " " + to_string(m) + (b_first ? " b set up first" : ""));
    const PairedResult res = run_netperf_paired(a, b, slice, b_first);
    expect_clean(res.a);
    expect_clean(res.b);
    EXPECT_EQ(res.a.map_requests + res.a.unmap_requests, 0u);  // identity: no vIOMMU
    EXPECT_GT(res.b.unmap_requests, 0u);
    // a, b, a, ..., a, and each run's measured time is at least its slices.
    ASSERT_GE(res.slices.size(), 3u);
    ASSERT_EQ(res.slices.size() % 2, 1u);
    double measured[2] = {0, 0};
    for (size_t i = 0; i < res.slices.size(); ++i) {
      const PairedSlice& s = res.slices[i];
      EXPECT_EQ(s.run, i % 2) << "slice " << i;
      EXPECT_GE(s.seconds, slice) << "slice " << i;
      EXPECT_GT(s.lcore_rtt_ns, 0) << "slice " << i;
      measured[s.run] += s.seconds;
    }
    EXPECT_GE(res.a.seconds, measured[0]);
    EXPECT_GE(res.b.seconds, measured[1]);
    // Both stop conditions count per run: each ran its `seconds` (no clean goal).
    EXPECT_GE(res.a.seconds, a.seconds);
    EXPECT_GE(res.b.seconds, b.seconds);
    EXPECT_EQ(res.summary.triples, res.slices.size() / 2);
    EXPECT_LE(res.summary.counted, res.summary.triples);
  }
}

INSTANTIATE_TEST_SUITE_P(Pairs, NetperfPairedTest,
                         ::testing::Values(std::pair{Workload::kUdpStream64, Mode::kLazy},
                                           std::pair{Workload::kTcpStream, Mode::kStrict},
                                           std::pair{Workload::kTcpRr, Mode::kLazy}));

PairedSlice slice_of(uint8_t run, double pps, double rtt, bool clean = true) {
  PairedSlice s;
  s.run = run;
  s.seconds = 0.02;
  s.pps = pps;
  s.device_cycles_per_frame = 1e9 / pps;  // cycles per frame fall as frames/s rise
  s.guest_cycles_per_frame = 2e9 / pps;
  s.lcore_rtt_ns = rtt;
  s.clean = clean;
  return s;
}

TEST(PairedSummary, CountsCleanTriplesInOnePlacement) {
  const std::vector<PairedSlice> slices = {
      slice_of(0, 100, 60),  slice_of(1, 90, 62),          // b / mean(100, 110) = 0.857
      slice_of(0, 110, 61),  slice_of(1, 99, 60),          // b / mean(110, 90) = 0.99
      slice_of(0, 90, 59),   slice_of(1, 80, 60, false),   // not clean: left out
      slice_of(0, 100, 60),  slice_of(1, 95, 400),         // b moved to another placement: left out
      slice_of(0, 100, 60),  slice_of(1, 92, 61),          // 0.92 against mean(100, 100)
      slice_of(0, 100, 300),                               // ... but this a moved: left out
  };
  const PairedSummary s = summarize(slices);
  EXPECT_EQ(s.triples, 5u);
  EXPECT_EQ(s.counted, 2u);
  EXPECT_NEAR(s.pps.median, (90 / 105.0 + 99 / 100.0) / 2, 1e-9);
  EXPECT_NEAR(s.pps.p25, 90 / 105.0 + 0.25 * (99 / 100.0 - 90 / 105.0), 1e-9);
  // Cycles: a's mean over b's; here a's mean of 1/pps against b's 1/pps.
  const double d0 = (1e9 / 100 + 1e9 / 110) / 2 / (1e9 / 90);
  const double d1 = (1e9 / 110 + 1e9 / 90) / 2 / (1e9 / 99);
  EXPECT_NEAR(s.device_cycles.median, (d0 + d1) / 2, 1e-9);
  EXPECT_NEAR(s.guest_cycles.median, (d0 + d1) / 2, 1e-9);
  EXPECT_NEAR(s.rtt_ns_median, 61, 1e-9);
}

TEST(PairedSummary, NothingToCount) {
  EXPECT_EQ(summarize({}).counted, 0u);
  EXPECT_EQ(summarize({slice_of(0, 100, 60), slice_of(1, 90, 60)}).triples, 0u);  // no a after the b
  const PairedSummary s = summarize({slice_of(0, 100, 60), slice_of(1, 0, 60), slice_of(0, 100, 60)});
  EXPECT_EQ(s.triples, 1u);
  EXPECT_EQ(s.counted, 0u);  // b moved no frame: no ratio
  EXPECT_EQ(s.pps.median, 0);
}

TEST(NetperfPaired, RefusesWhatCannotBePaired) {
  const NetperfConfig a = short_pair_config(Workload::kUdpStream64, Mode::kIdentity);
  NetperfConfig b = short_pair_config(Workload::kUdpStream64, Mode::kLazy);
  EXPECT_THROW(run_netperf_paired(a, b, 0.0001), std::runtime_error);  // under 4 windows
  EXPECT_THROW(run_netperf_paired(a, b, 1.0), std::runtime_error);     // longer than the run
  b.seconds = 0.3;
  EXPECT_THROW(run_netperf_paired(a, b, 0.01), std::runtime_error);  // not the same length
  b = short_pair_config(Workload::kUdpStream64, Mode::kLazy);
  b.queue_pairs = 2;
  EXPECT_THROW(run_netperf_paired(a, b, 0.01), std::runtime_error);
  b.queue_pairs = 1;
  b.queue_size = 100;
  EXPECT_THROW(run_netperf_paired(a, b, 0.01), std::runtime_error);  // check_config's refusal
}

}  // namespace
}  // namespace vxlate::load
