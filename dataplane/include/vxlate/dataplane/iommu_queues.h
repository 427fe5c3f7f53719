// vxlate/dataplane/iommu_queues.h: the virtio-iommu device's own virtqueues,
// serviced in poll mode: the request queue (0) and the event queue (1).
//
// poll() pops every request chain available (up to kMaxRequestBurst),
// prefetching each request struct so that their misses overlap, then copies
// each request's device-readable part out of guest memory (so a guest that
// rewrites it meanwhile changes nothing), hands the whole burst to
// Device::handle_burst() -- one sync, one grace period for all its UNMAPs and
// DETACHes -- then scatters each reply into the chain's writable buffers,
// pushes all used entries and publishes them at once: the driver sees no
// request completed before every one of the burst is (DESIGN.md invariant 2).
// It then moves fault events from the engine into buffers the driver posted on
// the event queue; events that find no buffer wait (up to kPendingEvents, the
// rest are counted as lost).
//
// The virtio-iommu device does not translate its own queues: their addresses
// are GPAs, through the memory table (QueueConfig.access_platform must be false).
//
// Thread-safety contract (the fixed tags of docs/design.md). Control side:
// poll() runs on the Device's control thread: either
// a thread that is not an online reader of the Device's Rcu, or a data-plane
// lcore that is, between two of its bursts, passing its reader id (the grace
// period then skips it; see Device::handle_burst). The memory table changes
// only on that same thread, so the guest pointers poll() holds stay valid.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "vxlate/dataplane/virtqueue.h"
#include "vxlate/engine/device.h"

namespace vxlate::dataplane {

// Fault events kept while the driver has posted no event buffer.
inline constexpr size_t kPendingEvents = 256;
// The event queue's buffer size: struct virtio_iommu_fault (engine/wire.h).
inline constexpr uint32_t kFaultEventSize = engine::kFaultEventSize;

struct IommuQueueStats {
  uint64_t requests = 0;     // request chains handled
  uint64_t bursts = 0;       // handle_burst calls (one sync each)
  uint64_t events = 0;       // fault events delivered to the driver
};

class IommuQueues {
 public:
  // Throws std::invalid_argument when a queue config asks for ACCESS_PLATFORM.
  IommuQueues(engine::Device& dev, const QueueConfig& requestq, const QueueConfig& eventq);

  // Control thread (see contract). Services both queues once; returns the
  // number of requests handled. *interrupt (when given) is set when the driver
  // asked for an interrupt.
  size_t poll(uint32_t self_reader = Rcu::kNoReader, bool* interrupt = nullptr) noexcept;

  const IommuQueueStats& stats() const noexcept { return stats_; }
  const Virtqueue& requestq() const noexcept { return req_; }
  const Virtqueue& eventq() const noexcept { return evq_; }

 private:
  // Largest readable part copied (the largest request struct is 72 bytes).
  static constexpr size_t kMaxReadable = 128;
  struct Slot {
    uint8_t in[kMaxReadable];
    uint32_t out_len;
  };
  bool deliver_events() noexcept;
  void scatter(const Chain& c, const uint8_t* src, uint32_t len) noexcept;

  engine::Device& dev_;
  Virtqueue req_;
  Virtqueue evq_;
  size_t max_writable_;
  std::vector<Slot> slots_;            // one per request of a burst
  std::vector<uint8_t> out_;           // writable scratch, max_writable_ per request
  std::vector<Chain> chains_;          // the burst's chains
  std::vector<engine::Request> reqs_;
  std::array<engine::FaultEvent, kPendingEvents> pending_{};
  size_t npending_ = 0;
  IommuQueueStats stats_;
};

}  // namespace vxlate::dataplane
