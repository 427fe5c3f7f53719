// Deterministic page-table tests: leaf selection, sweeps over leaf sizes and
// alignments, level boundaries, the top of the 48-bit space, splits, rejection
// of bad input, and reclamation of every table once everything is unmapped.
#include "vxlate/pagetable/io_pgtable.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace vxlate::pagetable {
namespace {

constexpr uint64_t k4K = kLeaf4K;
constexpr uint64_t k2M = kLeaf2M;
constexpr uint64_t k1G = kLeaf1G;

class PageTableTest : public ::testing::Test {
 protected:
  // Expects `iova` to translate to `out` through a leaf of `leaf` bytes.
  void expect_hit(uint64_t iova, uint64_t out, uint64_t leaf, uint8_t perms = kPermReadWrite) {
    Translation t{};
    ASSERT_TRUE(pt_.walk(iova, &t)) << std::hex << "iova 0x" << iova;
    EXPECT_EQ(t.out, out) << std::hex << "iova 0x" << iova;
    EXPECT_EQ(t.leaf_size, leaf) << std::hex << "iova 0x" << iova;
    EXPECT_EQ(t.perms, perms) << std::hex << "iova 0x" << iova;
  }
  void expect_miss(uint64_t iova) {
    Translation t{};
    EXPECT_FALSE(pt_.walk(iova, &t)) << std::hex << "iova 0x" << iova;
  }
  // After all mappings are gone and a grace period passed, only the root is left.
  void expect_only_root() {
    pt_.drain();
    EXPECT_EQ(pt_.retired_pending(), 0u);
    EXPECT_EQ(pt_.table_bytes(), kTableBytes);
    EXPECT_TRUE(pt_.verify());
  }

