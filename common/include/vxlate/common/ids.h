// vxlate/common/ids.h: strong id types, so a domain id is never passed where an
// endpoint id is expected. Both are the virtio-iommu wire's le32 values.
//
// Thread safety: plain values; safe from any thread.
#pragma once

#include <compare>
#include <cstdint>

namespace vxlate {

struct DomainId {
  uint32_t value;
  friend constexpr auto operator<=>(DomainId, DomainId) = default;
};

struct EndpointId {
  uint32_t value;
  friend constexpr auto operator<=>(EndpointId, EndpointId) = default;
};

}  // namespace vxlate
