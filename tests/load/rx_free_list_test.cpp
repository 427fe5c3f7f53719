// The netperf guest's receive free list (load/src/rx_free_list.h): buffers
// in address order after the last one taken, wrapping, the ones set aside
// taken again in their turn; or the k-th free one in random order.
#include "rx_free_list.h"

#include <gtest/gtest.h>

#include <set>
#include <vector>

namespace vxlate::load::detail {
namespace {

std::vector<uint32_t> take_n(RxFreeList& l, uint32_t n) {
  std::vector<uint32_t> out;
  for (uint32_t i = 0; i < n; ++i) out.push_back(l.take(0));
  return out;
}

TEST(RxFreeList, AddressOrderWhateverOrderBuffersComeBackIn) {
  RxFreeList l;
  l.reset(8, false);
  for (uint32_t s : {5u, 0u, 7u, 2u, 1u, 6u, 3u, 4u}) l.put(s);
  EXPECT_EQ(take_n(l, 8), (std::vector<uint32_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_TRUE(l.empty());
  // Freed in reverse (a LIFO refill would post 6 first): posted 2, 4, 6 again,
  // from where the last take left off (after 7: wrapped to 0).
  for (uint32_t s : {6u, 4u, 2u}) l.put(s);
  EXPECT_EQ(take_n(l, 3), (std::vector<uint32_t>{2, 4, 6}));
}

TEST(RxFreeList, ABufferSetAsideIsTakenAgainInItsTurn) {
  RxFreeList l;
  l.reset(8, false);
  for (uint32_t s = 0; s < 8; ++s) l.put(s);
  EXPECT_EQ(take_n(l, 4), (std::vector<uint32_t>{0, 1, 2, 3}));
  // 1 comes back while 0, 2 and 3 are still out: the next ones go on from 4
  // and 1 waits for the wrap.
  l.put(1);
  EXPECT_EQ(take_n(l, 5), (std::vector<uint32_t>{4, 5, 6, 7, 1}));
  EXPECT_TRUE(l.empty());
}

TEST(RxFreeList, WrapsAcrossWordsAndAnUnevenSize) {
  // 130 slots: three words, the last one two slots long.
  RxFreeList l;
  l.reset(130, false);
  for (uint32_t s = 0; s < 130; ++s) l.put(s);
  const std::vector<uint32_t> first = take_n(l, 129);
  for (uint32_t i = 0; i < 129; ++i) ASSERT_EQ(first[i], i);
  l.put(3);
  l.put(64);
  EXPECT_EQ(take_n(l, 3), (std::vector<uint32_t>{129, 3, 64}));
  EXPECT_TRUE(l.empty());
}

TEST(RxFreeList, RandomOrderTakesTheKthFreeSlot) {
  RxFreeList l;
  l.reset(200, true);
  for (uint32_t s = 0; s < 200; ++s) l.put(s);
  EXPECT_EQ(l.take(3), 3u);
  EXPECT_EQ(l.take(3), 4u);  // 0, 1, 2, 4, ...: the fourth free one
  EXPECT_EQ(l.take(0), 0u);
  EXPECT_EQ(l.take(197 + 196), 199u);  // r mod 197 free = 196: the last
  EXPECT_EQ(l.take(64), 67u);          // 1, 2, 5..66 are 64 slots: then 67 (0, 3, 4 taken)
  EXPECT_EQ(l.size(), 195u);
  // Every slot comes out exactly once, whatever the random numbers.
  std::set<uint32_t> seen = {0, 3, 4, 67, 199};
  uint64_t rng = 0x9e3779b97f4a7c15;
  while (!l.empty()) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    ASSERT_TRUE(seen.insert(l.take(rng)).second);
  }
  EXPECT_EQ(seen.size(), 200u);
}

TEST(RxFreeList, DriverBugsAreRefused) {
  RxFreeList l;
  l.reset(10, false);
  EXPECT_THROW(l.take(0), std::logic_error);  // none free
  l.put(9);
  EXPECT_THROW(l.put(9), std::logic_error);   // freed twice
  EXPECT_THROW(l.put(10), std::logic_error);  // out of range
  EXPECT_EQ(l.size(), 1u);
  EXPECT_EQ(l.take(0), 9u);
}

}  // namespace
}  // namespace vxlate::load::detail
