#include "vxlate/pagetable/io_pgtable.h"

#include <algorithm>
#include <new>

#include "vxlate/common/range.h"

namespace vxlate::pagetable {

using namespace detail;

namespace {

constexpr uint64_t count_of(uint64_t e) { return (e & kCountMask) >> kCountShift; }

// The writer owns every entry it updates; readers only load. Count changes are
// release stores too: a reader's acquire of the new value must still
// synchronise with the store that published the child (C++20 release sequences
// no longer include plain stores).
void add_count(std::atomic<uint64_t>& holder, int delta) noexcept {
  const uint64_t e = holder.load(std::memory_order_relaxed);  // writer's own value
  const uint64_t c = count_of(e) + static_cast<uint64_t>(static_cast<int64_t>(delta));
  holder.store((e & ~kCountMask) | (c << kCountShift), std::memory_order_release);
}

constexpr bool leaf_allowed(unsigned level) { return level >= 1; }

}  // namespace

IoPageTable::IoPageTable(Rcu& rcu)
    : dq_(rcu, &IoPageTable::free_retired, this), root_(static_cast<Node*>(pool_.take(true))) {
  if (root_ == nullptr) throw std::bad_alloc();
  root_entry_.store(reinterpret_cast<uint64_t>(root_) | kTable | kValid, std::memory_order_relaxed);
}

// --- table reclamation -------------------------------------------------------

void IoPageTable::free_subtree(Node* n, unsigned level) noexcept {
  if (level + 1 < kLevels) {
    for (unsigned i = 0; i < kEntriesPerTable; ++i) {
      const uint64_t e = n->e[i].load(std::memory_order_relaxed);  // unlinked: no writer
      if ((e & kValid) && (e & kTable)) free_subtree(node_of(e), level + 1);
    }
  }
  pool_.give(n);
}

void IoPageTable::free_retired(void* ctx, void* ptr, uintptr_t arg) noexcept {
  auto* pt = static_cast<IoPageTable*>(ctx);
  auto* n = static_cast<Node*>(ptr);
  if (arg & kRetireEmpty)
    pt->pool_.give(n, true);  // no children, all zeros
  else
    pt->free_subtree(n, static_cast<unsigned>(arg));
}

void IoPageTable::retire(Node* n, unsigned level, bool empty) noexcept {
  dq_.retire(n, level | (empty ? kRetireEmpty : 0));
}

size_t IoPageTable::reclaim() noexcept { return dq_.reclaim(); }

void IoPageTable::drain() noexcept { dq_.drain(); }

// --- map -----------------------------------------------------------------------

bool IoPageTable::range_free(const Node* n, unsigned level, uint64_t iova, uint64_t last) const noexcept {
  const uint64_t span_mask = (uint64_t{1} << level_shift(level)) - 1;
  for (unsigned idx = level_index(iova, level);; ++idx) {
    const uint64_t chunk_last = std::min(last, iova | span_mask);
    const uint64_t e = n->e[idx].load(std::memory_order_relaxed);  // writer's own data
    if (e & kValid) {
      if (!(e & kTable)) return false;
      // Every reachable table holds at least one valid entry, so a table wholly
      // inside the range means the range is not free.
      if ((iova & span_mask) == 0 && chunk_last == (iova | span_mask)) return false;
      if (!range_free(node_of(e), level + 1, iova, chunk_last)) return false;
    }
    if (chunk_last == last) return true;
    iova = chunk_last + 1;
  }
}

Status IoPageTable::map(uint64_t iova, uint64_t out, uint64_t size, uint8_t perms) noexcept {
  OwnerCheck::Scope owner(writer_, "IoPageTable::map: writer calls must come from one thread at a time");
  uint64_t last = 0;
  uint64_t out_last = 0;
  if (!range_last(iova, size, &last) || !range_last(out, size, &out_last) || last > kIovaLast ||
      !is_aligned(iova | out | size, kPageSize))
    return Status::kRange;
  if (perms == 0 || (perms & ~kPermReadWrite) != 0) return Status::kInval;
  if (!dq_.empty()) dq_.reclaim();
  const uint64_t leaf_bits = (uint64_t{perms} << kPermShift) | kValid;
  Status s;
  if (size != kPageSize || !map_page(iova, out | leaf_bits, &s)) s = map_range(iova, last, out, leaf_bits);
  debug_check();
  return s;
}

Status IoPageTable::map_range(uint64_t iova, uint64_t last, uint64_t out, uint64_t leaf_bits) noexcept {
  if (!range_free(root_, 0, iova, last)) return Status::kInval;
  const Status s = map_in(root_entry_, root_, 0, iova, last, out, leaf_bits);
  if (s != Status::kOk) {
    // Only NOMEM gets here, and the range was free before: removing all of it
    // removes exactly what this call added. No split can be needed.
    unmap_in(root_entry_, root_, 0, iova, last);
  }
  return s;
}

// One 4 KiB page, the common request (a driver maps and unmaps its buffers
// a page at a time): one descent, where range_free() and map_in() take one
// each, recursively. Answers (true, *s) when every table on the way exists;
// false, with nothing changed, when one is missing: map_in() allocates it.
bool IoPageTable::map_page(uint64_t iova, uint64_t leaf, Status* s) noexcept {
  std::atomic<uint64_t>* holder = &root_entry_;
  Node* n = root_;
  for (unsigned level = 0; level + 1 < kLevels; ++level) {
    std::atomic<uint64_t>& slot = n->e[level_index(iova, level)];
    const uint64_t e = slot.load(std::memory_order_relaxed);  // writer's own data
    if (!(e & kValid)) return false;
    if (!(e & kTable)) {
      *s = Status::kInval;  // inside a block leaf: mapped already
      return true;
    }
    holder = &slot;
    n = node_of(e);
  }
  std::atomic<uint64_t>& slot = n->e[level_index(iova, kLevels - 1)];
  if (slot.load(std::memory_order_relaxed) & kValid) {
    *s = Status::kInval;
  } else {
    // release: pairs with the acquire in walk(), as map_in()'s leaf store.
    slot.store(leaf, std::memory_order_release);
    add_count(*holder, +1);
    *s = Status::kOk;
  }
  return true;
}

Status IoPageTable::map_in(std::atomic<uint64_t>& holder, Node* n, unsigned level, uint64_t iova,
                           uint64_t last, uint64_t out, uint64_t leaf_bits) noexcept {
  const uint64_t span_mask = (uint64_t{1} << level_shift(level)) - 1;
  for (unsigned idx = level_index(iova, level);; ++idx) {
    const uint64_t chunk_last = std::min(last, iova | span_mask);
    std::atomic<uint64_t>& slot = n->e[idx];
    const uint64_t e = slot.load(std::memory_order_relaxed);  // writer's own data
    if (leaf_allowed(level) && ((iova | out) & span_mask) == 0 && chunk_last == (iova | span_mask)) {
      // range_free() guarantees e == 0. release: pairs with the acquire in walk().
      slot.store(out | leaf_bits, std::memory_order_release);
      add_count(holder, +1);
    } else {
      Node* child;
      if (!(e & kValid)) {
        child = take_node(true);
        if (child == nullptr) return Status::kNoMem;
        // release: the zeroed table is visible before its address (walk()).
        slot.store(reinterpret_cast<uint64_t>(child) | kTable | kValid, std::memory_order_release);
        add_count(holder, +1);
      } else {
        child = node_of(e);
      }
      const Status s = map_in(slot, child, level + 1, iova, chunk_last, out, leaf_bits);
      if (s != Status::kOk) return s;
    }
    if (chunk_last == last) return Status::kOk;
    out += chunk_last - iova + 1;
    iova = chunk_last + 1;
  }
}

// --- unmap ---------------------------------------------------------------------

// How many tables unmap(iova..last) will create by splitting block leaves:
// only the leaves holding the first and the last page can be cut.
size_t IoPageTable::splits_needed(uint64_t iova, uint64_t last) const noexcept {
  size_t need = 0;
  Translation t{};
  if (walk(iova, &t) && t.leaf_size > kLeaf4K) {
    const uint64_t base = iova & ~(t.leaf_size - 1);
    if (base != iova || last - base < t.leaf_size - 1) need += t.leaf_size == kLeaf1G ? 2 : 1;
  }
  if (walk(last, &t) && t.leaf_size > kLeaf4K) {
    const uint64_t leaf_last = last | (t.leaf_size - 1);
    if (leaf_last != last || last - iova < t.leaf_size - 1) need += t.leaf_size == kLeaf1G ? 2 : 1;
  }
  return need;
}

Status IoPageTable::unmap(uint64_t iova, uint64_t size) noexcept {
  OwnerCheck::Scope owner(writer_, "IoPageTable::unmap: writer calls must come from one thread at a time");
  uint64_t last = 0;
  if (!range_last(iova, size, &last) || last > kIovaLast || !is_aligned(iova | size, kPageSize))
    return Status::kRange;
  if (!dq_.empty()) dq_.reclaim();
  Status s = Status::kOk;
  if (size != kPageSize || !unmap_page(iova)) s = unmap_range(iova, last);
  debug_check();
  return s;
}

Status IoPageTable::unmap_range(uint64_t iova, uint64_t last) noexcept {
  if (!pool_.reserve(splits_needed(iova, last))) return Status::kNoMem;
  unmap_in(root_entry_, root_, 0, iova, last);
  return Status::kOk;
}

// One 4 KiB page: one descent, no split check. Tables it empties are
// unlinked and retired bottom-up, as unmap_in() does on its way back. false,
// with nothing changed, when the page lies in a block leaf: unmap_in()
// splits it.
bool IoPageTable::unmap_page(uint64_t iova) noexcept {
  // holders[l]: the entry pointing to nodes[l], the level-l table on the way.
  std::atomic<uint64_t>* holders[kLevels];
  Node* nodes[kLevels];
  holders[0] = &root_entry_;
  nodes[0] = root_;
  for (unsigned level = 0; level + 1 < kLevels; ++level) {
    std::atomic<uint64_t>& slot = nodes[level]->e[level_index(iova, level)];
    const uint64_t e = slot.load(std::memory_order_relaxed);  // writer's own data
    if (!(e & kValid)) return true;  // nothing mapped there
    if (!(e & kTable)) return false;
    holders[level + 1] = &slot;
    nodes[level + 1] = node_of(e);
  }
  std::atomic<uint64_t>& slot = nodes[kLevels - 1]->e[level_index(iova, kLevels - 1)];
  if (!(slot.load(std::memory_order_relaxed) & kValid)) return true;
  // release: pairs with the acquire in walk(); a reader that still loaded the
  // old entry may use it until its next quiescent state.
  slot.store(0, std::memory_order_release);
  add_count(*holders[kLevels - 1], -1);
  for (unsigned level = kLevels - 1; level > 0; --level) {
    if (count_of(holders[level]->load(std::memory_order_relaxed)) != 0) break;
    holders[level]->store(0, std::memory_order_release);  // pairs with the acquire in walk()
    add_count(*holders[level - 1], -1);
    retire(nodes[level], level, true);  // count 0: every entry was cleared
  }
  return true;
}

void IoPageTable::unmap_in(std::atomic<uint64_t>& holder, Node* n, unsigned level, uint64_t iova,
                           uint64_t last) noexcept {
  const uint64_t span_mask = (uint64_t{1} << level_shift(level)) - 1;
  for (unsigned idx = level_index(iova, level);; ++idx) {
    const uint64_t chunk_last = std::min(last, iova | span_mask);
    const bool whole = (iova & span_mask) == 0 && chunk_last == (iova | span_mask);
    std::atomic<uint64_t>& slot = n->e[idx];
    uint64_t e = slot.load(std::memory_order_relaxed);  // writer's own data
    if ((e & kValid) && whole) {
      // release: pairs with the acquire in walk(); a reader that still loaded
      // the old entry may use it until its next quiescent state.
      slot.store(0, std::memory_order_release);
      add_count(holder, -1);
      if (e & kTable) retire(node_of(e), level + 1, false);
    } else if (e & kValid) {
      if (!(e & kTable)) {
        // Split the block: a full child table with the same output and perms,
        // published in one store. splits_needed() reserved the node.
        Node* child = take_node(false);
        const uint64_t sub = uint64_t{1} << level_shift(level + 1);
        const uint64_t base = e & kAddrMask;
        const uint64_t bits = e & ~kAddrMask;
        for (unsigned i = 0; i < kEntriesPerTable; ++i)
          child->e[i].store((base + i * sub) | bits, std::memory_order_relaxed);  // published below
        e = reinterpret_cast<uint64_t>(child) | (uint64_t{kEntriesPerTable} << kCountShift) | kTable | kValid;
        // release: the filled table is visible before its address (walk()).
        slot.store(e, std::memory_order_release);
      }
      unmap_in(slot, node_of(e), level + 1, iova, chunk_last);
      if (count_of(slot.load(std::memory_order_relaxed)) == 0) {
        slot.store(0, std::memory_order_release);  // pairs with the acquire in walk()
        add_count(holder, -1);
        retire(node_of(e), level + 1, true);  // count 0: every entry was cleared
      }
    }
    if (chunk_last == last) return;
    iova = chunk_last + 1;
  }
}

// --- consistency -----------------------------------------------------------------

bool IoPageTable::verify_in(const Node* n, unsigned level, unsigned expected_count) const noexcept {
  unsigned valid = 0;
  for (unsigned i = 0; i < kEntriesPerTable; ++i) {
    const uint64_t e = n->e[i].load(std::memory_order_relaxed);
    if (!(e & kValid)) {
      if (e != 0) return false;
      continue;
    }
    ++valid;
    if (e & kTable) {
      if (level + 1 >= kLevels) return false;
      const unsigned c = static_cast<unsigned>(count_of(e));
      if (c == 0 || !verify_in(node_of(e), level + 1, c)) return false;
    } else {
      const uint64_t leaf_mask = (uint64_t{1} << level_shift(level)) - 1;
      if (!leaf_allowed(level) || (e & leaf_mask & kAddrMask) != 0) return false;
      if (((e >> kPermShift) & kPermReadWrite) == 0 || (e & ~kAddrMask & ~uint64_t{0xf}) != 0) return false;
    }
  }
  return valid == expected_count;
}

bool IoPageTable::verify() const noexcept {
  return verify_in(root_, 0, static_cast<unsigned>(count_of(root_entry_.load(std::memory_order_relaxed))));
}

void IoPageTable::debug_check() const noexcept {
#ifdef VXLATE_DEBUG_CHECKS
  if (!verify()) std::abort();
#endif
}

}  // namespace vxlate::pagetable
