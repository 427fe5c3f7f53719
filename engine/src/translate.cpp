// The Device's reader side: iova -> hva, iova -> gpa and the fault events they
// report. Runs on data-plane lcores, each an online reader of the Device's Rcu:
// wait-free, no allocation, no store to a shared line on success.
#include <algorithm>

#include "segments.h"
#include "vxlate/common/range.h"
#include "vxlate/engine/device.h"

namespace vxlate::engine {

Status Device::iova_to_hva(uint32_t reader, EndpointId ep, uint64_t iova, uint64_t len, uint8_t access,
                           std::span<Segment> segs, size_t* nsegs, FaultEvent* fault) noexcept {
  return translate(reader, ep, iova, len, access, segs, nsegs, true, fault);
}

Status Device::iova_to_gpa(uint32_t reader, EndpointId ep, uint64_t iova, uint64_t len, uint8_t access,
                           std::span<Segment> segs, size_t* nsegs, FaultEvent* fault) noexcept {
  return translate(reader, ep, iova, len, access, segs, nsegs, false, fault);
}

Status Device::translate(uint32_t reader, EndpointId ep, uint64_t iova, uint64_t len, uint8_t access,
                         std::span<Segment> segs, size_t* nsegs, bool to_hva, FaultEvent* fault) noexcept {
  VXLATE_DCHECK(reader < rcu_.max_readers(), "Device: reader id out of range");
  VXLATE_DCHECK(rcu_.is_online(reader), "Device: a reader must be online (Iotlb::online) to translate");
  *nsegs = 0;
  uint64_t last = 0;
  if (!range_last(iova, len, &last) || (access & pagetable::kPermReadWrite) == 0 ||
      (access & ~pagetable::kPermReadWrite) != 0)
    return Status::kInval;
  if (!endpoint_exists(ep.value)) return Status::kInval;
  // acquire: pairs with the release in publish_endpoint().
  const Domain* dom = ep_table_[ep.value - cfg_.endpoint_first].load(std::memory_order_acquire);
  bool identity = false;
  if (dom == nullptr) {
    // Spec: an unattached endpoint bypasses iff BYPASS_CONFIG and bypass = 1.
    if (!(cfg_.feature_bypass_config && bypass_.load(std::memory_order_relaxed) == 1)) {
      return report_fault(reader, kFaultReasonDomain, access, ep.value, iova, fault);
    }
    identity = true;
  } else {
    identity = dom->bypass;
  }
  const MemTable::Snapshot* mem = to_hva ? mem_.snapshot() : nullptr;
  size_t n = 0;
  uint64_t pos = iova;
  for (;;) {
    uint64_t gpa = pos;
    uint64_t chunk_last = last;
    if (!identity) {
      pagetable::Translation t;
      if (tlb_.translate(reader, DomainId{dom->tag}, dom->pt, pos, access, &t) != Status::kOk) {
        return report_fault(reader, kFaultReasonMapping, access, ep.value, pos, fault);
      }
      gpa = t.out;
      chunk_last = std::min(last, pos | (t.leaf_size - 1));
    }
    uint64_t addr = gpa;
    if (to_hva) {
      const MemRegion* reg = mem != nullptr ? mem->find(gpa) : nullptr;
      if (reg == nullptr) {
        // No guest memory behind this byte: the access faults as a whole.
        return report_fault(reader, kFaultReasonMapping, access, ep.value, pos, fault);
      }
      const uint64_t left_in_region = reg->gpa + (reg->size - 1) - gpa;  // bytes after gpa
      if (left_in_region < chunk_last - pos) chunk_last = pos + left_in_region;
      addr = reg->hva + (gpa - reg->gpa);
    }
    const uint64_t chunk = chunk_last - pos + 1;
    if (!detail::append_segment(segs, &n, addr, chunk)) return Status::kInval;
    if (chunk_last == last) break;
    pos = chunk_last + 1;
  }
  *nsegs = n;
  return Status::kOk;
}

Status Device::report_fault(uint32_t reader, uint8_t reason, uint8_t access, uint32_t ep, uint64_t iova,
                            FaultEvent* fault) noexcept {
  uint32_t flags = kFaultFlagAddress;
  if (access & pagetable::kPermRead) flags |= kFaultFlagRead;
  if (access & pagetable::kPermWrite) flags |= kFaultFlagWrite;
  const FaultEvent event{reason, flags, ep, iova};
  if (fault != nullptr) *fault = event;
  faults_.report(reader, event);
  return Status::kFault;
}

}  // namespace vxlate::engine
