// IOTLB stress: reader threads translate through their private caches while a
// writer remaps slots in batches (unmap + add_invalidate or add_flush_domain,
// one sync per batch, then map a new generation).
//
// As in the page-table stress test, every map gets a fresh generation encoded in
// the output address. Per slot the writer publishes gen_hi (newest generation
// installed or being installed) and dead_below (every older generation was
// unmapped and its sync returned). Checked on every read:
//   1. a hit decodes to this slot and page with a generation in
//      [dead_below as loaded before the translate, gen_hi];
//   2. at the end of each burst, before the quiescent report, no translation
//      still held belongs to a generation the writer has since declared dead:
//      sync() cannot return while a burst that used it is under way.
// Run three times: readers reporting every burst through quiescent(), readers
// coalescing acknowledgements through quiescent_busy() (a varying k), and
// readers pacing them through quiescent_paced() (a varying gap on the TSC),
// the last two with an idle quiescent() now and then; all must keep both
// promises.
#include <gtest/gtest.h>
#include <rte_cycles.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

#include "vxlate/iotlb/iotlb.h"

namespace vxlate::iotlb {
namespace {

using pagetable::kLeaf2M;
using pagetable::kLeaf4K;
using pagetable::kPermRead;
using pagetable::kPermReadWrite;

constexpr unsigned kSlots = 32;
constexpr int kReaders = 2;
constexpr int kWriterBatches = 20000;
constexpr DomainId kDomain{3};

constexpr uint64_t slot_iova(unsigned s) { return uint64_t{s} * 3 * kLeaf2M; }
// Even generations get a 2 MiB leaf, odd ones 4 KiB leaves (output off by a page).
constexpr uint64_t gen_out(uint64_t gen, unsigned s) {
  return (gen << 29) | (uint64_t{s} << 21) | ((gen & 1) ? kLeaf4K : 0);
}

struct alignas(64) Slot {
  std::atomic<uint64_t> gen_hi{0};
  std::atomic<uint64_t> dead_below{0};
  uint64_t gen = 0;  // writer-private: current generation, 0 = unmapped
};

enum class Reports { kEveryBurst, kCoalesced, kPaced };

void stress(Reports reports) {
  Rcu rcu(kReaders);
  Iotlb tlb(rcu, 64);  // small: evictions and refills all the time
  IoPageTable pt(rcu);
  Slot slots[kSlots];
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bad{0}, stale{0}, hits{0}, faults{0};
  std::barrier start(kReaders + 1);

  auto reader = [&](uint64_t seed) {
    const uint32_t id = rcu.register_reader();
    tlb.online(id);
    start.arrive_and_wait();
    std::mt19937_64 rng(seed);
    struct Held {
      unsigned slot;
      uint64_t gen;
    };
    std::vector<Held> held;
    held.reserve(kMaxBurst);
    uint64_t bursts = 0;
    while (!stop.load(std::memory_order_acquire)) {
      for (size_t i = 0; i < kMaxBurst; ++i) {
        const unsigned s = static_cast<unsigned>(rng() % kSlots);
        const uint64_t off = rng() % kLeaf2M;
        const uint64_t dead_below = slots[s].dead_below.load(std::memory_order_acquire);
        Translation t{};
        if (tlb.translate(id, kDomain, pt, slot_iova(s) + off, kPermRead, &t) != Status::kOk) {
          faults.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        const uint64_t base = t.out - off;
        const uint64_t gen = base >> 29;
        const bool ok = (base >> 21 & 0xff) == s && (base & (kLeaf2M - 1)) == ((gen & 1) ? kLeaf4K : 0) &&
                        gen >= dead_below && gen <= slots[s].gen_hi.load(std::memory_order_acquire);
        if (!ok) bad.fetch_add(1, std::memory_order_relaxed);
        held.push_back(Held{s, gen});
        hits.fetch_add(1, std::memory_order_relaxed);
      }
      for (const Held& h : held)
        if (h.gen < slots[h.slot].dead_below.load(std::memory_order_acquire))
          stale.fetch_add(1, std::memory_order_relaxed);
      held.clear();
      if (reports == Reports::kEveryBurst || bursts % 16 == 15)
        tlb.quiescent(id);
      else if (reports == Reports::kCoalesced)
        tlb.quiescent_busy(id, 1 + static_cast<uint32_t>(rng() % 8));
      else  // gaps of 0 to ~4 us at a few GHz
        tlb.quiescent_paced(id, rng() % 8192, [] { return rte_rdtsc(); });
      if (++bursts % 512 == 0) {  // idle now and then, as a poll loop does
        tlb.offline(id);
        std::this_thread::yield();
        tlb.online(id);
      }
    }
    tlb.offline(id);
    rcu.unregister_reader(id);
  };

  std::vector<std::thread> threads;
  for (int r = 0; r < kReaders; ++r) threads.emplace_back(reader, static_cast<uint64_t>(r + 1));
  start.arrive_and_wait();

  std::mt19937_64 rng(99);
  uint64_t next_gen = 2;
  // At least kWriterBatches and at least 1 s (so the readers, which share two
  // cores with the writer, get scheduled a lot), at most 10 s.
  const auto t0 = std::chrono::steady_clock::now();
  int batches = 0;
  for (;; ++batches) {
    const auto elapsed = std::chrono::steady_clock::now() - t0;
    if (elapsed > std::chrono::seconds(10) || (batches >= kWriterBatches && elapsed > std::chrono::seconds(1))) break;
    // A batch: up to 4 slots unmapped, invalidated one way or the other.
    unsigned picked[4];
    const unsigned n = 1 + static_cast<unsigned>(rng() % 4);
    for (unsigned i = 0; i < n; ++i) {
      const unsigned s = static_cast<unsigned>(rng() % kSlots);
      picked[i] = s;
      if (slots[s].gen == 0) continue;
      ASSERT_EQ(pt.unmap(slot_iova(s), kLeaf2M), Status::kOk);
      if (rng() % 8 == 0)
        tlb.add_flush_domain(kDomain);
      else
        tlb.add_invalidate(kDomain, slot_iova(s), kLeaf2M);
    }
    tlb.sync();
    for (unsigned i = 0; i < n; ++i) {
      Slot& sl = slots[picked[i]];
      // release: pairs with the readers' acquire; the old generation is gone.
      sl.dead_below.store(next_gen, std::memory_order_release);
      sl.gen = 0;
    }
    // Map a new generation into each emptied slot.
    for (unsigned i = 0; i < n; ++i) {
      const unsigned s = picked[i];
      if (slots[s].gen != 0) continue;
      const uint64_t g = next_gen++;
      slots[s].gen_hi.store(g, std::memory_order_release);
      ASSERT_EQ(pt.map(slot_iova(s), gen_out(g, s), kLeaf2M, kPermReadWrite), Status::kOk);
      slots[s].gen = g;
    }
  }
  stop.store(true, std::memory_order_release);
  for (auto& t : threads) t.join();

  const Stats st = tlb.stats();
  std::printf("batches %d hits %lu faults %lu iotlb hits %lu misses %lu invalidations %lu flushes %lu\n", batches,
              (unsigned long)hits.load(), (unsigned long)faults.load(), (unsigned long)st.hits,
              (unsigned long)st.misses, (unsigned long)st.invalidations, (unsigned long)st.flushes);
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_EQ(stale.load(), 0u);
  EXPECT_GT(hits.load(), 1000u);
  EXPECT_GT(st.hits, 1000u);
  // The readers applied the writer's records. Whether as range records or
  // as whole flushes depends on scheduling (two cores, three threads): a
  // reader starved for a whole log's worth of syncs flushes instead (seen
  // under ctest -j2 with coalesced reports: 0 range records, 863 flushes).
  // iotlb_test covers the range records deterministically; the
  // mutation-tested invariants above do not depend on which it was.
  EXPECT_GT(st.invalidations + st.flushes, 0u);
  EXPECT_GT(batches, 100);
}

TEST(IotlbStress, NoStaleTranslationAfterSync) { stress(Reports::kEveryBurst); }

TEST(IotlbStress, NoStaleTranslationAfterSyncWithCoalescedReports) { stress(Reports::kCoalesced); }

TEST(IotlbStress, NoStaleTranslationAfterSyncWithPacedReports) { stress(Reports::kPaced); }

}  // namespace
}  // namespace vxlate::iotlb
