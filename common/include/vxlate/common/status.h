// vxlate/common/status.h: the status every fallible vxlate call returns.
//
// The values are the virtio-iommu wire codes (VIRTIO_IOMMU_S_*), so a request
// handler writes a Status straight into the request tail. Richer internal errors
// are folded into one of these where they arise.
//
// Thread safety: plain values and a pure function; safe from any thread.
#pragma once

#include <cstdint>

namespace vxlate {

enum class Status : uint8_t {
  kOk = 0,      // VIRTIO_IOMMU_S_OK
  kIoErr = 1,   // VIRTIO_IOMMU_S_IOERR
  kUnsupp = 2,  // VIRTIO_IOMMU_S_UNSUPP
  kDevErr = 3,  // VIRTIO_IOMMU_S_DEVERR
  kInval = 4,   // VIRTIO_IOMMU_S_INVAL
  kRange = 5,   // VIRTIO_IOMMU_S_RANGE
  kNoEnt = 6,   // VIRTIO_IOMMU_S_NOENT
  kFault = 7,   // VIRTIO_IOMMU_S_FAULT
  kNoMem = 8,   // VIRTIO_IOMMU_S_NOMEM
};

// The wire name ("OK", "INVAL", ...); "?" for a value outside the enum.
const char* to_string(Status s) noexcept;

}  // namespace vxlate
