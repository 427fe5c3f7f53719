#include "vxlate/pagetable/detail/table_pool.h"

#include <sys/mman.h>

#include <cstring>
#include <new>

#include "vxlate/common/check.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define VXLATE_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define VXLATE_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define VXLATE_POISON(p, n) ((void)(p), (void)(n))
#define VXLATE_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace vxlate::pagetable::detail {

namespace {

[[maybe_unused]] bool is_zero(const void* t) noexcept {
  const auto* w = static_cast<const uint64_t*>(t);
  for (size_t i = 0; i < TablePool::kTableBytes / sizeof *w; ++i)
    if (w[i] != 0) return false;
  return true;
}

}  // namespace

TablePool::~TablePool() {
  for (void* c : chunks_) {
    VXLATE_UNPOISON(c, kChunkBytes);
    munmap(c, kChunkBytes);
  }
}

bool TablePool::add_chunk() noexcept {
  void* c = mmap(nullptr, kChunkBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (c == MAP_FAILED) return false;
  try {
    // Sized up front so that give() never allocates: every table of every chunk
    // fits on either list.
    chunks_.push_back(c);
    cold_.reserve(chunks_.size() * kTablesPerChunk);
    hot_.reserve(kHotMax);
  } catch (const std::bad_alloc&) {
    if (!chunks_.empty() && chunks_.back() == c) chunks_.pop_back();
    munmap(c, kChunkBytes);
    return false;
  }
  VXLATE_POISON(c, kChunkBytes);
  // reserve() may add a chunk before the last one is used up: keep its rest.
  for (; bump_left_ > 0; --bump_left_, bump_ += kTableBytes) cold_.push_back(bump_);
  bump_ = static_cast<char*>(c);
  bump_left_ = kTablesPerChunk;
  return true;
}

void* TablePool::take(bool zero) noexcept {
  void* t;
  if (!hot_.empty()) {
    const uintptr_t h = hot_.back();
    hot_.pop_back();
    t = reinterpret_cast<void*>(h & ~kZeroMark);
    VXLATE_UNPOISON(t, kTableBytes);
    if (zero) {
      if (!(h & kZeroMark)) {
        std::memset(t, 0, kTableBytes);
      } else {
        VXLATE_DCHECK(is_zero(t), "TablePool: a table given back as zeros was not");
      }
    }
  } else {
    if (cold_.empty() && bump_left_ == 0 && !add_chunk()) return nullptr;
    if (!cold_.empty()) {
      t = cold_.back();
      cold_.pop_back();
    } else {
      t = bump_;
      bump_ += kTableBytes;
      --bump_left_;
    }
    VXLATE_UNPOISON(t, kTableBytes);  // zero already: fresh or MADV_DONTNEED'd
  }
  ++in_use_;
  return t;
}

void TablePool::give(void* t, bool zero) noexcept {
  --in_use_;
  if (hot_.size() < kHotMax) {
    hot_.push_back(reinterpret_cast<uintptr_t>(t) | (zero ? kZeroMark : 0));  // capacity reserved in add_chunk()
  } else {
    madvise(t, kTableBytes, MADV_DONTNEED);
    cold_.push_back(t);  // capacity reserved in add_chunk()
  }
  VXLATE_POISON(t, kTableBytes);
}

bool TablePool::reserve(size_t n) noexcept {
  while (hot_.size() + cold_.size() + bump_left_ < n)
    if (!add_chunk()) return false;
  return true;
}

}  // namespace vxlate::pagetable::detail
