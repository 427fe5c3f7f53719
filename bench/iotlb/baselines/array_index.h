// bench/iotlb/baselines/array_index.h: the physical limit of a translation hit.
//
// Not a usable IOTLB: a flat array of `capacity` slots indexed by the 4 KiB page
// number minus a base, so it needs a dense key space. The base is the first page
// of the first insert; pages outside [base, base + capacity) are not cached (an
// insert drops them, a lookup misses). It is what the hit path of every real
// design is measured against: one dependent load per translation, no hash, no
// tag compare, no lock, no retry.
//
// A slot packs (host page | perm) into one uint64_t; 0 is empty. Slots and the
// base are std::atomic<uint64_t> accessed with memory_order_relaxed: a plain mov
// on x86-64 and AArch64, and no data race for ThreadSanitizer. Relaxed is enough
// because a slot is self-contained (no other data is published through it) and
// the base never changes once set.
//
// Cost model: per translation one load of the slot (the base is loaded once per
// burst), a bounds check and a permission test. Writers store one word per page.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "baselines/baseline.h"

namespace vxlate::bench {

class ArrayIndex {
 public:
  static constexpr const char* kName = "array_index";

  // Not thread-safe. Allocates max(capacity, 1) zeroed slots.
  explicit ArrayIndex(size_t capacity)
      : slots_count_(std::max<size_t>(capacity, 1)),
        slots_(std::make_unique<std::atomic<uint64_t>[]>(slots_count_)) {}
  ArrayIndex(const ArrayIndex&) = delete;
  ArrayIndex& operator=(const ArrayIndex&) = delete;

  // Writer side. Caches each 4 KiB page of [iova, iova + size) that falls in the
  // window; the first insert sets the window's base to its first page. iova, size
  // and uaddr must be 4 KiB aligned.
  void insert(uint64_t iova, uint64_t size, uint64_t uaddr, uint8_t perm) {
    uint64_t last;
    if (!range_last(iova, size, &last)) return;
    const uint64_t first_page = iova >> kBaselinePageShift;
    uint64_t base = base_.load(std::memory_order_relaxed);  // writer-owned
    if (base == kNoBase) {
      base = first_page;
      // relaxed: readers only need the value; a reader that sees kNoBase misses.
      base_.store(base, std::memory_order_relaxed);
    }
    uint64_t first, end;
    if (!window(first_page, last >> kBaselinePageShift, base, &first, &end)) return;
    for (uint64_t slot = first; slot < end; ++slot) {
      const uint64_t page_uaddr = uaddr + ((base + slot - first_page) << kBaselinePageShift);
      // relaxed: the slot carries all a reader needs; pairs with the relaxed load
      // in translate_burst().
      slots_[slot].store((page_uaddr & ~kBaselinePageMask) | perm, std::memory_order_relaxed);
    }
  }

  // Writer side. Empties every slot whose page overlaps [iova, iova + size).
  void invalidate(uint64_t iova, uint64_t size) {
    uint64_t last;
    if (!range_last(iova, size, &last)) return;
    const uint64_t base = base_.load(std::memory_order_relaxed);  // writer-owned
    if (base == kNoBase) return;
    uint64_t first, end;
    if (!window(iova >> kBaselinePageShift, last >> kBaselinePageShift, base, &first, &end)) {
      return;
    }
    // relaxed: pairs with the relaxed load in translate_burst(); a lookup ordered
    // after this returns (by whatever told its thread) sees 0 or a newer value, by
    // coherence alone.
    for (uint64_t slot = first; slot < end; ++slot) {
      slots_[slot].store(0, std::memory_order_relaxed);
    }
  }

  // Reader side, any thread, wait-free. One slot load per iova.
  size_t translate_burst(std::span<const uint64_t> iovas, uint8_t need,
                         BaselineTranslation* out) noexcept {
    // relaxed: the base is written once, before any slot it indexes is filled.
    const uint64_t base = base_.load(std::memory_order_relaxed);
    size_t hits = 0;
    for (size_t i = 0; i < iovas.size(); ++i) {
      const uint64_t slot = (iovas[i] >> kBaselinePageShift) - base;  // wraps below base
      out[i] = {0, 0};
      if (slot >= slots_count_) continue;  // also catches base == kNoBase
      // relaxed: pairs with the relaxed stores in insert()/invalidate(); a plain mov.
      const uint64_t v = slots_[slot].load(std::memory_order_relaxed);
      const auto perm = static_cast<uint8_t>(v & kPermReadWrite);
      if (!perm_allows(perm, need)) continue;
      out[i] = {(v & ~kBaselinePageMask) | (iovas[i] & kBaselinePageMask), perm};
      ++hits;
    }
    return hits;
  }

 private:
  // A real page number is below 2^52, so this never collides with one; with it,
  // page - base wraps to a huge slot index and every lookup misses.
  static constexpr uint64_t kNoBase = ~uint64_t{0} >> 1;

  // Clamps pages [first_page, last_page] to slots [*first, *end); false if empty.
  bool window(uint64_t first_page, uint64_t last_page, uint64_t base, uint64_t* first,
              uint64_t* end) const {
    if (last_page < base) return false;
    *first = first_page < base ? 0 : first_page - base;
    *end = std::min<uint64_t>(last_page - base + 1, slots_count_);  // pages < 2^52: no wrap
    return *first < *end;
  }

  const size_t slots_count_;
  std::unique_ptr<std::atomic<uint64_t>[]> slots_;
  std::atomic<uint64_t> base_{kNoBase};
};

}  // namespace vxlate::bench
