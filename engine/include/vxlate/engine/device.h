// vxlate/engine/device.h: the virtio-iommu device model (request side).
//
// One Device is one virtio-iommu device: its config, its endpoints, its domains
// (each an IoPageTable plus an index of the extents each MAP created, since
// UNMAP works per MAP), and one Iotlb in front of all domains' page tables. The
// guest's requests arrive as the spec's little-endian structs, as the request
// virtqueue hands them over: a device-readable part and a device-writable part.
// handle() decodes one request, checks every field in the order the Decisions
// table of shared/reference/virtio-iommu.md prescribes, applies it, writes the
// tail (and PROBE properties) into the writable part and returns the used
// length. handle_burst() does the same for a burst in order and completes them
// all after ONE sync of the IOTLB (one grace period for every UNMAP and DETACH
// of the burst), which is the driver's add_req ... sync_req split.
//
// Invariant 1 (no access after unmap) holds because page-table entries are
// cleared and IOTLB invalidations queued while the request is applied, and
// handle()/handle_burst() return only after the grace period: the caller
// publishes used entries after they return. A domain whose last endpoint left is
// unpublished at once and destroyed after that same grace period.
//
// Thread-safety contract: handle(), handle_burst(), config(): control side, one
// thread per Device (the device's request-queue thread); not internally
// locked. Construction/destruction: not thread-safe; no reader may be online
// in the Device's Rcu during destruction.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "vxlate/common/ids.h"
#include "vxlate/common/rcu.h"
#include "vxlate/common/status.h"
#include "vxlate/engine/wire.h"
#include "vxlate/iotlb/iotlb.h"
#include "vxlate/pagetable/io_pgtable.h"

namespace vxlate::engine {

// Limits a guest could push on, each with its reason.
// Domains alive at once: each costs at least one 4 KiB root table and a
// generation slot share; 64 Ki is far beyond any guest's device count.
inline constexpr size_t kDefaultMaxDomains = size_t{1} << 16;
// Mappings alive at once over all domains: each costs an extent record (~64 B)
// plus its tables; 1 Mi covers a 4 GiB guest mapped page by page.
inline constexpr size_t kDefaultMaxMappings = size_t{1} << 20;
// Page-table bytes alive at once over all domains. One valid MAP can ask for
// 2 MiB of 4 KiB-leaf tables per GiB (IOVA and phys offset by less than 2 MiB),
// so without this a single request could make the device allocate hundreds of
// GiB (found by the fuzzer). 4 GiB covers 2 TiB mapped page by page.
inline constexpr size_t kDefaultMaxTableBytes = size_t{4} << 30;
// Requests one handle_burst() takes: a virtqueue never holds more.
inline constexpr size_t kMaxRequestBurst = 1024;
// Endpoint ids a Device serves: the data path indexes a flat table by endpoint
// (8 B each), so the range is capped; 1 Mi ids = 8 MiB.
inline constexpr size_t kMaxEndpoints = size_t{1} << 20;
// Guest memory regions (vhost-user's SET_MEM_TABLE carries at most 8; QEMU
// with memory hotplug uses up to 509).
inline constexpr size_t kMaxMemRegions = 512;
// Fault events one reader keeps until the control thread drains them, and how
// many one endpoint may queue per reader between two drains: a hostile guest
// faulting in a loop cannot flood the event queue or the control thread.
inline constexpr size_t kFaultRingSize = 256;
inline constexpr uint32_t kMaxFaultsPerEndpoint = 8;

struct FaultEvent {
  uint8_t reason;
  uint32_t flags;
  uint32_t endpoint;
  uint64_t address;  // the first faulting IOVA
};

// A guest RAM region: guest-physical [gpa, gpa + size) at host virtual hva.
struct MemRegion {
  uint64_t gpa;
  uint64_t size;
  uint64_t hva;
};

// One piece of a translated DMA: contiguous in the output address space.
struct Segment {
  uint64_t addr;
  uint64_t len;
};

struct ResvRegion {
  bool all_endpoints;   // applies to every endpoint
  uint32_t endpoint;    // when !all_endpoints
  uint64_t start;
  uint64_t last;        // inclusive
  uint8_t subtype;      // kResvMemReserved or kResvMemMsi
};

struct Config {
  uint64_t page_size_mask = 0xfffffffffffff000;
  uint64_t input_start = 0;
  uint64_t input_last = pagetable::kIovaLast;
  uint32_t domain_start = 0;
  uint32_t domain_last = 0xffffffff;
  uint32_t endpoint_first = 0;
  uint32_t endpoint_last = 0xffff;
  uint32_t probe_size = 512;
  uint8_t bypass = 0;             // the config byte (meaningful with BYPASS_CONFIG)
  bool feature_mmio = true;       // VIRTIO_IOMMU_F_MMIO negotiated
  bool feature_bypass_config = true;
  size_t max_domains = kDefaultMaxDomains;
  size_t max_mappings = kDefaultMaxMappings;
  size_t max_table_bytes = kDefaultMaxTableBytes;
  // Default: the x86 MSI window on every endpoint (else Linux puts its own
  // MSI window at 0x8000000).
  std::vector<ResvRegion> resv = {{true, 0, 0xfee00000, 0xfeefffff, kResvMemMsi}};
};

// One request of a burst: the caller's buffers and, on return, the used length.
struct Request {
  std::span<const uint8_t> readable;
  std::span<uint8_t> writable;
  uint32_t used = 0;
};

class Device {
 public:
  // Throws std::invalid_argument for a config the page tables cannot serve
  // (granule below 4 KiB, input range past 48 bits or inverted, empty ranges).
  Device(const Config& config, Rcu& rcu, size_t iotlb_entries_per_reader = 4096);
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  // Control side: one request, completed (synced) on return. Returns the used
  // length: 0 when the request is too short for its struct and tail or of an
  // unknown type (nothing written), else the full writable size.
  uint32_t handle(std::span<const uint8_t> readable, std::span<uint8_t> writable) noexcept;
  // Control side: applies up to kMaxRequestBurst requests in order, then one
  // sync; sets each request's used length. Returns how many were handled.
  // A caller that is an online reader of this Device's Rcu (a data-plane
  // lcore that also services the request queue, between its bursts) passes
  // its reader id as `self_reader`, so that the grace period does not wait on
  // it and its IOTLB cache applies the burst's invalidations; it must hold no
  // translation across the call.
  size_t handle_burst(std::span<Request> requests, uint32_t self_reader = Rcu::kNoReader) noexcept;

