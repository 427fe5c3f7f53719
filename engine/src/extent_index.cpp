#include "vxlate/engine/detail/extent_index.h"

#include <algorithm>
#include <cstring>
#include <new>

#include "vxlate/common/check.h"

namespace vxlate::engine::detail {

namespace {

// Binary searches without a branch on the keys (the compare picks the next
// base with a conditional move): a guest's IOVAs come in no order the branch
// predictor could learn, and a mispredicted step costs more than the load.
// The first index in a[0, n) whose key is >= key (lower) or > key (upper).
template <bool kUpper>
size_t search(const uint64_t* a, size_t n, uint64_t key) noexcept {
  if (n == 0) return 0;
  const uint64_t* base = a;
  while (n > 1) {
    const size_t half = n / 2;
    const bool right = kUpper ? base[half] <= key : base[half] < key;
    base = right ? base + half : base;
    n -= half;
  }
  return static_cast<size_t>(base - a) + (kUpper ? *base <= key : *base < key);
}

uint32_t leaf_lower(const uint64_t* a, uint32_t n, uint64_t key) noexcept {
  return static_cast<uint32_t>(search<false>(a, n, key));
}
uint32_t leaf_upper(const uint64_t* a, uint32_t n, uint64_t key) noexcept {
  return static_cast<uint32_t>(search<true>(a, n, key));
}

}  // namespace

ExtentIndex::~ExtentIndex() = default;

void ExtentIndex::move(Leaf& dst, uint32_t d, const Leaf& src, uint32_t s, uint32_t count) noexcept {
  std::memmove(dst.first + d, src.first + s, count * sizeof src.first[0]);
  std::memmove(dst.val + d, src.val + s, count * sizeof src.val[0]);
}

size_t ExtentIndex::leaf_for(uint64_t iova) const noexcept {
  // The leaf of the last search first: a driver maps and unmaps runs of
  // nearby IOVAs (its allocator hands them out in order).
  const size_t h = hint_;
  if (h < low_.size() && low_[h] <= iova && (h + 1 == low_.size() || iova < low_[h + 1])) return h;
  const size_t i = search<true>(low_.data(), low_.size(), iova);
  hint_ = i == 0 ? 0 : i - 1;
  return hint_;
}

bool ExtentIndex::find_le(uint64_t iova, Extent* out, Slot* at) const noexcept {
  if (leaves_.empty()) return false;
  const size_t i = leaf_for(iova);
  const Leaf& l = *leaves_[i];
  const uint32_t j = leaf_upper(l.first, l.n, iova);
  if (j == 0) return false;  // below every key (leaf 0 only)
  *out = l.at(j - 1);
  if (at != nullptr) *at = Slot{static_cast<uint32_t>(i), j - 1};
  return true;
}

bool ExtentIndex::find_ge(uint64_t iova, Extent* out, Slot* at) const noexcept {
  if (leaves_.empty()) return false;
  size_t i = leaf_for(iova);
  uint32_t j = leaf_lower(leaves_[i]->first, leaves_[i]->n, iova);
  if (j == leaves_[i]->n) {
    if (i + 1 == leaves_.size()) return false;
    ++i;
    j = 0;
  }
  *out = leaves_[i]->at(j);
  if (at != nullptr) *at = Slot{static_cast<uint32_t>(i), j};
  return true;
}

bool ExtentIndex::insert_after(const Slot* prev, const Extent& e) noexcept {
  if (leaves_.empty()) {
    VXLATE_DCHECK(prev == nullptr, "ExtentIndex::insert_after: a slot in an empty index");
    std::unique_ptr<Leaf> leaf;
    try {
      leaf.reset(new Leaf);
      low_.reserve(1);
      leaves_.reserve(1);
    } catch (const std::bad_alloc&) {
      return false;
    }
    leaf->put(0, e);
    leaf->n = 1;
    low_.push_back(e.first);
    leaves_.push_back(std::move(leaf));
    size_ = 1;
    return true;
  }
  size_t i = prev == nullptr ? 0 : prev->leaf;
  uint32_t j = prev == nullptr ? 0 : prev->index + 1;
  VXLATE_DCHECK(i < leaves_.size() && j <= leaves_[i]->n, "ExtentIndex::insert_after: a stale slot");
  VXLATE_DCHECK(j == 0 ? i == 0 : leaves_[i]->first[j - 1] < e.first,
                "ExtentIndex::insert_after: the extent sorts before the slot");
  VXLATE_DCHECK(j < leaves_[i]->n ? e.first < leaves_[i]->first[j] : i + 1 == leaves_.size() || e.first < low_[i + 1],
                "ExtentIndex::insert_after: the extent sorts after the next one");
  if (leaves_[i]->n == kLeafMax) {
    // Split: everything that can fail first.
    std::unique_ptr<Leaf> right;
    try {
      right.reset(new Leaf);
      low_.reserve(low_.size() + 1);
      leaves_.reserve(leaves_.size() + 1);
    } catch (const std::bad_alloc&) {
      return false;
    }
    Leaf& left = *leaves_[i];
    constexpr uint32_t kKeep = kLeafMax / 2;
    right->n = kLeafMax - kKeep;
    move(*right, 0, left, kKeep, right->n);
    left.n = kKeep;
    // No allocation: capacity reserved above.
    low_.insert(low_.begin() + static_cast<std::ptrdiff_t>(i) + 1, right->first[0]);
    leaves_.insert(leaves_.begin() + static_cast<std::ptrdiff_t>(i) + 1, std::move(right));
    if (j > kKeep) {
      ++i;
      j -= kKeep;
    }
  }
  Leaf& l = *leaves_[i];
  move(l, j + 1, l, j, l.n - j);
  l.put(j, e);
  ++l.n;
  if (j == 0) low_[i] = e.first;
  ++size_;
  return true;
}

void ExtentIndex::erase(Slot at) noexcept {
  const size_t i = at.leaf;
  VXLATE_DCHECK(i < leaves_.size() && at.index < leaves_[i]->n, "ExtentIndex::erase: a stale slot");
  Leaf& l = *leaves_[i];
  const uint32_t j = at.index;
  move(l, j, l, j + 1, l.n - j - 1);
  --l.n;
  --size_;
  if (l.n == 0) {  // a lone leaf (others stay at kLeafMin or more)
    low_.erase(low_.begin() + static_cast<std::ptrdiff_t>(i));
    leaves_.erase(leaves_.begin() + static_cast<std::ptrdiff_t>(i));
    return;
  }
  if (j == 0) low_[i] = l.first[0];
  if (l.n < kLeafMin && leaves_.size() > 1) rebalance(i > 0 ? i - 1 : i);
}

bool ExtentIndex::insert(const Extent& e) noexcept {
  Extent prev;
  Slot at;
  const bool has_prev = find_le(e.first, &prev, &at);
  VXLATE_DCHECK(!has_prev || prev.first != e.first, "ExtentIndex::insert: the extent's first IOVA is indexed already");
  return insert_after(has_prev ? &at : nullptr, e);
}

bool ExtentIndex::erase(uint64_t first) noexcept {
  Extent e;
  Slot at;
  if (!find_le(first, &e, &at) || e.first != first) return false;
  erase(at);
  return true;
}

void ExtentIndex::rebalance(size_t i) noexcept {
  Leaf& a = *leaves_[i];
  Leaf& b = *leaves_[i + 1];
  const uint32_t total = a.n + b.n;
  // Merge only when the result leaves room for kLeafMin inserts before it
  // splits again: no leaf left behind is one insert or erase from the next
  // split or merge, whatever a guest alternates.
  if (total <= kLeafMax - kLeafMin) {  // merge b into a
    move(a, a.n, b, 0, b.n);
    a.n = total;
    low_.erase(low_.begin() + static_cast<std::ptrdiff_t>(i) + 1);
    leaves_.erase(leaves_.begin() + static_cast<std::ptrdiff_t>(i) + 1);
    return;
  }
  // Even out: each ends with at least (kLeafMax - kLeafMin) / 2 > kLeafMin.
  const uint32_t want = total / 2;
  if (a.n < want) {  // b's first entries go to a's end
    const uint32_t k = want - a.n;
    move(a, a.n, b, 0, k);
    a.n += k;
    move(b, 0, b, k, b.n - k);
    b.n -= k;
  } else {  // a's last entries go to b's front
    const uint32_t k = a.n - want;
    move(b, k, b, 0, b.n);
    b.n += k;
    a.n -= k;
    move(b, 0, a, a.n, k);
  }
  low_[i + 1] = b.first[0];
}

bool ExtentIndex::check() const noexcept {
  if (low_.size() != leaves_.size()) return false;
  size_t count = 0;
  bool have_prev = false;
  uint64_t prev = 0;
  for (size_t i = 0; i < leaves_.size(); ++i) {
    const Leaf& l = *leaves_[i];
    if (l.n == 0 || l.n > kLeafMax || (leaves_.size() > 1 && l.n < kLeafMin)) return false;
    if (low_[i] != l.first[0]) return false;
    for (uint32_t j = 0; j < l.n; ++j) {
      if (have_prev && l.first[j] <= prev) return false;
      prev = l.first[j];
      have_prev = true;
    }
    count += l.n;
  }
  return count == size_;
}

}  // namespace vxlate::engine::detail
