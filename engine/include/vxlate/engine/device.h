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
#include "vxlate/iotlb/iotlb.h"
#include "vxlate/pagetable/io_pgtable.h"

namespace vxlate::engine {

// Wire constants (virtio-iommu, Linux include/uapi/linux/virtio_iommu.h).
enum RequestType : uint8_t {
  kReqAttach = 1,
  kReqDetach = 2,
  kReqMap = 3,
  kReqUnmap = 4,
  kReqProbe = 5,
};
inline constexpr uint32_t kAttachFlagBypass = 1u << 0;
inline constexpr uint32_t kMapFlagRead = 1u << 0;
inline constexpr uint32_t kMapFlagWrite = 1u << 1;
inline constexpr uint32_t kMapFlagMmio = 1u << 2;
inline constexpr uint16_t kProbeTypeNone = 0;
inline constexpr uint16_t kProbeTypeResvMem = 1;
inline constexpr uint8_t kResvMemReserved = 0;
inline constexpr uint8_t kResvMemMsi = 1;

// Readable sizes of each request struct (head included), and the tail.
inline constexpr size_t kTailSize = 4;
inline constexpr size_t kAttachSize = 20;
inline constexpr size_t kDetachSize = 20;
inline constexpr size_t kMapSize = 36;
inline constexpr size_t kUnmapSize = 28;
inline constexpr size_t kProbeSize = 72;
inline constexpr size_t kResvMemPropSize = 4 + 20;  // header + value

// Limits a guest could push on, each with its reason.
// Domains alive at once: each costs at least one 4 KiB root table and a
// generation slot share; 64 Ki is far beyond any guest's device count.
inline constexpr size_t kDefaultMaxDomains = size_t{1} << 16;
// Mappings alive at once over all domains: each costs an extent record (~64 B)
// plus its tables; 1 Mi covers a 4 GiB guest mapped page by page.
inline constexpr size_t kDefaultMaxMappings = size_t{1} << 20;
// Requests one handle_burst() takes: a virtqueue never holds more.
inline constexpr size_t kMaxRequestBurst = 1024;

struct ResvRegion {
  bool all_endpoints;   // applies to every endpoint
  uint32_t endpoint;    // when !all_endpoints
  uint64_t start;
  uint64_t end;         // inclusive
  uint8_t subtype;      // kResvMemReserved or kResvMemMsi
};

struct Config {
  uint64_t page_size_mask = 0xfffffffffffff000;
  uint64_t input_start = 0;
  uint64_t input_end = pagetable::kIovaLast;
  uint32_t domain_start = 0;
  uint32_t domain_end = 0xffffffff;
  uint32_t endpoint_first = 0;
  uint32_t endpoint_last = 0xffff;
  uint32_t probe_size = 512;
  uint8_t bypass = 0;             // the config byte (meaningful with BYPASS_CONFIG)
  bool feature_mmio = true;       // VIRTIO_IOMMU_F_MMIO negotiated
  bool feature_bypass_config = true;
  size_t max_domains = kDefaultMaxDomains;
  size_t max_mappings = kDefaultMaxMappings;
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
  size_t handle_burst(std::span<Request> requests) noexcept;

  // Control side: the config as it is now.
  const Config& config() const noexcept { return cfg_; }
  // Control side: the domain an endpoint is attached to, if any.
  bool endpoint_domain(EndpointId ep, DomainId* d) const noexcept;
  size_t domain_count() const noexcept { return domains_.size(); }
  size_t mapping_count() const noexcept { return mappings_; }

  iotlb::Iotlb& iotlb() noexcept { return tlb_; }

 private:
  struct Extent {
    uint64_t virt_end;
    uint64_t phys_start;
    uint32_t flags;
  };
  struct Domain {
    explicit Domain(Rcu& rcu, bool bypass) : pt(rcu), bypass(bypass) {}
    pagetable::IoPageTable pt;
    std::map<uint64_t, Extent> extents;  // virt_start -> extent
    uint32_t endpoints = 0;
    bool bypass;
  };

  // One request without the sync; writes the tail. Returns the used length.
  uint32_t apply(std::span<const uint8_t> readable, std::span<uint8_t> writable) noexcept;
  Status attach(std::span<const uint8_t> req) noexcept;
  Status detach(std::span<const uint8_t> req) noexcept;
  Status map(std::span<const uint8_t> req) noexcept;
  Status unmap(std::span<const uint8_t> req) noexcept;
  Status probe(std::span<const uint8_t> req, std::span<uint8_t> props) noexcept;
  void detach_endpoint(uint32_t ep) noexcept;
  bool overlaps_resv(const Domain& dom, uint32_t domain_id, uint64_t start, uint64_t end) const noexcept;
  bool endpoint_exists(uint32_t ep) const noexcept { return ep >= cfg_.endpoint_first && ep <= cfg_.endpoint_last; }
  bool domain_in_range(uint32_t d) const noexcept { return d >= cfg_.domain_start && d <= cfg_.domain_end; }
  void sync() noexcept;

  Config cfg_;
  Rcu& rcu_;
  iotlb::Iotlb tlb_;
  uint64_t granule_;
  std::unordered_map<uint32_t, std::unique_ptr<Domain>> domains_;
  std::unordered_map<uint32_t, uint32_t> attached_;  // endpoint -> domain
  std::vector<std::unique_ptr<Domain>> dying_;       // destroyed after the next grace period
  size_t mappings_ = 0;
};

}  // namespace vxlate::engine
