// bench/iotlb/baselines/shared_versioned.h: one set-associative IOTLB shared by all
// reader threads, each entry guarded by a version (a per-entry seqlock).
//
// The other design vxlate considered for its own IOTLB. One cache for every lcore;
// 4 ways per set, set index = XXH3-64 of the 4 KiB page number masked to a power of
// two of sets, so hits cost one hash and one set probe. An entry is
// {version, tag = page | valid, value = host page | perm}. The writer makes the
// version odd, stores the fields, makes it even again; a reader loads the version,
// the fields, the version again, and treats an odd or changed version as a miss
// (no retry: a cache may miss, and readers stay wait-free). Readers never store.
//
// Writer side: an insert fills one entry per 4 KiB page (an existing entry for the
// page is overwritten in place, else an empty way, else the set's round-robin
// victim); invalidate probes each page of the range, or scans every entry when the
// range has more pages than the cache has entries.
//
// Sizing: capacity / 4 sets rounded down to a power of two (at least one set), so
// the cache never holds more than max(capacity, 4) entries. A set is 96 bytes of
// entries in a 128-byte, 64-aligned slot, so a probe touches two cache lines.
//
// Cost model: per translation a hash (XXH3 on 8 bytes: two multiplies and a few
// shifts), up to four version and tag loads, and on a match the value and the
// version again; all plain loads on x86-64. A writer update invalidates the set's
// lines in every reader's cache, and readers see a miss while the entry they want
// is being rewritten. Trade-off: one copy of each translation and one place to
// invalidate, paid for with coherence traffic on shared lines and the version
// re-check per hit.
#pragma once

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "baselines/baseline.h"

namespace vxlate::bench {

class SharedVersioned {
 public:
  static constexpr const char* kName = "shared_versioned";
  static constexpr unsigned kWays = 4;

  // Not thread-safe. Allocates all sets up front, every entry empty.
  explicit SharedVersioned(size_t capacity)
      : set_count_(std::bit_floor(std::max<size_t>(capacity / kWays, 1))),
        sets_(std::make_unique<Set[]>(set_count_)),
        victim_(set_count_, 0) {}
  SharedVersioned(const SharedVersioned&) = delete;
  SharedVersioned& operator=(const SharedVersioned&) = delete;

  // Writer side. Caches each 4 KiB page of [iova, iova + size). iova, size and uaddr
  // must be 4 KiB aligned.
  void insert(uint64_t iova, uint64_t size, uint64_t uaddr, uint8_t perm) {
    uint64_t last;
    if (!range_last(iova, size, &last)) return;
    const uint64_t first_page = iova >> kBaselinePageShift;
    const uint64_t last_page = last >> kBaselinePageShift;
    for (uint64_t page = first_page;; ++page) {
      const uint64_t value =
          ((uaddr + ((page - first_page) << kBaselinePageShift)) & ~kBaselinePageMask) | perm;
      const size_t s = set_index(page);
      write_entry(pick_way(s, page | kTagValid), page | kTagValid, value);
      if (page == last_page) break;
    }
  }

  // Writer side. Empties every entry whose page overlaps [iova, iova + size).
  void invalidate(uint64_t iova, uint64_t size) {
    uint64_t last;
    if (!range_last(iova, size, &last)) return;
    const uint64_t first_page = iova >> kBaselinePageShift;
    const uint64_t last_page = last >> kBaselinePageShift;
    if (last_page - first_page >= set_count_ * kWays) {
      for (size_t s = 0; s < set_count_; ++s) {
        for (Entry& e : sets_[s].way) {
          const uint64_t tag = e.tag.load(std::memory_order_relaxed);  // writer-owned
          const uint64_t page = tag & ~kTagValid;
          if (tag != 0 && page >= first_page && page <= last_page) write_entry(e, 0, 0);
        }
      }
      return;
    }
    for (uint64_t page = first_page;; ++page) {
      for (Entry& e : sets_[set_index(page)].way) {
        // relaxed: the writer owns the entries; it reads back its own stores.
        if (e.tag.load(std::memory_order_relaxed) == (page | kTagValid)) write_entry(e, 0, 0);
      }
      if (page == last_page) break;
    }
  }

