// dataplane/src/vhost_user_session.h (internal): what both sides of a
// vhost-user Port share: the published Session the lcores read
// (vhost_user_data.cpp) and the control side builds (vhost_user_port.cpp),
// and small helpers.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

#include "vxlate/dataplane/vhost_user.h"

namespace vxlate::dataplane::vhost_user::detail {

inline constexpr EndpointId kEp{0};  // the port's one endpoint in its device IOTLB
inline constexpr uint64_t kPage = 4096;

// Relaxed single-writer counter updates.
inline void bump(std::atomic<uint64_t>& c, uint64_t n = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

}  // namespace vxlate::dataplane::vhost_user::detail

namespace vxlate::dataplane::vhost_user {

// The data plane's view of a port, immutable while published except the
// owner-only per-pair state (each pair's lcore writes only its own).
struct Port::Session {
  bool iommu = false;  // ACCESS_PLATFORM: addresses are IOVAs that may miss
  std::unique_ptr<NetDevice> pairs[kMaxQueuePairs];
  int call_fd[kMaxVrings];
  // Owner only: the misses each ring posted lately, when, and under which
  // invalidation generation, so that a held ring or a prefetch asks for the
  // same page again only after kMissRetry, unless an INVALIDATE or a flush
  // came since (the page may have been answered, used and taken away again:
  // strict mode reuses a page within microseconds).
  struct Posted {
    uint64_t v = 0;
    std::chrono::steady_clock::time_point at{};
    uint32_t gen = 0;
  };
  Posted posted[kMaxVrings][kMissSlots];
  // Counters at publication; the owner stores base + this session's.
  PortStats base[kMaxQueuePairs];
  uint64_t held[kMaxQueuePairs] = {};
  bool waiting[kMaxQueuePairs] = {};  // the last enqueue left frames for a miss
  // When prefetch() last asked again for parked receive chains' pages.
  std::chrono::steady_clock::time_point parked_asked[kMaxQueuePairs] = {};
};

}  // namespace vxlate::dataplane::vhost_user
