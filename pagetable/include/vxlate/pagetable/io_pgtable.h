// vxlate/pagetable/io_pgtable.h: one radix I/O page table per domain.
//
// Layout: 4 levels of 512 64-bit entries (4 KiB tables), a 48-bit input (IOVA)
// space, leaves at 4 KiB (level 3), 2 MiB (level 2) and 1 GiB (level 1). The
// output is any 64-bit address (host virtual or guest physical) aligned to its
// leaf size. An entry is 0 (invalid), a leaf (output address | perms | valid), or
// a table (child address | valid-entry count of the child | table | valid).
//
// Readers: walk() is wait-free. It does one acquire load per level and nothing
// else: no lock, no read-modify-write, no store to shared memory. Each acquire
// pairs with the release store by which the writer published that entry, so a
// reader that sees a table pointer sees the table fully built.
//
// Writers: map() and unmap() are serialised per table by the caller (the
// engine's per-domain control thread). map() uses the largest leaf that the
// alignment of iova, output and remaining size allows, and is all-or-nothing: it
// first checks that the whole range is free, then maps, and on running out of
// memory removes what it added. unmap() removes exactly the given range and may
// split a 1 GiB or 2 MiB leaf (vhost-user IOTLB invalidations can be arbitrary):
// the replacement table is filled completely and then swapped in with one
// release store, so a reader sees either the old block or the new table, both
// correct for every byte that stays mapped. The nodes a split may need are set
// aside before anything changes, so unmap() fails with NOMEM without effect.
// A single 4 KiB page (a driver's buffer) takes one descent in either call
// when the tables on its way exist and hold no block leaf; anything else takes
// the general, recursive path, with the same results.
//
// Reclamation: a table that becomes empty is unlinked and handed to an
// RcuDeferQueue; it goes back to the table's pool (detail/table_pool.h) only
// after a grace period of the table's Rcu, so a reader that loaded its address
// before the unlink keeps walking valid memory until its next quiescent state.
// Unmapping a range that covers a whole subtree unlinks it with one store and
// frees it later, so large unmaps cost O(1) on the path the guest waits for.
//
// Counts: the number of valid entries in a table lives in the low bits of the
// entry that points to it, not in the table. Tables stay exactly 4 KiB, which
// keeps dense mappings at 8 bytes of table per 4 KiB page plus 1/512 for the
// upper levels (a header per table would cost more than the 1.01x budget).
//
// Trade-off against a sorted list or tree of ranges (DPDK vhost, QEMU): a walk is
// four dependent loads whatever the number of mappings, and readers never lock;
// the price is up to 4 KiB per populated 2 MiB of sparse IOVA space.
//
// Thread-safety contract (the fixed tags of docs/design.md):
//   - Reader side: walk(); any thread registered with the table's Rcu and
//     online, wait-free. Results may be used until the reader's next quiescent
//     state.
//   - Writer side: map(), unmap(), reclaim(), drain(), verify(), table_bytes();
//     one thread at a time per table (not internally locked; map/unmap checked
//     in debug builds).
//   - Setup only: construction and destruction; no reader may walk during
//     destruction.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "vxlate/common/check.h"
#include "vxlate/common/rcu.h"
#include "vxlate/common/status.h"
#include "vxlate/pagetable/detail/table_pool.h"

namespace vxlate::pagetable {

inline constexpr unsigned kLevels = 4;
inline constexpr unsigned kEntriesPerTable = 512;
inline constexpr unsigned kIovaBits = 48;
inline constexpr uint64_t kIovaLast = (uint64_t{1} << kIovaBits) - 1;
inline constexpr uint64_t kPageSize = 4096;
inline constexpr uint64_t kTableBytes = kEntriesPerTable * sizeof(uint64_t);

// Leaf sizes, largest first; the level of a leaf is 1, 2 or 3 respectively.
inline constexpr uint64_t kLeaf1G = uint64_t{1} << 30;
inline constexpr uint64_t kLeaf2M = uint64_t{1} << 21;
inline constexpr uint64_t kLeaf4K = uint64_t{1} << 12;

enum Perm : uint8_t {
  kPermRead = 1,
  kPermWrite = 2,
  kPermReadWrite = 3,
};

struct Translation {
  uint64_t out;        // output address of the byte at the looked-up IOVA
  uint64_t leaf_size;  // kLeaf4K, kLeaf2M or kLeaf1G
  uint8_t perms;       // Perm bits
};

namespace detail {
struct alignas(kTableBytes) Node {
  std::atomic<uint64_t> e[kEntriesPerTable];
};
static_assert(sizeof(Node) == kTableBytes);

inline constexpr uint64_t kValid = 1u << 0;
inline constexpr uint64_t kTable = 1u << 1;
inline constexpr unsigned kPermShift = 2;  // leaf: perms in bits 2..3
inline constexpr unsigned kCountShift = 2;  // table: child count in bits 2..11
inline constexpr uint64_t kCountMask = uint64_t{0x3ff} << kCountShift;
inline constexpr uint64_t kAddrMask = ~uint64_t{0xfff};

constexpr unsigned level_shift(unsigned level) { return 39 - 9 * level; }
constexpr unsigned level_index(uint64_t iova, unsigned level) {
  return static_cast<unsigned>(iova >> level_shift(level)) & (kEntriesPerTable - 1);
}
}  // namespace detail

class IoPageTable {
 public:
  // Tables one unmap() may need for splits: both ends of the range may cut a
  // 1 GiB leaf (1 GiB -> 2 MiB table -> 4 KiB table).
  static constexpr size_t kSplitReserve = 4;

