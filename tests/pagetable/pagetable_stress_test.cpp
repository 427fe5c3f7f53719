// Concurrent stress: reader threads walk random IOVAs while one writer maps,
// splits, refills and unmaps, and every read is checked.
//
// Each slot is a 2 MiB IOVA window. Every map gets a fresh generation number that
// is encoded into the output address, so a reader can tell exactly which map a
// translation came from. Per slot the writer publishes:
//   seq        even when the slot is stable, odd while the writer changes it
//   state      what is mapped when stable (kind, main gen, special page, fill gen)
//   gen_hi     the newest generation installed or being installed
//   dead_below every generation below it was unmapped and a grace period passed
//   dead_page  (gen, page) whose translation was punched out, after a grace period
// Invariants checked on every read:
//   1. a hit decodes to this slot and this page, with a generation that was
//      installed (<= gen_hi) and not dead before the read began;
//   2. if seq was stable and equal around the walk, the result is exactly the
//      stable state (hit with the right generation, or a miss);
//   3. at the end of each burst, before the quiescent report, no translation the
//      reader still holds has been declared dead: synchronize() cannot return
//      while a reader is inside a read section that began before the unmap.
// ASan additionally catches any walk through a table freed too early.
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

#include "vxlate/pagetable/io_pgtable.h"

namespace vxlate::pagetable {
namespace {

constexpr unsigned kSlots = 64;
constexpr uint64_t kPagesPerSlot = kLeaf2M / kLeaf4K;
constexpr int kReaders = 3;
constexpr int kWriterOps = 100000;
constexpr int kBurst = 32;

// Slots spread over several 1 GiB and 512 GiB regions so upper-level tables are
// created and freed too.
constexpr uint64_t slot_iova(unsigned s) {
  return (uint64_t{s % 4} << 39) + (uint64_t{s / 4} * (kLeaf1G / 2)) + kLeaf1G;
}
// Output of page 0 of generation `gen` in slot `s`. Odd generations are offset
// by one page so the table must use 4 KiB leaves; even ones get a 2 MiB leaf.
constexpr uint64_t gen_out(uint64_t gen, unsigned s) {
  return (gen << 29) | (uint64_t{s} << 21) | ((gen & 1) ? kLeaf4K : 0);
}

enum Kind : uint64_t { kUnmapped = 0, kFull = 1, kHole = 2, kRefilled = 3 };
constexpr uint64_t pack_state(Kind k, uint64_t gen, uint64_t page, uint64_t fill) {
  return k | (page << 2) | (gen << 11) | (fill << 37);
}
constexpr uint64_t pack_dead_page(uint64_t gen, uint64_t page) { return (gen << 9) | page; }

struct alignas(64) Slot {
  std::atomic<uint64_t> seq{0};
  std::atomic<uint64_t> state{0};
  std::atomic<uint64_t> gen_hi{0};
  std::atomic<uint64_t> dead_below{0};
  std::atomic<uint64_t> dead_page{~uint64_t{0}};
};

struct Held {
  unsigned slot;
  uint64_t gen;
  uint64_t page;
};

class Stress {
 public:
  Stress() : rcu_(kReaders), pt_(rcu_) {}

