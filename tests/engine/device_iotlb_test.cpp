// The Device as a vhost-user device IOTLB (Device::iotlb_update/invalidate/
// flush): what is cached is what translates, invalidations remove whole
// entries and saturate at 2^64 (size 0: everything), identical updates are
// kept, stale overlapping ones replaced; and under a concurrent reader an
// invalidated translation is never returned once iotlb_invalidate() returned.
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <cstdint>
#include <thread>

#include "vxlate/engine/device.h"

namespace vxlate::engine {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kUaddr = 0x7f0000000000;  // front-end virtual addresses (the memory table's keys)
constexpr uint64_t kHva = 0x500000000000;    // never dereferenced
constexpr uint64_t kMem = 16 << 20;  // 4096 pages: more than the stress test's generations
constexpr EndpointId kEp{0};

Config iotlb_config() {
  Config c;
  c.endpoint_first = c.endpoint_last = 0;
  c.resv.clear();
  c.feature_bypass_config = false;
  return c;
}

class DeviceIotlbTest : public ::testing::Test {
 protected:
  DeviceIotlbTest() : rcu_(1), dev_(iotlb_config(), rcu_, 64) {
    const MemRegion r{kUaddr, kMem, kHva};
    EXPECT_EQ(dev_.set_mem_table(std::span(&r, 1)), Status::kOk);
    reader_ = rcu_.register_reader();
    dev_.iotlb().online(reader_);
  }
  ~DeviceIotlbTest() override { dev_.iotlb().offline(reader_); }

  // The host address iova translates to for `access`, or 0 on a fault.
  uint64_t hva(uint64_t iova, uint8_t access = pagetable::kPermRead) {
    Segment s{};
    size_t n = 0;
    if (dev_.iova_to_hva(reader_, kEp, iova, 1, access, std::span(&s, 1), &n) != Status::kOk) return 0;
    return s.addr;
  }

