// vxlate/engine/fault_events.h: fault events from the data path to the control
// thread, rate-limited per endpoint.
//
// A translation that faults (no domain, no mapping, no permission, no guest
// memory) reports a virtio-iommu fault event. Readers are data-plane lcores
// that must not block or share lines, so each reader has its own single-
// producer/single-consumer ring of kFaultRingSize events; the control thread
// drains all rings in one pass (oldest first per reader) and forwards them to
// the event virtqueue. A hostile guest faulting in a loop must not flood the
// event queue or the control thread: between two drains each reader queues at
// most kMaxFaultsPerEndpoint events per endpoint; the rest, and events that
// find a full ring, are counted as dropped. A drain that moves events starts
// a new window, which each reader notices (one acquire load) at its next
// fault. (A drain that finds nothing ends no budget: a reader's counts are
// non-zero only while events it queued in the current window wait in its
// ring, and the drain that moves them starts the next window.)
//
// The drain runs once per poll of every device's queues, mostly with nothing
// to move, so an empty drain costs one load: each queued event also sets a
// `queued` flag on a line of its own, and a drain scans the rings only when
// it finds the flag set (clearing it first). Measured by
// BM_IommuQueuesIdlePoll (bench_virtqueue): before the flag, an idle poll
// scanned every reader's ring and started a new window (a locked add) each
// time: 18.2 ns with 8 reader ids, 62.4 ns with 64; with the flag 11.8 and
// 11.7 ns (medians of 5, bench/RESULTS.md).
//
// The per-endpoint budget is exact: each reader counts events per endpoint in
// an open-addressing table of kFaultTableSlots. An endpoint enters the table
// only with an event that is queued, and at most kFaultRingSize are queued per
// window, so the table is never more than half full and a probe is bounded;
// memory is 4.5 KiB per reader whatever the endpoint range (a flat array would
// cost the range per reader: 1 Mi endpoints x 1024 readers).
//
// Thread-safety contract:
//   - report(): reader side (the reader's own ring; wait-free, no allocation).
//   - drain(): control side (one thread per FaultEvents).
//   - dropped(): any thread; relaxed sum.
//   - construction/destruction: setup only.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace vxlate::engine {

// Fault events one reader keeps until the control thread drains them, and how
// many one endpoint may queue per reader between two drains.
inline constexpr size_t kFaultRingSize = 256;
inline constexpr uint32_t kMaxFaultsPerEndpoint = 8;
// Per-endpoint counters per reader: twice the events one window can queue.
inline constexpr size_t kFaultTableSlots = 2 * kFaultRingSize;

// One fault, in host order (wire::Fault is its layout on the event queue).
struct FaultEvent {
  uint8_t reason;
  uint32_t flags;
  uint32_t endpoint;
  uint64_t address;  // the first faulting IOVA
};

class FaultEvents {
 public:
  // Setup only: one ring per reader id below `max_readers`. Throws std::bad_alloc.
  explicit FaultEvents(uint32_t max_readers);

  // Reader side: queues `event` on `reader`'s ring unless its endpoint's budget
  // for this window is spent or the ring is full (then it is counted as dropped).
  void report(uint32_t reader, const FaultEvent& event) noexcept;
  // Control side: moves queued events into `out` (oldest first per reader);
  // returns how many. Starts a new rate-limit window.
  size_t drain(std::span<FaultEvent> out) noexcept;
  // Any thread: events dropped by the rate limit or full rings so far.
  uint64_t dropped() const noexcept;

 private:
  struct alignas(64) Ring {
    std::atomic<uint32_t> head{0};              // written by the reader (release), read by drain (acquire)
    alignas(64) std::atomic<uint32_t> tail{0};  // written by drain (release), read by the reader (acquire)
    alignas(64) uint64_t window = 0;            // reader-private: drain window of the counts
    uint64_t count_ep[kFaultTableSlots] = {};   // reader-private: endpoint + 1 per slot, 0 = empty
    uint8_t count_n[kFaultTableSlots] = {};     // reader-private: events queued per slot this window
    std::atomic<uint64_t> dropped{0};           // reader-written (load + store), summed on read
    FaultEvent ev[kFaultRingSize];
  };

  uint32_t max_readers_;
  std::unique_ptr<Ring[]> rings_;
  std::atomic<uint64_t> drain_window_{0};  // release in drain(), acquire in report()
  // An event was queued since the drain last cleared it: release store by
  // report() after its head store, acq_rel exchange by drain() before it
  // scans (so the scan sees every event whose flag store it read), relaxed
  // load for drain()'s early exit. A line of its own: readers write it once
  // per queued event, the control thread reads it at every drain.
  alignas(64) std::atomic<bool> queued_{false};
};

}  // namespace vxlate::engine
