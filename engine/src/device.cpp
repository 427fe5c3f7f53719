#include "vxlate/engine/device.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <stdexcept>

#include "vxlate/common/range.h"

namespace vxlate::engine {

namespace {

uint32_t le32(std::span<const uint8_t> b, size_t off) {
  return static_cast<uint32_t>(b[off]) | static_cast<uint32_t>(b[off + 1]) << 8 |
         static_cast<uint32_t>(b[off + 2]) << 16 | static_cast<uint32_t>(b[off + 3]) << 24;
}
uint64_t le64(std::span<const uint8_t> b, size_t off) {
  return static_cast<uint64_t>(le32(b, off)) | static_cast<uint64_t>(le32(b, off + 4)) << 32;
}
void put_le16(std::span<uint8_t> b, size_t off, uint16_t v) {
  b[off] = static_cast<uint8_t>(v);
  b[off + 1] = static_cast<uint8_t>(v >> 8);
}
void put_le64(std::span<uint8_t> b, size_t off, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}
bool all_zero(std::span<const uint8_t> b) {
  return std::all_of(b.begin(), b.end(), [](uint8_t x) { return x == 0; });
}

// An upper bound on the table bytes a map of `size` bytes at (virt, phys) can
// add: one table per 512 leaves of the largest leaf the alignment allows, the
// partial tables at both ends of every level, and the levels above.
uint64_t map_table_estimate(uint64_t virt, uint64_t phys, uint64_t size) {
  uint64_t leaf = pagetable::kLeaf4K;
  if (is_aligned(virt | phys, pagetable::kLeaf2M)) leaf = pagetable::kLeaf2M;
  if (is_aligned(virt | phys, pagetable::kLeaf1G)) leaf = pagetable::kLeaf1G;
  const uint64_t leaf_tables = size / (leaf * pagetable::kEntriesPerTable) + 2;
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
    : cfg_(config), rcu_(rcu), tlb_(rcu, iotlb_entries_per_reader), granule_(config.page_size_mask & -config.page_size_mask) {
  if (granule_ < pagetable::kPageSize)
    throw std::invalid_argument("Device: page_size_mask granule must be at least 4 KiB");
  if (cfg_.input_start > cfg_.input_last || cfg_.input_last > pagetable::kIovaLast)
    throw std::invalid_argument("Device: input range must be ordered and within 48 bits");
  if (cfg_.domain_start > cfg_.domain_last || cfg_.endpoint_first > cfg_.endpoint_last)
    throw std::invalid_argument("Device: domain and endpoint ranges must be ordered");
  const uint64_t endpoints = uint64_t{cfg_.endpoint_last} - cfg_.endpoint_first + 1;
  if (endpoints > kMaxEndpoints) throw std::invalid_argument("Device: more than kMaxEndpoints endpoints");
  ep_table_ = std::make_unique<std::atomic<const Domain*>[]>(endpoints);
  rings_ = std::make_unique<FaultRing[]>(rcu.max_readers());
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
  std::memset(out.data(), 0, out.size());
  put_le64(out, 0, cfg_.page_size_mask);
  put_le64(out, 8, cfg_.input_start);
  put_le64(out, 16, cfg_.input_last);
  put_le64(out, 24, uint64_t{cfg_.domain_start} | uint64_t{cfg_.domain_last} << 32);
  put_le64(out, 32, uint64_t{cfg_.probe_size});
  out[kConfigBypassOffset] = bypass_.load(std::memory_order_relaxed);
}

Status Device::write_bypass(uint8_t value) noexcept {
  if (value > 1 || !cfg_.feature_bypass_config) return Status::kInval;
  if (bypass_.load(std::memory_order_relaxed) == value) return Status::kOk;
  cfg_.bypass = value;
  bypass_.store(value, std::memory_order_relaxed);
  // A reader that read the old value finishes its burst before this returns.
  rcu_.synchronize();
  return Status::kOk;
}

Device::~Device() { delete mem_.load(std::memory_order_relaxed); }

void Device::publish_endpoint(uint32_t ep, const Domain* d) noexcept {
  // release: the domain (its table root, id, kind) is visible to a reader that
  // loads this pointer (acquire in translate_impl()).
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
  dying_.clear();
  need_grace_ = false;
}

uint32_t Device::apply(std::span<const uint8_t> readable, std::span<uint8_t> writable) noexcept {
  // Decisions: too short for its struct and tail, or unknown type: nothing
  // written, used length 0.
  if (readable.empty() || writable.size() < kTailSize) return 0;
  const uint8_t type = readable[0];
  const size_t need = readable_size(type);
  if (need == 0 || readable.size() < need) return 0;
  const std::span<const uint8_t> req = readable.first(need);

  Status s = Status::kOk;
  switch (type) {
    case kReqAttach: s = attach(req); break;
    case kReqDetach: s = detach(req); break;
    case kReqMap: s = map(req); break;
    case kReqUnmap: s = unmap(req); break;
    case kReqProbe: s = probe(req, writable.first(writable.size() - kTailSize)); break;
    default: return 0;
  }
  // The tail ends the writable part; its reserved bytes are zeroed.
  std::span<uint8_t> tail = writable.last(kTailSize);
  tail[0] = static_cast<uint8_t>(s);
  tail[1] = tail[2] = tail[3] = 0;
  return static_cast<uint32_t>(writable.size());
}

Status Device::attach(std::span<const uint8_t> req) noexcept {
  const uint32_t domain = le32(req, 4);
  const uint32_t ep = le32(req, 8);
  const uint32_t flags = le32(req, 12);
  if (!all_zero(req.subspan(16, 4)) || (flags & ~kAttachFlagBypass) != 0) return Status::kInval;
  if (!domain_in_range(domain)) return Status::kRange;
  if (!endpoint_exists(ep)) return Status::kNoEnt;
  const bool bypass = (flags & kAttachFlagBypass) != 0;

  auto it = domains_.find(domain);
  if (it != domains_.end() && it->second->bypass != bypass) return Status::kInval;
  auto cur = attached_.find(ep);
  if (cur != attached_.end() && cur->second == domain) return Status::kOk;  // mappings kept
  // Allocate everything before changing anything: a failure leaves the old
  // attachment as it was.
  try {
    attached_.reserve(attached_.size() + 1);
    dying_.reserve(dying_.size() + 1);
    if (it == domains_.end()) {
      // The endpoint's old domain may die below, but the cap counts domains alive now.
      if (domains_.size() >= cfg_.max_domains) return Status::kNoMem;
      if (next_tag_ == UINT32_MAX) {
        // Tags are about to repeat: forget every cached entry first.
        tlb_.add_flush_all();
        tlb_.sync(self_reader_);
        next_tag_ = 0;
      }
      it = domains_.emplace(domain, std::make_unique<Domain>(rcu_, next_tag_, bypass)).first;
      ++next_tag_;
      table_bytes_ += it->second->pt.table_bytes();
    }
  } catch (const std::bad_alloc&) {
    return Status::kNoMem;
  }
  // Moving ATTACH: DETACH from the old domain first (it may cease to exist).
  if (cur != attached_.end()) detach_endpoint(ep);
  attached_[ep] = domain;  // capacity reserved above
  ++it->second->endpoints;
  publish_endpoint(ep, it->second.get());
  return Status::kOk;
}

void Device::detach_endpoint(uint32_t ep) noexcept {
  auto cur = attached_.find(ep);
  const uint32_t domain = cur->second;
  attached_.erase(cur);
  publish_endpoint(ep, nullptr);
  need_grace_ = true;  // a reader may still translate through the old domain
  auto it = domains_.find(domain);
  if (--it->second->endpoints != 0) return;
  // The last endpoint left: the domain and all its mappings cease to exist and
  // its id is free. Readers may still walk its table until the grace period of
  // this burst's sync(); the IOTLB forgets it with the same sync.
  mappings_ -= it->second->extents.size();
  table_bytes_ -= it->second->pt.table_bytes();
  try {
    tlb_.add_flush_domain(DomainId{it->second->tag});
    dying_.push_back(std::move(it->second));
  } catch (const std::bad_alloc&) {
    // Cannot defer: flush the IOTLB and wait for the grace period now.
    tlb_.add_flush_all();
    tlb_.sync(self_reader_);
    it->second.reset();
  }
  domains_.erase(it);
}

Status Device::detach(std::span<const uint8_t> req) noexcept {
  const uint32_t domain = le32(req, 4);
  const uint32_t ep = le32(req, 8);
  if (!domain_in_range(domain)) return Status::kRange;
  if (!endpoint_exists(ep)) return Status::kNoEnt;
  auto cur = attached_.find(ep);
  if (cur == attached_.end() || cur->second != domain) return Status::kInval;
  detach_endpoint(ep);
  return Status::kOk;
}

bool Device::overlaps_resv(const Domain& dom, uint32_t domain_id, uint64_t start, uint64_t end) const noexcept {
  if (dom.endpoints == 0) return false;
  for (const ResvRegion& r : cfg_.resv) {
    if (r.start > end || r.last < start) continue;
    if (r.all_endpoints) return true;
    auto it = attached_.find(r.endpoint);
    if (it != attached_.end() && it->second == domain_id) return true;
  }
  return false;
}

// MAP and UNMAP share these checks, in the Decisions table's order: domain
// range (RANGE), domain exists (NOENT), bypass domain (INVAL), end < start (INVAL).
Status Device::mappable_domain(uint32_t domain, uint64_t virt_start, uint64_t virt_end, Domain** dom) noexcept {
  if (!domain_in_range(domain)) return Status::kRange;
  auto it = domains_.find(domain);
  if (it == domains_.end()) return Status::kNoEnt;
  if (it->second->bypass) return Status::kInval;
  if (virt_end < virt_start) return Status::kInval;
  *dom = it->second.get();
  return Status::kOk;
}

// A page-table call may allocate tables or reclaim retired ones: keep the
// device-wide count in step with `dom`'s.
void Device::retally(const Domain& dom, size_t before) noexcept { table_bytes_ = table_bytes_ - before + dom.pt.table_bytes(); }

Status Device::map(std::span<const uint8_t> req) noexcept {
  const uint32_t domain = le32(req, 4);
  const uint64_t virt_start = le64(req, 8);
  const uint64_t virt_end = le64(req, 16);
  const uint64_t phys_start = le64(req, 24);
  const uint32_t flags = le32(req, 32);
  if ((flags & ~(kMapFlagRead | kMapFlagWrite | kMapFlagMmio)) != 0) return Status::kInval;
  if ((flags & kMapFlagMmio) && !cfg_.feature_mmio) return Status::kInval;
  Domain* d = nullptr;
  if (const Status s = mappable_domain(domain, virt_start, virt_end, &d); s != Status::kOk) return s;
  Domain& dom = *d;
  if (virt_start < cfg_.input_start || virt_end > cfg_.input_last) return Status::kRange;
  const uint64_t size = virt_end - virt_start + 1;  // no wrap: virt_end <= 48-bit input_last
  uint64_t phys_last = 0;
  if (!is_aligned(virt_start | phys_start | size, granule_) || !range_last(phys_start, size, &phys_last))
    return Status::kRange;
  // Overlap with an existing mapping: the last extent starting at or before virt_end.
  auto next = dom.extents.upper_bound(virt_end);
  if (next != dom.extents.begin() && std::prev(next)->second.virt_end >= virt_start) return Status::kInval;
  if (overlaps_resv(dom, domain, virt_start, virt_end)) return Status::kInval;
  if (mappings_ >= cfg_.max_mappings) return Status::kNoMem;
  if (table_bytes_ + map_table_estimate(virt_start, phys_start, size) > cfg_.max_table_bytes) return Status::kNoMem;

  const uint8_t perms = static_cast<uint8_t>(((flags & kMapFlagRead) ? pagetable::kPermRead : 0) |
                                             ((flags & kMapFlagWrite) ? pagetable::kPermWrite : 0));
  // A mapping without READ or WRITE exists for UNMAP and overlap purposes but
  // grants no access, so it has no page-table entries.
  if (perms != 0) {
    const size_t before = dom.pt.table_bytes();
    const Status s = dom.pt.map(virt_start, phys_start, size, perms);
    retally(dom, before);
    if (s != Status::kOk) return s == Status::kNoMem ? Status::kNoMem : Status::kDevErr;
  }
  try {
    dom.extents.emplace(virt_start, Extent{virt_end, phys_start, flags});
  } catch (const std::bad_alloc&) {
    if (perms != 0) {  // nothing was published to the guest
      const size_t before = dom.pt.table_bytes();
      (void)dom.pt.unmap(virt_start, size);
      retally(dom, before);
    }
    return Status::kNoMem;
  }
  ++mappings_;
  return Status::kOk;
}

Status Device::unmap(std::span<const uint8_t> req) noexcept {
  const uint32_t domain = le32(req, 4);
  const uint64_t virt_start = le64(req, 8);
  const uint64_t virt_end = le64(req, 16);
  if (!all_zero(req.subspan(24, 4))) return Status::kInval;
  Domain* d = nullptr;
  if (const Status s = mappable_domain(domain, virt_start, virt_end, &d); s != Status::kOk) return s;
  Domain& dom = *d;
  // virtio-iommu: an UNMAP that would split a mapping fails with RANGE and
  // removes nothing, so check both ends before changing anything.
  auto first = dom.extents.upper_bound(virt_start);
  if (first != dom.extents.begin() && std::prev(first)->second.virt_end >= virt_start) {
    --first;
    if (first->first < virt_start) return Status::kRange;
  }
  auto last = dom.extents.upper_bound(virt_end);
  if (last != dom.extents.begin() && std::prev(last)->second.virt_end > virt_end) return Status::kRange;
  for (auto e = first; e != last;) {
    const uint64_t size = e->second.virt_end - e->first + 1;
    if (e->second.flags & (kMapFlagRead | kMapFlagWrite)) {
      // Cannot fail: whole leaves of this mapping are removed, never split.
      const size_t before = dom.pt.table_bytes();
      (void)dom.pt.unmap(e->first, size);
      retally(dom, before);
      tlb_.add_invalidate(DomainId{dom.tag}, e->first, size);
    }
    e = dom.extents.erase(e);
    --mappings_;
  }
  return Status::kOk;
}

Status Device::probe(std::span<const uint8_t> req, std::span<uint8_t> props) noexcept {
  const uint32_t ep = le32(req, 4);
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
    put_le16(props, off, kProbeTypeResvMem);
    put_le16(props, off + 2, 20);
    props[off + 4] = r.subtype;
    put_le64(props, off + 8, r.start);
    put_le64(props, off + 16, r.last);
    off += kResvMemPropSize;
  }
  return Status::kOk;
}

// --- guest memory ----------------------------------------------------------------

Status Device::set_mem_table(std::span<const MemRegion> regions) noexcept {
  if (regions.size() > kMaxMemRegions) return Status::kInval;
  MemTable* table = nullptr;
  try {
    table = new MemTable{std::vector<MemRegion>(regions.begin(), regions.end())};
  } catch (const std::bad_alloc&) {
    return Status::kNoMem;
  }
  auto& r = table->regions;
  std::sort(r.begin(), r.end(), [](const MemRegion& a, const MemRegion& b) { return a.gpa < b.gpa; });
  uint64_t last = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    uint64_t hva_last = 0;
    const bool ok = range_last(r[i].gpa, r[i].size, &last) && range_last(r[i].hva, r[i].size, &hva_last) &&
                    (i + 1 == r.size() || r[i + 1].gpa > last);
    if (!ok) {
      delete table;
      return Status::kInval;
    }
  }
  // acq_rel: release publishes the new table (acquire in translate_impl()).
  const MemTable* old = mem_.exchange(table, std::memory_order_acq_rel);
  rcu_.synchronize();  // no reader still uses the old table
  delete old;
  return Status::kOk;
}

// --- data path -------------------------------------------------------------------

namespace {
// Appends [addr, addr + len) to segs[0, *n), merging with the last segment when
// contiguous; false when a new segment is needed and segs is full.
bool append_segment(std::span<Segment> segs, size_t* n, uint64_t addr, uint64_t len) noexcept {
  if (*n > 0 && segs[*n - 1].addr + segs[*n - 1].len == addr) {
    segs[*n - 1].len += len;
    return true;
  }
  if (*n == segs.size()) return false;
  segs[(*n)++] = Segment{addr, len};
  return true;
}
}  // namespace

Status Device::iova_to_hva(uint32_t reader, EndpointId ep, uint64_t iova, uint64_t len, uint8_t access,
                         std::span<Segment> segs, size_t* nsegs, FaultEvent* fault) noexcept {
  return translate_impl(reader, ep, iova, len, access, segs, nsegs, true, fault);
}

Status Device::iova_to_gpa(uint32_t reader, EndpointId ep, uint64_t iova, uint64_t len, uint8_t access,
                             std::span<Segment> segs, size_t* nsegs, FaultEvent* fault) noexcept {
  return translate_impl(reader, ep, iova, len, access, segs, nsegs, false, fault);
}

Status Device::translate_impl(uint32_t reader, EndpointId ep, uint64_t iova, uint64_t len, uint8_t access,
                              std::span<Segment> segs, size_t* nsegs, bool to_hva, FaultEvent* fault) noexcept {
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
  // acquire: pairs with the release in set_mem_table().
  const MemTable* mem = to_hva ? mem_.load(std::memory_order_acquire) : nullptr;
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
      // The region holding gpa: the last one starting at or below it.
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
    if (!append_segment(segs, &n, addr, chunk)) return Status::kInval;
    if (chunk_last == last) break;
    pos = chunk_last + 1;
  }
  *nsegs = n;
  return Status::kOk;
}

