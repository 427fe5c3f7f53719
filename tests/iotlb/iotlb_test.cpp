// IOTLB unit tests: fills and hits per leaf size, faults, range/domain/global
// invalidation, generation wrap-around, capacity, statistics, a randomised
// differential test against the page table itself, and the burst and View
// fast paths (one probe of the preferred entry: every leaf size, permission
// faults, flushed generations, domains whose IOVAs land on the same entries;
// View::try_hit_page() against View::try_hit()).
#include "vxlate/iotlb/iotlb.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <random>
#include <thread>
#include <vector>

namespace vxlate::iotlb {
namespace {

using pagetable::kLeaf1G;
using pagetable::kLeaf2M;
using pagetable::kLeaf4K;
using pagetable::kPermRead;
using pagetable::kPermReadWrite;
using pagetable::kPermWrite;

constexpr DomainId kDom1{1};
constexpr DomainId kDom2{2};

// tlb.sync() waits for reader `id` (online), so it runs on a second thread
// while this one keeps reporting quiescent states, as a poll loop would.
void sync_while_reporting(Iotlb& tlb, uint32_t id) {
  std::atomic<bool> done{false};
  std::thread writer([&] {
    tlb.sync();
    done.store(true, std::memory_order_release);
  });
  while (!done.load(std::memory_order_acquire)) tlb.quiescent(id);
  writer.join();
  tlb.quiescent(id);
}

class IotlbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    id_ = rcu_.register_reader();
    tlb_.online(id_);
  }
  void TearDown() override {
    tlb_.offline(id_);
    rcu_.unregister_reader(id_);
  }

  void sync() { sync_while_reporting(tlb_, id_); }

  Status tr(DomainId d, const IoPageTable& pt, uint64_t iova, uint8_t need, Translation* t) {
    return tlb_.translate(id_, d, pt, iova, need, t);
  }

  Rcu rcu_{2};
  Iotlb tlb_{rcu_, 64};
  IoPageTable pt1_{rcu_};
  IoPageTable pt2_{rcu_};
  uint32_t id_ = 0;
};

TEST_F(IotlbTest, MissFillsThenHitsForEveryLeafSize) {
  for (uint64_t leaf : {kLeaf4K, kLeaf2M, kLeaf1G}) {
    SCOPED_TRACE(leaf);
    const uint64_t iova = 5 * kLeaf1G;
    const uint64_t out = 0x7f0000000000;
    ASSERT_EQ(pt1_.map(iova, out, leaf, kPermReadWrite), Status::kOk);
    const Stats before = tlb_.reader_stats(id_);
    Translation t{};
    ASSERT_EQ(tr(kDom1, pt1_, iova + 8, kPermRead, &t), Status::kOk);
    EXPECT_EQ(t.out, out + 8);
    EXPECT_EQ(t.leaf_size, leaf);
    ASSERT_EQ(tr(kDom1, pt1_, iova + leaf - 1, kPermWrite, &t), Status::kOk);
    EXPECT_EQ(t.out, out + leaf - 1);
    EXPECT_EQ(t.perms, kPermReadWrite);
    const Stats after = tlb_.reader_stats(id_);
    if (leaf == kLeaf4K) {
      EXPECT_EQ(after.misses - before.misses, 1u);
      EXPECT_EQ(after.hits - before.hits, 1u);
    } else {
      EXPECT_EQ(after.misses - before.misses, 1u);  // one leaf, one fill
    }
    ASSERT_EQ(pt1_.unmap(iova, leaf), Status::kOk);
    tlb_.add_invalidate(kDom1, iova, leaf);
    sync();
    EXPECT_EQ(tr(kDom1, pt1_, iova + 8, kPermRead, &t), Status::kFault);
  }
}

