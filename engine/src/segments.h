// engine/src/segments.h (internal): building a translation's segment list,
// shared by the IOVA and the guest-physical translations. Reader side.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "vxlate/engine/mem_table.h"

namespace vxlate::engine::detail {

// Appends [addr, addr + len) to segs[0, *n), merging with the last segment when
// contiguous; false when a new segment is needed and segs is full.
inline bool append_segment(std::span<Segment> segs, size_t* n, uint64_t addr, uint64_t len) noexcept {
  if (*n > 0 && segs[*n - 1].addr + segs[*n - 1].len == addr) {
    segs[*n - 1].len += len;
    return true;
  }
  if (*n == segs.size()) return false;
  segs[(*n)++] = Segment{addr, len};
  return true;
}

}  // namespace vxlate::engine::detail
