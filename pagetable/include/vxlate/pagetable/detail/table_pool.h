// Internal to pagetable/: the allocator behind one IoPageTable's 4 KiB tables.
//
// Why not malloc: glibc serves aligned_alloc(4096, 4096) by over-allocating and
// trimming, which leaves a ~4 KiB fragment resident beside every table (measured:
// 2.0 bytes of RSS per table byte; tbbmalloc's scalable_aligned_malloc: 2.5).
// Tables here are carved from 2 MiB anonymous mappings instead, so a dense table
// costs its 4 KiB and nothing more, and memory is populated only when touched.
//
// A freed table goes to a small hot list (kept resident, reused first by map/unmap
// churn) or, past that, is returned to the kernel with MADV_DONTNEED and kept on
// a cold list: its address stays reserved and reads as zeros when reused. A hot
// table its giver knew to be all zeros (a table unmap emptied) is marked so, and
// take(true) hands it out without zeroing it again: a lazy guest's spare-IOVA
// UNMAP and MAP empty and refill one leaf table per pair, and the 4 KiB memset
// was a fifth of the pair's time (bench/RESULTS.md). Chunks
// go back to the kernel when the pool is destroyed. Under ASan, free tables are
// poisoned, so a reader walking a table freed too early is reported.
//
// Thread safety: none; owned by one page table and used only by its writer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace vxlate::pagetable::detail {

class TablePool {
 public:
  static constexpr size_t kTableBytes = 4096;
  static constexpr size_t kChunkBytes = size_t{2} << 20;
  static constexpr size_t kTablesPerChunk = kChunkBytes / kTableBytes;
  // Free tables kept resident for reuse; bounds what map/unmap churn holds on to
  // (256 KiB per page table). Past it, each free costs an madvise() and each
  // reuse a page fault: ~2 us, measured when 32-page unmap batches over sparse
  // IOVAs emptied 32 leaf tables at a time with a limit of 16.
  static constexpr size_t kHotMax = 64;

  TablePool() = default;
  ~TablePool();
  TablePool(const TablePool&) = delete;
  TablePool& operator=(const TablePool&) = delete;

  // A table, zero-filled when `zero` (otherwise contents are unspecified);
  // nullptr when memory runs out.
  void* take(bool zero) noexcept;
  // Returns a table taken from this pool. Never allocates. `zero`: the caller
  // knows every byte of it is 0 (debug builds check it when it is taken).
  void give(void* table, bool zero = false) noexcept;
  // Makes sure the next `n` take() calls cannot fail.
  bool reserve(size_t n) noexcept;

  size_t tables_in_use() const noexcept { return in_use_; }

 private:
  bool add_chunk() noexcept;

  std::vector<void*> chunks_;
  char* bump_ = nullptr;  // next never-used table in the newest chunk
  size_t bump_left_ = 0;
  // Resident, stale contents unless marked: a table's address (4 KiB aligned)
  // | kZeroMark when it was given back all zeros.
  static constexpr uintptr_t kZeroMark = 1;
  std::vector<uintptr_t> hot_;
  std::vector<void*> cold_;  // MADV_DONTNEED'd: zero when touched again
  size_t in_use_ = 0;
};

}  // namespace vxlate::pagetable::detail