TEST_F(IotlbTest, FaultsOnUnmappedAndOnPermission) {
  ASSERT_EQ(pt1_.map(0x10000, 0x20000, kLeaf4K, kPermRead), Status::kOk);
  Translation t{};
  EXPECT_EQ(tr(kDom1, pt1_, 0x10000, kPermWrite, &t), Status::kFault);  // miss path
  EXPECT_EQ(tr(kDom1, pt1_, 0x10000, kPermWrite, &t), Status::kFault);  // hit path
  EXPECT_EQ(tr(kDom1, pt1_, 0x10000, kPermRead, &t), Status::kOk);
  EXPECT_EQ(tr(kDom1, pt1_, 0x11000, kPermRead, &t), Status::kFault);
  EXPECT_EQ(tr(kDom1, pt1_, ~uint64_t{0}, kPermRead, &t), Status::kFault);
}

// The cache really caches: without an invalidation the old translation stays.
// The add/sync pair is what removes it, and only the range given.
TEST_F(IotlbTest, RangeInvalidationIsNeededAndExact) {
  ASSERT_EQ(pt1_.map(0, 0x100000, 16 * kLeaf4K, kPermReadWrite), Status::kOk);
  Translation t{};
  for (uint64_t i = 0; i < 16; ++i) ASSERT_EQ(tr(kDom1, pt1_, i * kLeaf4K, kPermRead, &t), Status::kOk);
  ASSERT_EQ(pt1_.unmap(4 * kLeaf4K, 4 * kLeaf4K), Status::kOk);
  ASSERT_EQ(tr(kDom1, pt1_, 5 * kLeaf4K, kPermRead, &t), Status::kOk) << "stale entry expected before sync";
  tlb_.add_invalidate(kDom1, 4 * kLeaf4K, 4 * kLeaf4K);
  EXPECT_EQ(tlb_.pending(), 1u);
  sync();
  EXPECT_EQ(tlb_.pending(), 0u);
  const Stats before = tlb_.reader_stats(id_);
  for (uint64_t i = 0; i < 16; ++i) {
    const Status want = (i >= 4 && i < 8) ? Status::kFault : Status::kOk;
    EXPECT_EQ(tr(kDom1, pt1_, i * kLeaf4K, kPermRead, &t), want) << i;
  }
  const Stats after = tlb_.reader_stats(id_);
  EXPECT_EQ(after.misses - before.misses, 4u);  // only the invalidated pages missed
  EXPECT_EQ(after.hits - before.hits, 12u);
}

// A partial invalidation of a cached 2 MiB leaf drops the whole cached leaf.
TEST_F(IotlbTest, RangeInvalidationInsideALargeLeaf) {
  ASSERT_EQ(pt1_.map(kLeaf2M, 0x40000000, kLeaf2M, kPermReadWrite), Status::kOk);
  Translation t{};
  ASSERT_EQ(tr(kDom1, pt1_, kLeaf2M, kPermRead, &t), Status::kOk);
  ASSERT_EQ(pt1_.unmap(kLeaf2M + 3 * kLeaf4K, kLeaf4K), Status::kOk);
  tlb_.add_invalidate(kDom1, kLeaf2M + 3 * kLeaf4K, kLeaf4K);
  sync();
  EXPECT_EQ(tr(kDom1, pt1_, kLeaf2M + 3 * kLeaf4K, kPermRead, &t), Status::kFault);
  ASSERT_EQ(tr(kDom1, pt1_, kLeaf2M + 4 * kLeaf4K, kPermRead, &t), Status::kOk);
  EXPECT_EQ(t.leaf_size, kLeaf4K);  // refilled from the split table
}

