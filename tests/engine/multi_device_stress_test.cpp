// Several Devices on one Rcu: one grace period must cover every device's IOTLB
// whichever device (or the Rcu itself) a reader reports its quiescent state
// through (docs/design.md, "One grace period covers every device").
//
// Each device has its own guest memory and its own control thread that keeps
// moving every slot between two pages: UNMAP the slot (completed when handle()
// returns), poison the old page, refill the other page, MAP the slot to it.
// Readers serve every device: each burst translates random (device, slot)
// pairs and reads the bytes behind them, then, at the end of the burst, reads
// every held page again; then it reports quiescent through a random device's
// IOTLB, or the plain Rcu, or goes offline and online again through a random
// device. A poisoned byte means a reader touched memory after the UNMAP that
// removed it had completed (DESIGN.md invariant 1); under TSan the same access
// is also a data race with the poisoning store.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "support/virtio_iommu.h"
#include "vxlate/engine/device.h"

namespace vxlate::engine {
namespace {

constexpr int kDevices = 3;
constexpr int kReaders = 2;
constexpr uint32_t kSlots = 8;
constexpr uint64_t kPage = 4096;
constexpr uint8_t kPoison = 0xde;
constexpr uint64_t kIovaBase = 0x100000;
constexpr uint64_t kGpaBase = 0x40000000;

constexpr uint64_t slot_iova(uint32_t slot) { return kIovaBase + slot * kPage; }

// One device with its guest memory: slot s is backed by page 2s or 2s + 1.
struct Guest {
  explicit Guest(Rcu& rcu) : dev(Config{}, rcu, 64), mem(std::make_unique<uint8_t[]>(2 * kSlots * kPage + kPage)) {
    base = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(mem.get()) + kPage - 1) & ~(kPage - 1));
    std::memset(base, kPoison, 2 * kSlots * kPage);
  }
  uint8_t* page(uint32_t slot, unsigned half) { return base + (2 * slot + half) * kPage; }
  uint64_t gpa(uint32_t slot, unsigned half) const { return kGpaBase + (2 * slot + half) * kPage; }

  template <typename Req>
  void send(const Req& req) {
    test::PostedRequest r = test::make_request(req);
    ASSERT_EQ(dev.handle(r.readable, r.writable), kTailSize);
    ASSERT_EQ(r.status(), 0) << "request type " << int(req.head.type);
  }
  void map(uint32_t slot, unsigned half) {
    send(test::map_req(1, slot_iova(slot), slot_iova(slot) + kPage - 1, gpa(slot, half), kMapFlagRead));
  }
  void unmap(uint32_t slot) { send(test::unmap_req(1, slot_iova(slot), slot_iova(slot) + kPage - 1)); }

  Device dev;
  std::unique_ptr<uint8_t[]> mem;
  uint8_t* base;
  std::array<unsigned, kSlots> half{};  // control thread only: the page each slot maps
};

