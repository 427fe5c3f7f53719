// Fault events: report() runs on data-plane lcores (each on its own ring),
// drain() on the device's control thread.
#include "vxlate/engine/fault_events.h"

#include <algorithm>

namespace vxlate::engine {

FaultEvents::FaultEvents(uint32_t max_readers)
    : max_readers_(max_readers), rings_(std::make_unique<Ring[]>(max_readers)) {}

void FaultEvents::report(uint32_t reader, const FaultEvent& event) noexcept {
  Ring& ring = rings_[reader];
  auto drop = [&ring] { ring.dropped.store(ring.dropped.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed); };
  // acquire: pairs with the release increment in drain(); a new window resets
  // this reader's per-endpoint counts.
  const uint64_t window = drain_window_.load(std::memory_order_acquire);
  if (window != ring.window) {
    ring.window = window;
    std::fill(std::begin(ring.count_n), std::end(ring.count_n), 0);
    std::fill(std::begin(ring.count_ep), std::end(ring.count_ep), 0);
  }
  // The endpoint's counter: linear probing from its hash to its slot or the
  // first empty one (there is always one: see the file note).
  const uint64_t key = uint64_t{event.endpoint} + 1;  // 0 marks an empty slot
  size_t slot = (event.endpoint * 0x9e3779b1u) % kFaultTableSlots;
  while (ring.count_ep[slot] != key && ring.count_ep[slot] != 0) slot = (slot + 1) % kFaultTableSlots;
  if (ring.count_ep[slot] == key && ring.count_n[slot] >= kMaxFaultsPerEndpoint) {
    drop();
    return;
  }
  const uint32_t head = ring.head.load(std::memory_order_relaxed);  // only this reader stores
  // acquire: pairs with the release in drain(): the slot was consumed.
  if (head - ring.tail.load(std::memory_order_acquire) >= kFaultRingSize) {
    drop();
    return;
  }
  ring.count_ep[slot] = key;  // a new entry only with a queued event
  ++ring.count_n[slot];
  ring.ev[head % kFaultRingSize] = event;
  ring.head.store(head + 1, std::memory_order_release);  // pairs with the acquire in drain()
  // release: pairs with drain()'s exchange; the event above is visible to the
  // scan that clears this store. Always stored (not only when clear): a skipped
  // store could let a drain clear another reader's flag and miss this event.
  queued_.store(true, std::memory_order_release);
}

size_t FaultEvents::drain(std::span<FaultEvent> out) noexcept {
  // relaxed: an early exit only; the exchange below orders the scan.
  if (!queued_.load(std::memory_order_relaxed)) return 0;
  // acq_rel: acquire pairs with report()'s release store (every event whose
  // flag store this reads is visible to the scan); events queued after it set
  // the flag again for the next drain.
  queued_.exchange(false, std::memory_order_acq_rel);
  size_t n = 0;
  bool left = false;  // events that did not fit in `out`
  for (uint32_t r = 0; r < max_readers_; ++r) {
    Ring& ring = rings_[r];
    uint32_t tail = ring.tail.load(std::memory_order_relaxed);        // only drain stores
    const uint32_t head = ring.head.load(std::memory_order_acquire);  // pairs with report()
    if (tail == head) continue;
    while (tail != head && n < out.size()) out[n++] = ring.ev[tail++ % kFaultRingSize];
    left |= tail != head;
    ring.tail.store(tail, std::memory_order_release);  // the slots may be reused
  }
  // relaxed: only this thread clears the flag, and the events it stands for
  // are already visible here.
  if (left) queued_.store(true, std::memory_order_relaxed);
  if (n != 0) drain_window_.fetch_add(1, std::memory_order_release);  // pairs with report()'s acquire
  return n;
}

uint64_t FaultEvents::dropped() const noexcept {
  uint64_t n = 0;
  for (uint32_t r = 0; r < max_readers_; ++r) n += rings_[r].dropped.load(std::memory_order_relaxed);
  return n;
}

}  // namespace vxlate::engine
