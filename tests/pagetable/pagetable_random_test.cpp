// Randomised map/unmap/walk sequences checked against a plain interval model.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <map>
#include <random>

#include "vxlate/pagetable/io_pgtable.h"

namespace vxlate::pagetable {
namespace {

// Reference model: disjoint inclusive intervals iova -> (last, out, perms).
class Model {
 public:
  struct Extent {
    uint64_t last;
    uint64_t out;
    uint8_t perms;
  };

  bool overlaps(uint64_t iova, uint64_t last) const {
    auto it = m_.upper_bound(last);
    if (it == m_.begin()) return false;
    --it;
    return it->second.last >= iova;
  }
  void map(uint64_t iova, uint64_t last, uint64_t out, uint8_t perms) { m_[iova] = {last, out, perms}; }
  void unmap(uint64_t iova, uint64_t last) {
    auto it = m_.upper_bound(last);
    while (it != m_.begin()) {
      auto prev = std::prev(it);
      if (prev->second.last < iova) break;
      const uint64_t start = prev->first;
      const Extent e = prev->second;
      m_.erase(prev);
      if (start < iova) m_[start] = {iova - 1, e.out, e.perms};
      if (e.last > last) m_[last + 1] = {e.last, e.out + (last + 1 - start), e.perms};
      it = m_.upper_bound(last);
    }
  }
  bool lookup(uint64_t iova, uint64_t* out, uint8_t* perms) const {
    auto it = m_.upper_bound(iova);
    if (it == m_.begin()) return false;
    --it;
    if (iova > it->second.last) return false;
    *out = it->second.out + (iova - it->first);
    *perms = it->second.perms;
    return true;
  }
  const std::map<uint64_t, Extent>& extents() const { return m_; }

 private:
  std::map<uint64_t, Extent> m_;
};

constexpr uint64_t k4K = kLeaf4K;
constexpr uint64_t k2M = kLeaf2M;
constexpr uint64_t k1G = kLeaf1G;
constexpr uint64_t kZoneSize = 8 * k1G;
// Zones at the bottom, across a level-0 boundary and at the top of the space.
constexpr uint64_t kZones[] = {0, (uint64_t{1} << 39) - 4 * k1G, kIovaLast + 1 - kZoneSize};

class RandomOps {
 public:
  RandomOps(uint64_t seed, IoPageTable& pt) : rng_(seed), pt_(pt) {}

  uint64_t pick(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_); }
  uint64_t pick_granule() {
    const uint64_t r = pick(16);
    return r < 10 ? k4K : r < 15 ? k2M : k1G;
  }
  uint64_t pick_iova(uint64_t align) {
    const uint64_t zone = kZones[pick(std::size(kZones))];
    return zone + pick(kZoneSize / align) * align;
  }
  uint64_t pick_size(uint64_t granule) {
    return granule == k4K ? (1 + pick(600)) * k4K : granule == k2M ? (1 + pick(3)) * k2M : k1G;
  }

  void step(Model& model) {
    const uint64_t r = pick(100);
    if (r < 45) {
      const uint64_t g = pick_granule();
      const uint64_t iova = pick_iova(g);
      const uint64_t size = pick_size(pick_granule());
      const uint64_t out = iova + pick(1 << 20) * pick_granule();
      const uint8_t perms = static_cast<uint8_t>(1 + pick(3));
      uint64_t last = iova + size - 1;
      const Status s = pt_.map(iova, out, size, perms);
      if (last > kIovaLast) {
        ASSERT_EQ(s, Status::kRange);
      } else if (model.overlaps(iova, last)) {
        ASSERT_EQ(s, Status::kInval);
      } else {
        ASSERT_EQ(s, Status::kOk);
        model.map(iova, last, out, perms);
      }
    } else if (r < 85) {
      const uint64_t iova = pick_iova(pick_granule());
      uint64_t size = pick_size(pick_granule());
      if (iova + size - 1 > kIovaLast) size = kIovaLast + 1 - iova;
      ASSERT_EQ(pt_.unmap(iova, size), Status::kOk);
      model.unmap(iova, iova + size - 1);
    } else {
      // Probe random addresses and the edges of random extents.
      for (int i = 0; i < 8; ++i) probe(model, pick_iova(1));
      if (!model.extents().empty()) {
        auto it = model.extents().begin();
        std::advance(it, pick(model.extents().size()));
        for (uint64_t iova : {it->first - 1, it->first, it->second.last, it->second.last + 1}) probe(model, iova);
      }
    }
  }

  void probe(const Model& model, uint64_t iova) {
    uint64_t out = 0;
    uint8_t perms = 0;
    Translation t{};
    const bool want = model.lookup(iova, &out, &perms);
    const bool got = pt_.walk(iova, &t);
    ASSERT_EQ(got, want) << std::hex << "iova 0x" << iova;
    if (!want) return;
    ASSERT_EQ(t.out, out) << std::hex << "iova 0x" << iova;
    ASSERT_EQ(t.perms, perms) << std::hex << "iova 0x" << iova;
    // The leaf holding iova lies inside one model extent with contiguous output.
    const uint64_t leaf_base = iova & ~(t.leaf_size - 1);
    uint64_t base_out = 0;
    ASSERT_TRUE(model.lookup(leaf_base, &base_out, &perms));
    ASSERT_EQ(base_out, out - (iova - leaf_base));
  }