TEST(MultiDeviceStress, EveryUnmapIsFinalWhicheverDeviceTheReaderReportsThrough) {
  Rcu rcu(kReaders);
  std::vector<std::unique_ptr<Guest>> guests;
  for (int g = 0; g < kDevices; ++g) {
    guests.push_back(std::make_unique<Guest>(rcu));
    Guest& G = *guests.back();
    const MemRegion region[] = {{kGpaBase, 2 * kSlots * kPage, reinterpret_cast<uint64_t>(G.base)}};
    ASSERT_EQ(G.dev.set_mem_table(region), Status::kOk);
    G.send(test::attach_req(1, 0));
    for (uint32_t s = 0; s < kSlots; ++s) {
      std::memset(G.page(s, 0), static_cast<int>(s + 1), kPage);
      G.map(s, 0);
    }
  }
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> poisoned{0}, reads{0}, faults{0}, reports[3] = {};
  std::barrier start(kReaders + kDevices + 1);

  auto reader = [&](uint64_t seed) {
    const uint32_t id = rcu.register_reader();
    guests[seed % kDevices]->dev.iotlb().online(id);
    start.arrive_and_wait();
    std::mt19937_64 rng(seed);
    std::vector<const uint8_t*> held;
    held.reserve(16);
    auto check = [&](const uint8_t* p) {
      for (int i = 0; i < 16; ++i)
        if (p[i] == kPoison) return false;
      return true;
    };
    while (!stop.load(std::memory_order_acquire)) {
      for (int i = 0; i < 16; ++i) {
        Guest& G = *guests[rng() % kDevices];
        const uint32_t slot = static_cast<uint32_t>(rng() % kSlots);
        const uint64_t off = (rng() % (kPage / 16)) * 16;
        Segment seg[1];
        size_t n = 0;
        if (G.dev.iova_to_hva(id, EndpointId{0}, slot_iova(slot) + off, 16, pagetable::kPermRead, seg, &n) !=
            Status::kOk) {
          faults.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        const auto* p = reinterpret_cast<const uint8_t*>(seg[0].addr);
        if (!check(p)) poisoned.fetch_add(1, std::memory_order_relaxed);
        held.push_back(p);
        reads.fetch_add(1, std::memory_order_relaxed);
      }
      // Everything translated in this burst must still be intact before the report.
      for (const uint8_t* p : held)
        if (!check(p)) poisoned.fetch_add(1, std::memory_order_relaxed);
      held.clear();
      const unsigned how = static_cast<unsigned>(rng() % 16);
      if (how == 0) {
        Guest& G = *guests[rng() % kDevices];
        G.dev.iotlb().offline(id);
        guests[rng() % kDevices]->dev.iotlb().online(id);
        reports[2].fetch_add(1, std::memory_order_relaxed);
      } else if (how < 4) {
        rcu.quiescent(id);
        reports[1].fetch_add(1, std::memory_order_relaxed);
      } else {
        guests[rng() % kDevices]->dev.iotlb().quiescent(id);
        reports[0].fetch_add(1, std::memory_order_relaxed);
      }
    }
    guests[0]->dev.iotlb().offline(id);
    rcu.unregister_reader(id);
  };
  std::atomic<uint64_t> unmaps{0};
  auto control = [&](int g) {
    Guest& G = *guests[g];
    std::mt19937_64 rng(100 + g);
    start.arrive_and_wait();
    while (!stop.load(std::memory_order_acquire)) {
      const uint32_t slot = static_cast<uint32_t>(rng() % kSlots);
      const unsigned old_half = G.half[slot];
      G.unmap(slot);
      // The UNMAP completed: no reader may touch the old page any more.
      std::memset(G.page(slot, old_half), kPoison, kPage);
      std::memset(G.page(slot, old_half ^ 1), static_cast<int>(slot + 1), kPage);
      G.map(slot, old_half ^ 1);
      G.half[slot] = old_half ^ 1;
      unmaps.fetch_add(1, std::memory_order_relaxed);
      if (::testing::Test::HasFatalFailure()) break;
    }
  };
  std::vector<std::thread> threads;
  for (int r = 0; r < kReaders; ++r) threads.emplace_back(reader, static_cast<uint64_t>(r + 1));
  for (int g = 0; g < kDevices; ++g) threads.emplace_back(control, g);
  start.arrive_and_wait();
  const auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2) ||
         unmaps.load(std::memory_order_relaxed) < 1000) {
    if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(15)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  stop.store(true, std::memory_order_release);
  for (auto& t : threads) t.join();
  std::printf("unmaps %lu reads %lu faults %lu reports: iotlb %lu rcu %lu offline/online %lu\n",
              (unsigned long)unmaps.load(), (unsigned long)reads.load(), (unsigned long)faults.load(),
              (unsigned long)reports[0].load(), (unsigned long)reports[1].load(), (unsigned long)reports[2].load());
  EXPECT_EQ(poisoned.load(), 0u);
  EXPECT_GT(reads.load(), 1000u);
  EXPECT_GT(unmaps.load(), 100u);
}

}  // namespace
}  // namespace vxlate::engine
