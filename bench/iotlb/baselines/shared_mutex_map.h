// bench/iotlb/baselines/shared_mutex_map.h: an ordered map of ranges under a
// reader-writer lock taken per translation.
//
// Models the VMM-side designs, which take their lock once per translate call:
// QEMU's virtio-iommu (a GTree of mappings under the device mutex) and
// cloud-hypervisor's (a BTreeMap of mappings behind an RwLock, virtio-devices/src/
// iommu.rs). Here: std::map keyed by the
// first iova of a range, value {last, uaddr, perm}, ranges kept disjoint (an
// insert first drops whatever it overlaps, so the newest translation wins), found
// with upper_bound and one step back, under std::shared_mutex, read-locked per
// translation. Written from those descriptions, not from their code.
//
// Capacity is a hint only: the map is unbounded and nothing is evicted.
// invalidate() removes whole ranges that overlap (no trimming), as a cache may.
//
// Cost model: per translation a read lock and unlock (two atomic RMWs on the one
// line every reader shares) plus an O(log n) red-black tree descent of dependent
// loads through heap nodes. Readers block while the writer holds the lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <span>

#include "baselines/baseline.h"

namespace vxlate::bench {

class SharedMutexMap {
 public:
  static constexpr const char* kName = "shared_mutex_map";

  // Not thread-safe. `capacity` is ignored: the map grows without bound.
  explicit SharedMutexMap(size_t /*capacity*/) {}
  SharedMutexMap(const SharedMutexMap&) = delete;
  SharedMutexMap& operator=(const SharedMutexMap&) = delete;

  // Writer side. Caches [iova, iova + size) -> uaddr, replacing every cached range
  // it overlaps. Size 0 or a wrapping range is ignored.
  void insert(uint64_t iova, uint64_t size, uint64_t uaddr, uint8_t perm) {
    uint64_t last;
    if (!range_last(iova, size, &last)) return;
    std::unique_lock lock(mutex_);
    erase_overlapping(iova, last);
    ranges_.emplace(iova, Range{last, uaddr, perm});
  }

  // Writer side. Removes every cached range overlapping [iova, iova + size), whole.
  void invalidate(uint64_t iova, uint64_t size) {
    uint64_t last;
    if (!range_last(iova, size, &last)) return;
    std::unique_lock lock(mutex_);
    erase_overlapping(iova, last);
  }

  // Reader side, any thread; blocks while the writer holds the lock. One read lock
  // per translation, as the modelled VMMs take it per translate call.
  size_t translate_burst(std::span<const uint64_t> iovas, uint8_t need,
                         BaselineTranslation* out) noexcept {
    size_t hits = 0;
    for (size_t i = 0; i < iovas.size(); ++i) {
      out[i] = translate(iovas[i], need);
      hits += out[i].perm != 0;
    }
    return hits;
  }

 private:
  struct Range {
    uint64_t last;
    uint64_t uaddr;
    uint8_t perm;
  };

  BaselineTranslation translate(uint64_t iova, uint8_t need) const noexcept {
    std::shared_lock lock(mutex_);
    auto it = ranges_.upper_bound(iova);  // first range starting above iova
    if (it == ranges_.begin()) return {0, 0};
    --it;  // the only range that can contain iova: ranges are disjoint
    if (iova > it->second.last || !perm_allows(it->second.perm, need)) return {0, 0};
    return {it->second.uaddr + (iova - it->first), it->second.perm};
  }

  // Ranges are disjoint and sorted, so those overlapping [iova, last] are the run
  // just before the first range starting above last.
  void erase_overlapping(uint64_t iova, uint64_t last) {
    auto end = ranges_.upper_bound(last);
    auto begin = end;
    while (begin != ranges_.begin() && std::prev(begin)->second.last >= iova) --begin;
    ranges_.erase(begin, end);
  }

  mutable std::shared_mutex mutex_;
  std::map<uint64_t, Range> ranges_;
};

}  // namespace vxlate::bench