// Large ranges are applied by scanning the cache; the result is the same.
TEST_F(IotlbTest, HugeRangeIsStillExact) {
  ASSERT_EQ(pt1_.map(0, 0, 8 * kLeaf4K, kPermRead), Status::kOk);
  ASSERT_EQ(pt2_.map(0, 0, 8 * kLeaf4K, kPermRead), Status::kOk);
  Translation t{};
  for (uint64_t i = 0; i < 8; ++i) {
    ASSERT_EQ(tr(kDom1, pt1_, i * kLeaf4K, kPermRead, &t), Status::kOk);
    ASSERT_EQ(tr(kDom2, pt2_, i * kLeaf4K, kPermRead, &t), Status::kOk);
  }
  tlb_.add_invalidate(kDom1, 0, uint64_t{1} << 40);  // far more pages than sets
  sync();
  const Stats before = tlb_.reader_stats(id_);
  for (uint64_t i = 0; i < 8; ++i) {
    ASSERT_EQ(tr(kDom1, pt1_, i * kLeaf4K, kPermRead, &t), Status::kOk);
    ASSERT_EQ(tr(kDom2, pt2_, i * kLeaf4K, kPermRead, &t), Status::kOk);
  }
  const Stats after = tlb_.reader_stats(id_);
  EXPECT_EQ(after.misses - before.misses, 8u);  // domain 1 only
  EXPECT_EQ(after.hits - before.hits, 8u);
}

// Flushing a domain and invalidating all of its ranges give the same results.
TEST_F(IotlbTest, DomainFlushEqualsRangeInvalidation) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 2; ++round) {
    std::vector<uint64_t> pages;
    for (int i = 0; i < 40; ++i) pages.push_back((rng() % 4096) * kLeaf4K);
    for (uint64_t p : pages) {
      (void)pt1_.map(p, p + 0x1000000, kLeaf4K, kPermRead);
      (void)pt2_.map(p, p + 0x2000000, kLeaf4K, kPermRead);
    }
    Translation t{};
    for (uint64_t p : pages) {
      ASSERT_EQ(tr(kDom1, pt1_, p, kPermRead, &t), Status::kOk);
      ASSERT_EQ(tr(kDom2, pt2_, p, kPermRead, &t), Status::kOk);
    }
    // Remap everything elsewhere in both domains, then invalidate one way each.
    for (uint64_t p : pages) {
      (void)pt1_.unmap(p, kLeaf4K);
      (void)pt2_.unmap(p, kLeaf4K);
    }
    for (uint64_t p : pages) {
      (void)pt1_.map(p, p + 0x5000000, kLeaf4K, kPermRead);
      (void)pt2_.map(p, p + 0x5000000, kLeaf4K, kPermRead);
    }
    if (round == 0) {
      tlb_.add_flush_domain(kDom1);
      for (uint64_t p : pages) tlb_.add_invalidate(kDom2, p, kLeaf4K);
    } else {
      tlb_.add_flush_domain(kDom2);
      for (uint64_t p : pages) tlb_.add_invalidate(kDom1, p, kLeaf4K);
    }
    sync();
    for (uint64_t p : pages) {
      Translation a{}, b{};
      ASSERT_EQ(tr(kDom1, pt1_, p, kPermRead, &a), Status::kOk);
      ASSERT_EQ(tr(kDom2, pt2_, p, kPermRead, &b), Status::kOk);
      EXPECT_EQ(a.out, p + 0x5000000);
      EXPECT_EQ(b.out, p + 0x5000000);
    }
    for (uint64_t p : pages) {
      (void)pt1_.unmap(p, kLeaf4K);
      (void)pt2_.unmap(p, kLeaf4K);
    }
    tlb_.add_flush_all();
    sync();
  }
}