  void writer() {
    std::mt19937_64 rng(42);
    uint64_t next_gen = 2;
    // At least kWriterOps and 1 s (readers share two cores with the writer), at most 10 s.
    const auto t0 = std::chrono::steady_clock::now();
    for (int op = 0;; ++op) {
      const auto elapsed = std::chrono::steady_clock::now() - t0;
      if (elapsed > std::chrono::seconds(10) || (op >= kWriterOps && elapsed > std::chrono::seconds(1))) break;
      const unsigned s = static_cast<unsigned>(rng() % kSlots);
      Slot& sl = slots_[s];
      const uint64_t st = sl.state.load(std::memory_order_relaxed);  // writer's own value
      const Kind kind = static_cast<Kind>(st & 3);
      const uint64_t gen = st >> 11 & ((uint64_t{1} << 26) - 1);
      const uint64_t page = st >> 2 & 511;
      const uint64_t r = rng() % 4;
      if (kind == kUnmapped) {
        const uint64_t g = next_gen++;
        begin(sl);
        sl.gen_hi.store(g, std::memory_order_release);
        ASSERT_EQ(pt_.map(slot_iova(s), gen_out(g, s), kLeaf2M, kPermReadWrite), Status::kOk);
        end(sl, pack_state(kFull, g, 0, 0));
      } else if (kind == kFull && r < 2) {
        const uint64_t p = rng() % kPagesPerSlot;
        begin(sl);
        ASSERT_EQ(pt_.unmap(slot_iova(s) + p * kLeaf4K, kLeaf4K), Status::kOk);
        end(sl, pack_state(kHole, gen, p, 0));
        rcu_.synchronize();
        sl.dead_page.store(pack_dead_page(gen, p), std::memory_order_release);
      } else if (kind == kHole && r < 2) {
        const uint64_t f = next_gen++;
        begin(sl);
        sl.gen_hi.store(f, std::memory_order_release);
        ASSERT_EQ(pt_.map(slot_iova(s) + page * kLeaf4K, gen_out(f, s) + page * kLeaf4K, kLeaf4K,
                          kPermReadWrite),
                  Status::kOk);
        end(sl, pack_state(kRefilled, gen, page, f));
      } else {
        begin(sl);
        ASSERT_EQ(pt_.unmap(slot_iova(s), kLeaf2M), Status::kOk);
        end(sl, pack_state(kUnmapped, 0, 0, 0));
        rcu_.synchronize();
        // Every generation of this slot so far is gone for good.
        sl.dead_below.store(next_gen, std::memory_order_release);
      }
      if (op % 500 == 0) {
        ASSERT_TRUE(pt_.verify());
      }
    }
  }

  void reader(int seed) {
    const uint32_t id = rcu_.register_reader();
    rcu_.online(id);
    std::mt19937_64 rng(static_cast<uint64_t>(seed));
    std::vector<Held> held;
    held.reserve(kBurst);
    uint64_t bursts = 0;
    while (!stop_.load(std::memory_order_acquire)) {
      for (int i = 0; i < kBurst; ++i) read_one(rng, held);
      // Invariant 3: nothing held has been declared dead inside this read section.
      for (const Held& h : held) {
        const Slot& sl = slots_[h.slot];
        if (h.gen < sl.dead_below.load(std::memory_order_acquire) ||
            sl.dead_page.load(std::memory_order_acquire) == pack_dead_page(h.gen, h.page))
          stale_held_.fetch_add(1, std::memory_order_relaxed);
      }
      held.clear();
      rcu_.quiescent(id);
      if (++bursts % 256 == 0) {  // go idle now and then, as a data-plane lcore does
        rcu_.offline(id);
        std::this_thread::yield();
        rcu_.online(id);
      }
    }
    rcu_.offline(id);
    rcu_.unregister_reader(id);
  }

