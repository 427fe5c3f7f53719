// ExtentIndex (engine/include/vxlate/engine/detail/extent_index.h): random
// insert/erase/search sequences against std::map, the layout's invariants
// checked after every change, and the memory bound a guest cannot push past.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "vxlate/engine/detail/extent_index.h"

namespace vxlate::engine::detail {
namespace {

using Ref = std::map<uint64_t, Extent>;

Extent extent_at(uint64_t first) { return Extent{first, first + 0xfff, first ^ 0xabc000, uint32_t(first >> 12) & 3}; }

// Every search answer of `idx` at `iova` matches the reference's.
void expect_same_searches(const ExtentIndex& idx, const Ref& ref, uint64_t iova) {
  Extent got;
  auto ub = ref.upper_bound(iova);
  const bool le = idx.find_le(iova, &got);
  ASSERT_EQ(le, ub != ref.begin()) << "find_le " << iova;
  if (le) {
    const Extent& want = std::prev(ub)->second;
    EXPECT_EQ(got.first, want.first);
    EXPECT_EQ(got.last, want.last);
    EXPECT_EQ(got.phys, want.phys);
    EXPECT_EQ(got.flags, want.flags);
  }
  auto lb = ref.lower_bound(iova);
  const bool ge = idx.find_ge(iova, &got);
  ASSERT_EQ(ge, lb != ref.end()) << "find_ge " << iova;
  if (ge) {
    EXPECT_EQ(got.first, lb->second.first);
    EXPECT_EQ(got.last, lb->second.last);
  }
}

// Keys from a few patterns a guest produces: dense ascending, dense
// descending, random in a small range (collisions: repeated inserts and
// erases of the same keys), random over the whole space.
uint64_t key(std::mt19937_64& rng, int pattern, uint64_t step) {
  switch (pattern) {
    case 0: return step << 12;
    case 1: return (uint64_t{1} << 40) - (step << 12);
    case 2: return (rng() % 3000) << 12;
    default: return rng() & ~uint64_t{0xfff};
  }
}

TEST(ExtentIndex, MatchesAnOrderedMapUnderRandomSequences) {
  for (int pattern = 0; pattern < 4; ++pattern) {
    for (unsigned seed = 1; seed <= 3; ++seed) {
      SCOPED_TRACE(testing::Message() << "pattern " << pattern << " seed " << seed);
      std::mt19937_64 rng(seed * 7919 + pattern);
      ExtentIndex idx;
      Ref ref;
      std::vector<uint64_t> keys;
      for (uint64_t step = 0; step < 20000; ++step) {
        // Grow for the first half, then mostly shrink, so leaves split,
        // merge and even out.
        const bool grow = step < 10000 ? rng() % 4 != 0 : rng() % 4 == 0;
        if (grow || keys.empty()) {
          const uint64_t k = key(rng, pattern, step);
          if (ref.count(k) == 0) {
            ASSERT_TRUE(idx.insert(extent_at(k)));
            ref[k] = extent_at(k);
            keys.push_back(k);
          }
        } else {
          const size_t at = rng() % keys.size();
          const uint64_t k = keys[at];
          keys[at] = keys.back();
          keys.pop_back();
          if (rng() % 2 == 0) {
            ASSERT_TRUE(idx.erase(k));
          } else {  // through the slot a search gives, as the device does
            Extent e;
            ExtentIndex::Slot at;
            ASSERT_TRUE(idx.find_ge(k, &e, &at));
            ASSERT_EQ(e.first, k);
            idx.erase(at);
          }
          ref.erase(k);
          ASSERT_FALSE(idx.erase(k)) << "erased twice";
        }
        ASSERT_TRUE(idx.check()) << "step " << step;
        ASSERT_EQ(idx.size(), ref.size());
        expect_same_searches(idx, ref, key(rng, pattern, step));
        if (!keys.empty()) {
          const uint64_t k = keys[rng() % keys.size()];
          expect_same_searches(idx, ref, k);
          expect_same_searches(idx, ref, k - 1);
          expect_same_searches(idx, ref, k + 1);
        }
      }
      // Drained: empty again, and usable.
      for (uint64_t k : keys) ASSERT_TRUE(idx.erase(k));
      EXPECT_TRUE(idx.empty());
      EXPECT_EQ(idx.leaves(), 0u);
      EXPECT_TRUE(idx.check());
      Extent e;
      EXPECT_FALSE(idx.find_le(~uint64_t{0}, &e));
      EXPECT_FALSE(idx.find_ge(0, &e));
      ASSERT_TRUE(idx.insert(extent_at(0x5000)));
      EXPECT_TRUE(idx.find_ge(0, &e));
      EXPECT_EQ(e.first, 0x5000u);
    }
  }
}

TEST(ExtentIndex, SearchesAtTheEdgesOfTheSpace) {
  ExtentIndex idx;
  Extent e;
  ASSERT_TRUE(idx.insert(Extent{0, 0xfff, 0, 1}));
  ASSERT_TRUE(idx.insert(Extent{~uint64_t{0} - 0xfff, ~uint64_t{0}, 0, 2}));
  ASSERT_TRUE(idx.find_le(0, &e));
  EXPECT_EQ(e.flags, 1u);
  ASSERT_TRUE(idx.find_le(~uint64_t{0}, &e));
  EXPECT_EQ(e.flags, 2u);
  ASSERT_TRUE(idx.find_ge(1, &e));
  EXPECT_EQ(e.flags, 2u);
  EXPECT_FALSE(idx.find_ge(~uint64_t{0} - 0xffe, &e));
  EXPECT_FALSE(idx.erase(0x1000));
  EXPECT_TRUE(idx.check());
}

// A guest maps many pages, then unmaps all but a few spread over the space:
// leaves merge as they empty, so the index never holds more than one leaf per
// kLeafMin extents (plus one), whatever the order.
TEST(ExtentIndex, LeavesStayAtLeastQuarterFullWhateverIsErased) {
  constexpr uint64_t kN = 1 << 16;
  for (int order = 0; order < 2; ++order) {
    ExtentIndex idx;
    std::vector<uint64_t> keys;
    for (uint64_t i = 0; i < kN; ++i) keys.push_back(i << 12);
    std::mt19937_64 rng(order + 1);
    if (order == 1) std::shuffle(keys.begin(), keys.end(), rng);
    for (uint64_t k : keys) ASSERT_TRUE(idx.insert(extent_at(k)));
    ASSERT_TRUE(idx.check());
    EXPECT_LE(idx.leaves(), kN / ExtentIndex::kLeafMin + 1);
    // Keep every 64th page only.
    for (uint64_t k : keys) {
      if ((k >> 12) % 64 == 0) continue;
      ASSERT_TRUE(idx.erase(k));
    }
    ASSERT_TRUE(idx.check());
    EXPECT_EQ(idx.size(), kN / 64);
    EXPECT_LE(idx.leaves(), idx.size() / ExtentIndex::kLeafMin + 1);
  }
}

}  // namespace
}  // namespace vxlate::engine::detail
