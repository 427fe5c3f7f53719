// vxlate/engine/config.h: a virtio-iommu device's configuration and the limits
// a guest could push on, each a named constant with its reason.
//
// Thread safety: value types and constants; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "vxlate/engine/wire.h"
#include "vxlate/pagetable/io_pgtable.h"

namespace vxlate::engine {

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

// A reserved region reported by PROBE: [start, last] of one endpoint, or of all.
struct ResvRegion {
  bool all_endpoints;  // applies to every endpoint
  uint32_t endpoint;   // when !all_endpoints
  uint64_t start;
  uint64_t last;       // inclusive
  uint8_t subtype;     // kResvMemReserved or kResvMemMsi
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

}  // namespace vxlate::engine
