// Device stress: data-plane readers translate DMAs while the control thread
// remaps pages, detaches and re-attaches endpoints through the wire entry point.
//
// Every MAP gets a fresh generation encoded in its guest-physical address, so a
// reader knows which MAP a translation came from. The writer publishes, per
// (endpoint, slot), dead_below: every older generation was unmapped (or its
// domain destroyed) by a request whose handle_burst() has returned. Checked:
//   1. a successful translation decodes to this endpoint and slot, with a
//      generation not dead before the translate began;
//   2. at the end of each burst, before the quiescent report, nothing held has
//      been declared dead since: a completed UNMAP or DETACH never leaves a
//      reader using the old translation (DESIGN.md invariant 1).
// Every other burst translates through Device::Burst (one per endpoint, as a
// virtqueue does: page memo, inline IOTLB probe, peek() hints) instead of
// Device::iova_to_hva(); the same checks hold for both.
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

#include "support/virtio_iommu.h"
#include "vxlate/engine/device.h"

namespace vxlate::engine {
namespace {

constexpr uint32_t kEndpoints = 4;
constexpr uint32_t kSlots = 8;
constexpr int kReaders = 1;  // reader and writer on one core each: grace periods stay short
constexpr uint64_t kPage = 4096;
constexpr uint64_t kHvaOffset = uint64_t{1} << 46;

constexpr uint64_t slot_iova(uint32_t slot) { return 0x10000 + slot * kPage; }
constexpr uint64_t gen_gpa(uint64_t gen, uint32_t ep, uint32_t slot) {
  return gen << 24 | uint64_t{ep} << 20 | uint64_t{slot} << 12;
}

struct alignas(64) SlotState {
  std::atomic<uint64_t> dead_below{0};
};

TEST(DeviceStress, CompletedUnmapAndDetachAreFinal) {
  Config cfg;
  Rcu rcu(kReaders + 1);
  Device dev(cfg, rcu, 64);
  const MemRegion mem[] = {{0, uint64_t{1} << 44, kHvaOffset}};
  ASSERT_EQ(dev.set_mem_table(mem), Status::kOk);
  SlotState state[kEndpoints][kSlots];
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bad{0}, stale{0}, ok{0}, faults{0};
  std::barrier start(kReaders + 1);

  auto reader = [&](uint64_t seed) {
    const uint32_t id = rcu.register_reader();
    dev.iotlb().online(id);
    start.arrive_and_wait();
    std::mt19937_64 rng(seed);
    struct Held {
      uint32_t ep, slot;
      uint64_t gen;
    };
    std::vector<Held> held;
    held.reserve(40);
    Device::Burst bursts[kEndpoints];
    // A translation of [iova, iova + 16) in slot `slot` of `ep` to host
    // address `hva`, checked against what the writer declared dead before it.
    auto check = [&](uint32_t ep, uint32_t slot, uint64_t off, uint64_t hva, uint64_t dead) {
      const uint64_t gpa = hva - kHvaOffset - off;
      const uint64_t gen = gpa >> 24;
      if (gpa != gen_gpa(gen, ep, slot) || gen < dead) bad.fetch_add(1, std::memory_order_relaxed);
      held.push_back(Held{ep, slot, gen});
      ok.fetch_add(1, std::memory_order_relaxed);
    };
    for (uint64_t round = 0; !stop.load(std::memory_order_acquire); ++round) {
      // Odd rounds translate the way a virtqueue does: one Device::Burst per
      // endpoint (its page memo, its inline IOTLB probe, its slow path), with
      // peek() hints between the translations.
      const bool through_bursts = round % 2 == 1;
      if (through_bursts)
        for (uint32_t ep = 0; ep < kEndpoints; ++ep) bursts[ep].begin(dev, id, EndpointId{ep});
      for (int i = 0; i < 32; ++i) {
        const uint32_t ep = static_cast<uint32_t>(rng() % kEndpoints);
        const uint32_t slot = static_cast<uint32_t>(rng() % kSlots);
        const uint64_t off = rng() % (kPage - 16);
        const uint64_t dead = state[ep][slot].dead_below.load(std::memory_order_acquire);
        Segment seg[2];
        size_t n = 0;
        const Status st =
            through_bursts
                ? bursts[ep].iova_to_hva(slot_iova(slot) + off, 16, pagetable::kPermRead, seg, &n)
                : dev.iova_to_hva(id, EndpointId{ep}, slot_iova(slot) + off, 16, pagetable::kPermRead, seg, &n);
        if (st != Status::kOk) {
          faults.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        if (n != 1 || seg[0].len != 16) bad.fetch_add(1, std::memory_order_relaxed);
        check(ep, slot, off, seg[0].addr, dead);
        if (through_bursts && i % 4 == 0) {
          const uint32_t peek_slot = static_cast<uint32_t>(rng() % kSlots);
          const uint64_t peek_dead = state[ep][peek_slot].dead_below.load(std::memory_order_acquire);
          if (const uint8_t* p = bursts[ep].peek(slot_iova(peek_slot) + off, 16, pagetable::kPermRead))
            check(ep, peek_slot, off, reinterpret_cast<uint64_t>(p), peek_dead);
        }
      }
      if (through_bursts)
        for (Device::Burst& b : bursts) b.end();
      for (const Held& h : held)
        if (h.gen < state[h.ep][h.slot].dead_below.load(std::memory_order_acquire))
          stale.fetch_add(1, std::memory_order_relaxed);
      held.clear();
      dev.iotlb().quiescent(id);
    }
    dev.iotlb().offline(id);
    rcu.unregister_reader(id);
  };
  std::vector<std::thread> threads;
  for (int r = 0; r < kReaders; ++r) threads.emplace_back(reader, static_cast<uint64_t>(r + 1));
  start.arrive_and_wait();

  std::mt19937_64 rng(3);
  uint64_t next_gen = 1;
  auto send = [&](const auto& req) {
    test::PostedRequest r = test::make_request(req);
    ASSERT_EQ(dev.handle(r.readable, r.writable), kTailSize);
    ASSERT_EQ(r.status(), 0) << "request type " << int(req.head.type);
  };
  auto map_slot = [&](uint32_t ep, uint32_t slot) {
    send(test::map_req(ep + 1, slot_iova(slot), slot_iova(slot) + kPage - 1, gen_gpa(next_gen++, ep, slot),
                       kMapFlagRead | kMapFlagWrite));
  };
  auto attach_all = [&](uint32_t ep) {
    send(test::attach_req(ep + 1, ep));
    for (uint32_t s = 0; s < kSlots; ++s) map_slot(ep, s);
  };
  for (uint32_t ep = 0; ep < kEndpoints; ++ep) attach_all(ep);

  const auto t0 = std::chrono::steady_clock::now();
  int ops = 0;
  for (; std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1) || ops < 2000; ++ops) {
    if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(10)) break;
    const uint32_t ep = static_cast<uint32_t>(rng() % kEndpoints);
    if (rng() % 16 == 0) {
      // DETACH: the domain and every mapping in it cease to exist.
      send(test::detach_req(ep + 1, ep));
      for (uint32_t s = 0; s < kSlots; ++s) state[ep][s].dead_below.store(next_gen, std::memory_order_release);
      attach_all(ep);
    } else {
      const uint32_t slot = static_cast<uint32_t>(rng() % kSlots);
      send(test::unmap_req(ep + 1, slot_iova(slot), slot_iova(slot) + kPage - 1));
      state[ep][slot].dead_below.store(next_gen, std::memory_order_release);
      map_slot(ep, slot);
    }
    if (HasFatalFailure()) break;
  }
  stop.store(true, std::memory_order_release);
  for (auto& t : threads) t.join();
  std::printf("ops %d translations ok %lu faults %lu\n", ops, (unsigned long)ok.load(), (unsigned long)faults.load());
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_EQ(stale.load(), 0u);
  EXPECT_GT(ok.load(), 1000u);
}

}  // namespace
}  // namespace vxlate::engine
