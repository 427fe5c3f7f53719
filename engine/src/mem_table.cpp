// The guest memory table: set() runs on the control thread, snapshot()/find()
// and gpa_to_hva() on data-plane readers.
#include "vxlate/engine/mem_table.h"

#include <algorithm>
#include <new>

#include "segments.h"
#include "vxlate/common/range.h"

namespace vxlate::engine {

MemTable::~MemTable() { delete cur_.load(std::memory_order_relaxed); }

Status MemTable::set(std::span<const MemRegion> regions) noexcept {
  if (regions.size() > kMaxMemRegions) return Status::kInval;
  Snapshot* table = nullptr;
  try {
    table = new Snapshot{std::vector<MemRegion>(regions.begin(), regions.end())};
  } catch (const std::bad_alloc&) {
    return Status::kNoMem;
  }
  auto& r = table->regions;
  std::sort(r.begin(), r.end(), [](const MemRegion& a, const MemRegion& b) { return a.gpa < b.gpa; });
  uint64_t gpa_last = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    uint64_t hva_last = 0;
    const bool ok = range_last(r[i].gpa, r[i].size, &gpa_last) && range_last(r[i].hva, r[i].size, &hva_last) &&
                    (i + 1 == r.size() || r[i + 1].gpa > gpa_last);
    if (!ok) {
      delete table;
      return Status::kInval;
    }
  }
  table->version = ++versions_;
  // acq_rel: release publishes the new table (acquire in snapshot()).
  const Snapshot* old = cur_.exchange(table, std::memory_order_acq_rel);
  rcu_.synchronize();  // no reader still uses the old table
  delete old;
  return Status::kOk;
}

const MemRegion* MemTable::Snapshot::find(uint64_t gpa) const noexcept {
  // The last region starting at or below gpa, if gpa lies inside it.
  auto it = std::upper_bound(regions.begin(), regions.end(), gpa,
                             [](uint64_t g, const MemRegion& r) { return g < r.gpa; });
  if (it == regions.begin() || gpa - std::prev(it)->gpa >= std::prev(it)->size) return nullptr;
  return &*std::prev(it);
}

Status MemTable::gpa_to_hva(uint64_t gpa, uint64_t len, std::span<Segment> segs, size_t* nsegs) const noexcept {
  const MemRegion* first = nullptr;
  return translate(snapshot(), gpa, len, segs, nsegs, &first);
}

Status MemTable::translate(const Snapshot* mem, uint64_t gpa, uint64_t len, std::span<Segment> segs, size_t* nsegs,
                           const MemRegion** first) noexcept {
  *nsegs = 0;
  uint64_t last = 0;
  if (!range_last(gpa, len, &last)) return Status::kInval;
  size_t n = 0;
  for (uint64_t pos = gpa;;) {
    const MemRegion* reg = mem != nullptr ? mem->find(pos) : nullptr;
    if (reg == nullptr) return Status::kFault;
    if (pos == gpa) *first = reg;
    const uint64_t chunk_last = std::min(last, reg->gpa + (reg->size - 1));
    const uint64_t addr = reg->hva + (pos - reg->gpa);
    const uint64_t chunk = chunk_last - pos + 1;
    if (!detail::append_segment(segs, &n, addr, chunk)) return Status::kInval;
    if (chunk_last == last) break;
    pos = chunk_last + 1;
  }
  *nsegs = n;
  return Status::kOk;
}

Status MemTable::Cursor::search(const MemTable& table, const Snapshot* mem, uint64_t gpa, uint64_t len,
                                std::span<Segment> segs, size_t* nsegs) noexcept {
  const MemRegion* first = nullptr;
  const Status st = translate(mem, gpa, len, segs, nsegs, &first);
  // Remember where the translation began: a queue's next one is most likely
  // near it. A failed one leaves the memo as it was; the memo is used only
  // while its table is current (pointer and version), whatever happened since.
  if (st == Status::kOk) {
    table_ = &table;
    mem_ = mem;
    version_ = mem->version;
    region_ = first;
  }
  return st;
}

}  // namespace vxlate::engine
