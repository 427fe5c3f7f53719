// vxlate/engine/mem_table.h: the guest memory table, guest-physical to host
// virtual (gpa -> hva).
//
// The table is an immutable, sorted array of disjoint regions, published
// through one atomic pointer. The control thread replaces it whole (the VMM's
// SET_MEM_TABLE, memory hot-plug): it builds and checks the new array, swaps
// the pointer, waits one grace period so that no reader still holds the old
// array, then frees it. Readers load the pointer once per translation and
// binary-search the regions: no lock, no store. Against a per-region RCU list
// or an interval tree this trades O(regions) copying on the rare replace for a
// read path that is one acquire load and a search over at most kMaxMemRegions.
//
// Thread-safety contract:
//   - set(): control side (one thread per MemTable); blocks for a grace period.
//   - snapshot(), gpa_to_hva(), Cursor::gpa_to_hva(): reader side (an online
//     reader of the Rcu; wait-free, no allocation). A snapshot stays valid
//     until the reader's next quiescent report. A Cursor belongs to one reader
//     thread and one MemTable and stores only to itself.
//   - construction/destruction: setup only; no reader may be online.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "vxlate/common/rcu.h"
#include "vxlate/common/status.h"

namespace vxlate::engine {

// Guest memory regions (vhost-user's SET_MEM_TABLE carries at most 8; QEMU
// with memory hotplug uses up to 509).
inline constexpr size_t kMaxMemRegions = 512;

// A guest RAM region: guest-physical [gpa, gpa + size) at host virtual hva.
struct MemRegion {
  uint64_t gpa;
  uint64_t size;
  uint64_t hva;
};

// One piece of a translated DMA: contiguous in the output address space.
struct Segment {
  uint64_t addr;
  uint64_t len;
};

class MemTable {
 public:
  // One published table: regions sorted by gpa, disjoint, none empty or wrapping.
  struct Snapshot {
    std::vector<MemRegion> regions;
    // Which set() published this table (1, 2, ...): a reader that keeps an
    // hva across bursts compares it, since a freed table's address may be
    // reused by the next one.
    uint64_t version = 0;
    // Reader side: the region holding gpa, or nullptr.
    const MemRegion* find(uint64_t gpa) const noexcept;
  };

  explicit MemTable(Rcu& rcu) noexcept : rcu_(rcu) {}
  ~MemTable();
  MemTable(const MemTable&) = delete;
  MemTable& operator=(const MemTable&) = delete;

  // Control side: replaces the table, waits one grace period, frees the old
  // one. INVAL: overlapping, empty or wrapping regions, or more than
  // kMaxMemRegions. NOMEM: allocation failed. Nothing changes on error.
  Status set(std::span<const MemRegion> regions) noexcept;

  // Reader side: the current table (nullptr before the first set()).
  const Snapshot* snapshot() const noexcept {
    return cur_.load(std::memory_order_acquire);  // pairs with the release in set()
  }
  // Reader side: gpa -> hva for `len` bytes at `gpa`. OK: *nsegs segments,
  // split at region boundaries. FAULT: a byte outside guest memory. INVAL: len
  // 0, the range wraps, or more segments needed than segs holds.
  Status gpa_to_hva(uint64_t gpa, uint64_t len, std::span<Segment> segs, size_t* nsegs) const noexcept;

  // Reader side: gpa_to_hva() with the last region found remembered, for a
  // reader that translates one queue's descriptors and buffers, which mostly
  // lie in one region. A translation inside that region is inline: the
  // table's pointer and version loaded and a range check, no call and no
  // search. Anything else (another region, a region boundary, a fault, a bad
  // argument, a new table) goes to the search, with the same results as
  // gpa_to_hva(). The memo outlives quiescent reports: it is used only while
  // the table it came from is the current one (same pointer and version: a
  // freed table's address may come back with a later version), and a current
  // table is alive for an online reader.
  class Cursor {
   public:
    Status gpa_to_hva(const MemTable& table, uint64_t gpa, uint64_t len, std::span<Segment> segs,
                      size_t* nsegs) noexcept {
      const Snapshot* mem = table.snapshot();
      const MemRegion* reg = region_;
      // len - 1 wraps for len 0, which the search refuses; gpa - reg->gpa <
      // size leaves room for at least one byte, so the second check cannot
      // wrap.
      if (reg != nullptr && mem == mem_ && &table == table_ && mem->version == version_ && !segs.empty() &&
          gpa - reg->gpa < reg->size && len - 1 < reg->size - (gpa - reg->gpa)) [[likely]] {
        segs[0] = Segment{reg->hva + (gpa - reg->gpa), len};
        *nsegs = 1;
        return Status::kOk;
      }
      return search(table, mem, gpa, len, segs, nsegs);
    }

   private:
    Status search(const MemTable& table, const Snapshot* mem, uint64_t gpa, uint64_t len, std::span<Segment> segs,
                  size_t* nsegs) noexcept;

    const MemTable* table_ = nullptr;
    const Snapshot* mem_ = nullptr;
    uint64_t version_ = 0;
    const MemRegion* region_ = nullptr;  // in *mem_; nullptr: nothing remembered
  };

 private:
  // gpa_to_hva() in one table; *first: the region of gpa's byte (on OK).
  static Status translate(const Snapshot* mem, uint64_t gpa, uint64_t len, std::span<Segment> segs, size_t* nsegs,
                          const MemRegion** first) noexcept;

  Rcu& rcu_;
  uint64_t versions_ = 0;  // control only: tables published so far
  std::atomic<const Snapshot*> cur_{nullptr};  // release in set(), acquire in snapshot()
};

}  // namespace vxlate::engine
