// Fault-event rate limiting: an exact budget per endpoint and window, so
// endpoints that fault in a loop cannot starve anyone else's events.
#include "vxlate/engine/fault_events.h"

#include "vxlate/engine/wire.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <span>
#include <thread>
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

TEST(FaultEvents, ADrainThatMovesNothingRenewsNoBudget) {
  FaultEvents f(1);
  for (uint32_t i = 0; i <= kMaxFaultsPerEndpoint; ++i) f.report(0, fault(7));  // the last one dropped
  EXPECT_EQ(f.dropped(), 1u);
  // No room to move anything: the window stays, and so does the spent budget.
  EXPECT_EQ(f.drain(std::span<FaultEvent>()), 0u);
  f.report(0, fault(7));
  EXPECT_EQ(f.dropped(), 2u);
  EXPECT_EQ(drain_by_endpoint(f).at(7), static_cast<int>(kMaxFaultsPerEndpoint));
  // That drain moved events: a new window.
  f.report(0, fault(7));
  EXPECT_EQ(drain_by_endpoint(f).at(7), 1);
}

TEST(FaultEvents, EventsThatDoNotFitWaitForTheNextDrain) {
  FaultEvents f(4);
  for (uint32_t r = 0; r < 4; ++r) f.report(r, fault(r));
  std::vector<FaultEvent> out(3);
  EXPECT_EQ(f.drain(out), 3u);
  EXPECT_EQ(f.drain(out), 1u);
  EXPECT_EQ(f.drain(out), 0u);
  // Queued after an empty drain: the next one finds it.
  f.report(2, fault(9));
  EXPECT_EQ(f.drain(out), 1u);
  EXPECT_EQ(out[0].endpoint, 9u);
}

// Readers report while the control thread drains without pause: every event
// is either delivered, once and in its reader's order, or counted as dropped;
// and once the readers stop, draining moves whatever is left (no event waits
// behind a cleared `queued` flag: the count would come up short).
TEST(FaultEvents, ConcurrentReportsAreDeliveredOrCounted) {
  constexpr uint32_t kReaders = 2;
  constexpr uint32_t kEach = 1000000;
  FaultEvents f(kReaders);
  std::atomic<uint32_t> running{kReaders};
  std::vector<std::thread> readers;
  for (uint32_t r = 0; r < kReaders; ++r) {
    readers.emplace_back([&f, &running, r] {
      // A fresh endpoint per event (only a full ring drops); the address
      // names the reader and the event's number.
      for (uint32_t i = 1; i <= kEach; ++i)
        f.report(r, FaultEvent{kFaultReasonMapping, kFaultFlagRead, i, (uint64_t{r} << 32) | i});
      running.fetch_sub(1, std::memory_order_release);  // pairs with the drainer's acquire
    });
  }
  std::vector<FaultEvent> out(64);
  std::vector<uint64_t> last(kReaders, 0);
  uint64_t total = 0;
  bool ordered = true;
  auto take = [&](size_t n) {
    for (size_t i = 0; i < n; ++i) {
      const uint64_t r = out[i].address >> 32, seq = out[i].address & 0xffffffffu;
      ordered &= r < kReaders && seq > last[r] && seq == out[i].endpoint;
      if (r < kReaders) last[r] = seq;
    }
    total += n;
  };
  bool stopped = false;
  while (!stopped) {
    // acquire: pairs with each reader's release; its reports are all done.
    stopped = running.load(std::memory_order_acquire) == 0;
    take(f.drain(out));
  }
  for (auto& t : readers) t.join();
  while (const size_t n = f.drain(out)) take(n);
  EXPECT_TRUE(ordered);
  EXPECT_EQ(total + f.dropped(), uint64_t{kReaders} * kEach);
  EXPECT_GT(total, 0u);
}

}  // namespace
}  // namespace vxlate::engine