  void read_one(std::mt19937_64& rng, std::vector<Held>& held) {
    const unsigned s = static_cast<unsigned>(rng() % kSlots);
    const uint64_t page = rng() % kPagesPerSlot;
    const uint64_t byte = rng() % kLeaf4K;
    const uint64_t iova = slot_iova(s) + page * kLeaf4K + byte;
    const Slot& sl = slots_[s];
    const uint64_t dead_below = sl.dead_below.load(std::memory_order_acquire);
    const uint64_t dead_page = sl.dead_page.load(std::memory_order_acquire);
    const uint64_t seq1 = sl.seq.load(std::memory_order_acquire);  // pairs with end()
    const uint64_t st = sl.state.load(std::memory_order_acquire);
    Translation t{};
    const bool hit = pt_.walk(iova, &t);
    // Ordered after the walk's acquire loads; pairs with the release in begin().
    const uint64_t seq2 = sl.seq.load(std::memory_order_acquire);
    reads_.fetch_add(1, std::memory_order_relaxed);

    uint64_t gen = 0;
    if (hit) {
      // Invariant 1.
      const uint64_t base = t.out - page * kLeaf4K - byte;
      gen = base >> 29;
      const bool ok = (base >> 21 & 0xff) == s && (base & (kLeaf2M - 1)) == ((gen & 1) ? kLeaf4K : 0) &&
                      t.perms == kPermReadWrite && gen <= sl.gen_hi.load(std::memory_order_acquire) &&
                      gen >= dead_below && dead_page != pack_dead_page(gen, page);
      if (!ok) bad_hits_.fetch_add(1, std::memory_order_relaxed);
      held.push_back(Held{s, gen, page});
    }
    if (seq1 == seq2 && (seq1 & 1) == 0) {
      // Invariant 2.
      const Kind kind = static_cast<Kind>(st & 3);
      const uint64_t sgen = st >> 11 & ((uint64_t{1} << 26) - 1);
      const uint64_t spage = st >> 2 & 511;
      const uint64_t fill = st >> 37;
      bool want_hit = kind != kUnmapped;
      uint64_t want_gen = sgen;
      if (kind == kHole && page == spage) want_hit = false;
      if (kind == kRefilled && page == spage) want_gen = fill;
      if (hit != want_hit || (hit && gen != want_gen)) stable_mismatch_.fetch_add(1, std::memory_order_relaxed);
      stable_checks_.fetch_add(1, std::memory_order_relaxed);
    }
    (hit ? hits_ : misses_).fetch_add(1, std::memory_order_relaxed);
  }

  void run() {
    std::barrier start(kReaders + 1);
    std::vector<std::thread> readers;
    for (int r = 0; r < kReaders; ++r)
      readers.emplace_back([&, r] {
        start.arrive_and_wait();
        reader(r + 1);
      });
    start.arrive_and_wait();
    writer();
    stop_.store(true, std::memory_order_release);
    for (auto& t : readers) t.join();

    std::printf("reads %lu hits %lu misses %lu stable checks %lu\n", (unsigned long)reads_.load(),
                (unsigned long)hits_.load(), (unsigned long)misses_.load(), (unsigned long)stable_checks_.load());
    EXPECT_EQ(bad_hits_.load(), 0u);
    EXPECT_EQ(stable_mismatch_.load(), 0u);
    EXPECT_EQ(stale_held_.load(), 0u);
    // The run exercised what it claims to.
    EXPECT_GT(hits_.load(), 1000u);
    EXPECT_GT(misses_.load(), 1000u);
    EXPECT_GT(stable_checks_.load(), 1000u);
    EXPECT_TRUE(pt_.verify());
    for (unsigned s = 0; s < kSlots; ++s) ASSERT_EQ(pt_.unmap(slot_iova(s), kLeaf2M), Status::kOk);
    pt_.drain();
    EXPECT_EQ(pt_.table_bytes(), kTableBytes);
  }

 private:
  // Writer: the slot is about to change. release: pairs with the reader's
  // second seq load, so a reader that saw the change sees seq moved.
  static void begin(Slot& sl) {
    sl.seq.store(sl.seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }
  // Writer: the slot is stable again with `state`. release: pairs with the
  // reader's first seq load, so a reader that sees the even seq sees the change.
  static void end(Slot& sl, uint64_t state) {
    sl.state.store(state, std::memory_order_release);
    sl.seq.store(sl.seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }

  Rcu rcu_;
  IoPageTable pt_;
  Slot slots_[kSlots];
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> reads_{0}, hits_{0}, misses_{0}, stable_checks_{0};
  std::atomic<uint64_t> bad_hits_{0}, stable_mismatch_{0}, stale_held_{0};
};

TEST(PageTableStress, ReadersSeeOnlyValidTranslations) {
  Stress stress;
  stress.run();
}

}  // namespace
}  // namespace vxlate::pagetable