  // Reader side, any thread, wait-free; never stores to shared memory.
  size_t translate_burst(std::span<const uint64_t> iovas, uint8_t need,
                         BaselineTranslation* out) noexcept {
    size_t hits = 0;
    for (size_t i = 0; i < iovas.size(); ++i) {
      out[i] = lookup(iovas[i], need);
      hits += out[i].perm != 0;
    }
    return hits;
  }

 private:
  // Page numbers are below 2^52, so bit 63 marks a valid tag and 0 is empty.
  static constexpr uint64_t kTagValid = uint64_t{1} << 63;

  struct Entry {
    std::atomic<uint64_t> version{0};  // odd while the writer rewrites the entry
    std::atomic<uint64_t> tag{0};
    std::atomic<uint64_t> value{0};
  };
  struct alignas(64) Set {
    Entry way[kWays];
  };
  static_assert(sizeof(Set) == 128, "a set spans two cache lines");

  size_t set_index(uint64_t page) const noexcept {
    return static_cast<size_t>(XXH3_64bits(&page, sizeof(page))) & (set_count_ - 1);
  }

  BaselineTranslation lookup(uint64_t iova, uint8_t need) const noexcept {
    const uint64_t page = iova >> kBaselinePageShift;
    for (const Entry& e : sets_[set_index(page)].way) {
      // acquire: pairs with the even-version release store in write_entry(), so the
      // fields it published are visible below.
      const uint64_t v1 = e.version.load(std::memory_order_acquire);
      // acquire (this and the value load): keeps the version re-check below after
      // them, and pairs with the release field stores in write_entry(): reading a
      // new field makes the odd version visible to the re-check.
      if (e.tag.load(std::memory_order_acquire) != (page | kTagValid)) continue;
      const uint64_t value = e.value.load(std::memory_order_acquire);
      // relaxed: ordered after the field loads by their acquire.
      const uint64_t v2 = e.version.load(std::memory_order_relaxed);
      // Torn or in flux: a miss. The page is in at most one way, so stop here.
      if ((v1 & 1) != 0 || v1 != v2) return {0, 0};
      const auto perm = static_cast<uint8_t>(value & kPermReadWrite);
      if (!perm_allows(perm, need)) return {0, 0};
      return {(value & ~kBaselinePageMask) | (iova & kBaselinePageMask), perm};
    }
    return {0, 0};
  }

  // The way for `tag` in set s: its current way, else an empty one, else the
  // round-robin victim.
  Entry& pick_way(size_t s, uint64_t tag) {
    Set& set = sets_[s];
    Entry* empty = nullptr;
    for (Entry& e : set.way) {
      const uint64_t t = e.tag.load(std::memory_order_relaxed);  // writer-owned
      if (t == tag) return e;
      if (t == 0 && empty == nullptr) empty = &e;
    }
    if (empty != nullptr) return *empty;
    const uint8_t v = victim_[s];
    victim_[s] = static_cast<uint8_t>((v + 1) % kWays);
    return set.way[v];
  }

  // Seqlock write of one entry. Writer side only.
  static void write_entry(Entry& e, uint64_t tag, uint64_t value) {
    const uint64_t v = e.version.load(std::memory_order_relaxed);  // writer-owned
    // relaxed: the release field stores below order it before themselves.
    e.version.store(v + 1, std::memory_order_relaxed);
    // release: a reader whose acquire load sees this value also sees the odd version.
    e.tag.store(tag, std::memory_order_release);
    e.value.store(value, std::memory_order_release);
    // release: publishes the fields; pairs with the acquire version load in lookup().
    e.version.store(v + 2, std::memory_order_release);
  }

  const size_t set_count_;
  std::unique_ptr<Set[]> sets_;
  std::vector<uint8_t> victim_;  // writer-only round-robin position per set
};

}  // namespace vxlate::bench
