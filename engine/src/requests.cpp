// The Device's control side: requests, config space, domain lifetime and the
// guest memory table's replacement. Runs on the device's control thread (one
// at a time per Device, checked by control_ in debug builds).
#include "vxlate/engine/device.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <new>
#include <stdexcept>

#include "vxlate/common/range.h"

namespace vxlate::engine {

namespace {

template <size_t N>
bool all_zero(const uint8_t (&b)[N]) {
  return std::all_of(std::begin(b), std::end(b), [](uint8_t x) { return x == 0; });
}

// An upper bound on the table bytes a map of `size` bytes at (virt, phys) can
// add: one table per 512 leaves of the largest leaf the alignment allows, the
// partial tables at both ends of every level, and the levels above.
uint64_t map_table_estimate(uint64_t virt, uint64_t phys, uint64_t size) {
  // log2 of the bytes one leaf table covers (a shift: a 64-bit divide costs
  // tens of cycles on every MAP).
  constexpr auto covered = [](uint64_t leaf) { return std::countr_zero(leaf * pagetable::kEntriesPerTable); };
  int shift = covered(pagetable::kLeaf4K);
  if (is_aligned(virt | phys, pagetable::kLeaf2M)) shift = covered(pagetable::kLeaf2M);
  if (is_aligned(virt | phys, pagetable::kLeaf1G)) shift = covered(pagetable::kLeaf1G);
  const uint64_t leaf_tables = (size >> shift) + 2;
  return (leaf_tables + leaf_tables / pagetable::kEntriesPerTable + 8) * pagetable::kTableBytes;
}

size_t readable_size(uint8_t type) {
  switch (type) {
    case kReqAttach: return kAttachSize;
    case kReqDetach: return kDetachSize;
    case kReqMap: return kMapSize;
    case kReqUnmap: return kUnmapSize;
    case kReqProbe: return kProbeSize;
    default: return 0;
  }
}

}  // namespace

Device::Device(const Config& config, Rcu& rcu, size_t iotlb_entries_per_reader)
    : cfg_(config),
      rcu_(rcu),
      tlb_(rcu, iotlb_entries_per_reader),
      granule_(config.page_size_mask & -config.page_size_mask),
      mem_(rcu),
      faults_(rcu.max_readers()) {
  if (granule_ < pagetable::kPageSize)
    throw std::invalid_argument("Device: page_size_mask granule must be at least 4 KiB");
  if (cfg_.input_start > cfg_.input_last || cfg_.input_last > pagetable::kIovaLast)
    throw std::invalid_argument("Device: input range must be ordered and within 48 bits");
  if (cfg_.domain_start > cfg_.domain_last || cfg_.endpoint_first > cfg_.endpoint_last)
    throw std::invalid_argument("Device: domain and endpoint ranges must be ordered");
  const uint64_t endpoints = uint64_t{cfg_.endpoint_last} - cfg_.endpoint_first + 1;
  if (endpoints > kMaxEndpoints) throw std::invalid_argument("Device: more than kMaxEndpoints endpoints");
  ep_table_ = std::make_unique<std::atomic<const Domain*>[]>(endpoints);
  if (cfg_.bypass > 1) throw std::invalid_argument("Device: the bypass byte takes 0 or 1");
  bypass_.store(cfg_.bypass, std::memory_order_relaxed);
}

uint64_t Device::features() const noexcept {
  uint64_t f = kFeatureInputRange | kFeatureDomainRange | kFeatureMapUnmap | kFeatureProbe;
  if (cfg_.feature_mmio) f |= kFeatureMmio;
  if (cfg_.feature_bypass_config) f |= kFeatureBypassConfig;
  return f;
}

void Device::read_config(std::span<uint8_t, kConfigSize> out) const noexcept {
  wire::Config c{};  // reserved bytes zero
  c.page_size_mask.set(cfg_.page_size_mask);
  c.input_start.set(cfg_.input_start);
  c.input_end.set(cfg_.input_last);
  c.domain_start.set(cfg_.domain_start);
  c.domain_end.set(cfg_.domain_last);
  c.probe_size.set(cfg_.probe_size);
  c.bypass = bypass_.load(std::memory_order_relaxed);
  encode(out, c);
}

Status Device::write_bypass(uint8_t value) noexcept {
  OwnerCheck::Scope owner(control_, "Device::write_bypass: control calls must come from one thread at a time");
  if (value > 1 || !cfg_.feature_bypass_config) return Status::kInval;
  if (bypass_.load(std::memory_order_relaxed) == value) return Status::kOk;
  cfg_.bypass = value;
  bypass_.store(value, std::memory_order_relaxed);
  // A reader that read the old value finishes its burst before this returns.
  rcu_.synchronize();
  return Status::kOk;
}

Device::~Device() = default;

Status Device::set_mem_table(std::span<const MemRegion> regions) noexcept {
  OwnerCheck::Scope owner(control_, "Device::set_mem_table: control calls must come from one thread at a time");
  return mem_.set(regions);
}

size_t Device::drain_events(std::span<FaultEvent> out) noexcept {
  OwnerCheck::Scope owner(control_, "Device::drain_events: control calls must come from one thread at a time");
  return faults_.drain(out);
}

void Device::publish_endpoint(uint32_t ep, const Domain* d) noexcept {
  // release: the domain (its table root, id, kind) is visible to a reader that
  // loads this pointer (acquire in translate()).
  ep_table_[ep - cfg_.endpoint_first].store(d, std::memory_order_release);
}

bool Device::endpoint_domain(EndpointId ep, DomainId* d) const noexcept {
  auto it = attached_.find(ep.value);
  if (it == attached_.end()) return false;
  *d = DomainId{it->second};
  return true;
}

uint32_t Device::handle(std::span<const uint8_t> readable, std::span<uint8_t> writable) noexcept {
  Request r{readable, writable, 0};
  handle_burst(std::span(&r, 1));
  return r.used;
}

size_t Device::handle_burst(std::span<Request> requests, uint32_t self_reader) noexcept {
  OwnerCheck::Scope owner(control_, "Device::handle_burst: control calls must come from one thread at a time");
  VXLATE_DCHECK(self_reader == Rcu::kNoReader || self_reader < rcu_.max_readers(),
                "Device::handle_burst: self_reader out of range");
  self_reader_ = self_reader;
  const size_t n = std::min(requests.size(), kMaxRequestBurst);
  for (size_t i = 0; i < n; ++i) requests[i].used = apply(requests[i].readable, requests[i].writable);
  // One grace period for every UNMAP and DETACH of the burst; the caller
  // publishes the used entries only after this returns.
  sync();
  self_reader_ = Rcu::kNoReader;
  return n;
}

void Device::sync() noexcept {
  if (tlb_.pending() != 0)
    tlb_.sync(self_reader_);  // one grace period, covering the endpoint changes too
  else if (need_grace_ || !dying_.empty())
    rcu_.synchronize(self_reader_);
  // Dying domains hold their tables, extents and tags until here: the caps
  // count them until they are gone.
  for (const auto& d : dying_) {
    tags_.erase(d->tag);
    mappings_ -= d->extents.size();
    table_bytes_ -= d->pt.table_bytes();
  }
  dying_.clear();
  need_grace_ = false;
}

bool Device::reclaim_dying() noexcept {
  if (dying_.empty()) return false;
  sync();  // completes the burst's requests so far a little early; frees the dying
  return true;
}

uint32_t Device::apply(std::span<const uint8_t> readable, std::span<uint8_t> writable) noexcept {
  // Decisions: too short for its struct and tail, or unknown type: nothing
  // written, used length 0.
  if (readable.empty() || writable.size() < kTailSize) return 0;
  const uint8_t type = readable[0];
  const size_t need = readable_size(type);
  if (need == 0 || readable.size() < need) return 0;

  Status s = Status::kOk;
  switch (type) {
    case kReqAttach: s = attach(decode<wire::ReqAttach>(readable)); break;
    case kReqDetach: s = detach(decode<wire::ReqDetach>(readable)); break;
    case kReqMap: s = map(decode<wire::ReqMap>(readable)); break;
    case kReqUnmap: s = unmap(decode<wire::ReqUnmap>(readable)); break;
    case kReqProbe: s = probe(decode<wire::ReqProbe>(readable), writable.first(writable.size() - kTailSize)); break;
    default: return 0;
  }
  // The tail ends the writable part; its reserved bytes are zeroed.
  encode(writable.last(kTailSize), wire::ReqTail{static_cast<uint8_t>(s), {}});
  return static_cast<uint32_t>(writable.size());
}

Status Device::attach(const wire::ReqAttach& req) noexcept {
  const uint32_t domain = req.domain.get();
  const uint32_t ep = req.endpoint.get();
  const uint32_t flags = req.flags.get();
  if (!all_zero(req.reserved) || (flags & ~kAttachFlagBypass) != 0) return Status::kInval;
  if (!domain_in_range(domain)) return Status::kRange;
  if (!endpoint_exists(ep)) return Status::kNoEnt;
  const bool bypass = (flags & kAttachFlagBypass) != 0;

  auto it = domains_.find(domain);
  if (it != domains_.end() && it->second->bypass != bypass) return Status::kInval;
  auto cur = attached_.find(ep);
  if (cur != attached_.end() && cur->second == domain) return Status::kOk;  // mappings kept
  // Allocate everything before changing anything: a failure leaves the old
  // attachment as it was. A fresh endpoint's entry goes in first (it is the
  // only allocation attached_ needs; a moving ATTACH rewrites its entry in
  // place) and comes out again if the domain cannot be made.
  const bool fresh = cur == attached_.end();
  try {
    dying_.reserve(dying_.size() + 1);
    if (fresh) cur = attached_.emplace(ep, domain).first;
  } catch (const std::bad_alloc&) {
    return Status::kNoMem;
  }
  if (it == domains_.end()) {
    if (const Status s = create_domain(domain, bypass, &it); s != Status::kOk) {
      if (fresh) attached_.erase(cur);
      return s;
    }
  }
  if (!fresh) {
    leave_domain(ep, cur->second);  // moving ATTACH: DETACH from the old domain first (it may die)
  } else if (cfg_.feature_bypass_config && bypass_.load(std::memory_order_relaxed) == 1) {
    // Out of global bypass: identity DMA that began before this ATTACH must
    // be over when it completes.
    need_grace_ = true;
  }
  cur->second = domain;
  ++it->second->endpoints;
  publish_endpoint(ep, it->second.get());
  return Status::kOk;
}

Status Device::create_domain(uint32_t domain, bool bypass, DomainMap::iterator* out) noexcept {
  // The cap counts domains alive or dying now (the endpoint's old domain may
  // die afterwards); dying ones go first if that makes room.
  if (domains_.size() + dying_.size() >= cfg_.max_domains &&
      (!reclaim_dying() || domains_.size() >= cfg_.max_domains))
    return Status::kNoMem;
  try {
    if (next_tag_ == UINT32_MAX) {
      // Tags are about to repeat: forget every cached entry first.
      tlb_.add_flush_all();
      tlb_.sync(self_reader_);
      next_tag_ = 0;
    }
    // Never a tag that a live or dying domain holds: the IOTLB would let the
    // new domain hit the other's entries. At most domains + dying skips.
    while (tags_.contains(next_tag_)) ++next_tag_;
    const uint32_t tag = next_tag_;
    auto d = std::make_unique<Domain>(rcu_, tag, bypass);
    tags_.insert(tag);
    try {
      *out = domains_.emplace(domain, std::move(d)).first;
    } catch (const std::bad_alloc&) {
      tags_.erase(tag);
      throw;
    }
    ++next_tag_;
  } catch (const std::bad_alloc&) {
    return Status::kNoMem;
  }
  table_bytes_ += (*out)->second->pt.table_bytes();
  return Status::kOk;
}

void Device::leave_domain(uint32_t ep, uint32_t domain) noexcept {
  publish_endpoint(ep, nullptr);
  need_grace_ = true;  // a reader may still translate through the old domain
  auto it = domains_.find(domain);
  if (--it->second->endpoints != 0) return;
  // The last endpoint left: the domain and all its mappings cease to exist and
  // its id is free. Readers may still walk its table until the grace period of
  // this burst's sync(); the IOTLB forgets it with the same sync. Its memory
  // and tag stay counted until it is destroyed there.
  try {
    tlb_.add_flush_domain(DomainId{it->second->tag});
    dying_.push_back(std::move(it->second));  // capacity reserved by the caller
  } catch (const std::bad_alloc&) {
    // Cannot defer: flush the IOTLB and wait for the grace period now.
    tlb_.add_flush_all();
    tlb_.sync(self_reader_);
    tags_.erase(it->second->tag);
    mappings_ -= it->second->extents.size();
    table_bytes_ -= it->second->pt.table_bytes();
    it->second.reset();
  }
  domains_.erase(it);
}

Status Device::detach(const wire::ReqDetach& req) noexcept {
  const uint32_t domain = req.domain.get();
  const uint32_t ep = req.endpoint.get();
  if (!domain_in_range(domain)) return Status::kRange;
  if (!endpoint_exists(ep)) return Status::kNoEnt;
  auto cur = attached_.find(ep);
  if (cur == attached_.end() || cur->second != domain) return Status::kInval;
  try {
    dying_.reserve(dying_.size() + 1);
  } catch (const std::bad_alloc&) {
    // leave_domain() falls back to an immediate grace period.
  }
  leave_domain(ep, domain);
  attached_.erase(cur);
  return Status::kOk;
}

bool Device::overlaps_resv(const Domain& dom, uint32_t domain_id, uint64_t start, uint64_t last) const noexcept {
  if (dom.endpoints == 0) return false;
  for (const ResvRegion& r : cfg_.resv) {
    if (r.start > last || r.last < start) continue;
    if (r.all_endpoints) return true;
    auto it = attached_.find(r.endpoint);
    if (it != attached_.end() && it->second == domain_id) return true;
  }
  return false;
}

// MAP and UNMAP share these checks, in the Decisions table's order: domain
// range (RANGE), domain exists (NOENT), bypass domain (INVAL), end < start (INVAL).
Status Device::mappable_domain(uint32_t domain, uint64_t virt_start, uint64_t virt_last, Domain** dom) noexcept {
  if (!domain_in_range(domain)) return Status::kRange;
  auto it = domains_.find(domain);
  if (it == domains_.end()) return Status::kNoEnt;
  if (it->second->bypass) return Status::kInval;
  if (virt_last < virt_start) return Status::kInval;
  *dom = it->second.get();
  return Status::kOk;
}

// A page-table call may allocate tables or reclaim retired ones: keep the
// device-wide count in step with `dom`'s.
void Device::retally(const Domain& dom, size_t before) noexcept { table_bytes_ = table_bytes_ - before + dom.pt.table_bytes(); }

Status Device::map(const wire::ReqMap& req) noexcept {
  const uint32_t domain = req.domain.get();
  const uint64_t virt_start = req.virt_start.get();
  const uint64_t virt_last = req.virt_end.get();
  const uint64_t phys_start = req.phys_start.get();
  const uint32_t flags = req.flags.get();
  if ((flags & ~(kMapFlagRead | kMapFlagWrite | kMapFlagMmio)) != 0) return Status::kInval;
  if ((flags & kMapFlagMmio) && !cfg_.feature_mmio) return Status::kInval;
  Domain* d = nullptr;
  if (const Status s = mappable_domain(domain, virt_start, virt_last, &d); s != Status::kOk) return s;
  Domain& dom = *d;
  if (virt_start < cfg_.input_start || virt_last > cfg_.input_last) return Status::kRange;
  const uint64_t size = virt_last - virt_start + 1;  // no wrap: virt_last <= 48-bit input_last
  uint64_t phys_last = 0;
  if (!is_aligned(virt_start | phys_start | size, granule_) || !range_last(phys_start, size, &phys_last))
    return Status::kRange;
  // Overlap with an existing mapping: the last extent starting at or before virt_last.
  detail::Extent prev;
  detail::ExtentIndex::Slot prev_at;
  const bool has_prev = dom.extents.find_le(virt_last, &prev, &prev_at);
  if (has_prev && prev.last >= virt_start) return Status::kInval;
  if (overlaps_resv(dom, domain, virt_start, virt_last)) return Status::kInval;
  // The caps count what dying domains still hold; a grace period frees that
  // first when it is what stands in the way.
  const uint64_t estimate = map_table_estimate(virt_start, phys_start, size);
  auto over = [&] { return mappings_ >= cfg_.max_mappings || table_bytes_ + estimate > cfg_.max_table_bytes; };
  if (over() && (!reclaim_dying() || over())) return Status::kNoMem;

  const uint8_t perms = map_perms(flags);
  // A mapping without READ or WRITE exists for UNMAP and overlap purposes but
  // grants no access, so it has no page-table entries.
  if (perms != 0) {
    const size_t before = dom.pt.table_bytes();
    const Status s = dom.pt.map(virt_start, phys_start, size, perms);
    retally(dom, before);
    if (s != Status::kOk) return s == Status::kNoMem ? Status::kNoMem : Status::kDevErr;
  }
  // Nothing below touched dom's extents since the search: prev_at still
  // holds (reclaim_dying() frees other, dead domains).
  if (!dom.extents.insert_after(has_prev ? &prev_at : nullptr, detail::Extent{virt_start, virt_last, phys_start, flags})) {
    if (perms != 0) {  // nothing was published to the guest
      const size_t before = dom.pt.table_bytes();
      (void)dom.pt.unmap(virt_start, size);
      retally(dom, before);
    }
    return Status::kNoMem;
  }
  ++mappings_;
  // release: after the page-table entries above; pairs with the acquire load
  // in maps_applied(). One writer: a load and a store suffice.
  maps_applied_.store(maps_applied_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  return Status::kOk;
}

Status Device::unmap(const wire::ReqUnmap& req) noexcept {
  const uint32_t domain = req.domain.get();
  const uint64_t virt_start = req.virt_start.get();
  const uint64_t virt_last = req.virt_end.get();
  if (!all_zero(req.reserved)) return Status::kInval;
  Domain* d = nullptr;
  if (const Status s = mappable_domain(domain, virt_start, virt_last, &d); s != Status::kOk) return s;
  Domain& dom = *d;
  // virtio-iommu: an UNMAP that would split a mapping fails with RANGE and
  // removes nothing, so check both ends before changing anything. `e`, the
  // last mapping that starts by virt_last, must end by it; and whatever
  // mapping covers virt_start must start there.
  detail::Extent e;
  detail::ExtentIndex::Slot at;
  if (!dom.extents.find_le(virt_last, &e, &at) || e.last < virt_start) return Status::kOk;  // nothing in the range
  if (e.last > virt_last || e.first < virt_start) return Status::kRange;
  if (e.first == virt_start) {
    // The one mapping in the range (a driver unmaps what it mapped): no
    // mapping before it reaches virt_start.
    remove_extent(dom, e, at);
    return Status::kOk;
  }
  if (detail::Extent s; dom.extents.find_le(virt_start, &s) && s.last >= virt_start && s.first < virt_start)
    return Status::kRange;
  while (dom.extents.find_ge(virt_start, &e, &at) && e.first <= virt_last) remove_extent(dom, e, at);
  return Status::kOk;
}

Status Device::probe(const wire::ReqProbe& req, std::span<uint8_t> props) noexcept {
  const uint32_t ep = req.endpoint.get();
  if (!endpoint_exists(ep)) return Status::kNoEnt;
  if (props.size() < cfg_.probe_size) return Status::kInval;
  props = props.first(cfg_.probe_size);
  size_t need = 0;
  for (const ResvRegion& r : cfg_.resv)
    if (r.all_endpoints || r.endpoint == ep) need += kResvMemPropSize;
  if (need > props.size()) return Status::kInval;  // no property written
  std::memset(props.data(), 0, props.size());  // unused bytes zeroed; type 0 ends the list
  size_t off = 0;
  for (const ResvRegion& r : cfg_.resv) {
    if (!r.all_endpoints && r.endpoint != ep) continue;
    wire::ProbeResvMem prop{};
    prop.head.type.set(kProbeTypeResvMem);
    prop.head.length.set(sizeof prop - sizeof prop.head);
    prop.subtype = r.subtype;
    prop.start.set(r.start);
    prop.end.set(r.last);
    encode(props.subspan(off), prop);
    off += kResvMemPropSize;
  }
  return Status::kOk;
}

}  // namespace vxlate::engine