// An entry filled under generation 0 must not match again when the generation
// wraps back to 0 after 2^32 flushes.
TEST_F(IotlbTest, GenerationWrapAround) {
  ASSERT_EQ(pt1_.map(0, 0xa000, kLeaf4K, kPermRead), Status::kOk);
  Translation t{};
  ASSERT_EQ(tr(kDom1, pt1_, 0, kPermRead, &t), Status::kOk);  // cached under generation 0
  ASSERT_EQ(pt1_.unmap(0, kLeaf4K), Status::kOk);
  ASSERT_EQ(pt1_.map(0, 0xb000, kLeaf4K, kPermRead), Status::kOk);
  tlb_.set_generation_for_test(kDom1, UINT32_MAX - 1);  // as if 2^32 - 2 flushes happened
  tlb_.add_flush_domain(kDom1);
  sync();  // -> UINT32_MAX
  ASSERT_EQ(tr(kDom1, pt1_, 0, kPermRead, &t), Status::kOk);
  EXPECT_EQ(t.out, 0xb000u);
  ASSERT_EQ(pt1_.unmap(0, kLeaf4K), Status::kOk);
  ASSERT_EQ(pt1_.map(0, 0xc000, kLeaf4K, kPermRead), Status::kOk);
  const uint64_t flushes = tlb_.reader_stats(id_).flushes;
  tlb_.add_flush_domain(kDom1);
  sync();  // wraps to 0 through a global flush
  EXPECT_GT(tlb_.reader_stats(id_).flushes, flushes);
  ASSERT_EQ(tr(kDom1, pt1_, 0, kPermRead, &t), Status::kOk);
  EXPECT_EQ(t.out, 0xc000u);  // neither the generation-0 (0xa000) nor the UINT32_MAX entry
  tlb_.add_flush_domain(kDom1);
  sync();  // 0 -> 1 as usual
  ASSERT_EQ(tr(kDom1, pt1_, 0, kPermRead, &t), Status::kOk);
  EXPECT_EQ(t.out, 0xc000u);
}

// A batch larger than the log is published as one global flush.
TEST_F(IotlbTest, OversizedBatchBecomesGlobalFlush) {
  ASSERT_EQ(pt2_.map(0, 0, kLeaf4K, kPermRead), Status::kOk);
  Translation t{};
  ASSERT_EQ(tr(kDom2, pt2_, 0, kPermRead, &t), Status::kOk);
  for (size_t i = 0; i < kLogCapacity + 1; ++i) tlb_.add_invalidate(kDom1, i * kLeaf4K, kLeaf4K);
  const uint64_t flushes = tlb_.reader_stats(id_).flushes;
  sync();
  EXPECT_EQ(tlb_.reader_stats(id_).flushes, flushes + 1);
  const uint64_t misses = tlb_.reader_stats(id_).misses;
  ASSERT_EQ(tr(kDom2, pt2_, 0, kPermRead, &t), Status::kOk);
  EXPECT_EQ(tlb_.reader_stats(id_).misses, misses + 1);
}

// Never more resident than the capacity; everything resident when it fits.
TEST_F(IotlbTest, CapacityAndStatistics) {
  constexpr uint64_t kPages = 512;  // 8x the 64 entries
  ASSERT_EQ(pt1_.map(0, kLeaf4K, kPages * kLeaf4K, kPermRead), Status::kOk);  // 4 KiB leaves
  Translation t{};
  const Stats s0 = tlb_.reader_stats(id_);
  for (uint64_t i = 0; i < kPages; ++i) ASSERT_EQ(tr(kDom1, pt1_, i * kLeaf4K, kPermRead, &t), Status::kOk);
  const Stats s1 = tlb_.reader_stats(id_);
  EXPECT_EQ(s1.misses - s0.misses, kPages);
  EXPECT_EQ(s1.fills - s0.fills, kPages);
  for (uint64_t i = 0; i < kPages; ++i) ASSERT_EQ(tr(kDom1, pt1_, i * kLeaf4K, kPermRead, &t), Status::kOk);
  const Stats s2 = tlb_.reader_stats(id_);
  EXPECT_LE(s2.hits - s1.hits, tlb_.entries_per_reader());
  EXPECT_EQ((s2.hits - s1.hits) + (s2.misses - s1.misses), kPages);
  // Summed stats add up across readers (the other reader did nothing).
  const Stats all = tlb_.stats();
  EXPECT_EQ(all.hits, s2.hits);
  EXPECT_EQ(all.misses, s2.misses);
  EXPECT_EQ(all.fills, s2.fills);
}