 private:
  std::mt19937_64 rng_;
  IoPageTable& pt_;
};

TEST(PageTableRandom, MatchesReferenceModel) {
  constexpr int kSeeds = 4;
#if defined(__SANITIZE_THREAD__)
  // Single-threaded: nothing here for TSan to find that the stress tests do
  // not, and with the debug checks every write walks the whole table.
  constexpr int kOpsPerSeed = 1500;
#elif defined(VXLATE_DEBUG_CHECKS)
  // Every write also walks the whole table (IoPageTable::verify): a quarter of
  // the operations keeps the ASan build's run to a minute or two.
  constexpr int kOpsPerSeed = 7500;
#else
  constexpr int kOpsPerSeed = 30000;  // 120k operations in all
#endif
  for (int seed = 1; seed <= kSeeds; ++seed) {
    SCOPED_TRACE(seed);
    Rcu rcu(2);
    IoPageTable pt(rcu);
    Model model;
    RandomOps ops(static_cast<uint64_t>(seed), pt);
    for (int i = 0; i < kOpsPerSeed; ++i) {
      ops.step(model);
      if (HasFatalFailure()) return;
      if (i % 2000 == 0) {
        ASSERT_TRUE(pt.verify()) << "op " << i;
      }
    }
    // Every extent edge agrees with the model, then everything goes away.
    for (const auto& [iova, e] : model.extents()) {
      ops.probe(model, iova);
      ops.probe(model, e.last);
      if (HasFatalFailure()) return;
    }
    // Mappings may run up to 1 GiB + 2.4 MiB past the end of their zone.
    for (uint64_t zone : kZones)
      ASSERT_EQ(pt.unmap(zone, std::min(kZoneSize + 2 * k1G, kIovaLast + 1 - zone)), Status::kOk);
    pt.drain();
    EXPECT_EQ(pt.table_bytes(), kTableBytes);
    EXPECT_TRUE(pt.verify());
  }
}

// map() and unmap() of one 4 KiB page take a fast path (one descent) where
// every table on the way exists; a missing table (map) or a block leaf
// (unmap) sends them to the general one. Single pages in a 16 MiB window
// that also gets 2 MiB blocks: pages fill and empty leaf tables, land in
// blocks (map refused, unmap splits), and the tables emptied on the way up
// are retired, so only the root is left at the end.
TEST(PageTableRandom, SinglePagesMatchReferenceModel) {
#if defined(VXLATE_DEBUG_CHECKS) || defined(__SANITIZE_THREAD__)
  constexpr int kOps = 6000;
#else
  constexpr int kOps = 40000;
#endif
  // Across a 1 GiB boundary, so emptying a leaf can empty two levels above it.
  constexpr uint64_t kBase = k1G - 8 * k2M;
  constexpr uint64_t kWindow = 16 * k2M;
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    SCOPED_TRACE(seed);
    Rcu rcu(2);
    IoPageTable pt(rcu);
    Model model;
    RandomOps ops(seed, pt);
    for (int i = 0; i < kOps; ++i) {
      const uint64_t r = ops.pick(100);
      if (r < 50) {
        const uint64_t iova = kBase + ops.pick(kWindow / k4K) * k4K;
        const uint64_t out = ops.pick(uint64_t{1} << 30) * k4K;
        const uint8_t perms = static_cast<uint8_t>(1 + ops.pick(3));
        const Status s = pt.map(iova, out, k4K, perms);
        if (model.overlaps(iova, iova + k4K - 1)) {
          ASSERT_EQ(s, Status::kInval) << std::hex << "iova 0x" << iova;
        } else {
          ASSERT_EQ(s, Status::kOk) << std::hex << "iova 0x" << iova;
          model.map(iova, iova + k4K - 1, out, perms);
        }
      } else if (r < 95) {
        const uint64_t iova = kBase + ops.pick(kWindow / k4K) * k4K;
        ASSERT_EQ(pt.unmap(iova, k4K), Status::kOk);
        model.unmap(iova, iova + k4K - 1);
      } else if (r < 97) {
        // A block in place of whatever the 2 MiB held.
        const uint64_t iova = kBase + ops.pick(kWindow / k2M) * k2M;
        ASSERT_EQ(pt.unmap(iova, k2M), Status::kOk);
        model.unmap(iova, iova + k2M - 1);
        ASSERT_EQ(pt.map(iova, iova, k2M, kPermRead), Status::kOk);
        model.map(iova, iova + k2M - 1, iova, kPermRead);
      } else {
        for (int j = 0; j < 8; ++j) ops.probe(model, kBase + ops.pick(kWindow));
      }
      if (HasFatalFailure()) return;
      if (i % 500 == 0) {
        ASSERT_TRUE(pt.verify()) << "op " << i;
        for (uint64_t iova = kBase; iova < kBase + kWindow; iova += k4K) ops.probe(model, iova);
        if (HasFatalFailure()) return;
      }
    }
    ASSERT_TRUE(pt.verify());
    // Page by page, so the last page of each table retires it.
    for (uint64_t iova = kBase; iova < kBase + kWindow; iova += k4K) ASSERT_EQ(pt.unmap(iova, k4K), Status::kOk);
    for (uint64_t iova = kBase; iova < kBase + kWindow; iova += k4K) {
      Translation t{};
      ASSERT_FALSE(pt.walk(iova, &t));
    }
    pt.drain();
    EXPECT_EQ(pt.table_bytes(), kTableBytes);
    EXPECT_TRUE(pt.verify());
  }
}

}  // namespace
}  // namespace vxlate::pagetable
