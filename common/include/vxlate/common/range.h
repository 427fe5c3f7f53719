// vxlate/common/range.h: checked address-range arithmetic.
//
// Every (addr, size) pair that comes from a guest, a VMM or a caller goes through
// range_last() before use: it rejects size 0 and ranges whose last byte would
// wrap past 2^64. Names follow the project rule: `last` is inclusive, `end`
// exclusive.
//
// Thread safety: pure functions; safe from any thread.
#pragma once

#include <cstdint>

namespace vxlate {

// Computes the inclusive last byte of [addr, addr + size). Returns false (and
// leaves *last untouched) when size is 0 or the range wraps.
constexpr bool range_last(uint64_t addr, uint64_t size, uint64_t* last) noexcept {
  if (size == 0 || addr + (size - 1) < addr) return false;
  *last = addr + (size - 1);
  return true;
}

constexpr bool is_aligned(uint64_t v, uint64_t alignment) noexcept {
  return (v & (alignment - 1)) == 0;
}

}  // namespace vxlate