TEST_F(IotlbTest, BurstReportsFaultsPerIova) {
  ASSERT_EQ(pt1_.map(0, 0x100000, 4 * kLeaf4K, kPermRead), Status::kOk);
  std::vector<uint64_t> iovas;
  for (uint64_t i = 0; i < 40; ++i) iovas.push_back(i * kLeaf4K / 2);
  Translation out[kMaxBurst];
  uint32_t faults = 0;
  ASSERT_EQ(tlb_.translate_burst(id_, kDom1, pt1_, iovas, kPermRead, out, &faults), kMaxBurst);
  for (size_t i = 0; i < kMaxBurst; ++i) {
    const bool mapped = iovas[i] < 4 * kLeaf4K;
    EXPECT_EQ(((faults >> i) & 1) == 0, mapped) << i;
    if (mapped) {
      EXPECT_EQ(out[i].out, 0x100000 + iovas[i]);
    }
  }
}

// The burst path for every leaf size, alone and mixed: its one probe uses the
// smallest cached size; larger leaves, permission faults and misses go to the
// rest of the burst, and every IOVA gets the page table's answer.
TEST_F(IotlbTest, BurstEveryLeafSizeAndPermission) {
  const uint64_t base = 8 * kLeaf1G;
  ASSERT_EQ(pt1_.map(base, 0x40000000, kLeaf1G, kPermReadWrite), Status::kOk);                   // 1 GiB
  ASSERT_EQ(pt1_.map(base + kLeaf1G, 0x80000000, kLeaf2M, kPermRead), Status::kOk);              // 2 MiB, RO
  ASSERT_EQ(pt1_.map(base + kLeaf1G + kLeaf2M, 0xc0000000, 4 * kLeaf4K, kPermRead), Status::kOk);  // 4 KiB
  std::vector<uint64_t> iovas;
  for (uint64_t i = 0; i < kMaxBurst; ++i) {
    switch (i % 4) {
      case 0: iovas.push_back(base + i * 12345); break;
      case 1: iovas.push_back(base + kLeaf1G + i * 777); break;
      case 2: iovas.push_back(base + kLeaf1G + kLeaf2M + (i % 4) * kLeaf4K + i); break;
      default: iovas.push_back(base + kLeaf1G + kLeaf2M + 64 * kLeaf4K + i); break;  // unmapped
    }
  }
  // Round 0 fills; round 1 hits; alone (one size cached) and mixed.
  for (const uint8_t need : {uint8_t{kPermRead}, uint8_t{kPermWrite}}) {
    for (int round = 0; round < 3; ++round) {
      SCOPED_TRACE(testing::Message() << "need " << int{need} << " round " << round);
      Translation out[kMaxBurst];
      uint32_t faults = 0;
      ASSERT_EQ(tlb_.translate_burst(id_, kDom1, pt1_, iovas, need, out, &faults), kMaxBurst);
      for (size_t i = 0; i < kMaxBurst; ++i) {
        Translation want{};
        const bool mapped = pt1_.walk(iovas[i], &want);
        const bool ok = mapped && (want.perms & need) == need;
        ASSERT_EQ(((faults >> i) & 1) == 0, ok) << i;
        if (mapped) {
          EXPECT_EQ(out[i].out, want.out) << i;
          EXPECT_EQ(out[i].leaf_size, want.leaf_size) << i;
          EXPECT_EQ(out[i].perms, want.perms) << i;
        }
      }
    }
  }
  // Only the 2 MiB and 1 GiB leaves cached: the probe uses the 2 MiB size.
  ASSERT_EQ(pt1_.unmap(base + kLeaf1G + kLeaf2M, 4 * kLeaf4K), Status::kOk);
  tlb_.add_invalidate(kDom1, base + kLeaf1G + kLeaf2M, 4 * kLeaf4K);
  sync();
  const Stats before = tlb_.reader_stats(id_);
  Translation out[kMaxBurst];
  uint32_t faults = 0;
  const std::vector<uint64_t> large = {base + 5, base + kLeaf1G + 9, base + kLeaf1G - 1, base + kLeaf1G + kLeaf2M - 1};
  ASSERT_EQ(tlb_.translate_burst(id_, kDom1, pt1_, large, kPermRead, out, &faults), large.size());
  EXPECT_EQ(faults, 0u);
  EXPECT_EQ(out[0].out, 0x40000000u + 5);
  EXPECT_EQ(out[1].out, 0x80000000u + 9);
  EXPECT_EQ(out[2].out, 0x40000000u + kLeaf1G - 1);
  EXPECT_EQ(out[3].leaf_size, kLeaf2M);
  const Stats after = tlb_.reader_stats(id_);
  EXPECT_EQ(after.hits - before.hits, large.size());
  EXPECT_EQ(after.misses, before.misses);
}

