// bench/iotlb/baselines/baseline.h: what every baseline IOTLB shares.
//
// The baselines are the caches vxlate's own IOTLB is benchmarked against, each
// written from a published description of a real design. All of them expose the
// same interface, so one templated benchmark drives them all:
//
//   static constexpr const char* kName;
//   explicit X(size_t capacity);                        // capacity in translations
//   void insert(uint64_t iova, uint64_t size, uint64_t uaddr, uint8_t perm);  // writer
//   void invalidate(uint64_t iova, uint64_t size);      // writer
//   size_t translate_burst(std::span<const uint64_t> iovas, uint8_t need,
//                          BaselineTranslation* out);   // reader, any thread
//
// Thread-safety contract, for every baseline:
//   - insert(), invalidate(): writer side; one control thread at a time.
//   - translate_burst(): reader side; any number of threads, concurrently with
//     the writer. out[i] = {host address of byte iovas[i], perm of the entry};
//     a miss or a permission fault gives out[i].perm = 0. Returns the number of
//     successful translations. A translation that starts after invalidate()
//     returned never sees what it removed.
//   - construction/destruction: not thread-safe.
//
// Page-granular baselines (tbb_hash_map, array_index, shared_versioned) cache one
// entry per 4 KiB page and require iova, size and uaddr of an insert to be 4 KiB
// aligned, as vhost-user IOTLB updates are in practice.
#pragma once

#include <cstddef>
#include <cstdint>

#include "vxlate/common/range.h"

namespace vxlate::bench {

struct BaselineTranslation {
  uint64_t out;
  uint8_t perm;
};

inline constexpr uint8_t kPermRead = 1;
inline constexpr uint8_t kPermWrite = 2;
inline constexpr uint8_t kPermReadWrite = kPermRead | kPermWrite;

inline constexpr unsigned kBaselinePageShift = 12;
inline constexpr uint64_t kBaselinePageSize = uint64_t{1} << kBaselinePageShift;
inline constexpr uint64_t kBaselinePageMask = kBaselinePageSize - 1;

using vxlate::range_last;  // size 0 and wrapping ranges rejected, as everywhere in vxlate

// An entry with `perm` serves an access needing `need` only if it grants all of it.
constexpr bool perm_allows(uint8_t perm, uint8_t need) noexcept {
  return perm != 0 && (perm & need) == need;
}

}  // namespace vxlate::bench
