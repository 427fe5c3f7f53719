// Virtqueue out-of-order completion (QueueConfig::park_on_miss): a chain that
// misses is set aside and the chains behind it pop; it pops once a MAP made it
// translate, and is not walked again before; give_back() puts chains first in
// line; complete_parked() completes the set-aside chains empty at a stop; the
// FIFO's bound; take_miss() and parked_misses() name the parked chains' misses.
#include <gtest/gtest.h>

#include <cstring>
#include <span>

#include "dataplane/virtqueue_test_support.h"
#include "vxlate/dataplane/virtqueue.h"

namespace vxlate::dataplane::virtqueue_test {
namespace {

constexpr uint64_t kMissIova = 0x50000000;  // not mapped until a test maps it

class VirtqueueParkTest : public VirtqueueTest {
 protected:
  QueueConfig parking(uint32_t size) {
    QueueConfig cfg = fresh(size);
    cfg.hold_on_miss = true;
    cfg.park_on_miss = true;
    return cfg;
  }
  void map_miss_page(uint64_t gpa) {
    dev_->iotlb().offline(reader_);
    ASSERT_EQ(send(map_req(1, kMissIova, kMissIova + 0xfff, gpa, kRW)), 0);
    dev_->iotlb().online(reader_);
  }
  // A hostile driver's start on a queue of 4: chain 0 misses, chain 1 is
  // good; head 0 posted four times fills the FIFO.
  void park_four_copies(Virtqueue& q) {
    set_desc(0, raw(kMissIova, 64, W));
    set_desc(1, d(kBuf, 64, W));
    offer({0, 0, 0, 0});
    ASSERT_TRUE(q.begin(reader_));
    EXPECT_FALSE(q.pop(&c_));
    q.publish();
    ASSERT_EQ(q.parked(), 4u);
  }
  // Pops n chains, each `head`, and pushes them.
  void pop_push(Virtqueue& q, int n, uint16_t head) {
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(q.pop(&c_)) << i;
      EXPECT_EQ(c_.head, head);
      q.push(head, 1);
    }
  }
};

// Only a device-IOTLB queue (ACCESS_PLATFORM with hold_on_miss) parks.
TEST_P(VirtqueueParkTest, OnlyAQueueThatHoldsOnMissParks) {
  QueueConfig cfg = fresh(8);
  cfg.park_on_miss = true;
  EXPECT_FALSE(Virtqueue(*dev_, cfg).parks()) << "without hold_on_miss a miss is a bad chain";
  cfg.hold_on_miss = true;
  EXPECT_EQ(Virtqueue(*dev_, cfg).parks(), ap());
  cfg.size = 6;  // not a power of two: the queue never starts
  EXPECT_FALSE(Virtqueue(*dev_, cfg).parks());
}

// Chain 1's buffer misses: chains 3 and 4 behind it pop and complete first;
// the miss is named; the parked chain is not walked again while no mapping
// was added; once its page is mapped it pops, first, with its segments.
TEST_P(VirtqueueParkTest, TheChainsBehindAMissGoOn) {
  if (!ap()) GTEST_SKIP() << "misses exist only with ACCESS_PLATFORM";
  Virtqueue q(*dev_, parking(8));
  set_desc(0, d(kBuf, 64, W));
  set_desc(1, raw(kMissIova + 0x10, 64, W));
  set_desc(3, d(kBuf + 0x1000, 64, W));
  set_desc(4, d(kBuf + 0x2000, 64, W));
  offer({0, 1, 3, 4});
  ASSERT_TRUE(q.begin(reader_));
  for (uint16_t head : {0, 3, 4}) {
    ASSERT_TRUE(q.pop(&c_));
    EXPECT_EQ(c_.head, head);
    q.push(head, 7);
  }
  EXPECT_FALSE(q.pop(&c_));
  q.publish();
  EXPECT_EQ(q.parked(), 1u);
  EXPECT_EQ(q.stats().parked, 1u);
  EXPECT_EQ(q.stats().held, 0u);
  EXPECT_EQ(q.stats().bad_total(), 0u);
  EXPECT_EQ(q.last_avail(), 4) << "the parked chain's slot is consumed";
  EXPECT_EQ(used_idx(), 3);
  expect_used(0, 0, 7);
  expect_used(1, 3, 7);
  expect_used(2, 4, 7);
  Miss m{};
  ASSERT_TRUE(q.take_miss(&m));
  EXPECT_EQ(m.iova, kMissIova + 0x10);
  EXPECT_EQ(m.access, pagetable::kPermWrite);

  // Nothing mapped since: the parked chain is not walked again.
  const uint64_t descs = q.stats().descs;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(q.begin(reader_));
    EXPECT_FALSE(q.pop(&c_));
    q.publish();
  }
  EXPECT_EQ(q.stats().descs, descs);
  EXPECT_EQ(q.parked(), 1u);

