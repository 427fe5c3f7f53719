// Internal to engine/: the ordered index of one domain's mappings (extents),
// which MAP's no-overlap check, UNMAP's no-split check and the device-IOTLB
// domains' updates search. Control side only; readers never see it.
//
// Layout: a two-level B+tree. Extents sorted by first IOVA live in leaves of
// at most kLeafMax entries, keys apart from values (a search reads only key
// lines); a top level holds each leaf's lowest key, sorted, and the leaf.
// A search is a binary search in the top keys, then one in the leaf's keys.
// Inserting into a full leaf splits it in halves; an erase that leaves a
// leaf under kLeafMin entries merges it with a neighbour (when the two fit
// with kLeafMin to spare) or takes entries from one, so every leaf but a
// lone one stays at least kLeafMin full: memory is at most one leaf (~2 KiB)
// per kLeafMin extents, whatever order a guest maps and unmaps in. An insert
// or erase moves at most a leaf's entries. A split or merge also moves the
// top level's arrays (16 bytes per leaf): the price of two levels. Every
// leaf a split, merge or evening-out leaves behind is at least kLeafMin / 2
// inserts or erases from the next one, so about one request in 8 at most
// moves them. At the device's default cap of 2^20 mappings in one domain,
// leaves a quarter full, that is 1 MiB moved; at the ~1000 mappings of a
// netperf guest, 1 KiB.
//
// Why not std::map (what this replaced): a search there chases one node per
// level, ~2 log2(n) nodes from anywhere in the heap; a guest's recycled
// buffers are unmapped in no particular order, so under a data plane that
// evicts the control side's lines every search missed on most of its ~11
// levels at 1000 mappings (bench_engine BM_Remap: a moved buffer's MAP and
// UNMAP cost 2x a spare IOVA's). Here a search touches the top keys (hot:
// every search shares them) and a few lines of one leaf.
//
// Thread safety: none; owned by one domain and used only by the device's
// control thread. Allocation: only insert_after() and insert() allocate (a
// split's new leaf, the top level's growth), and they report failure instead
// of throwing, with nothing changed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace vxlate::engine::detail {

struct Extent {
  uint64_t first = 0;  // first IOVA
  uint64_t last = 0;   // inclusive
  uint64_t phys = 0;
  uint32_t flags = 0;
};

class ExtentIndex {
 public:
  // Entries per leaf: 64 keys are 8 lines, so a leaf search is a few loads;
  // a split or merge moves at most a leaf's worth.
  static constexpr uint32_t kLeafMax = 64;
  static constexpr uint32_t kLeafMin = kLeafMax / 4;

  ExtentIndex() = default;
  ~ExtentIndex();
  ExtentIndex(const ExtentIndex&) = delete;
  ExtentIndex& operator=(const ExtentIndex&) = delete;

  // Where an extent lies. Valid until the next insert or erase.
  struct Slot {
    uint32_t leaf = 0;
    uint32_t index = 0;
  };

  // The extent with the greatest first <= iova, and where it is: false when
  // none.
  bool find_le(uint64_t iova, Extent* out, Slot* at = nullptr) const noexcept;
  // The extent with the least first >= iova, and where it is: false when none.
  bool find_ge(uint64_t iova, Extent* out, Slot* at = nullptr) const noexcept;
  // Adds `e` right after the extent at *prev (nullptr: before every extent),
  // where e.first must sort (debug-checked): a caller that has just searched
  // for e's neighbour inserts without a second search. false: out of memory,
  // nothing changed.
  bool insert_after(const Slot* prev, const Extent& e) noexcept;
  // Removes the extent at `at`.
  void erase(Slot at) noexcept;
  // The same, searching first (tests, and callers without a slot): insert()
  // needs e.first not indexed yet (debug-checked); erase() returns false when
  // no extent starts at `first`.
  bool insert(const Extent& e) noexcept;
  bool erase(uint64_t first) noexcept;

  size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  size_t leaves() const noexcept { return leaves_.size(); }

  // Tests: whether the layout holds its invariants (sorted, leaves within
  // their bounds, the top keys each leaf's lowest, the count).
  bool check() const noexcept;

 private:
  struct Val {
    uint64_t last;
    uint64_t phys;
    uint32_t flags;
  };
  struct Leaf {
    uint32_t n = 0;
    uint64_t first[kLeafMax];
    Val val[kLeafMax];
    Extent at(uint32_t i) const noexcept { return Extent{first[i], val[i].last, val[i].phys, val[i].flags}; }
    void put(uint32_t i, const Extent& e) noexcept {
      first[i] = e.first;
      val[i] = Val{e.last, e.phys, e.flags};
    }
  };
  // Copies `count` entries from src at s to dst at d (the same leaf, and
  // overlapping, allowed); the caller sizes the leaves' n.
  static void move(Leaf& dst, uint32_t d, const Leaf& src, uint32_t s, uint32_t count) noexcept;

  // The leaf a key belongs to: the last whose lowest key is <= iova (leaf 0
  // for keys below every leaf's). Needs a leaf.
  size_t leaf_for(uint64_t iova) const noexcept;
  // Moves entries between leaves i and i + 1 (or merges them) after an erase
  // left leaf i or i + 1 under kLeafMin.
  void rebalance(size_t i) noexcept;

  std::vector<uint64_t> low_;                // low_[i]: leaves_[i]->first[0]
  std::vector<std::unique_ptr<Leaf>> leaves_;  // never an empty one
  size_t size_ = 0;
  // The leaf the last search ended in; checked against low_ before use, so
  // a stale one only costs its check.
  mutable size_t hint_ = 0;
};

}  // namespace vxlate::engine::detail