  Rcu rcu_{4};
  IoPageTable pt_{rcu_};
};

TEST_F(PageTableTest, EmptyTableMissesEverywhere) {
  for (uint64_t iova : {uint64_t{0}, k4K, k2M, k1G, kIovaLast, kIovaLast + 1, ~uint64_t{0}}) expect_miss(iova);
  EXPECT_EQ(pt_.table_bytes(), kTableBytes);
  EXPECT_TRUE(pt_.verify());
}

// map() picks the largest leaf that iova, output and size alignment allow.
TEST_F(PageTableTest, LargestLeafForEachLeafSize) {
  for (uint64_t leaf : {k4K, k2M, k1G}) {
    SCOPED_TRACE(leaf);
    const uint64_t iova = 7 * k1G + 3 * leaf;  // aligned to leaf only
    const uint64_t out = 0x7f0000000000 + 5 * leaf;
    ASSERT_EQ(pt_.map(iova, out, leaf, kPermReadWrite), Status::kOk);
    for (uint64_t off : {uint64_t{0}, uint64_t{1}, leaf / 2, leaf - 1}) expect_hit(iova + off, out + off, leaf);
    expect_miss(iova - 1);
    expect_miss(iova + leaf);
    EXPECT_TRUE(pt_.verify());
    ASSERT_EQ(pt_.unmap(iova, leaf), Status::kOk);
    expect_miss(iova);
    expect_only_root();
  }
}

// The output's alignment limits the leaf as much as the IOVA's does.
TEST_F(PageTableTest, MisalignedOutputForcesSmallerLeaves) {
  ASSERT_EQ(pt_.map(k1G, 0x40000000 + k4K, k1G, kPermRead), Status::kOk);
  expect_hit(k1G, 0x40000000 + k4K, k4K, kPermRead);
  expect_hit(2 * k1G - 1, 0x80000000 + k4K - 1, k4K, kPermRead);
  ASSERT_EQ(pt_.map(4 * k1G, 0x100000000 + k2M, k1G, kPermWrite), Status::kOk);
  expect_hit(4 * k1G + 12345, 0x100000000 + k2M + 12345, k2M, kPermWrite);
  // Dense 4 KiB mappings cost 8 bytes per page plus the upper levels.
  EXPECT_EQ(pt_.table_bytes(), kTableBytes * (1 + 1 + 1 + 512 + 1));
  EXPECT_TRUE(pt_.verify());
}

// A range that starts and ends mid-block mixes leaf sizes: 4K head, 2M body, 1G core.
TEST_F(PageTableTest, MixedLeavesAcrossOneRange) {
  const uint64_t iova = k1G - k2M - k4K;
  const uint64_t size = k4K + k2M + k1G + k2M + k4K;
  ASSERT_EQ(pt_.map(iova, iova, size, kPermReadWrite), Status::kOk);
  expect_hit(iova, iova, k4K);
  expect_hit(k1G - k2M, k1G - k2M, k2M);
  expect_hit(k1G, k1G, k1G);
  expect_hit(2 * k1G, 2 * k1G, k2M);
  expect_hit(2 * k1G + k2M, 2 * k1G + k2M, k4K);
  expect_miss(iova - 1);
  expect_miss(iova + size);
  ASSERT_EQ(pt_.unmap(iova, size), Status::kOk);
  expect_only_root();
}

// Sweep: every leaf size, mapped at offsets straddling every level boundary.
TEST_F(PageTableTest, SweepAcrossLevelBoundaries) {
  const uint64_t boundaries[] = {k2M, k1G, uint64_t{1} << 39, uint64_t{1} << 40, uint64_t{1} << 47};
  for (uint64_t boundary : boundaries) {
    for (uint64_t leaf : {k4K, k2M, k1G}) {
      if (leaf > boundary) continue;
      SCOPED_TRACE(testing::Message() << std::hex << "boundary 0x" << boundary << " leaf 0x" << leaf);
      const uint64_t iova = boundary - leaf;
      ASSERT_EQ(pt_.map(iova, iova + 0x10000000000, 2 * leaf, kPermReadWrite), Status::kOk);
      expect_hit(boundary - 1, boundary - 1 + 0x10000000000, leaf);
      expect_hit(boundary, boundary + 0x10000000000, leaf);
      expect_miss(iova - 1);
      expect_miss(boundary + leaf);
      EXPECT_TRUE(pt_.verify());
      ASSERT_EQ(pt_.unmap(iova, 2 * leaf), Status::kOk);
      expect_miss(boundary);
      expect_only_root();
    }
  }
}

TEST_F(PageTableTest, TopOfTheInputSpace) {
  ASSERT_EQ(pt_.map(kIovaLast + 1 - k1G, 0, k1G, kPermRead), Status::kOk);
  expect_hit(kIovaLast, k1G - 1, k1G, kPermRead);
  expect_miss(kIovaLast + 1);
  EXPECT_EQ(pt_.map(kIovaLast + 1 - k4K, 0, 2 * k4K, kPermRead), Status::kRange);
  EXPECT_EQ(pt_.map(kIovaLast + 1, 0, k4K, kPermRead), Status::kRange);
  ASSERT_EQ(pt_.unmap(kIovaLast + 1 - k4K, k4K), Status::kOk);  // splits 1G -> 2M -> 4K
  expect_miss(kIovaLast);
  expect_hit(kIovaLast - k4K, k1G - k4K - 1, k4K, kPermRead);
  expect_hit(kIovaLast + 1 - k1G, 0, k2M, kPermRead);
  EXPECT_TRUE(pt_.verify());
  ASSERT_EQ(pt_.unmap(kIovaLast + 1 - k1G, k1G), Status::kOk);
  expect_only_root();
}

// Output addresses use all 64 bits.
TEST_F(PageTableTest, HighOutputAddresses) {
  const uint64_t out = 0xffffffffc0000000;  // the last 1 GiB of the 64-bit space
  ASSERT_EQ(pt_.map(0, out, k1G, kPermReadWrite), Status::kOk);
  expect_hit(k1G - 1, ~uint64_t{0}, k1G);
  EXPECT_EQ(pt_.map(k1G, out + k4K, k1G, kPermReadWrite), Status::kRange);  // output wraps
}

TEST_F(PageTableTest, RejectsBadInput) {
  EXPECT_EQ(pt_.map(0, 0, 0, kPermRead), Status::kRange);
  EXPECT_EQ(pt_.map(1, 0, k4K, kPermRead), Status::kRange);
  EXPECT_EQ(pt_.map(0, 1, k4K, kPermRead), Status::kRange);
  EXPECT_EQ(pt_.map(0, 0, k4K + 1, kPermRead), Status::kRange);
  EXPECT_EQ(pt_.map(~uint64_t{0} & ~(k4K - 1), 0, 2 * k4K, kPermRead), Status::kRange);  // wraps
  EXPECT_EQ(pt_.map(0, 0, k4K, 0), Status::kInval);
  EXPECT_EQ(pt_.map(0, 0, k4K, 4), Status::kInval);
  EXPECT_EQ(pt_.unmap(0, 0), Status::kRange);
  EXPECT_EQ(pt_.unmap(k4K, 1), Status::kRange);
  EXPECT_EQ(pt_.unmap(1, k4K), Status::kRange);
  EXPECT_EQ(pt_.unmap(kIovaLast + 1, k4K), Status::kRange);
  EXPECT_EQ(pt_.unmap(~uint64_t{0} & ~(k4K - 1), 2 * k4K), Status::kRange);
  EXPECT_EQ(pt_.table_bytes(), kTableBytes);  // nothing was allocated
}

// Overlap anywhere in the range fails and leaves the table as it was.
TEST_F(PageTableTest, OverlapIsAllOrNothing) {
  ASSERT_EQ(pt_.map(k1G + k2M, 0x5000000, k4K, kPermRead), Status::kOk);
  const size_t bytes = pt_.table_bytes();
  EXPECT_EQ(pt_.map(k1G, 0, 4 * k2M, kPermReadWrite), Status::kInval);
  EXPECT_EQ(pt_.map(0, 0, 4 * k1G, kPermReadWrite), Status::kInval);
  EXPECT_EQ(pt_.map(k1G + k2M, 0, k4K, kPermReadWrite), Status::kInval);
  expect_miss(k1G);
  expect_miss(k1G + k2M + k4K);
  expect_hit(k1G + k2M, 0x5000000, k4K, kPermRead);
  EXPECT_EQ(pt_.table_bytes(), bytes);
  // A block leaf overlapping the start of a new range.
  ASSERT_EQ(pt_.map(8 * k1G, 0, k1G, kPermRead), Status::kOk);
  EXPECT_EQ(pt_.map(9 * k1G - k4K, 0, 2 * k4K, kPermRead), Status::kInval);
  expect_miss(9 * k1G);
  EXPECT_TRUE(pt_.verify());
}

// Unmapping part of a block splits it; the rest keeps its output and perms.
TEST_F(PageTableTest, PartialUnmapSplitsBlocks) {
  for (uint64_t leaf : {k2M, k1G}) {
    SCOPED_TRACE(leaf);
    const uint64_t iova = 3 * k1G;
    const uint64_t out = 0x12340000000;  // 1 GiB-aligned
    ASSERT_EQ(pt_.map(iova, out, leaf, kPermWrite), Status::kOk);
    const uint64_t hole = iova + leaf / 2 + 5 * k4K;
    ASSERT_EQ(pt_.unmap(hole, 3 * k4K), Status::kOk);
    expect_miss(hole);
    expect_miss(hole + 3 * k4K - 1);
    expect_hit(hole - 1, out + (hole - 1 - iova), k4K, kPermWrite);
    expect_hit(hole + 3 * k4K, out + (hole + 3 * k4K - iova), k4K, kPermWrite);
    expect_hit(iova, out, leaf == k1G ? k2M : k4K, kPermWrite);
    expect_hit(iova + leaf - 1, out + leaf - 1, leaf == k1G ? k2M : k4K, kPermWrite);
    EXPECT_TRUE(pt_.verify());
    // Unmapping the remainder piecewise frees every table.
    ASSERT_EQ(pt_.unmap(iova, hole - iova), Status::kOk);
    ASSERT_EQ(pt_.unmap(hole + 3 * k4K, iova + leaf - hole - 3 * k4K), Status::kOk);
    expect_only_root();
  }
}

// Unmap over unmapped space, or around a mapping, is fine and exact.
TEST_F(PageTableTest, UnmapRemovesExactlyTheRange) {
  ASSERT_EQ(pt_.unmap(0, k1G), Status::kOk);
  for (uint64_t i = 0; i < 8; ++i) ASSERT_EQ(pt_.map(i * k2M, i * k2M, k2M, kPermRead), Status::kOk);
  ASSERT_EQ(pt_.unmap(2 * k2M, 3 * k2M), Status::kOk);
  for (uint64_t i = 0; i < 8; ++i) {
    if (i >= 2 && i < 5)
      expect_miss(i * k2M);
    else
      expect_hit(i * k2M + 7, i * k2M + 7, k2M, kPermRead);
  }
  ASSERT_EQ(pt_.unmap(0, uint64_t{1} << 47), Status::kOk);  // whole subtrees at once
  expect_only_root();
}

// Tables removed by unmap are freed only after a grace period of an online reader.
TEST_F(PageTableTest, EmptyTablesWaitForGracePeriod) {
  const uint32_t id = rcu_.register_reader();
  rcu_.online(id);
  ASSERT_EQ(pt_.map(k1G, k1G, k4K, kPermRead), Status::kOk);
  EXPECT_EQ(pt_.table_bytes(), 4 * kTableBytes);
  ASSERT_EQ(pt_.unmap(k1G, k4K), Status::kOk);
  EXPECT_EQ(pt_.retired_pending(), 3u);  // the emptied L3, L2 and L1 tables
  EXPECT_EQ(pt_.reclaim(), 0u);
  EXPECT_EQ(pt_.table_bytes(), 4 * kTableBytes);
  rcu_.quiescent(id);
  EXPECT_EQ(pt_.reclaim(), 3u);
  EXPECT_EQ(pt_.table_bytes(), kTableBytes);
  rcu_.offline(id);
  rcu_.unregister_reader(id);
}

// Many tables in flight, then everything unmapped: nothing leaks.
TEST_F(PageTableTest, NoLeakAfterScatteredMappings) {
  std::vector<uint64_t> iovas;
  for (uint64_t i = 0; i < 300; ++i) iovas.push_back((i * 0x9e3779b97f4a7c15ull) & kIovaLast & ~(k4K - 1));
  for (uint64_t iova : iovas) {
    const Status s = pt_.map(iova, iova, k4K, kPermRead);
    ASSERT_TRUE(s == Status::kOk || s == Status::kInval);
  }
  EXPECT_GT(pt_.table_bytes(), 300 * kTableBytes);
  EXPECT_TRUE(pt_.verify());
  for (uint64_t iova : iovas) ASSERT_EQ(pt_.unmap(iova, k4K), Status::kOk);
  expect_only_root();
}

}  // namespace
}  // namespace vxlate::pagetable