  // A mapping elsewhere moves the count: walked once more, parked again.
  dev_->iotlb().offline(reader_);
  ASSERT_EQ(send(map_req(1, 0x58000000, 0x58000fff, kBuf + 0x5000, kRW)), 0);
  dev_->iotlb().online(reader_);
  ASSERT_TRUE(q.begin(reader_));
  EXPECT_FALSE(q.pop(&c_));
  EXPECT_FALSE(q.pop(&c_)) << "walked at most once a burst";
  q.publish();
  EXPECT_EQ(q.stats().descs, descs + 1);
  EXPECT_EQ(q.parked(), 1u);
  EXPECT_EQ(q.stats().parked, 1u) << "counted once";

  // Its page arrives: it pops before the chain posted meanwhile.
  set_desc(5, d(kBuf + 0x3000, 64, W));
  offer(5);
  map_miss_page(kBuf + 0x7000);
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(1, 0, {{kBuf + 0x7010, 64}});
  q.push(1, 5);
  ASSERT_TRUE(q.pop(&c_));
  EXPECT_EQ(c_.head, 5);
  q.push(5, 6);
  q.publish();
  EXPECT_EQ(q.parked(), 0u);
  EXPECT_EQ(used_idx(), 5);
  expect_used(3, 1, 5);
  expect_used(4, 5, 6);
  EXPECT_EQ(q.stats().chains, 5u);
}

// A parked chain the guest rewrote meanwhile is walked afresh: bad now, it is
// completed empty and counted, as any bad chain.
TEST_P(VirtqueueParkTest, AParkedChainRewrittenBadIsCompletedEmpty) {
  if (!ap()) GTEST_SKIP() << "misses exist only with ACCESS_PLATFORM";
  Virtqueue q(*dev_, parking(8));
  set_desc(2, raw(kMissIova, 64, W));
  offer(2);
  ASSERT_TRUE(q.begin(reader_));
  EXPECT_FALSE(q.pop(&c_));
  q.publish();
  ASSERT_EQ(q.parked(), 1u);
  set_desc(2, d(kBuf, 64, W | N, 9));  // next out of range
  map_miss_page(kBuf + 0x7000);
  ASSERT_TRUE(q.begin(reader_));
  EXPECT_FALSE(q.pop(&c_));
  q.publish();
  EXPECT_EQ(q.parked(), 0u);
  EXPECT_EQ(q.stats().bad[ix(BadChain::kIndexRange)], 1u);
  EXPECT_EQ(used_idx(), 1);
  expect_used(0, 2, 0);
}

// give_back(): chains popped and not used go first in line, in their order,
// for the same burst and the next, ahead of the avail ring.
TEST_P(VirtqueueParkTest, ChainsGivenBackComeFirst) {
  if (!ap()) GTEST_SKIP() << "parking needs ACCESS_PLATFORM";
  Virtqueue q(*dev_, parking(8));
  for (uint16_t i = 0; i < 4; ++i) set_desc(i, d(kBuf + 0x1000 * i, 64, W));
  offer({0, 1, 2});
  ASSERT_TRUE(q.begin(reader_));
  Chain two[2];
  ASSERT_TRUE(q.pop(&two[0]));
  ASSERT_TRUE(q.pop(&two[1]));
  q.give_back(two, 2);
  EXPECT_EQ(q.parked(), 2u);
  EXPECT_EQ(q.stats().chains, 0u);
  ASSERT_TRUE(q.pop(&c_));
  EXPECT_EQ(c_.head, 0) << "given back: popped again this burst";
  q.give_back(&c_, 1);
  q.publish();
  offer(3);
  ASSERT_TRUE(q.begin(reader_));
  for (uint16_t head : {0, 1, 2, 3}) {
    ASSERT_TRUE(q.pop(&c_));
    EXPECT_EQ(c_.head, head);
    q.push(head, 1);
  }
  EXPECT_FALSE(q.pop(&c_));
  q.publish();
  EXPECT_EQ(used_idx(), 4);
  EXPECT_EQ(q.stats().chains, 4u);
  EXPECT_EQ(q.parked(), 0u);
}

