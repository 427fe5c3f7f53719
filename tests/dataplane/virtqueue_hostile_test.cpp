// Virtqueue against a hostile driver: every BadChain reason (the next good chain still pops, looked
// ahead at or not), refuse(), a broken avail index, and ring faults (bad size, misaligned, unmapped).
#include "vxlate/dataplane/virtqueue.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <tuple>
#include <vector>

#include "dataplane/virtqueue_test_support.h"

namespace vxlate::dataplane::virtqueue_test {
namespace {

// Each hostile chain (head 0 unless said) is counted under exactly its reason
// and completed with length 0 (a head out of range gets no used entry); the
// good chain after it pops with its exact segment.
TEST_P(VirtqueueTest, HostileChains) {
  struct Hostile {
    const char* name;
    BadChain why;
    std::function<void()> write;
    uint32_t size = 8;
    bool indirect = true;
    uint16_t head = 0;
  };
  using B = BadChain;
  auto table_of = [&](uint32_t n) {
    std::vector<VirtqDesc> t;
    for (uint32_t i = 0; i < n; ++i) t.push_back(d(kBuf + 2 * i, 1, i + 1 < n ? N : 0, static_cast<uint16_t>(i + 1)));
    return t;
  };
  std::vector<Hostile> cases = {
      {"head == size", B::kHeadRange, [] {}, 8, true, 8},
      {"head 0xffff", B::kHeadRange, [] {}, 8, true, 0xffff},
      {"next >= size", B::kIndexRange, [&] { set_desc(0, d(kBuf, 8, N, 8)); }},
      {"loop a->b->a", B::kLoop, [&] { set_desc(0, d(kBuf, 8, N, 1)), set_desc(1, d(kBuf + 64, 8, N, 0)); }},
      {"self loop", B::kLoop, [&] { set_desc(0, d(kBuf, 0, N, 0)); }},
      {"indirect without the feature", B::kIndirect,
       [&] { set_table(kTable, {d(kBuf, 8)}), set_desc(0, d(kTable, 16, I)); }, 8, false},
      {"indirect|next", B::kIndirect,
       [&] { set_table(kTable, {d(kBuf, 8)}), set_desc(0, d(kTable, 16, I | N, 1)), set_desc(1, d(kBuf, 8)); }},
      {"nested indirect", B::kIndirect,
       [&] { set_table(kTable, {d(kBuf, 8, N, 1), d(kTable, 16, I)}), set_desc(0, d(kTable, 32, I)); }},
      {"indirect len 0", B::kIndirect, [&] { set_desc(0, d(kTable, 0, I)); }},
      {"indirect len 24", B::kIndirect, [&] { set_table(kTable, table_of(2)), set_desc(0, d(kTable, 24, I)); }},
      {"indirect > size entries", B::kIndirect,
       [&] { set_table(kTable, table_of(9)), set_desc(0, d(kTable, 9 * 16, I)); }},
      {"indirect next >= count", B::kIndexRange,
       [&] { set_table(kTable, {d(kBuf, 8, N, 1), d(kBuf, 8, N, 2), d(kBuf, 8)}), set_desc(0, d(kTable, 32, I)); }},
      {"indirect loop", B::kLoop,
       [&] { set_table(kTable, {d(kBuf, 8, N, 1), d(kBuf + 64, 8, N, 0)}), set_desc(0, d(kTable, 32, I)); }},
      {"readable after writable", B::kOrder,
       [&] { set_desc(0, d(kBuf, 8, W | N, 1)), set_desc(1, d(kBuf + 64, 8)); }},
      {"readable after writable, indirect", B::kOrder,
       [&] { set_table(kTable, {d(kBuf, 8, W | N, 1), d(kBuf + 64, 8)}), set_desc(0, d(kTable, 32, I)); }},
      {"writable direct, readable indirect", B::kOrder,
       [&] { set_desc(0, d(kBuf, 8, W | N, 1)), set_table(kTable, {d(kBuf + 64, 8)}), set_desc(1, d(kTable, 16, I)); }},
      {"writable > 4 GiB - 1", B::kLength,
       [&] { set_desc(0, d(kBigGpa, 0x80000000u, W | N, 1)), set_desc(1, d(kBigGpa, 0x80000000u, W)); }},
      {"outside guest memory", B::kUnmapped, [&] { set_desc(0, raw(kOutside, 16)); }},
      {"runs off the end of memory", B::kUnmapped, [&] { set_desc(0, d(kBGpa + kBSize - 8, 16, W)); }},
      {"addr + len wraps", B::kUnmapped, [&] { set_desc(0, raw(0xfffffffffffffff0, 0x20)); }},
      {"good then unmapped", B::kUnmapped, [&] { set_desc(0, d(kBuf, 8, N, 1)), set_desc(1, raw(kOutside, 8, W)); }},
      {"indirect table unmapped", B::kUnmapped, [&] { set_desc(0, raw(kOutside, 32, I)); }},
      {"indirect table wraps", B::kUnmapped, [&] { set_desc(0, raw(0xfffffffffffffff0, 32, I)); }},
      {"too many segs, indirect", B::kTooManySegs,
       [&] { set_table(kTable, table_of(kMaxChainSegs + 1)), set_desc(0, d(kTable, 16 * (kMaxChainSegs + 1), I)); },
       128},
      {"too many segs, direct", B::kTooManySegs,
       [&] {
         for (uint16_t i = 0; i <= kMaxChainSegs; ++i) set_desc(i, d(kBuf + 2 * i, 1, i < kMaxChainSegs ? N : 0, i + 1));
       },
       128},
      {"too many segs, last buffer splits", B::kTooManySegs,
       [&] {
         auto t = table_of(kMaxChainSegs);  // 63 one-byte buffers, then one that needs 2 segments
         t.back() = d(kBGpa - 4, 8);
         set_table(kTable, t), set_desc(0, d(kTable, 16 * kMaxChainSegs, I));
       },
       128},
  };
  if (ap()) {
    cases.push_back({"write to a read-only mapping", B::kUnmapped, [&] { set_desc(0, raw(kRoIova, 16, W)); }});
    cases.push_back({"unmapped IOVA inside a gap", B::kUnmapped, [&] { set_desc(0, raw(kRoIova + 0x1000, 16)); }});
  }
  // Each case twice: first in the ring, and behind two good chains, so that
  // pop()'s lookahead (software prefetching) reads the hostile chain's
  // descriptor and table before the walk does. The hints must change
  // nothing: same chains, counts, used entries and fault events.
  for (const Hostile& h : cases) {
    SCOPED_TRACE(h.name);
    std::vector<engine::FaultEvent> events[2];
    for (uint16_t before : {0, 2}) {
      SCOPED_TRACE(before == 0 ? "hostile chain first" : "hostile chain looked ahead at");
      Virtqueue q(*dev_, fresh(h.size, h.indirect));
      h.write();
      const uint16_t good = static_cast<uint16_t>(h.size - 1);
      set_desc(good, d(kGood, 16));
      for (uint16_t i = 0; i < before; ++i) {
        set_desc(static_cast<uint16_t>(h.size - 3 + i), d(kGood + 64 * (i + 1), 16));
        offer(static_cast<uint16_t>(h.size - 3 + i));
      }
      offer(h.head);
      offer(good);
      ASSERT_TRUE(q.begin(reader_));
      for (uint16_t i = 0; i < before; ++i) {
        ASSERT_TRUE(q.pop(&c_));
        expect_chain(static_cast<uint16_t>(h.size - 3 + i), 1, {{kGood + 64 * (i + 1), 16}});
        q.push(c_.head, 5);
      }
      ASSERT_TRUE(q.pop(&c_));
      expect_chain(good, 1, {{kGood, 16}});
      EXPECT_FALSE(q.pop(&c_));
      for (size_t r = 0; r < ix(B::kCount); ++r)
        EXPECT_EQ(q.stats().bad[r], r == ix(h.why) ? 1u : 0u) << to_string(static_cast<B>(r));
      EXPECT_EQ(q.stats().chains, 1u + before);
      q.push(good, 5);
      q.publish();
      const bool completed = h.why != B::kHeadRange;
      EXPECT_EQ(used_idx(), before + (completed ? 2 : 1));
      for (uint16_t i = 0; i < before; ++i) expect_used(i, h.size - 3 + i, 5);
      if (completed) expect_used(before, h.head, 0);
      expect_used(before + (completed ? 1 : 0), good, 5);
      EXPECT_FALSE(q.broken());
      dev_->iotlb().quiescent(reader_);
      engine::FaultEvent ev[8];
      events[before / 2].assign(ev, ev + dev_->drain_events(ev));
    }
    ASSERT_EQ(events[0].size(), events[1].size());
    for (size_t i = 0; i < events[0].size(); ++i) {
      EXPECT_EQ(events[0][i].reason, events[1][i].reason);
      EXPECT_EQ(events[0][i].flags, events[1][i].flags);
      EXPECT_EQ(events[0][i].address, events[1][i].address);
    }
  }
}

// Lookahead (software prefetching) is hints only: random chains of one to
// three descriptors, good and hostile (empty, wrapping, straddling two
// regions or leaving guest memory, readable after writable, indirect, next
// out of range or looping, past max_chain_bytes or max_chain_descs), pop
// exactly alike from a queue with lookahead and one without: the same
// chains and segments, counts (translations included), bad reasons, used
// entries and fault events.
TEST_P(VirtqueueTest, RandomShortChainsPopAlikeWithAndWithoutLookahead) {
  uint64_t rng = 0x9e3779b97f4a7c15;
  auto next = [&rng](uint64_t n) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng % n;
  };
  const uint64_t addrs[] = {kBuf, kBuf + 0x123, kBGpa - 8, kBGpa - 64, kBGpa + kBSize - 8, kOutside,
                            0xfffffffffffffff0, kSkewGpa, kTable};
  const uint32_t lens[] = {0, 1, 8, 16, 56, 64, 72, 100, 0x80000000u, 0xffffffffu};
  const uint16_t flag_sets[] = {0, 0, 0, N, N, N, W, W, W, N | W, N | W, I, I | N};
  const uint32_t max_bytes[] = {0, 0, 24, 64, 137};
  const uint32_t max_descs[] = {0, 0, 1, 2, 16};
  const uint32_t sizes[] = {8, 8, 8, 2, 1};
  uint64_t two_buffers = 0, no_segment = 0, bad_chains = 0;
  for (int round = 0; round < 3000; ++round) {
    SCOPED_TRACE(round);
    QueueConfig cfg = fresh(sizes[next(5)], next(2) == 0);
    cfg.max_chain_bytes = max_bytes[next(5)];
    cfg.max_chain_descs = max_descs[next(5)];
    auto random_desc = [&](uint32_t bound) {
      return d(addrs[next(9)], lens[next(10)], flag_sets[next(13)], static_cast<uint16_t>(next(bound + 1)));
    };
    for (uint32_t i = 0; i < cfg.size; ++i) set_desc(i, random_desc(cfg.size));
    set_table(kTable, {random_desc(2), random_desc(2)});
    if (cfg.size >= 2 && next(3) == 0) {
      // A request's shape at 0 (readable, then writable), random in place and length.
      set_desc(0, d(addrs[next(9)], lens[next(10)], N, 1));
      set_desc(1, d(addrs[next(9)], lens[next(10)], W));
    }
    const uint32_t heads = 1 + static_cast<uint32_t>(next(std::min<uint32_t>(4, cfg.size)));
    for (uint32_t i = 0; i < heads; ++i) offer(static_cast<uint16_t>(next(cfg.size + 1)));
    struct Popped {
      uint16_t head;
      uint32_t nsegs, nreadable, descs;
      uint64_t readable, writable;
      std::vector<std::pair<uint64_t, uint64_t>> segs;
      bool operator==(const Popped&) const = default;
    };
    std::vector<Popped> got[2];
    VirtqueueStats stats[2];
    std::vector<std::pair<uint32_t, uint32_t>> used_entries[2];
    std::vector<std::tuple<uint8_t, uint32_t, uint64_t>> faults[2];
    const uint16_t used_before = used_idx();
    for (int ahead = 0; ahead < 2; ++ahead) {
      QueueConfig c = cfg;
      c.lookahead = ahead == 1;
      Virtqueue q(*dev_, c);
      // The second queue's used entries start where the first one's did.
      if (ahead == 1) store16(used().idx(), used_before, std::memory_order_relaxed);
      ASSERT_TRUE(q.begin(reader_));
      Chain ch;
      while (q.pop(&ch)) {
        Popped p{ch.head, ch.nsegs, ch.nreadable, ch.descs, ch.readable_bytes, ch.writable_bytes, {}};
        for (uint32_t s = 0; s < ch.nsegs; ++s) p.segs.emplace_back(ch.segs[s].addr, ch.segs[s].len);
        got[ahead].push_back(p);
        q.push(ch.head, 1);
      }
      q.publish();
      stats[ahead] = q.stats();
      for (uint16_t u = used_before; u != used_idx(); ++u) {
        const VirtqUsedElem e = used().ring(u & (cfg.size - 1));
        used_entries[ahead].emplace_back(e.id, e.len);
      }
      dev_->iotlb().quiescent(reader_);
      engine::FaultEvent ev[16];
      for (size_t n; (n = dev_->drain_events(ev)) != 0;)
        for (size_t i = 0; i < n; ++i) faults[ahead].emplace_back(ev[i].reason, ev[i].flags, ev[i].address);
    }
    EXPECT_EQ(got[0], got[1]);
    EXPECT_EQ(used_entries[0], used_entries[1]);
    EXPECT_EQ(stats[0].chains, stats[1].chains);
    EXPECT_EQ(stats[0].descs, stats[1].descs);
    EXPECT_EQ(stats[0].translations, stats[1].translations);
    EXPECT_EQ(stats[0].bad, stats[1].bad);
    EXPECT_EQ(faults[0], faults[1]);
    bad_chains += stats[0].bad_total();
    for (const Popped& p : got[0]) {
      two_buffers += p.nsegs == 2 && p.descs == 2;
      // An indirect table's head, or an empty buffer, visited for no segment.
      no_segment += p.descs > p.nsegs;
    }
  }
  // The mix reached good chains of a request's shape, chains with an
  // indirect table or an empty buffer, and bad chains.
  EXPECT_GT(two_buffers, 100u);
  EXPECT_GT(no_segment, 100u);
  EXPECT_GT(bad_chains, 500u);
}

TEST_P(VirtqueueTest, RefuseCompletesWithZero) {
  Virtqueue q(*dev_, fresh(8));
  set_desc(3, d(kBuf, 16));
  set_desc(4, d(kBuf + 64, 16, W));
  offer({3, 4});
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  q.refuse(c_, BadChain::kDirection);
  ASSERT_TRUE(q.pop(&c_));
  EXPECT_EQ(c_.head, 4);
  q.push(4, 16);
  q.publish();
  EXPECT_EQ(used_idx(), 2);
  expect_used(0, 3, 0);
  expect_used(1, 4, 16);
  EXPECT_EQ(q.stats().bad[ix(BadChain::kDirection)], 1u);
  EXPECT_EQ(q.stats().bad_total(), 1u);
  EXPECT_EQ(q.stats().chains, 1u);
  EXPECT_EQ(q.stats().used, 2u);
}

TEST_P(VirtqueueTest, AvailIndexJumpBreaksTheQueue) {
  for (const uint16_t jump : {uint16_t{9}, uint16_t{0xffff}}) {  // size + 1 ahead, or one back
    SCOPED_TRACE(jump);
    Virtqueue q(*dev_, fresh(8));
    for (uint16_t h = 0; h < 8; ++h) {
      set_desc(h, d(kBuf, 16));
      offer(h);
    }
    ASSERT_TRUE(q.begin(reader_));
    EXPECT_EQ(q.available(), 8) << "a full ring is not a jump";
    for (uint16_t h = 0; h < 8; ++h) ASSERT_TRUE(q.pop(&c_));
    store16(avail().idx(), static_cast<uint16_t>(aidx_ + jump), std::memory_order_release);
    EXPECT_FALSE(q.pop(&c_)) << "avail.idx is read once per burst";
    EXPECT_FALSE(q.broken());
    EXPECT_FALSE(q.begin(reader_));  // the next burst sees the jump
    EXPECT_TRUE(q.broken());
    EXPECT_FALSE(q.pop(&c_)) << "a broken queue pops nothing, however often asked";
    EXPECT_EQ(q.available(), 0);
    EXPECT_FALSE(q.begin(reader_));
    EXPECT_FALSE(q.pop(&c_));
    EXPECT_EQ(q.stats().broken, 1u);
    EXPECT_EQ(q.stats().ring_faults, 0u);
    EXPECT_EQ(q.stats().chains, 8u);
  }
}

TEST_P(VirtqueueTest, RingFaults) {
  struct Bad {
    const char* name;
    std::function<void(QueueConfig&)> edit;
  };
  std::vector<Bad> bads = {
      {"size 0", [](QueueConfig& c) { c.size = 0; }},
      {"size 6", [](QueueConfig& c) { c.size = 6; }},
      {"size 65536", [](QueueConfig& c) { c.size = 65536; }},
      {"desc misaligned", [](QueueConfig& c) { c.desc += 8; }},
      {"avail misaligned", [](QueueConfig& c) { c.avail += 1; }},
      {"used misaligned", [](QueueConfig& c) { c.used += 2; }},
      {"desc misaligned, its HVA aligned", [](QueueConfig& c) { c.desc = kSkewGpa + 8; }},
      {"desc aligned, its HVA misaligned", [](QueueConfig& c) { c.desc = kSkewGpa + 16; }},
      {"desc unmapped", [](QueueConfig& c) { c.desc = kOutside; }},
      {"avail unmapped", [](QueueConfig& c) { c.avail = kOutside; }},
      {"used unmapped", [](QueueConfig& c) { c.used = kOutside; }},
      {"desc wraps", [](QueueConfig& c) { c.desc = 0xffffffffffffff00; }},
      {"used spans two regions", [&](QueueConfig& c) { c.used = ga(kBGpa - 16); }},
  };
  if (ap()) bads.push_back({"used read-only", [](QueueConfig& c) { c.used = kRoIova; }});
  for (const Bad& b : bads) {
    SCOPED_TRACE(b.name);
    QueueConfig cfg = fresh(8);
    b.edit(cfg);
    Virtqueue q(*dev_, cfg);
    set_desc(0, d(kBuf, 16));
    offer(0);
    EXPECT_FALSE(q.begin(reader_));
    EXPECT_EQ(q.stats().ring_faults, 1u);
    EXPECT_EQ(q.available(), 0);
    EXPECT_FALSE(q.pop(&c_));
    EXPECT_FALSE(q.enable_kicks());
    EXPECT_FALSE(q.begin(reader_));
    EXPECT_EQ(q.stats().ring_faults, 2u);
    EXPECT_EQ(q.stats().bad_total(), 0u);
    EXPECT_FALSE(q.broken());
  }
  if (ap()) {  // the device only reads the descriptor table: a read-only mapping is enough
    QueueConfig cfg = fresh(8);
    cfg.desc = kRoIova;
    Virtqueue q(*dev_, cfg);
    EXPECT_TRUE(q.begin(reader_));
    EXPECT_EQ(q.stats().ring_faults, 0u);
  }
}

}  // namespace
}  // namespace vxlate::dataplane::virtqueue_test