const MemRegion* Device::MemTable::find(uint64_t gpa) const noexcept {
  // The last region starting at or below gpa, if gpa lies inside it.
  auto it = std::upper_bound(regions.begin(), regions.end(), gpa,
                             [](uint64_t g, const MemRegion& r) { return g < r.gpa; });
  if (it == regions.begin() || gpa - std::prev(it)->gpa >= std::prev(it)->size) return nullptr;
  return &*std::prev(it);
}

Status Device::gpa_to_hva(uint64_t gpa, uint64_t len, std::span<Segment> segs, size_t* nsegs) const noexcept {
  *nsegs = 0;
  uint64_t last = 0;
  if (!range_last(gpa, len, &last)) return Status::kInval;
  // acquire: pairs with the release in set_mem_table().
  const MemTable* mem = mem_.load(std::memory_order_acquire);
  size_t n = 0;
  for (uint64_t pos = gpa;;) {
    const MemRegion* reg = mem != nullptr ? mem->find(pos) : nullptr;
    if (reg == nullptr) return Status::kFault;
    const uint64_t chunk_last = std::min(last, reg->gpa + (reg->size - 1));
    const uint64_t addr = reg->hva + (pos - reg->gpa);
    const uint64_t chunk = chunk_last - pos + 1;
    if (!append_segment(segs, &n, addr, chunk)) return Status::kInval;
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
  FaultRing& ring = rings_[reader];
  auto drop = [&ring] { ring.dropped.store(ring.dropped.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed); };
  // acquire: pairs with the release increment in drain_events(); a new window
  // resets this reader's per-endpoint counts.
  const uint64_t window = drain_window_.load(std::memory_order_acquire);
  if (window != ring.window) {
    ring.window = window;
    std::fill(std::begin(ring.count_n), std::end(ring.count_n), 0);
    std::fill(std::begin(ring.count_ep), std::end(ring.count_ep), 0);
  }
  // Direct-mapped per-endpoint counts (ep + 1, so 0 means empty). Colliding
  // endpoints share a slot's budget fairly enough; the ring size bounds the rest.
  const unsigned slot = ep & 15;
  if (ring.count_ep[slot] != ep + 1) {
    ring.count_ep[slot] = ep + 1;
    ring.count_n[slot] = 0;
  }
  if (ring.count_n[slot] >= kMaxFaultsPerEndpoint) {
    drop();
    return Status::kFault;
  }
  const uint32_t head = ring.head.load(std::memory_order_relaxed);  // only this reader stores
  // acquire: pairs with the release in drain_events(): the slot was consumed.
  if (head - ring.tail.load(std::memory_order_acquire) >= kFaultRingSize) {
    drop();
    return Status::kFault;
  }
  ++ring.count_n[slot];
  ring.ev[head % kFaultRingSize] = event;
  ring.head.store(head + 1, std::memory_order_release);  // pairs with the acquire in drain_events()
  return Status::kFault;
}

size_t Device::drain_events(std::span<FaultEvent> out) noexcept {
  size_t n = 0;
  for (uint32_t r = 0; r < rcu_.max_readers(); ++r) {
    FaultRing& ring = rings_[r];
    uint32_t tail = ring.tail.load(std::memory_order_relaxed);  // only drain stores
    const uint32_t head = ring.head.load(std::memory_order_acquire);  // pairs with report_fault()
    while (tail != head && n < out.size()) out[n++] = ring.ev[tail++ % kFaultRingSize];
    ring.tail.store(tail, std::memory_order_release);  // the slots may be reused
  }
  drain_window_.fetch_add(1, std::memory_order_release);  // pairs with report_fault()'s acquire
  return n;
}

uint64_t Device::events_dropped() const noexcept {
  uint64_t n = 0;
  for (uint32_t r = 0; r < rcu_.max_readers(); ++r) n += rings_[r].dropped.load(std::memory_order_relaxed);
  return n;
}

}  // namespace vxlate::engine
