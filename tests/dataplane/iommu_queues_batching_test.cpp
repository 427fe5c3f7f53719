// IommuQueues request batching (set_batching): requests held while the
// caller is busy, served on the driver's kick, a full batch, an idle poll or
// max_wait; a held batch looked at every kLookEvery-th busy poll; the device
// re-arms kicks after each burst; a kicking driver on another thread against
// a busy device lcore.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "iommu_queues_test_support.h"

namespace vxlate::dataplane::iommu_queues_test {
namespace {

constexpr bool kBusy = false;  // poll()'s idle argument

class BatchingTest : public IommuQueuesTest {
 protected:
  void SetUp() override {
    IommuQueuesTest::SetUp();
    drv->add_attach(1, 1);
    ASSERT_EQ(drv->sync(), Status::kOk);  // served at once: batching is off by default
    gpa = mem.alloc(0x10000, 0x1000);
  }
  // Adds n MAPs (published, not kicked: viommu_add_req).
  void add_maps(int n) {
    for (int i = 0; i < n; ++i) drv->add_map(1, next_iova++ * 0x1000, 0x1000, gpa, kRW);
  }
  uint64_t gpa = 0;
  uint64_t next_iova = 0x1000;
};

TEST_F(BatchingTest, OffByDefaultServesAtOnceEvenWhenBusy) {
  add_maps(1);
  EXPECT_EQ(iq->poll(Rcu::kNoReader, nullptr, kBusy), 1u);
  EXPECT_EQ(dev.mapping_count(), 1u);
  EXPECT_EQ(iq->stats().held, 0u);
}

// Requests that came before the device asked for kicks may never be kicked for.
TEST_F(BatchingTest, RequestsFromBeforeKicksWereAskedForAreServed) {
  iq->set_batching({8, std::chrono::seconds(100)});
  add_maps(2);
  EXPECT_EQ(iq->poll(Rcu::kNoReader, nullptr, kBusy), 2u);
  EXPECT_EQ(iq->stats().kicked, 1u);
  add_maps(2);
  EXPECT_EQ(iq->poll(Rcu::kNoReader, nullptr, kBusy), 0u);  // now they wait
}

TEST_F(BatchingTest, HeldWhileBusyServedOnTheKick) {
  iq->set_batching({8, std::chrono::seconds(100)});
  drv->set_notify([this] { iq->notify(); });
  drv->set_idle([this] { iq->poll(Rcu::kNoReader, nullptr, kBusy); });
  // The first poll with batching on asks for kicks (nothing waits yet).
  EXPECT_EQ(iq->poll(Rcu::kNoReader, nullptr, kBusy), 0u);
  const uint64_t kicks = reqq.kicks();
  add_maps(3);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(iq->poll(Rcu::kNoReader, nullptr, kBusy), 0u);
  EXPECT_EQ(dev.mapping_count(), 0u);
  EXPECT_EQ(iq->stats().held, 5u);
  EXPECT_EQ(iq->stats().bursts, 1u);  // the setup's ATTACH only
  // The driver waits now: its sync kicks, and the busy device serves all three.
  ASSERT_EQ(drv->sync(), Status::kOk);
  EXPECT_EQ(dev.mapping_count(), 3u);
  EXPECT_EQ(reqq.kicks(), kicks + 1);
  EXPECT_EQ(iq->stats().kicked, 1u);
  // The device re-armed kicks (avail_event): the next sync kicks again, and a
  // stale kick serves nothing more than what waits.
  add_maps(2);
  EXPECT_EQ(iq->poll(Rcu::kNoReader, nullptr, kBusy), 0u);
  ASSERT_EQ(drv->sync(), Status::kOk);
  EXPECT_EQ(reqq.kicks(), kicks + 2);
  EXPECT_EQ(dev.mapping_count(), 5u);
  iq->notify();  // a kick with nothing waiting
  EXPECT_EQ(iq->poll(Rcu::kNoReader, nullptr, kBusy), 0u);
  add_maps(1);
  EXPECT_EQ(iq->poll(Rcu::kNoReader, nullptr, kBusy), 0u) << "an old kick does not serve later requests";
  EXPECT_EQ(drv->failures(), 0u);
}

// A busy poll that keeps holding a batch looks at avail.idx only every
// kLookEvery-th time, but a kick or an idle poll serves it on the spot.
TEST_F(BatchingTest, AKickOrAnIdlePollServesAHeldBatchAtOnce) {
  iq->set_batching({8, std::chrono::seconds(100)});
  EXPECT_EQ(iq->poll(Rcu::kNoReader, nullptr, kBusy), 0u);  // asks for kicks
  add_maps(3);
  for (uint32_t i = 0; i <= IommuQueues::kLookEvery; ++i) EXPECT_EQ(iq->poll(Rcu::kNoReader, nullptr, kBusy), 0u);
  iq->notify();
  EXPECT_EQ(iq->poll(Rcu::kNoReader, nullptr, kBusy), 3u) << "the kick";
  add_maps(2);
  for (uint32_t i = 0; i <= IommuQueues::kLookEvery; ++i) EXPECT_EQ(iq->poll(Rcu::kNoReader, nullptr, kBusy), 0u);
  EXPECT_EQ(iq->poll(), 2u) << "an idle poll";
  EXPECT_EQ(dev.mapping_count(), 5u);
  EXPECT_EQ(iq->stats().kicked, 1u);
  ASSERT_EQ(drv->sync(), Status::kOk);
  EXPECT_EQ(drv->failures(), 0u);
}

TEST_F(BatchingTest, FullBatchIdlePollAndMaxWaitServe) {
  iq->set_batching({4, std::chrono::milliseconds(2)});
  EXPECT_EQ(iq->poll(Rcu::kNoReader, nullptr, kBusy), 0u);  // asks for kicks
  add_maps(3);
  EXPECT_EQ(iq->poll(Rcu::kNoReader, nullptr, kBusy), 0u);
  add_maps(1);  // four wait: a full batch, seen within kLookEvery busy polls
  size_t full = 0;
  for (uint32_t i = 0; i < IommuQueues::kLookEvery && full == 0; ++i) full = iq->poll(Rcu::kNoReader, nullptr, kBusy);
  EXPECT_EQ(full, 4u);
  add_maps(1);
  EXPECT_EQ(iq->poll(Rcu::kNoReader, nullptr, kBusy), 0u);
  EXPECT_EQ(iq->poll(), 1u);  // idle: served as it comes
  add_maps(2);
  const auto t0 = std::chrono::steady_clock::now();
  size_t served = 0;
  while ((served = iq->poll(Rcu::kNoReader, nullptr, kBusy)) == 0) {
  }
  EXPECT_EQ(served, 2u);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(2));
  EXPECT_EQ(iq->stats().overdue, 1u);
  EXPECT_EQ(dev.mapping_count(), 7u);
  ASSERT_EQ(drv->sync(), Status::kOk);  // all completed already: no wait
  EXPECT_EQ(drv->failures(), 0u);
}

// A busy device lcore that serves requests only on kicks (max_wait far away)
// and a driver on another thread: every sync completes, nothing is lost.
TEST_F(BatchingTest, KickingDriverOnAnotherThread) {
  iq->set_batching({1000, std::chrono::seconds(100)});
  drv->set_notify([this] { iq->notify(); });
  drv->set_idle([] { std::this_thread::yield(); });
  std::atomic<bool> stop{false};
  std::thread lcore([&] {
    // acquire: pairs with the release below; the driver is done.
    while (!stop.load(std::memory_order_acquire)) iq->poll(Rcu::kNoReader, nullptr, kBusy);
  });
  constexpr int kRounds = 300;
  for (int r = 0; r < kRounds; ++r) {
    const int n = 1 + r % 5;
    for (int i = 0; i < n; ++i) drv->add_map(1, 0x100000 + uint64_t(i) * 0x1000, 0x1000, gpa, kRW);
    for (int i = 0; i < n; ++i) drv->add_unmap(1, 0x100000 + uint64_t(i) * 0x1000, 0x1000);
    ASSERT_EQ(drv->sync(), Status::kOk);
  }
  stop.store(true, std::memory_order_release);
  lcore.join();
  EXPECT_EQ(drv->failures(), 0u);
  EXPECT_EQ(dev.mapping_count(), 0u);
  EXPECT_EQ(iq->stats().overdue, 0u);
  EXPECT_GE(iq->stats().kicked, 1u);
}

// The poll that first asks for kicks (batching just turned on) races with a
// driver that publishes and decides its kick from the avail_event the device
// last wrote, before batching. What the arming re-check saw beyond what that
// poll's begin() saw must be served as kicked by a later poll: it once was
// forgotten when the arming poll had nothing to serve, and the sync then waited
// for max_wait (CI, TSan). Here batching goes off and on again after every
// round, so every round's requests race with a fresh arming; a lost kick shows
// as an overdue burst.
TEST_F(BatchingTest, RequestsRacingTheFirstArmingAreServedAsKicked) {
  const RequestBatching on{1000, std::chrono::milliseconds(200)};
  drv->set_notify([this] { iq->notify(); });
  drv->set_idle([] { std::this_thread::yield(); });
  std::atomic<uint64_t> rounds_done{0};
  std::atomic<bool> stop{false};
  std::thread lcore([&] {
    uint64_t seen = 0;
    iq->set_batching(on);
    // acquire: pairs with the release below; the driver is done.
    while (!stop.load(std::memory_order_acquire)) {
      // relaxed: only decides when to re-arm; the rings carry the data.
      const uint64_t done = rounds_done.load(std::memory_order_relaxed);
      if (done != seen) {
        seen = done;
        iq->set_batching({1, on.max_wait});  // off: serves what waits, writes no avail_event
        iq->poll(Rcu::kNoReader, nullptr, kBusy);
        iq->set_batching(on);  // the next poll arms
      }
      iq->poll(Rcu::kNoReader, nullptr, kBusy);
    }
  });
  constexpr int kRounds = 4000;
  for (int r = 0; r < kRounds; ++r) {
    for (int i = 0; i <= r % 2; ++i) drv->add_map(1, 0x100000 + uint64_t(i) * 0x1000, 0x1000, gpa, kRW);
    for (int i = 0; i <= r % 2; ++i) drv->add_unmap(1, 0x100000 + uint64_t(i) * 0x1000, 0x1000);
    ASSERT_EQ(drv->sync(), Status::kOk);
    rounds_done.fetch_add(1, std::memory_order_relaxed);
  }
  stop.store(true, std::memory_order_release);
  lcore.join();
  EXPECT_EQ(drv->failures(), 0u);
  EXPECT_EQ(dev.mapping_count(), 0u);
  EXPECT_EQ(iq->stats().overdue, 0u) << "a kick was lost";
}

}  // namespace
}  // namespace vxlate::dataplane::iommu_queues_test
