// vxlate/engine/wire.h: the virtio-iommu wire layouts (virtio spec 1.2, 5.13;
// Linux include/uapi/linux/virtio_iommu.h), defined once for the device, the
// tools, the fuzz targets, the guest model and the tests.
//
// Each request is split as the request virtqueue splits it: the device-readable
// part (head and request fields, the structs below) and the device-writable
// part (PROBE properties, then the 4-byte tail with the status). The spec's C
// structs put the tail inside the request struct; here it is its own layout
// because the two parts live in different descriptors. Fields are Le<T> (byte
// arrays), so every struct has alignment 1 and is read from and written to
// guest buffers with decode<T>()/encode() (vxlate/common/le.h). Field names are
// the spec's, including its inclusive `*_end` fields: wire structs keep the
// spec's words; everything outside them says `last` for an inclusive bound.
//
// Thread safety: layouts and constants; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>

#include "vxlate/common/le.h"

namespace vxlate::engine {

// Request types (virtio_iommu_req_head.type).
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

// Device-specific feature bits offered (legacy BYPASS, bit 3, never).
inline constexpr uint64_t kFeatureInputRange = uint64_t{1} << 0;
inline constexpr uint64_t kFeatureDomainRange = uint64_t{1} << 1;
inline constexpr uint64_t kFeatureMapUnmap = uint64_t{1} << 2;
inline constexpr uint64_t kFeatureProbe = uint64_t{1} << 4;
inline constexpr uint64_t kFeatureMmio = uint64_t{1} << 5;
inline constexpr uint64_t kFeatureBypassConfig = uint64_t{1} << 6;

// Fault reasons and flags (virtio_iommu_fault).
inline constexpr uint8_t kFaultReasonUnknown = 0;
inline constexpr uint8_t kFaultReasonDomain = 1;
inline constexpr uint8_t kFaultReasonMapping = 2;
inline constexpr uint32_t kFaultFlagRead = 1u << 0;
inline constexpr uint32_t kFaultFlagWrite = 1u << 1;
inline constexpr uint32_t kFaultFlagAddress = 1u << 8;

namespace wire {

struct ReqHead {
  uint8_t type;
  uint8_t reserved[3];
};

struct ReqTail {
  uint8_t status;
  uint8_t reserved[3];
};

struct ReqAttach {
  ReqHead head;
  Le32 domain;
  Le32 endpoint;
  Le32 flags;
  uint8_t reserved[4];
};

struct ReqDetach {
  ReqHead head;
  Le32 domain;
  Le32 endpoint;
  uint8_t reserved[8];
};

struct ReqMap {
  ReqHead head;
  Le32 domain;
  Le64 virt_start;
  Le64 virt_end;  // inclusive
  Le64 phys_start;
  Le32 flags;
};

struct ReqUnmap {
  ReqHead head;
  Le32 domain;
  Le64 virt_start;
  Le64 virt_end;  // inclusive
  uint8_t reserved[4];
};

struct ReqProbe {
  ReqHead head;
  Le32 endpoint;
  uint8_t reserved[64];
};

// A PROBE property header; `length` counts the value bytes after it.
struct ProbeProp {
  Le16 type;
  Le16 length;
};

struct ProbeResvMem {
  ProbeProp head;
  uint8_t subtype;
  uint8_t reserved[3];
  Le64 start;
  Le64 end;  // inclusive
};

// One event on the event queue.
struct Fault {
  uint8_t reason;
  uint8_t reserved[3];
  Le32 flags;
  Le32 endpoint;
  uint8_t reserved2[4];
  Le64 address;
};

// The device configuration layout (virtio_iommu_config).
struct Config {
  Le64 page_size_mask;
  Le64 input_start;
  Le64 input_end;  // inclusive
  Le32 domain_start;
  Le32 domain_end;  // inclusive
  Le32 probe_size;
  uint8_t bypass;
  uint8_t reserved[3];
};

static_assert(sizeof(ReqHead) == 4 && sizeof(ReqTail) == 4);
static_assert(offsetof(ReqAttach, domain) == 4 && offsetof(ReqAttach, endpoint) == 8 &&
              offsetof(ReqAttach, flags) == 12 && offsetof(ReqAttach, reserved) == 16 && sizeof(ReqAttach) == 20);
static_assert(offsetof(ReqDetach, domain) == 4 && offsetof(ReqDetach, endpoint) == 8 &&
              offsetof(ReqDetach, reserved) == 12 && sizeof(ReqDetach) == 20);
static_assert(offsetof(ReqMap, domain) == 4 && offsetof(ReqMap, virt_start) == 8 && offsetof(ReqMap, virt_end) == 16 &&
              offsetof(ReqMap, phys_start) == 24 && offsetof(ReqMap, flags) == 32 && sizeof(ReqMap) == 36);
static_assert(offsetof(ReqUnmap, domain) == 4 && offsetof(ReqUnmap, virt_start) == 8 &&
              offsetof(ReqUnmap, virt_end) == 16 && offsetof(ReqUnmap, reserved) == 24 && sizeof(ReqUnmap) == 28);
static_assert(offsetof(ReqProbe, endpoint) == 4 && offsetof(ReqProbe, reserved) == 8 && sizeof(ReqProbe) == 72);
static_assert(offsetof(ProbeProp, length) == 2 && sizeof(ProbeProp) == 4);
static_assert(offsetof(ProbeResvMem, subtype) == 4 && offsetof(ProbeResvMem, start) == 8 &&
              offsetof(ProbeResvMem, end) == 16 && sizeof(ProbeResvMem) == 24);
static_assert(offsetof(Fault, flags) == 4 && offsetof(Fault, endpoint) == 8 && offsetof(Fault, address) == 16 &&
              sizeof(Fault) == 24);
static_assert(offsetof(Config, input_start) == 8 && offsetof(Config, input_end) == 16 &&
              offsetof(Config, domain_start) == 24 && offsetof(Config, domain_end) == 28 &&
              offsetof(Config, probe_size) == 32 && offsetof(Config, bypass) == 36 && sizeof(Config) == 40);

// Builders: a request's readable part with the head's type set, every other
// field as given and the reserved bytes zero, for drivers, tools and tests.
// [virt_start, virt_last] is the spec's inclusive [virt_start, virt_end].
inline ReqAttach attach_req(uint32_t domain, uint32_t endpoint, uint32_t flags = 0) noexcept {
  ReqAttach r{};
  r.head.type = kReqAttach;
  r.domain.set(domain);
  r.endpoint.set(endpoint);
  r.flags.set(flags);
  return r;
}
inline ReqDetach detach_req(uint32_t domain, uint32_t endpoint) noexcept {
  ReqDetach r{};
  r.head.type = kReqDetach;
  r.domain.set(domain);
  r.endpoint.set(endpoint);
  return r;
}
inline ReqMap map_req(uint32_t domain, uint64_t virt_start, uint64_t virt_last, uint64_t phys_start,
                      uint32_t flags) noexcept {
  ReqMap r{};
  r.head.type = kReqMap;
  r.domain.set(domain);
  r.virt_start.set(virt_start);
  r.virt_end.set(virt_last);
  r.phys_start.set(phys_start);
  r.flags.set(flags);
  return r;
}
inline ReqUnmap unmap_req(uint32_t domain, uint64_t virt_start, uint64_t virt_last) noexcept {
  ReqUnmap r{};
  r.head.type = kReqUnmap;
  r.domain.set(domain);
  r.virt_start.set(virt_start);
  r.virt_end.set(virt_last);
  return r;
}
inline ReqProbe probe_req(uint32_t endpoint) noexcept {
  ReqProbe r{};
  r.head.type = kReqProbe;
  r.endpoint.set(endpoint);
  return r;
}

}  // namespace wire

// Readable sizes of each request (head included, tail excluded), the tail,
// a RESV_MEM property, an event and the config space.
inline constexpr size_t kTailSize = sizeof(wire::ReqTail);
inline constexpr size_t kAttachSize = sizeof(wire::ReqAttach);
inline constexpr size_t kDetachSize = sizeof(wire::ReqDetach);
inline constexpr size_t kMapSize = sizeof(wire::ReqMap);
inline constexpr size_t kUnmapSize = sizeof(wire::ReqUnmap);
inline constexpr size_t kProbeSize = sizeof(wire::ReqProbe);
inline constexpr size_t kResvMemPropSize = sizeof(wire::ProbeResvMem);
inline constexpr size_t kFaultEventSize = sizeof(wire::Fault);
inline constexpr size_t kConfigSize = sizeof(wire::Config);
inline constexpr size_t kConfigBypassOffset = offsetof(wire::Config, bypass);

}  // namespace vxlate::engine