  // Control side: replaces the guest memory table (GPA -> HVA), waits one grace
  // period, frees the old table. INVAL: overlapping, empty or wrapping regions,
  // or more than kMaxMemRegions. NOMEM: allocation failed. Nothing changes on error.
  Status set_mem_table(std::span<const MemRegion> regions) noexcept;

  // Reader side (an online reader of this Device's Rcu, through
  // iotlb().online(id) / iotlb().quiescent(id); wait-free, no allocation):
  // translates a DMA of `len` bytes at `iova` by endpoint `ep` for `access`
  // (pagetable::Perm bits) into host virtual segments, split at every mapping
  // and memory-region boundary and merged where contiguous.
  // OK: *nsegs segments in segs. FAULT: some byte has no mapping with that
  // permission, or no guest memory behind it (the whole access fails; a fault
  // event is queued, rate-limited; *fault, when given, gets the same event
  // whether or not the rate limit queued it). INVAL: len 0, range wraps, no
  // access bit, or more segments needed than segs holds (no event).
  Status iova_to_hva(uint32_t reader, EndpointId ep, uint64_t iova, uint64_t len, uint8_t access,
                   std::span<Segment> segs, size_t* nsegs, FaultEvent* fault = nullptr) noexcept;
  // Reader side: as iova_to_hva(), but stops at guest-physical addresses (no
  // memory table), for tools and tests.
  Status iova_to_gpa(uint32_t reader, EndpointId ep, uint64_t iova, uint64_t len, uint8_t access,
                       std::span<Segment> segs, size_t* nsegs, FaultEvent* fault = nullptr) noexcept;
  // Reader side: guest-physical to host virtual through the memory table only,
  // for a device that did not negotiate VIRTIO_F_ACCESS_PLATFORM (its ring and
  // buffer addresses are GPAs and the IOMMU is not on its path). OK: *nsegs
  // segments, split at region boundaries. FAULT: a byte outside guest memory
  // (no fault event: the IOMMU did not refuse it). INVAL: len 0, the range
  // wraps, or more segments needed than segs holds.
  Status gpa_to_hva(uint64_t gpa, uint64_t len, std::span<Segment> segs, size_t* nsegs) const noexcept;
  // Control side: moves queued fault events into `out` (oldest first per
  // reader); returns how many. Starts a new rate-limit window.
  size_t drain_events(std::span<FaultEvent> out) noexcept;
  // Any thread: events dropped by the rate limit or full rings so far.
  uint64_t events_dropped() const noexcept;

  // Control side: the feature bits this device offers: INPUT_RANGE,
  // DOMAIN_RANGE, MAP_UNMAP and PROBE always, MMIO and BYPASS_CONFIG as
  // configured.
  uint64_t features() const noexcept;
  // Control side: the 40-byte config space as the driver reads it
  // (little-endian; reserved bytes zero; the bypass byte as last written).
  void read_config(std::span<uint8_t, kConfigSize> out) const noexcept;
  // Control side: the driver writes the bypass byte. Values other than 0 and
  // 1 are refused (INVAL, nothing changes), as is any write without
  // BYPASS_CONFIG. A change takes effect for translations that start after
  // it; it returns after a grace period, so none that began before is left.
  Status write_bypass(uint8_t value) noexcept;

  // Control side: the config as it is now.
  const Config& config() const noexcept { return cfg_; }
  // Control side: the domain an endpoint is attached to, if any.
  bool endpoint_domain(EndpointId ep, DomainId* d) const noexcept;
  size_t domain_count() const noexcept { return domains_.size(); }
  size_t mapping_count() const noexcept { return mappings_; }
  // Control side: page-table bytes of all live domains (retired tables included
  // until they are reclaimed).
  size_t table_bytes() const noexcept { return table_bytes_; }

