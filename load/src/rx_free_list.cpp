#include "rx_free_list.h"

#include <bit>

namespace vxlate::load::detail {

void RxFreeList::reset(uint32_t slots, bool random_order) {
  bits_.assign((uint64_t{slots} + 63) / 64, 0);
  slots_ = slots;
  random_ = random_order;
  count_ = 0;
  next_ = 0;
}

void RxFreeList::put(uint32_t slot) {
  if (slot >= slots_) throw std::logic_error("netperf: receive buffer slot out of range");
  uint64_t& word = bits_[slot / 64];
  const uint64_t bit = uint64_t{1} << (slot % 64);
  if ((word & bit) != 0) throw std::logic_error("netperf: receive buffer freed twice");
  word |= bit;
  ++count_;
}

uint32_t RxFreeList::take(uint64_t r) {
  if (count_ == 0) throw std::logic_error("netperf: no free receive buffer");
  const auto words = static_cast<uint32_t>(bits_.size());
  uint32_t w = 0;
  uint64_t b = 0;
  if (random_) {
    // The k-th free slot: whole words skipped by their counts, then the k
    // lowest free slots of the word that holds it dropped.
    uint32_t k = static_cast<uint32_t>(r % count_);
    for (;; ++w) {
      const auto n = static_cast<uint32_t>(std::popcount(bits_[w]));
      if (k < n) break;
      k -= n;
    }
    b = bits_[w];
    for (; k > 0; --k) b &= b - 1;
  } else {
    // The first free slot at or after next_, wrapping: at most words + 1
    // words looked at (the first one's part below next_ last).
    w = next_ / 64;
    b = bits_[w] & (~uint64_t{0} << (next_ % 64));
    for (uint32_t i = 0; b == 0 && i < words; ++i) {
      w = w + 1 == words ? 0 : w + 1;
      b = bits_[w];
    }
  }
  const uint32_t slot = w * 64 + static_cast<uint32_t>(std::countr_zero(b));
  bits_[w] &= ~(uint64_t{1} << (slot % 64));
  --count_;
  next_ = slot + 1 == slots_ ? 0 : slot + 1;
  return slot;
}

}  // namespace vxlate::load::detail
