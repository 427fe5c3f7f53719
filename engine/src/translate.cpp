// The Device's reader side: iova -> hva, iova -> gpa, the per-burst
// translations of Device::Burst and the fault events they report. Runs on
// data-plane lcores, each an online reader of the Device's Rcu: wait-free, no
// allocation, no store to a shared line on success.
#include <algorithm>

#include "segments.h"
#include "vxlate/common/range.h"
#include "vxlate/engine/device.h"

namespace vxlate::engine {

namespace {

// The checks every translation makes of its arguments: a non-empty range
// that does not wrap, and read and/or write access only.
bool valid_access(uint64_t iova, uint64_t len, uint8_t access, uint64_t* last) noexcept {
  return range_last(iova, len, last) && (access & pagetable::kPermReadWrite) != 0 &&
         (access & ~pagetable::kPermReadWrite) == 0;
}

}  // namespace

Status Device::iova_to_hva(uint32_t reader, EndpointId ep, uint64_t iova, uint64_t len, uint8_t access,
                           std::span<Segment> segs, size_t* nsegs, FaultEvent* fault) noexcept {
  return translate(reader, ep, iova, len, access, segs, nsegs, true, fault);
}

Status Device::iova_to_gpa(uint32_t reader, EndpointId ep, uint64_t iova, uint64_t len, uint8_t access,
                           std::span<Segment> segs, size_t* nsegs, FaultEvent* fault) noexcept {
  return translate(reader, ep, iova, len, access, segs, nsegs, false, fault);
}

uint8_t Device::resolve(uint32_t ep, const Domain** dom) const noexcept {
  // acquire: pairs with the release in publish_endpoint().
  *dom = ep_table_[ep - cfg_.endpoint_first].load(std::memory_order_acquire);
  if (*dom != nullptr) return (*dom)->bypass ? Burst::kIdentity : Burst::kTranslate;
  // Spec: an unattached endpoint bypasses iff BYPASS_CONFIG and bypass = 1.
  return cfg_.feature_bypass_config && bypass_.load(std::memory_order_relaxed) == 1 ? Burst::kIdentity
                                                                                   : Burst::kNone;
}

Status Device::translate(uint32_t reader, EndpointId ep, uint64_t iova, uint64_t len, uint8_t access,
                         std::span<Segment> segs, size_t* nsegs, bool to_hva, FaultEvent* fault) noexcept {
  VXLATE_DCHECK(reader < rcu_.max_readers(), "Device: reader id out of range");
  VXLATE_DCHECK(rcu_.is_online(reader), "Device: a reader must be online (Iotlb::online) to translate");
  *nsegs = 0;
  uint64_t last = 0;
  if (!valid_access(iova, len, access, &last) || !endpoint_exists(ep.value)) return Status::kInval;
  const Domain* dom = nullptr;
  const uint8_t mode = resolve(ep.value, &dom);
  iotlb::Iotlb::View view;
  if (mode == Burst::kTranslate) view.begin(tlb_, reader, DomainId{dom->tag}, dom->pt);
  const MemRegion* last_region = nullptr;
  const Status st = walk_range(mode, view, to_hva, to_hva ? mem_.snapshot() : nullptr, &last_region, reader,
                               ep.value, iova, last, access, segs, nsegs, fault);
  if (mode == Burst::kTranslate) view.end();
  return st;
}

Status Device::walk_range(uint8_t mode, iotlb::Iotlb::View& view, bool to_hva, const MemTable::Snapshot* mem,
                          const MemRegion** last_region, uint32_t reader, uint32_t ep, uint64_t iova, uint64_t last,
                          uint8_t access, std::span<Segment> segs, size_t* nsegs, FaultEvent* fault) noexcept {
  *nsegs = 0;
  if (mode == Burst::kNone) return report_fault(reader, kFaultReasonDomain, access, ep, iova, fault);
  size_t n = 0;
  uint64_t pos = iova;
  for (;;) {
    uint64_t gpa = pos;
    uint64_t chunk_last = last;
    if (mode == Burst::kTranslate) {
      pagetable::Translation t;
      if (view.translate(pos, access, &t) != Status::kOk)
        return report_fault(reader, kFaultReasonMapping, access, ep, pos, fault);
      gpa = t.out;
      chunk_last = std::min(last, pos | (t.leaf_size - 1));
    }
    uint64_t addr = gpa;
    if (to_hva) {
      const MemRegion* reg = *last_region;
      if (reg == nullptr || gpa - reg->gpa >= reg->size) {
        reg = mem != nullptr ? mem->find(gpa) : nullptr;
        if (reg == nullptr) {
          // No guest memory behind this byte: the access faults as a whole.
          return report_fault(reader, kFaultReasonMapping, access, ep, pos, fault);
        }
        *last_region = reg;
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

// --- Device::Burst -----------------------------------------------------------

void Device::Burst::begin_slow(Device& dev, uint32_t reader, EndpointId ep, const MemTable::Snapshot* mem) noexcept {
  const uint64_t version = mem != nullptr ? mem->version : 0;
  // The last region used stays when the memory table is the one the previous
  // burst used: a burst of one chain then starts on the fast path instead of
  // searching the table for its first translation.
  const bool same_mem = dev_ == &dev && mem != nullptr && mem == mem_ && version == stamp_.mem_version;
  const MemRegion* const prev_region = last_region_;
  dev_ = &dev;
  reader_ = reader;
  ep_ = ep;
  dom_ = nullptr;
  stamp_ = Stamp{};
  mem_ = mem;
  stamp_.mem_version = version;
  last_region_ = same_mem ? prev_region : nullptr;
  if (!dev.endpoint_exists(ep.value)) return;  // kNone: iova_to_hva() says INVAL
  stamp_.mode = dev.resolve(ep.value, &dom_);
  if (stamp_.mode == kTranslate) {
    view_.begin(dev.tlb_, reader, DomainId{dom_->tag}, dom_->pt);
    stamp_.tag = dom_->tag;
    stamp_.epoch = view_.epoch();
  }
}

Status Device::Burst::iova_to_hva_slow(uint64_t iova, uint64_t len, uint8_t access, std::span<Segment> segs,
                                       size_t* nsegs, FaultEvent* fault) noexcept {
  VXLATE_DCHECK(dev_ != nullptr, "Device::Burst: iova_to_hva() before begin()");
  *nsegs = 0;
  uint64_t last = 0;
  if (!valid_access(iova, len, access, &last) || !dev_->endpoint_exists(ep_.value)) return Status::kInval;
  return dev_->walk_range(stamp_.mode, view_, true, mem_, &last_region_, reader_, ep_.value, iova, last, access, segs,
                          nsegs, fault);
}

const uint8_t* Device::Burst::peek_miss(uint64_t iova, uint64_t len, uint8_t access) noexcept {
  constexpr uint64_t kOffsetMask = pagetable::kPageSize - 1;
  const MemRegion* reg = last_region_;
  if (stamp_.mode != kTranslate || reg == nullptr || len - 1 >= pagetable::kPageSize - (iova & kOffsetMask) ||
      access == 0 || (access & ~pagetable::kPermReadWrite) != 0)
    return nullptr;
  // The View's miss path: walks the domain's page table and fills this
  // reader's cache; a fault (unmapped, or without `access`) is not reported.
  pagetable::Translation t;
  if (view_.fill(iova, access, &t) != Status::kOk) return nullptr;
  const uint64_t gpa = t.out;
  if (gpa - reg->gpa >= reg->size || len - 1 > reg->size - 1 - (gpa - reg->gpa)) return nullptr;
  return reinterpret_cast<const uint8_t*>(reg->hva + (gpa - reg->gpa));
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
