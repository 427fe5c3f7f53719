// The Device as a device IOTLB (vhost-user's IOTLB_MSG): the VMM owns the
// IOMMU and pushes translations (UPDATE) and invalidations; the Device caches
// them in one private domain per endpoint, so the data path translates them
// exactly like virtio-iommu mappings (IOTLB in front of a page table). Control
// side, on the device's control thread.
//
// A cache may always forget more than it is told: an INVALIDATE removes every
// cached mapping it touches, whole (an UPDATE is one IOMMU page, so this
// rarely removes more than asked), and an UPDATE that overlaps stale entries
// replaces them. Either waits one grace period when it removed anything, so
// that on return no reader holds or is still using a removed translation.
#include <algorithm>

#include "vxlate/common/range.h"
#include "vxlate/engine/device.h"

namespace vxlate::engine {

Status Device::iotlb_domain(EndpointId ep, Domain** dom) noexcept {
  DomainId d{0};
  if (!endpoint_domain(ep, &d)) {
    // The endpoint's private domain carries the endpoint's id.
    if (const Status s = attach(wire::attach_req(ep.value, ep.value)); s != Status::kOk) return s;
    d = DomainId{ep.value};
  }
  auto it = domains_.find(d.value);
  if (it == domains_.end() || it->second->bypass) return Status::kInval;
  *dom = it->second.get();
  return Status::kOk;
}

size_t Device::drop_extents(Domain& dom, uint64_t start, uint64_t last) noexcept {
  // From the mapping around `start`, if there is one, to the last that starts by `last`.
  detail::Extent e;
  uint64_t from = start;
  if (dom.extents.find_le(start, &e) && e.last >= start) from = e.first;
  size_t n = 0;
  detail::ExtentIndex::Slot at;
  while (dom.extents.find_ge(from, &e, &at) && e.first <= last) {
    remove_extent(dom, e, at);
    ++n;
  }
  return n;
}

void Device::remove_extent(Domain& dom, const detail::Extent& e, detail::ExtentIndex::Slot at) noexcept {
  if (e.flags & (kMapFlagRead | kMapFlagWrite)) {
    const uint64_t size = e.last - e.first + 1;
    const size_t before = dom.pt.table_bytes();
    (void)dom.pt.unmap(e.first, size);  // whole leaves of one mapping: cannot fail
    retally(dom, before);
    tlb_.add_invalidate(DomainId{dom.tag}, e.first, size);
  }
  dom.extents.erase(at);
  --mappings_;
}

Status Device::iotlb_update(EndpointId ep, uint64_t iova, uint64_t size, uint64_t gpa, uint8_t perms) noexcept {
  OwnerCheck::Scope owner(control_, "Device::iotlb_update: control calls must come from one thread at a time");
  uint64_t last = 0;
  if (!range_last(iova, size, &last) || (perms & pagetable::kPermReadWrite) == 0 ||
      (perms & ~pagetable::kPermReadWrite) != 0)
    return Status::kInval;
  if (!endpoint_exists(ep.value)) return Status::kNoEnt;
  Domain* dom = nullptr;
  if (const Status s = iotlb_domain(ep, &dom); s != Status::kOk) return s;
  const uint32_t flags = ((perms & pagetable::kPermRead) ? kMapFlagRead : 0) |
                         ((perms & pagetable::kPermWrite) ? kMapFlagWrite : 0);
  // The same translation again (a MISS raced with the VMM's own prefetch): nothing to do.
  if (detail::Extent e; dom->extents.find_le(iova, &e) && e.first == iova && e.last == last && e.phys == gpa &&
                        e.flags == flags)
    return Status::kOk;
  // Stale entries under the new one go first, and no reader may keep them.
  if (drop_extents(*dom, iova, last) != 0) sync();
  Status s = map(wire::map_req(ep.value, iova, last, gpa, flags));
  if (s == Status::kNoMem && !dom->extents.empty()) {
    // Full: a cache evicts. Everything of this endpoint goes, then one retry.
    drop_extents(*dom, 0, UINT64_MAX);
    sync();
    s = map(wire::map_req(ep.value, iova, last, gpa, flags));
  }
  return s;
}

Status Device::iotlb_invalidate(EndpointId ep, uint64_t iova, uint64_t size) noexcept {
  OwnerCheck::Scope owner(control_, "Device::iotlb_invalidate: control calls must come from one thread at a time");
  if (!endpoint_exists(ep.value)) return Status::kNoEnt;
  // vhost-user: size 0 means the whole space, and an end past 2^64 saturates
  // (QEMU's upper IOMMU section invalidates [0xfef00000, 2^64)); an
  // invalidation is never ignored for its range.
  uint64_t last = UINT64_MAX;
  if (size == 0) iova = 0;
  else if (!range_last(iova, size, &last)) last = UINT64_MAX;
  DomainId d{0};
  if (!endpoint_domain(ep, &d)) return Status::kOk;  // nothing cached
  auto it = domains_.find(d.value);
  if (it == domains_.end() || it->second->bypass) return Status::kOk;
  // Nothing removed: no reader can hold a translation of the range (every
  // earlier removal was followed by its grace period).
  if (drop_extents(*it->second, iova, last) != 0) sync();
  return Status::kOk;
}

bool Device::iotlb_maps(EndpointId ep, uint64_t iova, uint8_t access) const noexcept {
  DomainId d{0};
  if (!endpoint_domain(ep, &d)) return false;
  auto it = domains_.find(d.value);
  if (it == domains_.end() || it->second->bypass) return false;
  detail::Extent e;
  if (!it->second->extents.find_le(iova, &e) || e.last < iova) return false;
  return (access & ~map_perms(e.flags)) == 0;
}

Status Device::iotlb_translate(EndpointId ep, uint64_t iova, uint64_t len, uint8_t access, Segment* out) const noexcept {
  uint64_t last = 0;
  if (len == 0 || !range_last(iova, len, &last)) return Status::kInval;
  DomainId d{0};
  if (!endpoint_exists(ep.value) || !endpoint_domain(ep, &d)) return Status::kFault;
  auto it = domains_.find(d.value);
  if (it == domains_.end() || it->second->bypass) return Status::kFault;
  // Entry after entry (a VMM sends one per IOMMU page, and a ring may span
  // several), each with the access and continuing the last one's guest
  // addresses: [iova, last] is then one guest range. At most one step per
  // entry, and entries cover at least a granule each.
  detail::Extent e;
  uint64_t gpa = 0;
  for (uint64_t pos = iova;;) {
    if (!it->second->extents.find_le(pos, &e) || e.last < pos) return Status::kFault;
    if ((access & ~map_perms(e.flags)) != 0) return Status::kFault;
    const uint64_t at = e.phys + (pos - e.first);
    if (pos == iova) gpa = at;
    else if (at != gpa + (pos - iova)) return Status::kFault;
    if (e.last >= last) break;
    pos = e.last + 1;
  }
  // The control side replaces the memory table itself, so the one it reads
  // here cannot be retired under it.
  size_t n = 0;
  if (mem_.gpa_to_hva(gpa, len, std::span<Segment>(out, 1), &n) != Status::kOk || n != 1) return Status::kFault;
  return Status::kOk;
}

void Device::iotlb_flush(EndpointId ep) noexcept {
  (void)iotlb_invalidate(ep, 0, 0);
}

}  // namespace vxlate::engine
