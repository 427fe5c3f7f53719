// Contract checks (VXLATE_DCHECK, on with VXLATE_DEBUG_CHECKS): each test
// breaks one written contract and expects the process to die with its message.
// Without the debug checks the contracts are not compiled in and the tests
// skip.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "vxlate/common/check.h"
#include "vxlate/common/rcu.h"
#include "vxlate/dataplane/virtqueue.h"
#include "vxlate/engine/device.h"
#include "vxlate/iotlb/iotlb.h"
#include "vxlate/pagetable/io_pgtable.h"

namespace vxlate {
namespace {

class ContractsTest : public ::testing::Test {
 protected:
  void SetUp() override {
#ifndef VXLATE_DEBUG_CHECKS
    GTEST_SKIP() << "contracts are checked only with VXLATE_DEBUG_CHECKS";
#endif
    // Re-executes the binary for each death test: safe with threads (and TSan).
    GTEST_FLAG_SET(death_test_style, "threadsafe");
  }
};

TEST_F(ContractsTest, ReaderIdOutOfRange) {
  EXPECT_DEATH(
      {
        Rcu rcu(2);
        rcu.online(2);
      },
      "reader id out of range");
}

TEST_F(ContractsTest, QuiescentReportInsideReadSection) {
  EXPECT_DEATH(
      {
        Rcu rcu(1);
        const uint32_t id = rcu.register_reader();
        rcu.online(id);
        const Rcu::ReadSection burst(rcu, id);
        rcu.quiescent(id);
      },
      "inside a read section");
}

TEST_F(ContractsTest, BusyQuiescentReportInsideReadSection) {
  EXPECT_DEATH(
      {
        Rcu rcu(1);
        const uint32_t id = rcu.register_reader();
        rcu.online(id);
        const Rcu::ReadSection burst(rcu, id);
        rcu.quiescent_busy(id, 4);
      },
      "inside a read section");
}

TEST_F(ContractsTest, PacedQuiescentReportInsideReadSection) {
  EXPECT_DEATH(
      {
        Rcu rcu(1);
        const uint32_t id = rcu.register_reader();
        rcu.online(id);
        const Rcu::ReadSection burst(rcu, id);
        rcu.quiescent_paced(id, 100, [] { return uint64_t{0}; });
      },
      "inside a read section");
}

TEST_F(ContractsTest, BusyQuiescentReportWhileOffline) {
  EXPECT_DEATH(
      {
        Rcu rcu(1);
        const uint32_t id = rcu.register_reader();
        rcu.quiescent_busy(id, 4);
      },
      "by an offline reader");
}

TEST_F(ContractsTest, OfflineInsideReadSection) {
  EXPECT_DEATH(
      {
        Rcu rcu(1);
        const uint32_t id = rcu.register_reader();
        rcu.online(id);
        const Rcu::ReadSection burst(rcu, id);
        rcu.offline(id);
      },
      "inside a read section");
}

TEST_F(ContractsTest, IotlbTranslateWhileOffline) {
  EXPECT_DEATH(
      {
        Rcu rcu(1);
        const uint32_t id = rcu.register_reader();
        iotlb::Iotlb tlb(rcu, 64);
        pagetable::IoPageTable pt(rcu);
        pagetable::Translation t;
        (void)tlb.translate(id, DomainId{1}, pt, 0x1000, pagetable::kPermRead, &t);
      },
      "must be online");
}

TEST_F(ContractsTest, DeviceTranslateWhileOffline) {
  EXPECT_DEATH(
      {
        Rcu rcu(1);
        const uint32_t id = rcu.register_reader();
        engine::Device dev(engine::Config{}, rcu);
        engine::Segment seg[1];
        size_t n = 0;
        (void)dev.iova_to_hva(id, EndpointId{0}, 0x1000, 64, pagetable::kPermRead, seg, &n);
      },
      "must be online");
}

TEST_F(ContractsTest, TwoThreadsInsideOneOwner) {
  EXPECT_DEATH(
      {
        OwnerCheck owner;
        std::atomic<bool> inside{false};
        std::atomic<bool> leave{false};
        std::thread other([&] {
          const OwnerCheck::Scope s(owner, "first");
          inside.store(true, std::memory_order_release);
          while (!leave.load(std::memory_order_acquire)) std::this_thread::yield();
        });
        while (!inside.load(std::memory_order_acquire)) std::this_thread::yield();
        const OwnerCheck::Scope s(owner, "two writers at once");
        leave.store(true, std::memory_order_release);
        other.join();
      },
      "two writers at once");
}

TEST_F(ContractsTest, OwnerPassesBetweenCalls) {
  OwnerCheck owner;
  { const OwnerCheck::Scope s(owner, "main"); }
  std::thread([&] { const OwnerCheck::Scope s(owner, "worker"); }).join();
  const OwnerCheck::Scope s(owner, "main again");
  const OwnerCheck::Scope nested(owner, "nested on the owner");
}

TEST_F(ContractsTest, UnpopMoreThanPopped) {
  EXPECT_DEATH(
      {
        Rcu rcu(1);
        engine::Device dev(engine::Config{}, rcu);
        dataplane::Virtqueue vq(dev, dataplane::QueueConfig{});
        vq.unpop(1);
      },
      "unpop");
}

}  // namespace
}  // namespace vxlate
