// Virtqueue ring translations kept until an invalidation, a new memory table or a domain change; an UNMAP
// of a live ring; hold_on_miss and miss-ahead prefetch; rings at host addresses and a base index.
#include "vxlate/dataplane/virtqueue.h"

#include <gtest/gtest.h>

#include <cstring>
#include <span>

#include "dataplane/virtqueue_test_support.h"

namespace vxlate::dataplane::virtqueue_test {
namespace {

// An UNMAP of the rings' IOVAs completes only after this reader's quiescent
// report; the next begin() no longer reaches them (the IOTLB dropped them too).
// The ring translations are kept across bursts (Device::Burst's stamp) and
// made again only after something they depend on changed: an invalidation
// this reader applied (ACCESS_PLATFORM; any, even of an unrelated page) or a
// new memory table (both modes). stats().translations counts every translate
// call: three ring areas plus one per buffer.
TEST_P(VirtqueueTest, RingTranslationsKeptUntilAnInvalidation) {
  Virtqueue q(*dev_, fresh(8));
  set_desc(0, d(kBuf, 16));
  auto burst = [&] {
    offer(0);
    const uint64_t before = q.stats().translations;
    EXPECT_TRUE(q.begin(reader_));
    EXPECT_TRUE(q.pop(&c_));
    q.push(0, 0);
    q.publish();
    return q.stats().translations - before;
  };
  EXPECT_EQ(burst(), 4u) << "first burst: three rings and the buffer";
  EXPECT_EQ(burst(), 1u) << "rings kept";
  dev_->iotlb().quiescent(reader_);
  EXPECT_EQ(burst(), 1u) << "a quiescent report with nothing new keeps them";
  if (ap()) {
    EXPECT_EQ(synced([&] { return send(unmap_req(1, kRoIova, kRoIova + 0xfff)); }), 0);
    EXPECT_EQ(burst(), 4u) << "an UNMAP the reader applied drops them (any UNMAP: the check is coarse)";
    EXPECT_EQ(burst(), 1u);
  }
  const engine::MemRegion regions[] = {{kGpa, kASize, reinterpret_cast<uint64_t>(a_)},
                                       {kBGpa, kBSize, reinterpret_cast<uint64_t>(b_)}};
  EXPECT_EQ(synced([&] { return static_cast<int>(dev_->set_mem_table(regions)); }), 0);
  EXPECT_EQ(burst(), 4u) << "a new memory table drops them";
  EXPECT_EQ(used_idx(), ap() ? 6 : 4);
  EXPECT_EQ(q.stats().ring_faults, 0u);
}

// The endpoint moves to another domain that maps the ring IOVAs elsewhere,
// with no invalidation at all (its old domain lives on with another endpoint):
// the kept rings must not be used, since they belong to the old domain.
TEST_P(VirtqueueTest, KeptRingsFollowTheEndpointsDomain) {
  if (!ap()) GTEST_SKIP() << "rings are GPAs without ACCESS_PLATFORM";
  constexpr uint64_t kCopy = kGpa + 0x10000;  // domain 2's view of the ring IOVAs
  ASSERT_EQ(send(attach_req(1, 2)), 0);       // endpoint 2 keeps domain 1 alive
  Virtqueue q(*dev_, fresh(8));
  set_desc(0, d(kBuf, 16));
  offer(0);
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  q.push(0, 0);
  q.publish();
  EXPECT_EQ(used_idx(), 1);
  // Domain 2: the same IOVAs, rings at kCopy, with two chains posted there.
  std::memset(host(kCopy), 0, 0x3000);
  put(kCopy, d(kBuf + 0x1000, 32));
  AvailRing copy_avail{host(kCopy + 0x1000), 8};
  copy_avail.ring(1) = 0;
  copy_avail.ring(2) = 0;
  store16(copy_avail.idx(), 3, std::memory_order_release);  // last_avail is 1: chains 1 and 2 are new
  ASSERT_EQ(synced([&] {
              int r = send(attach_req(2, 1));
              if (r == 0) r = send(map_req(2, kIova, kIova + 0x3fff, kCopy, kRW));
              if (r == 0) r = send(map_req(2, kIova + 0x100000, kIova + 0x101fff, kBuf, kRW));
              return r;
            }),
            0);
  ASSERT_TRUE(q.begin(reader_));
  EXPECT_EQ(q.available(), 2) << "avail.idx read through domain 2";
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(0, 1, {{kBuf + 0x1000, 32}});
  q.push(0, 7);
  q.publish();
  UsedRing copy_used{host(kCopy + 0x2000), 8};
  EXPECT_EQ(load16(copy_used.idx(), std::memory_order_acquire), 2) << "used entry written through domain 2";
  EXPECT_EQ(used_idx(), 1) << "domain 1's used ring untouched";
}

TEST_P(VirtqueueTest, UnmapOfLiveRing) {
  if (!ap()) GTEST_SKIP() << "rings are GPAs without ACCESS_PLATFORM";
  dev_->iotlb().offline(reader_);
  ASSERT_EQ(send(map_req(1, kRingIova, kRingIova + 0x3fff, kGpa, kRW)), 0);
  dev_->iotlb().online(reader_);
  QueueConfig cfg = fresh(8);
  cfg.desc = kRingIova;
  cfg.avail = kRingIova + (kAvail - kGpa);
  cfg.used = kRingIova + (kUsed - kGpa);
  Virtqueue q(*dev_, cfg);
  set_desc(0, d(kBuf, 16));
  offer(0);
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  q.push(0, 0);
  q.publish();
  EXPECT_EQ(used_idx(), 1);
  offer(0);

  ASSERT_EQ(synced([&] { return send(unmap_req(1, kRingIova, kRingIova + 0x3fff)); }), 0);
  EXPECT_FALSE(q.begin(reader_));
  EXPECT_EQ(q.stats().ring_faults, 1u);
  EXPECT_FALSE(q.pop(&c_));
  EXPECT_EQ(q.stats().chains, 1u);
  EXPECT_EQ(used_idx(), 1);
}

// The lookahead's translation of a chain's first buffer holds for its burst
// only: a chain left in the ring when the burst ended, whose buffer is
// unmapped before the next one, is walked afresh and refused.
TEST_P(VirtqueueTest, LookaheadBuffersDoNotOutliveTheirBurst) {
  if (!ap()) GTEST_SKIP() << "nothing to unmap without ACCESS_PLATFORM";
  constexpr uint64_t kPageIova = 0x50000000;
  dev_->iotlb().offline(reader_);
  ASSERT_EQ(send(map_req(1, kPageIova, kPageIova + 0xfff, kBuf + 0x2000, kRW)), 0);
  dev_->iotlb().online(reader_);
  Virtqueue q(*dev_, fresh(8));
  for (uint16_t h = 0; h < 3; ++h) {
    const uint64_t t = kTable + 0x100 * h;
    if (h == 2)
      set_table(t, {raw(kPageIova, 12, N, 1), raw(kPageIova + 12, 64)});
    else
      set_table(t, {d(kBuf + 0x100 * h, 12, N, 1), d(kBuf + 0x100 * h + 12, 64)});
    set_desc(h, d(t, 32, I));
  }
  offer({0, 1, 2});
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  ASSERT_TRUE(q.pop(&c_));  // its lookahead translates chain 2's first buffer
  q.push(0, 0);
  q.push(1, 0);
  q.publish();  // the burst ends with chain 2 in the ring

  ASSERT_EQ(synced([&] { return send(unmap_req(1, kPageIova, kPageIova + 0xfff)); }), 0);
  ASSERT_TRUE(q.begin(reader_));
  EXPECT_FALSE(q.pop(&c_));
  EXPECT_EQ(q.stats().bad[ix(BadChain::kUnmapped)], 1u);
  q.publish();
  EXPECT_EQ(used_idx(), 3);  // completed with length 0
}

// Every buffer translation counts once in the IOTLB's statistics, whether
// the walk made it or used the lookahead's: with every page cached, a burst's
// hits are its translations and it has no miss (the lookahead's translation
// counted nothing, so netperf's hit rate read 92% where 0.7% missed).
TEST_P(VirtqueueTest, LookaheadTranslationsCountAsHits) {
  if (!ap()) GTEST_SKIP() << "no IOTLB without ACCESS_PLATFORM";
  Virtqueue q(*dev_, fresh(8));
  ASSERT_TRUE(QueueConfig{}.lookahead) << "the test is about the lookahead's translations";
  for (uint16_t h = 0; h < 6; ++h) set_desc(h, d(kBuf + 0x1000 * h + 0x40, 64, h % 2 ? W : 0));
  auto round = [&] {
    offer({0, 1, 2, 3, 4, 5});
    ASSERT_TRUE(q.begin(reader_));
    for (uint16_t h = 0; h < 6; ++h) {
      ASSERT_TRUE(q.pop(&c_));
      ASSERT_EQ(c_.head, h);
      q.push(h, 0);
    }
    q.publish();
  };
  round();  // fills whatever was not cached
  const iotlb::Stats s0 = dev_->iotlb().reader_stats(reader_);
  const uint64_t t0 = q.stats().translations;
  round();
  const iotlb::Stats s1 = dev_->iotlb().reader_stats(reader_);
  const uint64_t translations = q.stats().translations - t0;
  EXPECT_EQ(translations, 6u);
  EXPECT_EQ(s1.misses - s0.misses, 0u);
  EXPECT_EQ(s1.hits - s0.hits, translations) << "a translation the lookahead made was not counted";
}

// The page of the last indirect table the lookahead peeked
// (Device::Burst::peek_table) is not remembered past an invalidation: chains
// whose tables lie in a page unmapped between two bursts are walked afresh
// and refused, none read through the page remembered in the burst before.
TEST_P(VirtqueueTest, LookaheadTablePageDoesNotOutliveAnInvalidation) {
  if (!ap()) GTEST_SKIP() << "nothing to unmap without ACCESS_PLATFORM";
  constexpr uint64_t kPageIova = 0x50000000;  // a second window on kTable's page
  dev_->iotlb().offline(reader_);
  ASSERT_EQ(send(map_req(1, kPageIova, kPageIova + 0xfff, kTable, kRW)), 0);
  dev_->iotlb().online(reader_);
  Virtqueue q(*dev_, fresh(8));
  for (uint16_t h = 0; h < 5; ++h) {
    set_table(kTable + 0x100 * h, {d(kBuf + 0x100 * h, 12, N, 1), d(kBuf + 0x100 * h + 12, 64)});
    set_desc(h, raw(kPageIova + 0x100 * h, 32, I));
  }
  offer({0, 1, 2, 3, 4});
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  ASSERT_TRUE(q.pop(&c_));  // its lookahead peeks chain 3's table: the page is remembered
  expect_chain(1, 2, {{kBuf + 0x100, 12}, {kBuf + 0x10c, 64}});
  q.push(0, 0);
  q.push(1, 0);
  q.publish();  // the burst ends with chains 2-4 in the ring

  ASSERT_EQ(synced([&] { return send(unmap_req(1, kPageIova, kPageIova + 0xfff)); }), 0);
  ASSERT_TRUE(q.begin(reader_));
  EXPECT_FALSE(q.pop(&c_));
  EXPECT_EQ(q.stats().bad[ix(BadChain::kUnmapped)], 3u);
  q.publish();
  EXPECT_EQ(used_idx(), 5);  // completed with length 0
}

// The page of the last indirect table a walk translated is kept across bursts
// (a one-chain burst then reads the next table, in the same page, without an
// IOTLB probe), but not past an invalidation the reader applied: a table in
// that page, unmapped between two bursts, makes its chain bad, or with
// hold_on_miss (the vhost-user back end) keeps it in the ring as a miss.
TEST_P(VirtqueueTest, TablePageKeptAcrossBurstsUntilAnInvalidation) {
  if (!ap()) GTEST_SKIP() << "nothing to unmap without ACCESS_PLATFORM";
  constexpr uint64_t kPageIova = 0x50000000;  // a second window on kTable's page
  for (const bool hold : {false, true}) {
    SCOPED_TRACE(hold ? "hold_on_miss" : "without hold_on_miss");
    dev_->iotlb().offline(reader_);
    ASSERT_EQ(send(map_req(1, kPageIova, kPageIova + 0xfff, kTable, kRW)), 0);
    dev_->iotlb().online(reader_);
    QueueConfig cfg = fresh(8);
    cfg.hold_on_miss = hold;
    Virtqueue q(*dev_, cfg);
    for (uint16_t h = 0; h < 3; ++h) {
      set_table(kTable + 0x100 * h, {d(kBuf + 0x100 * h, 12, N, 1), d(kBuf + 0x100 * h + 12, 64)});
      set_desc(h, raw(kPageIova + 0x100 * h, 32, I));
    }
    for (uint16_t h = 0; h < 2; ++h) {  // one chain a burst: no lookahead
      offer(h);
      ASSERT_TRUE(q.begin(reader_));
      ASSERT_TRUE(q.pop(&c_));
      expect_chain(h, 2, {{kBuf + 0x100 * h, 12}, {kBuf + 0x100 * h + 12, 64}});
      q.push(h, 0);
      q.publish();
    }
    ASSERT_EQ(synced([&] { return send(unmap_req(1, kPageIova, kPageIova + 0xfff)); }), 0);
    offer(2);
    ASSERT_TRUE(q.begin(reader_));
    EXPECT_FALSE(q.pop(&c_));
    Miss m{};
    if (hold) {
      EXPECT_EQ(q.stats().held, 1u);
      ASSERT_TRUE(q.take_miss(&m));
      EXPECT_EQ(m.iova, kPageIova + 0x200);
      q.publish();
      EXPECT_EQ(q.last_avail(), 2) << "the held chain stays in the ring";
    } else {
      EXPECT_EQ(q.stats().bad[ix(BadChain::kUnmapped)], 1u);
      EXPECT_FALSE(q.take_miss(&m));
      q.publish();
      EXPECT_EQ(used_idx(), 3);  // completed with length 0
    }
  }
}

// hold_on_miss (a vhost-user device IOTLB): a chain whose buffer does not
// translate stays in its ring, with everything behind it, and take_miss()
// names the address; once it translates the same chain pops. Without
// hold_on_miss the same chain is bad (kUnmapped).
TEST_P(VirtqueueTest, HoldOnMissKeepsTheChainInItsRing) {
  if (!ap()) GTEST_SKIP() << "misses exist only with ACCESS_PLATFORM";
  constexpr uint64_t kMissIova = 0x50000000;  // not mapped until the test maps it
  for (const bool hold : {true, false}) {
    SCOPED_TRACE(hold ? "hold_on_miss" : "without hold_on_miss");
    QueueConfig cfg = fresh(8);
    cfg.hold_on_miss = hold;
    Virtqueue q(*dev_, cfg);
    set_desc(0, d(kBuf, 16));
    set_desc(1, d(kBuf + 0x1000, 16, N, 2));
    set_desc(2, raw(kMissIova + 0x10, 64, W));  // the second buffer of chain 1 misses
    set_desc(3, d(kBuf + 0x2000, 16));
    offer({0, 1, 3});
    ASSERT_TRUE(q.begin(reader_));
    ASSERT_TRUE(q.pop(&c_));
    EXPECT_EQ(c_.head, 0);
    q.push(0, 0);
    Miss m{};
    if (hold) {
      EXPECT_FALSE(q.pop(&c_)) << "chain 1 waits, and chain 3 behind it";
      EXPECT_EQ(q.stats().held, 1u);
      EXPECT_EQ(q.stats().bad_total(), 0u);
      ASSERT_TRUE(q.take_miss(&m));
      EXPECT_EQ(m.iova, kMissIova + 0x10);
      EXPECT_EQ(m.access, pagetable::kPermWrite);
      EXPECT_FALSE(q.take_miss(&m)) << "taken once";
      q.publish();
      EXPECT_EQ(used_idx(), 1);
      EXPECT_EQ(q.last_avail(), 1) << "the held chain's slot is not consumed";
      // The translation arrives; the same chains pop, in order.
      dev_->iotlb().offline(reader_);
      ASSERT_EQ(send(map_req(1, kMissIova, kMissIova + 0xfff, kBuf + 0x7000, kRW)), 0);
      dev_->iotlb().online(reader_);
      ASSERT_TRUE(q.begin(reader_));
      ASSERT_TRUE(q.pop(&c_));
      expect_chain(1, 1, {{kBuf + 0x1000, 16}, {kBuf + 0x7010, 64}});
      ASSERT_TRUE(q.pop(&c_));
      EXPECT_EQ(c_.head, 3);
      EXPECT_FALSE(q.take_miss(&m));
      dev_->iotlb().offline(reader_);
      ASSERT_EQ(send(unmap_req(1, kMissIova, kMissIova + 0xfff)), 0);
      dev_->iotlb().online(reader_);
    } else {
      ASSERT_TRUE(q.pop(&c_)) << "chain 1 is completed as bad; chain 3 pops";
      EXPECT_EQ(c_.head, 3);
      EXPECT_EQ(q.stats().bad[ix(BadChain::kUnmapped)], 1u);
      EXPECT_FALSE(q.take_miss(&m));
    }
  }
}

// A ring area that misses stops begin() and is named by take_miss(); a chain
// that is bad for another reason (a wrapping buffer) is still completed as
// bad, not held.
TEST_P(VirtqueueTest, HoldOnMissRingsAndGenuinelyBadChains) {
  if (!ap()) GTEST_SKIP() << "misses exist only with ACCESS_PLATFORM";
  QueueConfig cfg = fresh(8);
  cfg.hold_on_miss = true;
  cfg.avail = 0x58000000;
  {
    Virtqueue q(*dev_, cfg);
    EXPECT_FALSE(q.begin(reader_));
    Miss m{};
    ASSERT_TRUE(q.take_miss(&m));
    EXPECT_EQ(m.iova, 0x58000000u);
    EXPECT_EQ(m.access, pagetable::kPermRead);
  }
  cfg = fresh(8);
  cfg.hold_on_miss = true;
  Virtqueue q(*dev_, cfg);
  set_desc(0, raw(0xfffffffffffff000, 0x2000));  // wraps: bad, whatever the IOTLB holds
  set_desc(1, d(kBuf, 16));
  offer({0, 1});
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  EXPECT_EQ(c_.head, 1);
  EXPECT_EQ(q.stats().bad[ix(BadChain::kUnmapped)], 1u);
  EXPECT_EQ(q.stats().held, 0u);
}

// Rings given as host addresses (vhost-user without ACCESS_PLATFORM) and a
// queue that resumes at a base index (SET_VRING_BASE).
TEST_P(VirtqueueTest, HostRingsAndBase) {
  QueueConfig cfg = fresh(8);
  cfg.rings_host = true;
  cfg.desc = reinterpret_cast<uint64_t>(host(kDesc));
  cfg.avail = reinterpret_cast<uint64_t>(host(kAvail));
  cfg.used = reinterpret_cast<uint64_t>(host(kUsed));
  Virtqueue q(*dev_, cfg);
  q.set_base(0xfffe);
  aidx_ = 0xfffe;
  store16(used().idx(), 0xfffe, std::memory_order_relaxed);
  set_desc(4, d(kBuf, 16));
  set_desc(5, d(kBuf + 0x1000, 32, W));
  set_desc(6, d(kBuf + 0x2000, 8));
  offer({4, 5, 6});
  ASSERT_TRUE(q.begin(reader_));
  EXPECT_EQ(q.available(), 3);
  for (uint16_t head : {4, 5, 6}) {
    ASSERT_TRUE(q.pop(&c_));
    EXPECT_EQ(c_.head, head);
    q.push(head, 0);
  }
  q.publish();
  EXPECT_EQ(q.last_avail(), 1);
  EXPECT_EQ(used_idx(), 1);
  expect_used(0xfffe, 4, 0);
  expect_used(0, 6, 0);
  EXPECT_EQ(q.stats().translations, 3u) << "no ring translations";
}

// Miss-ahead: prefetch() names every buffer that misses in the chains posted
// beyond the popped ones, several per chain, without consuming anything, and
// does not look at the same chains twice.
TEST_P(VirtqueueTest, PrefetchNamesMissesAhead) {
  if (!ap()) GTEST_SKIP() << "misses exist only with ACCESS_PLATFORM";
  QueueConfig cfg = fresh(8);
  cfg.hold_on_miss = true;
  Virtqueue q(*dev_, cfg);
  set_desc(0, d(kBuf, 16));
  set_desc(1, raw(0x51000000, 64, W | N, 2));  // misses
  set_desc(2, raw(0x52000000, 64, W));         // misses too
  set_desc(3, raw(0x53000000, 16));            // misses
  offer({0, 1, 3});
  ASSERT_TRUE(q.begin(reader_, 0));
  Miss m[8];
  ASSERT_EQ(q.prefetch(32, m), 3u);
  EXPECT_EQ(m[0].iova, 0x51000000u);
  EXPECT_EQ(m[0].access, pagetable::kPermWrite);
  EXPECT_EQ(m[1].iova, 0x52000000u);
  EXPECT_EQ(m[2].iova, 0x53000000u);
  EXPECT_EQ(m[2].access, pagetable::kPermRead);
  EXPECT_EQ(q.prefetch(32, m), 0u) << "the same chains are not looked at twice";
  EXPECT_EQ(q.last_avail(), 0) << "nothing consumed";
  EXPECT_EQ(q.stats().chains, 0u);
  EXPECT_EQ(q.stats().bad_total(), 0u);
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  EXPECT_EQ(c_.head, 0);
  EXPECT_FALSE(q.pop(&c_)) << "chain 1 is held";
  offer(0);
  ASSERT_TRUE(q.begin(reader_, 0));
  EXPECT_EQ(q.prefetch(32, m), 0u) << "only the new chain, which translates";
  EXPECT_EQ(q.prefetch(1, std::span<Miss>(m, 1)), 0u);
}

}  // namespace
}  // namespace vxlate::dataplane::virtqueue_test