  iotlb::Iotlb& iotlb() noexcept { return tlb_; }

 private:
  struct Extent {
    uint64_t virt_end;
    uint64_t phys_start;
    uint32_t flags;
  };
  struct Domain {
    Domain(Rcu& rcu, uint32_t tag, bool bypass) : pt(rcu), tag(tag), bypass(bypass) {}
    pagetable::IoPageTable pt;
    // The IOTLB key of this domain instance, never the wire id: a reader that
    // loaded a domain just before it died may still fill entries from its
    // table, and those must never match the next domain with the same wire id.
    const uint32_t tag;
    const bool bypass;                   // readers: identity translation
    std::map<uint64_t, Extent> extents;  // control only: virt_start -> extent
    uint32_t endpoints = 0;              // control only
  };
  struct MemTable {
    std::vector<MemRegion> regions;  // sorted by gpa, disjoint
    // The region holding gpa, or nullptr.
    const MemRegion* find(uint64_t gpa) const noexcept;
  };
  // One reader's fault events: single producer (the reader), single consumer
  // (the control thread).
  struct alignas(64) FaultRing {
    std::atomic<uint32_t> head{0};  // written by the reader (release), read by drain (acquire)
    alignas(64) std::atomic<uint32_t> tail{0};  // written by drain (release), read by the reader (acquire)
    alignas(64) uint64_t window = 0;              // reader-private: drain window of `counts`
    uint32_t count_ep[16] = {};                   // reader-private: endpoints seen this window
    uint32_t count_n[16] = {};
    std::atomic<uint64_t> dropped{0};             // reader-written (load + store), summed on read
    FaultEvent ev[kFaultRingSize];
  };

  // One request without the sync; writes the tail. Returns the used length.
  uint32_t apply(std::span<const uint8_t> readable, std::span<uint8_t> writable) noexcept;
  Status attach(std::span<const uint8_t> req) noexcept;
  Status detach(std::span<const uint8_t> req) noexcept;
  Status map(std::span<const uint8_t> req) noexcept;
  Status unmap(std::span<const uint8_t> req) noexcept;
  Status probe(std::span<const uint8_t> req, std::span<uint8_t> props) noexcept;
  void detach_endpoint(uint32_t ep) noexcept;
  Status mappable_domain(uint32_t domain, uint64_t virt_start, uint64_t virt_end, Domain** dom) noexcept;
  void retally(const Domain& dom, size_t before) noexcept;
  bool overlaps_resv(const Domain& dom, uint32_t domain_id, uint64_t start, uint64_t end) const noexcept;
  bool endpoint_exists(uint32_t ep) const noexcept { return ep >= cfg_.endpoint_first && ep <= cfg_.endpoint_last; }
  bool domain_in_range(uint32_t d) const noexcept { return d >= cfg_.domain_start && d <= cfg_.domain_last; }
  void sync() noexcept;
  void publish_endpoint(uint32_t ep, const Domain* d) noexcept;
  Status translate_impl(uint32_t reader, EndpointId ep, uint64_t iova, uint64_t len, uint8_t access,
                        std::span<Segment> segs, size_t* nsegs, bool to_hva, FaultEvent* fault) noexcept;
  Status report_fault(uint32_t reader, uint8_t reason, uint8_t access, uint32_t ep, uint64_t iova,
                      FaultEvent* fault) noexcept;

  Config cfg_;
  Rcu& rcu_;
  iotlb::Iotlb tlb_;
  uint64_t granule_;
  std::unordered_map<uint32_t, std::unique_ptr<Domain>> domains_;
  std::unordered_map<uint32_t, uint32_t> attached_;  // endpoint -> domain
  std::vector<std::unique_ptr<Domain>> dying_;       // destroyed after the next grace period
  size_t mappings_ = 0;
  size_t table_bytes_ = 0;  // sum of the live domains' pt.table_bytes()
  uint32_t self_reader_ = Rcu::kNoReader;  // the handle_burst() caller's reader id, during the call
  bool need_grace_ = false;  // a translation readers may hold was removed this burst
  uint32_t next_tag_ = 0;    // IOTLB tags handed to domain instances

  // Reader-visible. Endpoint -> domain (nullptr: unattached), indexed by
  // ep - endpoint_first; release stores on attach/detach pair with the
  // acquire load in translate_impl(). A replaced domain stays valid until the
  // grace period of the burst that replaced it.
  std::unique_ptr<std::atomic<const Domain*>[]> ep_table_;
  std::atomic<const MemTable*> mem_{nullptr};  // release in set_mem_table(), acquire in translate
  std::unique_ptr<FaultRing[]> rings_;
  std::atomic<uint64_t> drain_window_{0};      // release in drain_events(), acquire by readers
  std::atomic<uint8_t> bypass_{0};             // the config byte; relaxed: a plain flag, ordered by the grace period in write_bypass()
};

}  // namespace vxlate::engine