  Rcu rcu_;
  Device dev_;
  uint32_t reader_ = 0;
};

TEST_F(DeviceIotlbTest, UpdateTranslatesUntilInvalidated) {
  EXPECT_EQ(hva(0x10000), 0u) << "nothing cached yet: a miss";
  ASSERT_EQ(dev_.iotlb_update(kEp, 0x10000, kPage, kUaddr + 3 * kPage, pagetable::kPermRead), Status::kOk);
  EXPECT_EQ(hva(0x10123), kHva + 3 * kPage + 0x123);
  EXPECT_EQ(hva(0x10000, pagetable::kPermWrite), 0u) << "read-only entry";
  EXPECT_EQ(hva(0x11000), 0u);
  ASSERT_EQ(dev_.iotlb_invalidate(kEp, 0x10800, 1), Status::kOk);  // touches the entry: it goes whole
  EXPECT_EQ(hva(0x10000), 0u);
  EXPECT_EQ(dev_.mapping_count(), 0u);
}

TEST_F(DeviceIotlbTest, MapsSaysWhatIsCachedForWhichAccess) {
  EXPECT_FALSE(dev_.iotlb_maps(kEp, 0x10000, pagetable::kPermRead)) << "no domain yet";
  ASSERT_EQ(dev_.iotlb_update(kEp, 0x10000, 2 * kPage, kUaddr, pagetable::kPermRead), Status::kOk);
  EXPECT_TRUE(dev_.iotlb_maps(kEp, 0x10000, pagetable::kPermRead));
  EXPECT_TRUE(dev_.iotlb_maps(kEp, 0x11fff, pagetable::kPermRead));
  EXPECT_FALSE(dev_.iotlb_maps(kEp, 0x11fff, pagetable::kPermWrite));
  EXPECT_FALSE(dev_.iotlb_maps(kEp, 0x12000, pagetable::kPermRead));
  EXPECT_FALSE(dev_.iotlb_maps(kEp, 0xf000, pagetable::kPermRead));
  ASSERT_EQ(dev_.iotlb_invalidate(kEp, 0x11000, kPage), Status::kOk);
  EXPECT_FALSE(dev_.iotlb_maps(kEp, 0x10000, pagetable::kPermRead)) << "the whole entry went";
}

// The control side's translation of a range (a used ring at a stop): one
// entry or adjacent ones continuing each other's guest addresses, with the
// access, in one memory region; nothing else.
TEST_F(DeviceIotlbTest, TranslateOnTheControlSideNeedsOneContinuousRange) {
  Segment s{};
  const uint8_t w = pagetable::kPermWrite;
  EXPECT_EQ(dev_.iotlb_translate(kEp, 0x10000, 16, w, &s), Status::kFault) << "no domain yet";
  // Two page entries that continue each other, a third that does not.
  ASSERT_EQ(dev_.iotlb_update(kEp, 0x10000, kPage, kUaddr + 7 * kPage, pagetable::kPermReadWrite), Status::kOk);
  ASSERT_EQ(dev_.iotlb_update(kEp, 0x11000, kPage, kUaddr + 8 * kPage, pagetable::kPermReadWrite), Status::kOk);
  ASSERT_EQ(dev_.iotlb_update(kEp, 0x12000, kPage, kUaddr + 2 * kPage, pagetable::kPermReadWrite), Status::kOk);
  ASSERT_EQ(dev_.iotlb_translate(kEp, 0x10f00, 0x200, w, &s), Status::kOk);
  EXPECT_EQ(s.addr, kHva + 7 * kPage + 0xf00);
  EXPECT_EQ(s.len, 0x200u);
  EXPECT_EQ(dev_.iotlb_translate(kEp, 0x10000, 3 * kPage, w, &s), Status::kFault) << "the third does not continue";
  EXPECT_EQ(dev_.iotlb_translate(kEp, 0x12000, kPage + 1, w, &s), Status::kFault) << "nothing after it";
  EXPECT_EQ(dev_.iotlb_translate(kEp, 0xf000, 0x2000, w, &s), Status::kFault) << "nothing before it";
  ASSERT_EQ(dev_.iotlb_update(kEp, 0x20000, kPage, kUaddr, pagetable::kPermRead), Status::kOk);
  EXPECT_EQ(dev_.iotlb_translate(kEp, 0x20000, 8, w, &s), Status::kFault) << "read-only";
  EXPECT_EQ(dev_.iotlb_translate(kEp, 0x20000, 8, pagetable::kPermRead, &s), Status::kOk);
  ASSERT_EQ(dev_.iotlb_update(kEp, 0x30000, kPage, kUaddr + kMem - kPage, pagetable::kPermRead), Status::kOk);
  ASSERT_EQ(dev_.iotlb_update(kEp, 0x31000, kPage, kUaddr + kMem, pagetable::kPermRead), Status::kOk);
  EXPECT_EQ(dev_.iotlb_translate(kEp, 0x30f00, 0x200, pagetable::kPermRead, &s), Status::kFault)
      << "continuous, but its second half is past guest memory";
  EXPECT_EQ(dev_.iotlb_translate(kEp, 0x30f00, 0x100, pagetable::kPermRead, &s), Status::kOk);
  EXPECT_EQ(dev_.iotlb_translate(kEp, 0x10000, 0, w, &s), Status::kInval);
  EXPECT_EQ(dev_.iotlb_translate(kEp, ~uint64_t{0} - 4, 16, w, &s), Status::kInval);
  ASSERT_EQ(dev_.iotlb_invalidate(kEp, 0x11000, kPage), Status::kOk);
  EXPECT_EQ(dev_.iotlb_translate(kEp, 0x10f00, 0x200, w, &s), Status::kFault) << "the second went";
}

TEST_F(DeviceIotlbTest, UpdateChecksItsArguments) {
  EXPECT_EQ(dev_.iotlb_update(kEp, 0x10000, 0, kUaddr, pagetable::kPermRead), Status::kInval);
  EXPECT_EQ(dev_.iotlb_update(kEp, UINT64_MAX - kPage + 2, kPage, kUaddr, pagetable::kPermRead), Status::kInval);
  EXPECT_EQ(dev_.iotlb_update(kEp, 0x10000, kPage, kUaddr, 0), Status::kInval);
  EXPECT_EQ(dev_.iotlb_update(kEp, 0x10000, kPage, kUaddr, 4), Status::kInval);
  EXPECT_EQ(dev_.iotlb_update(kEp, 0x10100, kPage, kUaddr, pagetable::kPermRead), Status::kRange);
  EXPECT_EQ(dev_.iotlb_update(kEp, uint64_t{1} << 50, kPage, kUaddr, pagetable::kPermRead), Status::kRange);
  EXPECT_EQ(dev_.iotlb_update(EndpointId{1}, 0x10000, kPage, kUaddr, pagetable::kPermRead), Status::kNoEnt);
  EXPECT_EQ(dev_.mapping_count(), 0u);
}

TEST_F(DeviceIotlbTest, IdenticalUpdateIsKeptAndOverlapReplaces) {
  ASSERT_EQ(dev_.iotlb_update(kEp, 0x10000, kPage, kUaddr, pagetable::kPermReadWrite), Status::kOk);
  ASSERT_EQ(dev_.iotlb_update(kEp, 0x10000, kPage, kUaddr, pagetable::kPermReadWrite), Status::kOk);
  EXPECT_EQ(dev_.mapping_count(), 1u);
  // A 2-page entry over it and its neighbour replaces the stale one.
  ASSERT_EQ(dev_.iotlb_update(kEp, 0x10000, 2 * kPage, kUaddr + 8 * kPage, pagetable::kPermRead), Status::kOk);
  EXPECT_EQ(dev_.mapping_count(), 1u);
  EXPECT_EQ(hva(0x11000), kHva + 9 * kPage);
  EXPECT_EQ(hva(0x10000, pagetable::kPermWrite), 0u) << "the old read-write entry is gone";
}

TEST_F(DeviceIotlbTest, InvalidateSizeZeroAndWrappingEndsCoverEverything) {
  for (uint64_t i = 0; i < 4; ++i)
    ASSERT_EQ(dev_.iotlb_update(kEp, i << 32, kPage, kUaddr + i * kPage, pagetable::kPermRead), Status::kOk);
  // QEMU's upper IOMMU section: [0xfef00000, 2^64) arrives as iova + size wrapping to 0.
  ASSERT_EQ(dev_.iotlb_invalidate(kEp, 0xfef00000, 0 - uint64_t{0xfef00000}), Status::kOk);
  EXPECT_EQ(dev_.mapping_count(), 1u) << "only the entry below 0xfef00000 stays";
  EXPECT_NE(hva(0), 0u);
  // An end past 2^64 saturates rather than wrapping to a small range.
  ASSERT_EQ(dev_.iotlb_update(kEp, 2ull << 32, kPage, kUaddr, pagetable::kPermRead), Status::kOk);
  ASSERT_EQ(dev_.iotlb_invalidate(kEp, 1ull << 32, UINT64_MAX), Status::kOk);
  EXPECT_EQ(hva(2ull << 32), 0u);
  // virtio-iommu's unmap of everything arrives as size 0.
  ASSERT_EQ(dev_.iotlb_invalidate(kEp, 0x1234, 0), Status::kOk);
  EXPECT_EQ(dev_.mapping_count(), 0u);
  EXPECT_EQ(hva(0), 0u);
  EXPECT_EQ(dev_.iotlb_invalidate(kEp, 0, 0), Status::kOk) << "nothing cached: still OK";
}

TEST_F(DeviceIotlbTest, FlushForgetsEverythingAndTheDomainIsReused) {
  for (uint64_t i = 0; i < 16; ++i)
    ASSERT_EQ(dev_.iotlb_update(kEp, i * kPage, kPage, kUaddr + i * kPage, pagetable::kPermRead), Status::kOk);
  EXPECT_NE(hva(5 * kPage), 0u);
  dev_.iotlb_flush(kEp);
  EXPECT_EQ(dev_.mapping_count(), 0u);
  for (uint64_t i = 0; i < 16; ++i) EXPECT_EQ(hva(i * kPage), 0u);
  ASSERT_EQ(dev_.iotlb_update(kEp, 0, kPage, kUaddr + kPage, pagetable::kPermRead), Status::kOk);
  EXPECT_EQ(hva(0), kHva + kPage);
  EXPECT_EQ(dev_.domain_count(), 1u);
}

TEST_F(DeviceIotlbTest, FullCacheEvictsInsteadOfFailing) {
  Config c = iotlb_config();
  c.max_mappings = 8;
  Rcu rcu(1);
  Device dev(c, rcu, 64);
  for (uint64_t i = 0; i < 20; ++i)
    ASSERT_EQ(dev.iotlb_update(kEp, i * kPage, kPage, kUaddr + i * kPage, pagetable::kPermRead), Status::kOk) << i;
  EXPECT_LE(dev.mapping_count(), 8u);
}

// A reader translating one IOVA while the control thread keeps moving it to a
// new generation's page: update, invalidate, then announce the generation
// dead. A translation that starts after the announcement must never return a
// dead generation's page (invariant 1 for the device IOTLB).
TEST(DeviceIotlbStress, NoTranslationSurvivesItsInvalidate) {
  Rcu rcu(2);
  Device dev(iotlb_config(), rcu, 64);
  const MemRegion r{kUaddr, kMem, kHva};
  ASSERT_EQ(dev.set_mem_table(std::span(&r, 1)), Status::kOk);
  constexpr uint64_t kIova = 0x200000;
  constexpr uint64_t kGens = 2000;
  std::atomic<uint64_t> dead{0};  // generations [1, dead] are invalidated
  std::atomic<bool> stop{false};
  std::barrier start(2);
  uint64_t hits = 0, failures = 0;
  std::thread reader([&] {
    const uint32_t id = rcu.register_reader();
    dev.iotlb().online(id);
    start.arrive_and_wait();
    while (!stop.load(std::memory_order_acquire)) {
      // acquire: pairs with the release store after iotlb_invalidate() returned.
      const uint64_t d = dead.load(std::memory_order_acquire);
      Segment s{};
      size_t n = 0;
      if (dev.iova_to_hva(id, kEp, kIova, 8, pagetable::kPermRead, std::span(&s, 1), &n) == Status::kOk) {
        const uint64_t gen = (s.addr - kHva) / kPage + 1;
        if (gen <= d) ++failures;
        ++hits;
      }
      dev.iotlb().quiescent(id);
    }
    dev.iotlb().offline(id);
  });
  start.arrive_and_wait();
  for (uint64_t g = 1; g <= kGens; ++g) {
    const uint64_t page = (g - 1) % (kMem / kPage);
    ASSERT_EQ(dev.iotlb_update(kEp, kIova, kPage, kUaddr + page * kPage, pagetable::kPermRead), Status::kOk);
    std::this_thread::yield();
    ASSERT_EQ(dev.iotlb_invalidate(kEp, kIova, kPage), Status::kOk);
    dead.store(g, std::memory_order_release);  // pairs with the reader's acquire
  }
  stop.store(true, std::memory_order_release);
  reader.join();
  EXPECT_EQ(failures, 0u);
  RecordProperty("hits", static_cast<int>(hits));
}

}  // namespace
}  // namespace vxlate::engine