// complete_parked() (the owner stopped): the parked chains are completed
// empty, so used.idx is last_avail() again; nothing written when the used
// ring does not translate.
TEST_P(VirtqueueParkTest, CompleteParkedLeavesUsedIdxAtLastAvail) {
  if (!ap()) GTEST_SKIP() << "parking needs ACCESS_PLATFORM";
  Virtqueue q(*dev_, parking(8));
  set_desc(0, raw(kMissIova, 64, W));
  set_desc(1, d(kBuf, 64, W));
  set_desc(2, raw(kMissIova + 0x800, 64, W));
  offer({0, 1, 2});
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  EXPECT_EQ(c_.head, 1);
  q.push(1, 3);
  EXPECT_FALSE(q.pop(&c_));
  q.publish();
  ASSERT_EQ(q.parked(), 2u);
  EXPECT_EQ(q.complete_parked(), 2u);
  EXPECT_EQ(q.parked(), 0u);
  EXPECT_EQ(q.stats().parked_returned, 2u);
  EXPECT_EQ(used_idx(), q.last_avail());
  expect_used(0, 1, 3);
  expect_used(1, 0, 0);
  expect_used(2, 2, 0);
  EXPECT_EQ(q.complete_parked(), 0u) << "nothing left";

  // A used ring that does not translate any more is not written.
  QueueConfig cfg = parking(8);
  cfg.used = kRingIova + 0x2000;  // the second window, mapped below and then unmapped
  ASSERT_EQ(send(map_req(1, kRingIova, kRingIova + 0x3fff, kDesc, kRW)), 0);
  Virtqueue r(*dev_, cfg);
  set_desc(0, raw(kMissIova, 64, W));
  offer(0);
  ASSERT_TRUE(r.begin(reader_));
  EXPECT_FALSE(r.pop(&c_));
  r.publish();
  ASSERT_EQ(r.parked(), 1u);
  dev_->iotlb().offline(reader_);
  ASSERT_EQ(send(unmap_req(1, kRingIova, kRingIova + 0x3fff)), 0);
  dev_->iotlb().online(reader_);
  const uint16_t before = used_idx();
  EXPECT_EQ(r.complete_parked(), 0u);
  EXPECT_EQ(r.parked(), 1u);
  EXPECT_EQ(used_idx(), before);
}

// The FIFO holds at most size() chains, whatever the driver posts: one that
// posts a missing head again and again fills it; a chain given back that
// finds no room is then completed empty (counted), and the next miss is held
// in the ring as without parking.
TEST_P(VirtqueueParkTest, TheFifoIsBoundedByTheQueueSize) {
  if (!ap()) GTEST_SKIP() << "parking needs ACCESS_PLATFORM";
  Virtqueue q(*dev_, parking(4));
  park_four_copies(q);
  offer(1);
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  EXPECT_EQ(c_.head, 1);
  q.give_back(&c_, 1);
  EXPECT_EQ(q.parked(), 4u);
  EXPECT_EQ(q.stats().bad[ix(BadChain::kLoop)], 1u);
  q.publish();
  EXPECT_EQ(used_idx(), 1);
  expect_used(0, 1, 0);
  offer(0);
  ASSERT_TRUE(q.begin(reader_));
  EXPECT_FALSE(q.pop(&c_)) << "full: held in the ring";
  EXPECT_EQ(q.stats().held, 1u);
  EXPECT_EQ(q.last_avail(), 5);
  q.publish();
  // Its page arrives: the four parked copies pop first (a queue's worth in
  // one burst), then the held one.
  map_miss_page(kBuf + 0x7000);
  ASSERT_TRUE(q.begin(reader_));
  pop_push(q, 4, 0);
  EXPECT_FALSE(q.pop(&c_));
  q.publish();
  ASSERT_TRUE(q.begin(reader_));
  pop_push(q, 1, 0);
  EXPECT_FALSE(q.pop(&c_));
  q.publish();
  EXPECT_EQ(q.parked(), 0u);
  EXPECT_EQ(q.last_avail(), 6);
  EXPECT_EQ(used_idx(), 6);
}