// A flushed domain stops hitting in the burst and View paths (the generation
// is part of the compared tag), and so does a generation that wrapped.
TEST_F(IotlbTest, BurstAndViewSeeFlushedGenerations) {
  ASSERT_EQ(pt1_.map(0, 0xa000, 2 * kLeaf4K, kPermRead), Status::kOk);
  const std::vector<uint64_t> iovas = {0x10, kLeaf4K + 0x20};
  Translation out[2];
  uint32_t faults = 0;
  tlb_.translate_burst(id_, kDom1, pt1_, iovas, kPermRead, out, &faults);
  tlb_.translate_burst(id_, kDom1, pt1_, iovas, kPermRead, out, &faults);
  ASSERT_EQ(faults, 0u);
  for (int step = 0; step < 2; ++step) {
    ASSERT_EQ(pt1_.unmap(0, 2 * kLeaf4K), Status::kOk);
    const uint64_t target = step == 0 ? 0xb000 : 0xc000;
    ASSERT_EQ(pt1_.map(0, target, 2 * kLeaf4K, kPermRead), Status::kOk);
    if (step == 1) tlb_.set_generation_for_test(kDom1, UINT32_MAX);  // the next flush wraps to 0
    tlb_.add_flush_domain(kDom1);
    sync();
    const Stats before = tlb_.reader_stats(id_);
    tlb_.translate_burst(id_, kDom1, pt1_, iovas, kPermRead, out, &faults);
    ASSERT_EQ(faults, 0u);
    EXPECT_EQ(out[0].out, target + 0x10);
    EXPECT_EQ(out[1].out, target + kLeaf4K + 0x20);
    EXPECT_EQ(tlb_.reader_stats(id_).misses - before.misses, 2u);
    Iotlb::View v;
    v.begin(tlb_, id_, kDom1, pt1_);
    Translation t{};
    ASSERT_EQ(v.translate(kLeaf4K + 1, kPermRead, &t), Status::kOk);
    EXPECT_EQ(t.out, target + kLeaf4K + 1);
    EXPECT_EQ(v.translate(0x5, kPermWrite, &t), Status::kFault);  // permission, through the hit
    v.end();
    EXPECT_EQ(tlb_.reader_stats(id_).hits - before.hits, 2u);
  }
}

