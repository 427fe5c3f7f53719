// Out of memory at every allocation a request makes: the device answers NOMEM
// (or succeeds) and stays consistent; it never terminates the process from a
// noexcept path. This binary replaces operator new so that the Nth allocation
// after arming throws std::bad_alloc, and sweeps N.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <new>

#include "support/virtio_iommu.h"
#include "vxlate/engine/device.h"

namespace {
// Allocations left before one fails; negative: never fail.
std::atomic<long> g_fail_after{-1};

void* checked_alloc(std::size_t n, std::size_t align) {
  long left = g_fail_after.load(std::memory_order_relaxed);
  while (left >= 0) {
    if (left == 0) throw std::bad_alloc();
    if (g_fail_after.compare_exchange_weak(left, left - 1, std::memory_order_relaxed)) break;
  }
  void* p = align > alignof(std::max_align_t) ? std::aligned_alloc(align, (n + align - 1) / align * align)
                                              : std::malloc(n ? n : 1);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(std::size_t n) { return checked_alloc(n, 0); }
void* operator new[](std::size_t n) { return checked_alloc(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) { return checked_alloc(n, static_cast<std::size_t>(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return checked_alloc(n, static_cast<std::size_t>(a)); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace vxlate::engine {
namespace {

uint8_t send(Device& dev, const std::vector<uint8_t>& r) {
  std::array<uint8_t, kTailSize> tail{};
  EXPECT_EQ(dev.handle(r, tail), kTailSize);
  return tail[0];
}

// Runs `request` with the Nth allocation failing, for N = 0, 1, ... until it
// no longer reaches the failure; `check(status)` judges each outcome.
template <typename Setup, typename Check>
void sweep(Setup setup, const std::vector<uint8_t>& request, Check check) {
  for (long n = 0; n < 10000; ++n) {
    Rcu rcu(1);
    Device dev(Config{}, rcu, 64);
    setup(dev);
    g_fail_after.store(n, std::memory_order_relaxed);
    const uint8_t status = send(dev, request);
    const bool reached = g_fail_after.load(std::memory_order_relaxed) == 0;
    g_fail_after.store(-1, std::memory_order_relaxed);
    SCOPED_TRACE(n);
    check(dev, status);
    if (!reached) {  // the request made fewer than n + 1 allocations
      EXPECT_GT(n, 0) << "the request allocates, so at least one failure was injected";
      return;
    }
  }
  FAIL() << "the sweep did not end";
}

constexpr auto kNoMem = static_cast<uint8_t>(Status::kNoMem);

TEST(DeviceNoMem, FreshAttach) {
  sweep([](Device&) {}, test::encoded(test::attach_req(1, 0)), [](Device& dev, uint8_t st) {
    DomainId d{};
    if (st == 0) {
      EXPECT_TRUE(dev.endpoint_domain(EndpointId{0}, &d));
      EXPECT_EQ(d.value, 1u);
    } else {
      EXPECT_EQ(st, kNoMem);
      EXPECT_FALSE(dev.endpoint_domain(EndpointId{0}, &d));
      EXPECT_EQ(dev.domain_count(), 0u);
    }
  });
}

TEST(DeviceNoMem, MovingAttach) {
  auto setup = [](Device& dev) {
    ASSERT_EQ(send(dev, test::encoded(test::attach_req(1, 0))), 0);
    ASSERT_EQ(send(dev, test::encoded(test::map_req(1, 0x10000, 0x1ffff, 0x200000, kMapFlagRead))), 0);
  };
  sweep(setup, test::encoded(test::attach_req(2, 0)), [](Device& dev, uint8_t st) {
    DomainId d{};
    ASSERT_TRUE(dev.endpoint_domain(EndpointId{0}, &d));
    if (st == 0) {
      EXPECT_EQ(d.value, 2u);
      EXPECT_EQ(dev.domain_count(), 1u);
      EXPECT_EQ(dev.mapping_count(), 0u);
    } else {
      EXPECT_EQ(st, kNoMem);
      EXPECT_EQ(d.value, 1u) << "a failed ATTACH leaves the old attachment";
      EXPECT_EQ(dev.mapping_count(), 1u);
    }
  });
}

TEST(DeviceNoMem, MapAndDetach) {
  auto setup = [](Device& dev) { ASSERT_EQ(send(dev, test::encoded(test::attach_req(1, 0))), 0); };
  sweep(setup, test::encoded(test::map_req(1, 0x10000, 0x40ffff, 0x200000, kMapFlagRead)),
        [](Device& dev, uint8_t st) {
          if (st == 0) {
            EXPECT_EQ(dev.mapping_count(), 1u);
          } else {
            EXPECT_EQ(st, kNoMem);
            EXPECT_EQ(dev.mapping_count(), 0u);
          }
          EXPECT_EQ(send(dev, test::encoded(test::detach_req(1, 0))), 0);
          EXPECT_EQ(dev.domain_count(), 0u);
        });
}

}  // namespace
}  // namespace vxlate::engine
