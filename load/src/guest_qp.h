// load/src/guest_qp.h: the guest side of one netperf queue pair: a polling
// virtio-net driver with its transmit and receive queues, buffers, IOVA
// allocator and the vIOMMU policy of the run's mode (identity, lazy, strict;
// see vxlate/load/netperf.h). Internal to vxlate::load.
//
// One pass of the driver loop (step()) reaps transmit completions, reaps and
// checks received frames, syncs lazy mode's requests once enough recycles
// wait, refills the receive queue and sends the next burst. Requests go through the run's shared IommuDriver under
// its lock; time spent there is counted as sync time.
//
// Thread-safety contract: Setup only: construction and setup_mappings(), on
// the main lcore before the lcores start. Guest side: everything else, on the
// one lcore that owns the queue pair (queue pair 0: the main lcore). The
// progress counters `packets`, `bytes` and `busy_cycles` may be read by any
// thread (relaxed), `clock` after an acquire of `started`; the rest once the
// owner stopped.
#pragma once

#include <time.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

#include "rx_free_list.h"
#include "vxlate/common/status.h"
#include "vxlate/load/guest.h"

namespace vxlate::load::detail {

struct RunState;

// Page-sized IOVAs from one range, LIFO like Linux's per-CPU IOVA rcache, so a
// freed IOVA is soon mapped again to a different buffer.
class IovaAlloc {
 public:
  IovaAlloc(uint64_t base, uint32_t pages, uint64_t page_size) {
    for (uint32_t i = pages; i-- > 0;) free_.push_back(base + uint64_t{i} * page_size);
  }
  uint64_t get() {
    if (free_.empty()) throw std::runtime_error("netperf: guest IOVA range exhausted");
    const uint64_t v = free_.back();
    free_.pop_back();
    return v;
  }
  void put(uint64_t iova) { free_.push_back(iova); }

 private:
  LineVector<uint64_t> free_;
};

// One guest buffer: a page of guest memory and its current device address.
struct Buf {
  uint64_t gpa = 0;
  uint64_t addr = 0;        // what the descriptor carries (IOVA or GPA)
  uint64_t next_addr = 0;   // lazy: the IOVA it moves to (its MAP queued), or 0
  bool next_ready = false;  // lazy: next_addr's MAP completed; moves when next posted
  bool poisoned = false;    // strict: poisoned after its UNMAP completed
};

// alignas(64): its fields, which the owner writes on every pass, share no line
// with a neighbour (see LineAllocator, which its arrays use too).
struct alignas(64) GuestQp {
  // Setup only.
  GuestQp(RunState& run, uint16_t qp);
  // Setup only, before the device lcore runs: maps the rings and, in lazy
  // mode, every buffer (queued on the IommuDriver; the caller syncs).
  void setup_mappings();

  // Guest side. One pass of the driver loop; true when it made progress.
  bool step();
  // Guest side. step(), its TSC cycles added to busy_cycles when it made progress.
  bool timed_step();
  // Guest side, once: the counts as they stand become the base of the
  // measured interval (the owner calls it when it sees RunState::measuring).
  void begin_measure();
  // Guest side. The packet budget is spent (and no transaction in flight).
  bool budget_done() const;
  // Guest side. Loops on step() until stopped or the budget is spent.
  void run_loop();

  RunState& run;
  uint16_t qp;
  std::unique_ptr<DriverQueue> rxq, txq;
  LineVector<Buf> tx, rx;
  LineVector<uint32_t> tx_free;                       // transmit slots ready for use (LIFO)
  RxFreeList rx_free;                                 // receive slots ready for use
  LineVector<Buf*> moving;                            // lazy: MAPs of new IOVAs not synced yet
  uint32_t recycles = 0;                              // lazy: recycles since the last sync
  bool recycle_due = false;                           // lazy: the next buffer without a move pending moves
  LineVector<uint64_t> stale_iovas;                   // lazy: freed at the next flush
  uint64_t rng = 0x9e3779b97f4a7c15;                   // random_buffers: xorshift64 state
  uint64_t spare_iova = 0;                            // lazy, !lazy_move: the mapped spare IOVA
  LineVector<uint32_t> tx_done, rx_done;              // strict: completed, to unmap
  LineVector<std::pair<uint32_t, uint32_t>> rx_pending;  // strict: (slot, len) to process after the unmap
  // One pass's receive refills and transmit frames (slot, frame length),
  // reserved at setup so that a pass allocates nothing for them.
  LineVector<uint32_t> rx_batch;
  LineVector<std::pair<uint32_t, uint32_t>> tx_batch;
  std::unique_ptr<IovaAlloc> iovas;
  uint64_t completions = 0;
  uint32_t seq = 0;            // next frame's sequence number
  uint32_t send_left = 0;      // tcp_stream: bytes left in the current send
  bool rr_waiting = false;
  uint64_t rr_sent_tsc = 0;
  std::vector<uint32_t> rtt_cycles;
  uint64_t sync_cycles = 0;
  uint64_t total_cycles = 0;   // from the start of the measured interval to the stop
  // Progress, read by the main lcore: owner-written, relaxed.
  std::atomic<uint64_t> packets{0};
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> busy_cycles{0};  // TSC cycles in steps that made progress
  // The counts when the measured interval began (owner-written).
  struct Base {
    uint64_t tsc = 0, packets = 0, bytes = 0, rx_frames = 0, sync_cycles = 0;
    size_t rtts = 0;
  } base;
  bool measuring = false;
  // A worker lcore's CPU clock (queue pairs 1..): set before started's release.
  clockid_t clock = CLOCK_THREAD_CPUTIME_ID;
  std::atomic<bool> started{false};
  uint64_t rx_frames = 0;
  uint64_t corrupt = 0;
  uint64_t poison_violations = 0;

 private:
  void reap_tx();
  void reap_rx();
  void process_rx(uint32_t slot, uint32_t used_len);
  void refill_rx();
  void send();
  void post_tx(uint32_t slot, uint32_t frame_len);
  void map_coherent(DriverQueue& q, uint64_t iova);
  // Lazy: after each completion of `b`; every lazy_recycle completions a
  // buffer starts a move (lazy_recycle(): false when `b` has one pending).
  void lazy_complete(Buf& b, uint8_t perm);
  bool lazy_recycle(Buf& b, uint8_t perm);
  // Lazy: a buffer about to be posted takes its new IOVA once the MAP is synced.
  void move_if_ready(Buf& b);
  void lazy_flush();
  // Advances the random_buffers generator (xorshift64).
  uint64_t next_random();
  // Takes a transmit buffer off a non-empty free list: the last one, or a
  // random one (random_buffers).
  uint32_t take_tx();
  // Unmaps `slots` (one sync); transmit buffers are poisoned and go back to
  // tx_free, receive ones are left to the caller (tx_free null).
  void strict_unmap(LineVector<uint32_t>& slots, LineVector<Buf>& bufs, LineVector<uint32_t>* tx_free_list);
  // Syncs the IommuDriver (iommu_lock held), counting the wait as sync time.
  Status sync_locked();
};

// rte_eal_remote_launch entry of a guest lcore; arg: its GuestQp.
int guest_lcore_main(void* arg);

}  // namespace vxlate::load::detail