// Many domains map the same IOVAs to different outputs. The set index is the
// IOVA xor a per-domain salt, so domains may share preferred entries and sets;
// the key and tag compare keeps every answer the domain's own, in the single,
// burst and View paths, and a set keeps four live entries of one IOVA.
TEST(IotlbCollisions, DomainsSharingEntriesNeverAlias) {
  Rcu rcu(1);
  Iotlb tlb(rcu, 16);   // 4 sets of 4
  Iotlb small(rcu, 4);  // one set
  const uint32_t id = rcu.register_reader();
  tlb.online(id);
  constexpr uint32_t kDomains = 24;
  constexpr uint64_t kPages = 8;
  std::vector<std::unique_ptr<IoPageTable>> pts;
  for (uint32_t d = 0; d < kDomains; ++d) {
    pts.push_back(std::make_unique<IoPageTable>(rcu));
    ASSERT_EQ(pts[d]->map(0, (uint64_t{d} + 1) << 32, kPages * kLeaf4K, kPermReadWrite), Status::kOk);
  }
  std::mt19937_64 rng(5);
  for (int i = 0; i < 20000; ++i) {
    const uint32_t d = static_cast<uint32_t>(rng() % kDomains);
    const uint64_t iova = (rng() % kPages) * kLeaf4K + rng() % kLeaf4K;
    const uint64_t want = ((uint64_t{d} + 1) << 32) + iova;
    Translation t{};
    switch (i % 3) {
      case 0:
        ASSERT_EQ(tlb.translate(id, DomainId{d + 100}, *pts[d], iova, kPermRead, &t), Status::kOk);
        break;
      case 1: {
        uint32_t faults = 0;
        const uint64_t one[1] = {iova};
        ASSERT_EQ(tlb.translate_burst(id, DomainId{d + 100}, *pts[d], one, kPermRead, &t, &faults), 1u);
        ASSERT_EQ(faults, 0u);
        break;
      }
      default: {
        Iotlb::View v;
        v.begin(tlb, id, DomainId{d + 100}, *pts[d]);
        ASSERT_EQ(v.translate(iova, kPermRead, &t), Status::kOk);
        v.end();
      }
    }
    ASSERT_EQ(t.out, want) << "domain " << d << " iova " << std::hex << iova;
    if (i % 64 == 0) tlb.quiescent(id);
  }
  // Four domains, one IOVA, one 4-entry cache: all four stay resident.
  for (int round = 0; round < 2; ++round)
    for (uint32_t d = 0; d < 4; ++d) {
      Translation t{};
      ASSERT_EQ(small.translate(id, DomainId{d + 100}, *pts[d], 0x123, kPermRead, &t), Status::kOk);
      ASSERT_EQ(t.out, ((uint64_t{d} + 1) << 32) + 0x123);
    }
  EXPECT_EQ(small.reader_stats(id).misses, 4u);
  EXPECT_EQ(small.reader_stats(id).hits, 4u);
  tlb.offline(id);
  rcu.unregister_reader(id);
}

