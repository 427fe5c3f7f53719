// load/src/rx_free_list.h: the free receive buffers of one netperf queue pair
// (guest_qp.h). Internal to vxlate::load.
//
// Buffers are handed out in address order: the next free one after the last
// taken, wrapping around, as Linux's virtio-net carves its mergeable receive
// buffers one after another out of a page frag (add_recvbuf_mergeable() with
// skb_page_frag_refill(), drivers/net/virtio_net.c), whatever order the stack
// freed the earlier ones in. A buffer held back for a while (strict mode's,
// until its UNMAP completes) is skipped and taken again in its turn once put
// back, so the device writes, and the driver reads, receive buffers in the
// same order in every mode. (A LIFO list, as before, kept identity mode's
// buffers in one fixed cycle while lazy mode's recycles, which then held a
// buffer back until its flush, scrambled theirs, and the driver's first read
// of each received frame cost lazy mode up to twice as much: an artefact of
// the model, not of the IOMMU; see bench/RESULTS.md.)
// Or, with `random_order`, a uniformly random free buffer (--random-buffers).
// Slots are indices of buffers allocated in address order.
//
// Thread-safety contract: none; owned by its queue pair's guest lcore (set up
// on the main lcore before the lcores start).
#pragma once

#include <cstdint>
#include <stdexcept>

#include "vxlate/load/guest.h"

namespace vxlate::load::detail {

class RxFreeList {
 public:
  // Setup only: `slots` buffers, none free yet.
  void reset(uint32_t slots, bool random_order);
  bool empty() const noexcept { return count_ == 0; }
  uint32_t size() const noexcept { return count_; }
  // Frees `slot`. std::logic_error (a driver bug) when it is out of range or
  // already free.
  void put(uint32_t slot);
  // Takes a free slot: the next in address order, or (random_order) the
  // (r mod size())-th free one. std::logic_error when none is free.
  uint32_t take(uint64_t r);

 private:
  LineVector<uint64_t> bits_;  // bit i: slot i free
  uint32_t slots_ = 0;
  bool random_ = false;
  uint32_t count_ = 0;
  uint32_t next_ = 0;  // where the address-order search starts
};

}  // namespace vxlate::load::detail
