// Fault-event rate limiting: an exact budget per endpoint and window, so
// endpoints that fault in a loop cannot starve anyone else's events.
#include "vxlate/engine/fault_events.h"

#include "vxlate/engine/wire.h"

#include <gtest/gtest.h>

#include <map>
#include <vector>

namespace vxlate::engine {
namespace {

FaultEvent fault(uint32_t ep) { return FaultEvent{kFaultReasonMapping, kFaultFlagRead, ep, 0x1000}; }

std::map<uint32_t, int> drain_by_endpoint(FaultEvents& f) {
  std::vector<FaultEvent> out(kFaultRingSize);
  std::map<uint32_t, int> n;
  const size_t got = f.drain(out);
  for (size_t i = 0; i < got; ++i) ++n[out[i].endpoint];
  return n;
}

TEST(FaultEvents, CollidingEndpointsDoNotStarveOthers) {
  FaultEvents f(1);
  // 1, 17 and 33 share every low-bit slot a small direct-mapped table would
  // give them; alternating, they fault 3000 times in one window.
  for (int i = 0; i < 1000; ++i) {
    f.report(0, fault(1));
    f.report(0, fault(17));
    f.report(0, fault(33));
  }
  f.report(0, fault(5));  // someone else, once
  const auto n = drain_by_endpoint(f);
  EXPECT_EQ(n.at(1), static_cast<int>(kMaxFaultsPerEndpoint));
  EXPECT_EQ(n.at(17), static_cast<int>(kMaxFaultsPerEndpoint));
  EXPECT_EQ(n.at(33), static_cast<int>(kMaxFaultsPerEndpoint));
  EXPECT_EQ(n.at(5), 1);
  EXPECT_EQ(f.dropped(), 3000u - 3 * kMaxFaultsPerEndpoint);
}

TEST(FaultEvents, BudgetRenewsEachWindowAndRingBoundsTheTotal) {
  FaultEvents f(2);
  // More distinct endpoints than the ring holds: the ring bounds the window,
  // the table never runs out of slots.
  for (uint32_t ep = 0; ep < 2 * kFaultRingSize; ++ep) f.report(1, fault(0xffffff00u + ep));
  auto n = drain_by_endpoint(f);
  size_t total = 0;
  for (const auto& [ep, k] : n) total += static_cast<size_t>(k);
  EXPECT_EQ(total, kFaultRingSize);
  EXPECT_EQ(f.dropped(), kFaultRingSize);
  // A new window: the same endpoint gets its budget again.
  for (int i = 0; i < 20; ++i) f.report(1, fault(7));
  n = drain_by_endpoint(f);
  EXPECT_EQ(n.at(7), static_cast<int>(kMaxFaultsPerEndpoint));
  for (int i = 0; i < 20; ++i) f.report(1, fault(7));
  n = drain_by_endpoint(f);
  EXPECT_EQ(n.at(7), static_cast<int>(kMaxFaultsPerEndpoint));
}

}  // namespace
}  // namespace vxlate::engine