  // Setup only; throws std::bad_alloc if the root table cannot be allocated.
  explicit IoPageTable(Rcu& rcu);
  // Teardown, not thread-safe: frees every table at once; no reader may walk.
  ~IoPageTable() = default;
  IoPageTable(const IoPageTable&) = delete;
  IoPageTable& operator=(const IoPageTable&) = delete;

  // Reader side, wait-free. True and *t filled when `iova` is mapped.
  bool walk(uint64_t iova, Translation* t) const noexcept;

  // Writer side. Maps [iova, iova + size) to [out, out + size) with `perms`.
  // RANGE: size 0, iova/out/size not 4 KiB-aligned, the input range leaves the
  //   48-bit space or the output range wraps.
  // INVAL: perms empty or with unknown bits; any page of the range already mapped.
  // NOMEM: a table could not be allocated (nothing is left mapped).
  Status map(uint64_t iova, uint64_t out, uint64_t size, uint8_t perms) noexcept;

  // Writer side. Removes every translation in [iova, iova + size); unmapped parts
  // of the range are fine. Readers may keep using the removed translations until
  // their next quiescent state: callers that promise "no access after unmap" wait
  // for a grace period (Rcu::synchronize) before completing.
  // RANGE: size 0, not 4 KiB-aligned, or outside the 48-bit space.
  // NOMEM: a block leaf had to be split and no table could be allocated
  //   (nothing is changed).
  Status unmap(uint64_t iova, uint64_t size) noexcept;

  // Writer side, non-blocking: frees tables whose grace period has ended.
  // map() and unmap() call it too. Returns the number of subtrees freed.
  size_t reclaim() noexcept;
  // Writer side, blocking: waits one grace period and frees all retired tables.
  void drain() noexcept;

  // Writer side. Bytes of tables in use: the live tree plus tables retired and
  // waiting for a grace period. Free tables the pool keeps resident for reuse
  // (at most TablePool::kHotMax) are not counted.
  size_t table_bytes() const noexcept { return pool_.tables_in_use() * kTableBytes; }
  size_t retired_pending() const noexcept { return dq_.pending(); }

  // Writer side, O(tables): checks that every table count equals its number of
  // valid entries, no reachable table is empty, and every leaf is well formed.
  // Tests call it; with VXLATE_DEBUG_CHECKS every map/unmap does.
  bool verify() const noexcept;

 private:
  using Node = detail::Node;

  static Node* node_of(uint64_t e) noexcept { return reinterpret_cast<Node*>(e & detail::kAddrMask); }

  Node* take_node(bool zero) noexcept { return static_cast<Node*>(pool_.take(zero)); }
  void free_subtree(Node* n, unsigned level) noexcept;
  static void free_retired(void* ctx, void* ptr, uintptr_t arg) noexcept;
  // Frees n (a table at `level`) and its subtree after a grace period.
  // `empty`: n holds no valid entry, so every byte of it is 0 (invalid
  // entries are 0), and the pool may hand it out again without zeroing it.
  void retire(Node* n, unsigned level, bool empty) noexcept;
  static constexpr uintptr_t kRetireEmpty = 1u << 8;  // free_retired's arg: level | kRetireEmpty

  bool range_free(const Node* n, unsigned level, uint64_t iova, uint64_t last) const noexcept;
  Status map_in(std::atomic<uint64_t>& holder, Node* n, unsigned level, uint64_t iova,
                uint64_t last, uint64_t out, uint64_t leaf_bits) noexcept;
  void unmap_in(std::atomic<uint64_t>& holder, Node* n, unsigned level, uint64_t iova,
                uint64_t last) noexcept;
  size_t splits_needed(uint64_t iova, uint64_t last) const noexcept;
  // Single-page fast paths of map() and unmap() (false: take the general
  // one), and the general ones, out of line so that the fast paths do not
  // pay for their frames.
  bool map_page(uint64_t iova, uint64_t leaf, Status* s) noexcept;
  bool unmap_page(uint64_t iova) noexcept;
  [[gnu::noinline]] Status map_range(uint64_t iova, uint64_t last, uint64_t out, uint64_t leaf_bits) noexcept;
  [[gnu::noinline]] Status unmap_range(uint64_t iova, uint64_t last) noexcept;
  bool verify_in(const Node* n, unsigned level, unsigned expected_count) const noexcept;
  void debug_check() const noexcept;

  // Writer-private.
  detail::TablePool pool_;
  // The root's count lives here, in an entry shaped like any other table entry,
  // so the writer code is the same at every level. Readers never load it.
  std::atomic<uint64_t> root_entry_;
  RcuDeferQueue dq_;  // declared after pool_: its teardown gives tables back to it
  OwnerCheck writer_;  // debug builds: one writer call at a time

  // Reader-visible and immutable after construction: its own cache line.
  alignas(64) Node* const root_;
};

inline bool IoPageTable::walk(uint64_t iova, Translation* t) const noexcept {
  using namespace detail;
  if (iova > kIovaLast) [[unlikely]]
    return false;
  const Node* n = root_;
  for (unsigned level = 0; level < kLevels; ++level) {
    // acquire: pairs with the release stores in map_in() and the split in
    // unmap_in() that published this entry and the table it points to.
    const uint64_t e = n->e[level_index(iova, level)].load(std::memory_order_acquire);
    if (!(e & kValid)) return false;
    if (!(e & kTable)) {
      const uint64_t offset_mask = (uint64_t{1} << level_shift(level)) - 1;
      t->out = (e & kAddrMask) + (iova & offset_mask);
      t->leaf_size = offset_mask + 1;
      t->perms = static_cast<uint8_t>((e >> kPermShift) & kPermReadWrite);
      return true;
    }
    n = node_of(e);
  }
  return false;  // level-3 entries are always leaves
}

}  // namespace vxlate::pagetable
