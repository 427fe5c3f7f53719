// vxlate/dataplane/iommu_queues.h: the virtio-iommu device's own virtqueues,
// serviced in poll mode: the request queue (0) and the event queue (1).
//
// poll() pops every request chain available (up to kMaxRequestBurst),
// prefetching each request struct so that their misses overlap (the queues
// run without Virtqueue's own lookahead, which would only repeat that), then copies
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
// Request batching (set_batching; off by default). A request costs the
// device ~250-400 ns in a burst of 32 but ~500-700 ns served alone (measured
// in vxlate-netperf, bench/RESULTS.md): the chain's descriptors, the request
// and its tail, the used entry and used.idx are lines the driver writes or
// reads on another core, shared by a burst and paid in full by one request.
// A data-plane lcore that also serves the request queue pays that out of its
// frames' time, but only while it has frames to move; and a driver waits only
// at its sync, and says so: viommu_add_req publishes each request without a
// kick, viommu_sync_req kicks and waits. So with batching on, poll() holds
// waiting requests while the caller is busy (idle == false), until one of:
// the driver kicked (notify(): it waits now), min_requests wait, or the oldest
// held one was first seen max_wait ago (a driver that never kicks, or whose
// kick is lost, is still served). An lcore with spare time serves requests as
// they come, as without batching; a saturated one serves lazy UNMAPs (synced
// only when the driver's flush queue fills) in bursts, and a strict guest's
// requests as soon as its kick is seen. The device keeps kicks enabled for
// that (avail_event at the first request it has not consumed, rewritten after
// each served burst, or used.flags 0); requests that arrive while it rewrites
// it are served as if kicked, since the driver may have missed the change.
// A syncing driver waits for what is still held, so min_requests also bounds
// that wait: vxlate-netperf's lazy guest spent 2-3% of its time in sync with
// 16, 4-4.5% with 32 (bench/RESULTS.md). Holding delays no completion a kicking
// driver waits for; it keeps an UNMAP's IOTLB entries until its burst is
// served, which is lazy mode's promise anyway (the driver reuses no IOVA
// before its sync completes). A poll that keeps holding a batch reads
// avail.idx (which the driver writes with every request) and the clock only
// every kLookEvery-th time, and begins no burst when nothing was added
// (bench_virtqueue BM_IommuQueuesHeldPoll).
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
// notify() may be called from any thread (the driver's kick).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
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
  uint64_t held = 0;         // polls that held waiting requests (batching)
  uint64_t kicked = 0;       // bursts served because the driver kicked
  uint64_t overdue = 0;      // bursts served because the oldest waited max_wait
};

// See the file note. min_requests <= 1 turns batching off.
struct RequestBatching {
  uint32_t min_requests = 1;                   // serve once this many wait...
  std::chrono::nanoseconds max_wait{100'000};  // ...or the oldest held one waited this long
};

class IommuQueues {
 public:
  // Throws std::invalid_argument when a queue config asks for ACCESS_PLATFORM.
  IommuQueues(engine::Device& dev, const QueueConfig& requestq, const QueueConfig& eventq);

  // A poll that keeps holding a batch looks at avail.idx and the clock every
  // kLookEvery-th time (see the file note): held requests are served at most
  // kLookEvery - 1 polls after max_wait, or after the batch filled.
  static constexpr uint32_t kLookEvery = 4;

  // Control thread (see contract). Services both queues once; returns the
  // number of requests handled. *interrupt (when given) is set when the driver
  // asked for an interrupt. `idle`: the caller had nothing else to do this
  // round, so requests held for batching are served now (a data-plane lcore
  // passes whether its data queues gave it work; see file note).
  size_t poll(uint32_t self_reader = Rcu::kNoReader, bool* interrupt = nullptr, bool idle = true) noexcept;

  // Control thread, between polls: request batching (see file note).
  void set_batching(const RequestBatching& b) noexcept {
    batching_ = b;
    kicks_armed_ = false;
  }
  const RequestBatching& batching() const noexcept { return batching_; }
  // Any thread: the driver kicked the request queue (its ioeventfd or kickfd
  // fired, or the transport's doorbell was written) after publishing the
  // requests it now waits for. The next poll() serves every request waiting.
  void notify() noexcept {
    // release: pairs with poll()'s acquire; the requests the driver published
    // before kicking are visible to the poll that sees the kick.
    doorbell_.rings.fetch_add(1, std::memory_order_release);
  }

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
  bool hold(bool idle) noexcept;
  // Every poll's end: the event queue serviced, *interrupt set; returns served.
  size_t finish(bool irq, bool* interrupt, size_t served) noexcept;
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
  RequestBatching batching_;
  bool kicked_ = false;    // a kick seen and its requests not all served yet
  bool holding_ = false;   // requests held since held_since_
  uint32_t held_polls_ = 0;  // polls that held them since
  bool kicks_armed_ = false;  // batching asked the driver for kicks
  uint16_t armed_at_ = 0;     // last_avail when avail_event was last written
  std::chrono::steady_clock::time_point held_since_{};
  uint64_t bell_seen_ = 0;
  // Written by the driver's thread, read by each poll: a line of its own.
  struct alignas(64) Doorbell {
    std::atomic<uint64_t> rings{0};
  } doorbell_;
};

}  // namespace vxlate::dataplane