// View::try_hit_page() (the preferred 4 KiB entry inline, the rest through
// try_hit()) gives try_hit()'s answers: every leaf size, permission faults,
// entries pushed into other ways of their set by a small cache, IOVAs never
// filled, and a flushed generation.
TEST(IotlbView, TryHitPageAgreesWithTryHit) {
  Rcu rcu(2);
  Iotlb tlb(rcu, 16);  // 4 sets of 4: displacements are common
  const uint32_t id = rcu.register_reader();
  tlb.online(id);
  IoPageTable pt(rcu);
  constexpr uint64_t kBase4K = uint64_t{1} << 32;
  for (uint64_t i = 0; i < 24; ++i) {  // 4 KiB leaves, every other page, every third one writable
    const uint8_t perms = i % 3 == 0 ? kPermReadWrite : kPermRead;
    ASSERT_EQ(pt.map(kBase4K + 2 * i * kLeaf4K, 0x100000000 + i * kLeaf4K, kLeaf4K, perms), Status::kOk);
  }
  ASSERT_EQ(pt.map(4 * kLeaf2M, 0x40000000, kLeaf2M, kPermWrite), Status::kOk);  // one 2 MiB leaf
  ASSERT_EQ(pt.map(2 * kLeaf1G, 5 * kLeaf1G, kLeaf1G, kPermRead), Status::kOk);  // one 1 GiB leaf
  std::mt19937_64 rng(11);
  auto pick = [&]() -> uint64_t {
    switch (rng() % 4) {
      case 0: return 4 * kLeaf2M + rng() % kLeaf2M;
      case 1: return 2 * kLeaf1G + rng() % kLeaf1G;
      default: return kBase4K + (rng() % 48) * kLeaf4K + rng() % kLeaf4K;  // half of them unmapped
    }
  };
  uint64_t fast = 0;
  for (int i = 0; i < 20000; ++i) {
    if (i == 10000) {  // a flushed generation stops matching everywhere
      tlb.add_flush_domain(kDom1);
      sync_while_reporting(tlb, id);
    }
    Iotlb::View v;
    v.begin(tlb, id, kDom1, pt);
    const uint64_t iova = pick();
    const uint8_t need = static_cast<uint8_t>(1 + rng() % 3);
    Translation t{};
    if (rng() % 2 == 0) (void)v.translate(pick(), kPermRead, &t);  // fills
    const bool want = v.try_hit(iova, need, &t);
    uint64_t out = 0;
    uint8_t perms = 0;
    const bool got = v.try_hit_page(iova, need, &out, &perms);
    ASSERT_EQ(got, want) << std::hex << "iova 0x" << iova << " need " << int{need};
    if (want) {
      ASSERT_EQ(out, t.out) << std::hex << "iova 0x" << iova;
      ASSERT_EQ(perms, t.perms) << std::hex << "iova 0x" << iova;
      ++fast;
    }
    v.end();
    if (i % 16 == 0) tlb.quiescent(id);
  }
  EXPECT_GT(fast, 1000u);  // the comparison saw hits, not only misses
  tlb.offline(id);
  rcu.unregister_reader(id);
}

TEST(IotlbConfig, RejectsBadSizes) {
  Rcu rcu(1);
  EXPECT_THROW(Iotlb(rcu, 0), std::invalid_argument);
  EXPECT_THROW(Iotlb(rcu, 100), std::invalid_argument);
  EXPECT_THROW(Iotlb(rcu, 2), std::invalid_argument);
  Iotlb ok(rcu, 4);
  EXPECT_EQ(ok.entries_per_reader(), 4u);
}

// Random map/unmap with invalidate + sync, checked against the page table walk.
TEST_F(IotlbTest, DifferentialAgainstPageTable) {
  std::mt19937_64 rng(11);
  constexpr uint64_t kSpace = 64 * kLeaf2M;
  for (int op = 0; op < 3000; ++op) {
    const uint64_t r = rng() % 10;
    if (r < 6) {
      // Probe a batch of addresses; IOTLB and walk must agree.
      for (int i = 0; i < 16; ++i) {
        const uint64_t iova = rng() % kSpace;
        Translation a{}, b{};
        const bool walked = pt1_.walk(iova, &b);
        const Status s = tr(kDom1, pt1_, iova, kPermRead, &a);
        ASSERT_EQ(s == Status::kOk, walked && (b.perms & kPermRead)) << std::hex << iova;
        if (walked) {
          ASSERT_EQ(a.out, b.out) << std::hex << iova;
          ASSERT_EQ(a.perms, b.perms);
        }
      }
    } else {
      // A batch of changes, then one sync.
      const int n = 1 + static_cast<int>(rng() % 8);
      for (int i = 0; i < n; ++i) {
        const uint64_t leaf = (rng() % 3 == 0) ? kLeaf2M : kLeaf4K;
        const uint64_t iova = (rng() % (kSpace / leaf)) * leaf;
        const uint64_t size = leaf * (1 + rng() % 4);
        if (rng() % 2) {
          (void)pt1_.map(iova, (rng() % 1024) * kLeaf2M, size, static_cast<uint8_t>(1 + rng() % 3));
        } else {
          ASSERT_EQ(pt1_.unmap(iova, size), Status::kOk);
          tlb_.add_invalidate(kDom1, iova, size);
        }
      }
      sync();
    }
  }
}

}  // namespace
}  // namespace vxlate::iotlb
