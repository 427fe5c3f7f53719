// bench/iotlb/baselines/tbb_hash_map.h: the IOTLB every C++ team would try first.
//
// Models a page-granular IOTLB on tbb::concurrent_hash_map, as oneTBB documents it:
// key = 4 KiB page number of the iova, value = {host page, perm}. An insert of a
// range inserts (or overwrites) one element per page; a lookup is find() with a
// const_accessor, which holds a read lock on the element while the value is read;
// invalidate erases per page.
//
// Capacity is a hint only: the map is unbounded and nothing is ever evicted (the
// constructor passes no size; a pre-sized table would only move rehash cost). The
// writer also keeps a std::set of the cached page numbers, writer-only, so that an
// invalidation of a huge range (a VMM flushing a whole address space) costs the
// pages actually cached, not one erase per page of the range; iterating the
// concurrent map itself is not safe while readers find() (lookups may rehash
// buckets).
//
// Cost model: per translation a hash, a bucket read lock and an element read lock
// (spin_rw_mutex: an atomic RMW to take, one to release, on lines every reader of
// that bucket/element shares), then the node's value behind one more pointer.
// Readers do not block on other readers, but do spin while the writer holds the
// bucket or element.
#pragma once

#include <tbb/concurrent_hash_map.h>

#include <cstddef>
#include <cstdint>
#include <set>
#include <span>

#include "baselines/baseline.h"

namespace vxlate::bench {

class TbbHashMap {
 public:
  static constexpr const char* kName = "tbb_hash_map";

  // Not thread-safe. `capacity` is ignored: the map grows without bound.
  explicit TbbHashMap(size_t /*capacity*/) {}
  TbbHashMap(const TbbHashMap&) = delete;
  TbbHashMap& operator=(const TbbHashMap&) = delete;

  // Writer side. Caches each 4 KiB page of [iova, iova + size), overwriting what
  // was cached for it. iova, size and uaddr must be 4 KiB aligned.
  void insert(uint64_t iova, uint64_t size, uint64_t uaddr, uint8_t perm) {
    uint64_t last;
    if (!range_last(iova, size, &last)) return;
    const uint64_t first_page = iova >> kBaselinePageShift;
    const uint64_t last_page = last >> kBaselinePageShift;
    for (uint64_t page = first_page;; ++page) {
      {
        Map::accessor acc;  // write lock on the element while it is filled
        map_.insert(acc, page);
        acc->second = Value{uaddr + ((page - first_page) << kBaselinePageShift), perm};
      }
      pages_.insert(page);
      if (page == last_page) break;
    }
  }

  // Writer side. Erases every cached page overlapping [iova, iova + size).
  void invalidate(uint64_t iova, uint64_t size) {
    uint64_t last;
    if (!range_last(iova, size, &last)) return;
    const uint64_t last_page = last >> kBaselinePageShift;
    auto it = pages_.lower_bound(iova >> kBaselinePageShift);
    while (it != pages_.end() && *it <= last_page) {
      map_.erase(*it);
      it = pages_.erase(it);
    }
  }

  // Reader side, any thread. One find() per iova.
  size_t translate_burst(std::span<const uint64_t> iovas, uint8_t need,
                         BaselineTranslation* out) noexcept {
    size_t hits = 0;
    for (size_t i = 0; i < iovas.size(); ++i) {
      out[i] = {0, 0};
      Map::const_accessor acc;  // read lock on the element until acc goes out of scope
      if (!map_.find(acc, iovas[i] >> kBaselinePageShift)) continue;
      if (!perm_allows(acc->second.perm, need)) continue;
      out[i] = {acc->second.uaddr_page | (iovas[i] & kBaselinePageMask), acc->second.perm};
      ++hits;
    }
    return hits;
  }

 private:
  struct Value {
    uint64_t uaddr_page = 0;
    uint8_t perm = 0;
  };
  using Map = tbb::concurrent_hash_map<uint64_t, Value>;

  Map map_;
  std::set<uint64_t> pages_;  // writer-only index of the keys in map_
};

}  // namespace vxlate::bench