// A burst publishes at most a queue's worth of used entries: a driver that
// posts heads it has not got back (four parked copies of one head, then four
// more slots) gets the rest on the next burst, not entries that overwrite
// one another before publish().
TEST_P(VirtqueueParkTest, ABurstCompletesAtMostAQueuesWorth) {
  if (!ap()) GTEST_SKIP() << "parking needs ACCESS_PLATFORM";
  Virtqueue q(*dev_, parking(4));
  park_four_copies(q);
  offer({1, 1, 1, 1});
  map_miss_page(kBuf + 0x7000);
  ASSERT_TRUE(q.begin(reader_));
  pop_push(q, 4, 0);
  EXPECT_FALSE(q.pop(&c_)) << "four entries wait to be published";
  q.publish();
  EXPECT_EQ(used_idx(), 4);
  EXPECT_EQ(q.last_avail(), 4);
  ASSERT_TRUE(q.begin(reader_));
  pop_push(q, 4, 1);
  q.publish();
  EXPECT_EQ(used_idx(), 8);
}

// take_miss() names the pages of the chains a burst parked, each once, up to
// kMissesKept; parked_misses() names them again, round robin; prefetch()
// looks only at the chains beyond the popped ones.
TEST_P(VirtqueueParkTest, TheParkedChainsMissesAreNamed) {
  if (!ap()) GTEST_SKIP() << "misses exist only with ACCESS_PLATFORM";
  Virtqueue q(*dev_, parking(8));
  for (uint16_t i = 0; i < 6; ++i) set_desc(i, raw(kMissIova + 0x1000 * (i / 2 + (i == 5 ? 2 : 0)) + 0x100 * i, 64, W));
  set_desc(6, raw(0x53000000, 16, W));
  offer({0, 1, 2, 3, 4, 5});  // pages 0, 0, 1, 1, 2, 4
  ASSERT_TRUE(q.begin(reader_));
  EXPECT_FALSE(q.pop(&c_));
  q.publish();
  ASSERT_EQ(q.parked(), 6u);
  Miss m[4];
  size_t n = 0;
  while (n < 4 && q.take_miss(&m[n])) ++n;
  ASSERT_EQ(n, 4u);
  EXPECT_EQ(m[0].iova, kMissIova);
  EXPECT_EQ(m[1].iova, kMissIova + 0x1200);
  EXPECT_EQ(m[2].iova, kMissIova + 0x2400);
  EXPECT_EQ(m[3].iova, kMissIova + 0x4500);
  EXPECT_EQ(m[3].access, pagetable::kPermWrite);
  EXPECT_FALSE(q.take_miss(&m[0]));

  ASSERT_EQ(q.parked_misses(std::span<Miss>(m, 4)), 4u);
  EXPECT_EQ(m[0].iova, kMissIova);
  EXPECT_EQ(m[1].iova, kMissIova + 0x100);
  EXPECT_EQ(m[3].iova, kMissIova + 0x1300);
  ASSERT_EQ(q.parked_misses(std::span<Miss>(m, 3)), 3u);
  EXPECT_EQ(m[0].iova, kMissIova + 0x2400);
  EXPECT_EQ(m[1].iova, kMissIova + 0x4500);
  EXPECT_EQ(m[2].iova, kMissIova) << "round robin";

  offer(6);
  ASSERT_TRUE(q.begin(reader_, 0));
  ASSERT_EQ(q.prefetch(32, std::span<Miss>(m, 4)), 1u) << "only the chain beyond the popped ones";
  EXPECT_EQ(m[0].iova, 0x53000000u);
  EXPECT_EQ(q.last_avail(), 6) << "prefetch consumes nothing";
}

INSTANTIATE_TEST_SUITE_P(Modes, VirtqueueParkTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "iova" : "gpa"; });

}  // namespace
}  // namespace vxlate::dataplane::virtqueue_test
