// virtqueue_fuzz: libFuzzer target for the device side of a split virtqueue
// (vxlate::dataplane::Virtqueue) and the virtio-iommu queues (IommuQueues)
// over the same guest memory, driven by a hostile guest that writes anything
// into its memory between any two device calls.
//
// Guest memory is kMemBytes of one mapping with a PROT_NONE page on each side,
// so a host access outside guest memory faults (ASan reports the rest). The
// memory table maps only it: gpa [kGpa, kGpa + kMemBytes), either as one
// region or (header bit) as the ring area plus 4 KiB buffer chunks whose HVAs
// are pairwise swapped, with one chunk left out (a hole in guest memory).
// With ACCESS_PLATFORM, endpoint kEndpoint is attached to domain 1, IOVA
// window A maps all guest memory RW, and window B starts empty; MAP, UNMAP
// and ATTACH steps change both, so buffers cross holes, read-only pages and
// pages whose guest memory is missing.
//
// Input format (every byte string is a valid input; a step cut short by the
// end of input is dropped):
//   header, 11 bytes (missing bytes read as 0):
//     h0 bits 0..3  queue size: 1 << n for n <= 10, 11: 2048, 12: 0, 13: 6,
//                   14: 32768 (larger than guest memory), 15: 3
//        bit 4      VIRTIO_RING_F_INDIRECT_DESC    bit 5  VIRTIO_RING_F_EVENT_IDX
//        bit 6      VIRTIO_F_ACCESS_PLATFORM       bit 7  custom ring layout (h5..h10)
//     h1 bit 0      buffer chunks swapped, one left out (see above)
//        bit 1      the reader stays online: control steps pass it as
//                   self_reader (Device::handle_burst, IommuQueues::poll)
//        bit 2      max_chain_bytes in units of 256 B
//        bit 3      max_chain_descs in units of 16 (so past kMaxChainDescs)
//        bit 4      hold_on_miss: a buffer or indirect table that does not
//                   translate (a FAULT) is a miss, not a bad chain (in effect
//                   with ACCESS_PLATFORM only)
//        bit 5      park_on_miss (in effect with bit 4, ACCESS_PLATFORM and a
//                   valid size: Virtqueue::parks())
//     h2..h3        max_chain_bytes (u16 LE; 0: no limit)
//     h4            max_chain_descs (0: kMaxChainDescs)
//     h5..h10       custom desc, avail, used offsets in guest memory (u16 LE
//                   each, any alignment)
//   then steps [op][args]; op & 15 selects (13, 14 are POP too), u16/u32 LE:
//     0 WRITE     [off u16][n u8][n bytes]  raw bytes into guest memory (gpa
//                 offsets, wrapping at kMemBytes; a hole swallows them)
//     1 DESC      [tgt u8][i u16][fl u8][aoff u16][len u32][next u16]
//                 a descriptor: tgt % 4: 0 the queue's table (i % size),
//                 1 request queue, 2 event queue (i % 8), 3 any 16-byte slot
//                 of guest memory (i % 4096, for indirect tables). fl bits
//                 0..2: NEXT, WRITE, INDIRECT; bit 3: also flag bit 15;
//                 bits 4..5: address window of aoff: 0 guest memory (window A
//                 with ACCESS_PLATFORM for the queue's and slot descriptors,
//                 else gpa), 1 window B, 2 the top of the 64-bit space
//                 (wraps), 3 address 0 (nothing there).
//     2 AVAIL     [q u8][head u16]  the driver offers a head on queue q % 3
//                 (0 the queue, 1 request queue, 2 event queue)
//     3 AVAIL_IDX [q u8][delta u16] the driver moves avail.idx without
//                 writing entries (index jumps)
//     4 BEGIN     [budget u16]  begin() a burst (0xffff: kMaxQueueSize,
//                 0xfffe: UINT32_MAX); ends any burst in progress. Ignored
//                 after kMaxBursts bursts or kMaxInputDescs descriptors.
//     5 POP       [act u8][arg u16]  act bits 0..1: 0 push min(arg,
//                 writable_bytes), 1 refuse, 2 hold (pushed at END), 3 push
//                 writable_bytes; bit 2: touch the segments first (read the
//                 readable ones, fill the writable ones with arg's low byte);
//                 bit 3: repeat until pop() returns false
//     6 UNPOP     [n u8]  unpop() up to n chains, as many as the contract allows;
//                 on a queue that parks, give_back() of k = min(n & 0x7f, held)
//                 of the chains popped this burst and not pushed (POP's act
//                 2): n bit 7, the first k of them, else the last k
//     7 END       complete held chains, publish(), check the burst
//     8 KICKS     [b u8]  b & 1: enable_kicks(), else disable_kicks()
//     9 MAP       [dom u8][page u16][n u8][gpa_page u8][perm u8]  a MAP of
//                 domain 1 + dom % 2: n + 1 pages at window (page bit 15: A,
//                 else B) page & 0x7fff, to gpa page gpa_page (pages past
//                 guest memory have none), flags perm & 7
//    10 UNMAP     [dom u8][page u16][n u8]  as MAP
//    11 ATTACH    [b u8]  b bit 7: DETACH the endpoint from domain 1 + b % 2,
//                 else ATTACH it there
//    12 POLL      IommuQueues::poll() (request queue and event queue, size 8,
//                 at fixed gpas; their buffers come from DESC and WRITE); op
//                 bit 4: a busy caller, with request batching on from then on
//                 (min 4, max_wait 0: a request is held for one poll at most);
//                 bit 5: the driver kicked (notify()) first
//    15 COMPLETE_PARKED  complete_parked(), as the control side of a stopped
//                 queue; op bit 4: parked_misses() instead, with room for
//                 op >> 5 misses (0: one per parked chain)
//   POP, UNPOP and KICKS outside a burst are ignored, and control steps
//   (MAP .. POLL, COMPLETE_PARKED) inside one first end it, as the threading
//   contract has it: the harness is the one lcore that owns the queue and,
//   between its bursts, the control thread.
//
// Checked after every call, trapping on the first violation (virtqueue.h's
// bounded-work promise and the Chain contract):
//   - a popped chain: head < size; 1 <= descs <= the queue's descriptor cap;
//     nreadable <= nsegs <= kMaxChainSegs; every segment non-empty and inside
//     guest memory; segment lengths add up to readable_bytes and
//     writable_bytes; their sum <= max_chain_bytes when set;
//   - per pop(): stats().chains moves by exactly the good chain returned;
//     stats().used does not move before publish(); with the rings in view,
//     the avail slots it consumed hold exactly as many out-of-range heads as
//     it skipped, the last one the returned chain's head (unless it came from
//     the FIFO), and the bad chains it completed on the way are, in order,
//     among their heads;
//   - hold_on_miss and parking, per pop() (F: parked(), P: Δstats().parked,
//     H: Δstats().held): H <= 1, only on a queue that holds, and then pop()
//     returns false and, on a queue that parks, F = size; P and F stay 0
//     unless the queue parks; F <= size. The chains that left the FIFO,
//     F_before + P - F_after, are the bad ones it completed, or one more, and
//     then the chain returned is the FIFO's and no avail slot was consumed;
//     else pop() consumed good + bad (skipped heads included) + P avail
//     slots (a held chain none). The harness bounds the budget left and the
//     FIFO's front that a pop() may walk again (all parked chains after a
//     MAP moved maps_applied(), given-back ones always, none parked in this
//     burst; each walk costs a unit of budget): pop() leaves the FIFO no more
//     chains than that, walks avail slots only once it is walked, stops with
//     slots left only without budget, and walks nothing after a held chain;
//     once the burst has written a queue's worth of used entries (reachable
//     with parking only when the driver posts heads twice) pop() does nothing.
//     So a parked chain is walked (and returned) at most once a burst unless
//     given back. With the rings in view the harness keeps the multiset of
//     parked heads: a chain pop() takes from the FIFO, good or bad, and every
//     entry complete_parked() writes, is one of them;
//   - give_back() of k chains: F grows by min(k, size - F), stats().chains
//     drops by k, the others are completed (len 0, their heads, last first)
//     and counted as kLoop;
//   - complete_parked(): completes all parked chains exactly when the used
//     ring translates now (Device::iotlb_translate(), aligned; always with
//     the rings in view), else none: Δused = Δparked_returned = their number,
//     no other counter moves, the entries (head, 0) are the parked heads and
//     used.idx moves by that; parked_misses(): min(room, F - given-back
//     chains) misses, each for a read or a write;
//   - after every burst the harness drains take_miss(): at most
//     kMissesKept, each page and access once, none unless the queue holds,
//     at least one after a burst that parked or held a chain;
//   - per burst (B: the budget, S: avail slots pop() consumed, re-pops of
//     unpopped chains included; U: chains unpopped; R: walks of parked
//     chains, at most; H: chains held; ΔF: Δparked()): S <= B; S - U <= the
//     available() that begin() saw <= size; Δdescs <= (S + R + H) x the
//     descriptor cap; Δtranslations <= 3 + (S + R + H) x (kMaxChainSegs + 1);
//     Δchains + Δbad_total + ΔF = S - U; Δused = entries pushed (the
//     harness's, refused ones, bad chains pop() completed, parked ones too,
//     given-back ones without room) = Δchains + Δbad_total - Δbad[kHeadRange];
//     Δinterrupts = publish()'s answer; every counter only grows; a failed
//     begin() counts exactly one ring fault or break (none when already
//     broken) and pops nothing; last_avail() is the harness's next slot;
//     every slot consumed is completed, parked or a skipped head: used.idx +
//     parked() + heads skipped = slots consumed, as the harness counts them,
//     after every burst and complete_parked();
//   - when the rings are aligned, disjoint, contiguous in host memory and
//     where the harness placed them (ring view): begin() succeeds exactly when
//     avail.idx moved by at most size since the last slot consumed, and
//     available() is that distance; every used entry holds the pushed head
//     (id < size, len 0 for bad chains) when written; used.idx equals the
//     entries published; publish()'s answer follows used_event or
//     NO_INTERRUPT; enable_kicks() writes avail_event or clears NO_NOTIFY and
//     reports avail.idx != the next slot; disable_kicks() sets NO_NOTIFY;
//   - IommuQueues::poll(): requests handled <= kMaxRequestBurst and equal to
//     the request queue's good chains; both queues within the same slot,
//     descriptor, translation and used-entry bounds.
//
// With VXLATE_DEBUG_CHECKS (scripts/fuzz.sh) the library's own contract
// checks also hold the harness to the API: unpop() only of chains popped since
// the last completion and never on a queue that parks, give_back() only on
// one, complete_parked() only after publish(), an online reader in every
// burst, no quiescent report inside one.
//
// Seeds: fuzz/gen_virtqueue_corpus.py writes fuzz/corpus/virtqueue/ in this
// format. VQFUZZ_TRACE=1 prints one line per burst and poll on stderr.
#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "vxlate/common/le.h"
#include "vxlate/common/rcu.h"
#include "vxlate/dataplane/iommu_queues.h"
#include "vxlate/dataplane/virtio_ring.h"
#include "vxlate/dataplane/virtqueue.h"
#include "vxlate/engine/device.h"
#include "vxlate/engine/wire.h"

#include "support/virtio_iommu.h"

namespace {

using vxlate::EndpointId;
using vxlate::Rcu;
using namespace vxlate::dataplane;
namespace engine = vxlate::engine;
using vxlate::test::attach_req;
using vxlate::test::detach_req;
using vxlate::test::encoded;
using vxlate::test::map_req;
using vxlate::test::unmap_req;

#define FUZZ_CHECK(cond) \
  do {                   \
    if (!(cond)) __builtin_trap(); \
  } while (0)

constexpr uint64_t kPage = 0x1000;
// Guest memory: the rings of the largest fixed layout (size 1024), the two
// virtio-iommu queues, and 8 buffer chunks.
constexpr uint64_t kMemBytes = 0x10000;
constexpr uint64_t kGpa = 0x40000000;
constexpr uint64_t kIovaA = uint64_t{1} << 32;  // all guest memory, RW, at setup
constexpr uint64_t kIovaB = uint64_t{2} << 32;  // pages the input maps
constexpr uint64_t kWrapBase = 0xffffffffffff0000;
// Fixed layout (gpa offsets).
constexpr uint32_t kDescOff = 0x0000;   // up to 1024 entries
constexpr uint32_t kAvailOff = 0x4000;  // up to 1024 entries: 2054 B
constexpr uint32_t kUsedOff = 0x5000;   // up to 1024 entries: 8198 B
constexpr uint32_t kIommuQueueSize = 8;
constexpr uint32_t kReqDescOff = 0x7400, kReqAvailOff = 0x7500, kReqUsedOff = 0x7600;
constexpr uint32_t kEvDescOff = 0x7800, kEvAvailOff = 0x7900, kEvUsedOff = 0x7a00;
constexpr uint32_t kBufOff = 0x8000;  // buffer chunks from here
constexpr uint32_t kChunks = 8;
constexpr uint32_t kHoleChunk = 5;    // swapped layout: no guest memory here
constexpr uint32_t kEndpoint = 1;
// Work one input may ask for: no burst begins after kMaxBursts, or once the
// queue has visited kMaxInputDescs descriptors. One burst visits at most
// 2048 x kMaxChainDescs (2 Mi, ~0.3 s under ASan), so an input stays far
// below the per-input timeout.
constexpr uint32_t kMaxBursts = 64;
constexpr uint64_t kMaxInputDescs = uint64_t{1} << 20;
// Bytes of a segment the consumer touches at each end (the whole of a short one).
constexpr uint64_t kTouchBytes = 64;
constexpr uint32_t kRW = engine::kMapFlagRead | engine::kMapFlagWrite;

// VQFUZZ_TRACE: what a seed or a reproducer does, burst by burst.
bool trace() {
  static const bool on = std::getenv("VQFUZZ_TRACE") != nullptr;
  return on;
}

// The guarded mapping, made once for the process.
uint8_t* guest_base() {
  static uint8_t* base = [] {
    void* m = mmap(nullptr, kMemBytes + 2 * kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    FUZZ_CHECK(m != MAP_FAILED);
    auto* p = static_cast<uint8_t*>(m) + kPage;
    FUZZ_CHECK(mprotect(p, kMemBytes, PROT_READ | PROT_WRITE) == 0);
    return p;
  }();
  return base;
}

struct Input {
  const uint8_t* p;
  size_t n;
  bool take(size_t k, const uint8_t** out) {
    if (n < k) return false;
    *out = p;
    p += k;
    n -= k;
    return true;
  }
  bool u8(uint8_t* v) {
    const uint8_t* b = nullptr;
    if (!take(1, &b)) return false;
    *v = b[0];
    return true;
  }
  bool u16(uint16_t* v) {
    const uint8_t* b = nullptr;
    if (!take(2, &b)) return false;
    *v = static_cast<uint16_t>(b[0] | b[1] << 8);
    return true;
  }
  bool u32(uint32_t* v) {
    const uint8_t* b = nullptr;
    if (!take(4, &b)) return false;
    *v = uint32_t{b[0]} | uint32_t{b[1]} << 8 | uint32_t{b[2]} << 16 | uint32_t{b[3]} << 24;
    return true;
  }
};

uint32_t queue_size(uint8_t code) {
  static constexpr uint32_t kOdd[5] = {2048, 0, 6, kMaxQueueSize, 3};
  return code <= 10 ? uint32_t{1} << code : kOdd[code - 11];
}

struct Harness {
  Rcu rcu{2};
  uint32_t reader = rcu.register_reader();
};

Harness& harness() {
  static Harness* h = new Harness;  // lives for the process
  return *h;
}

engine::Config device_config() {
  engine::Config c;
  c.endpoint_last = 7;  // a small endpoint table per input
  c.probe_size = 64;
  // The guest's own MAPs (through the request queue) may ask for any range:
  // page tables must stay far below libFuzzer's 2 GiB RSS limit.
  c.max_domains = 16;
  c.max_mappings = 1024;
  c.max_table_bytes = size_t{16} << 20;
  return c;
}

// One burst in progress, as the harness counts it.
struct Burst {
  bool began = false;
  uint32_t budget = 0;
  uint16_t available = 0;
  VirtqueueStats before;
  bool broken_before = false;
  uint64_t consumed = 0;  // avail slots pop() consumed (S)
  uint64_t unpopped = 0;  // U
  uint64_t pushed = 0;    // used entries written since begin(), by anyone
  uint16_t unpoppable = 0;
  std::vector<Chain> held;  // popped, not pushed yet (POP's act 2)
  uint32_t parked_before = 0;  // parked() at begin()
  // The queue's budget left, as far as the harness can tell (a pop() that
  // returns a parked chain may have walked others, which missed again, first).
  uint64_t budget_lo = 0, budget_hi = 0;
  uint64_t rewalks = 0;     // walks of parked chains (R), at most
  uint64_t held_walks = 0;  // chains left in their ring for a miss (H)
  uint64_t missed = 0;      // chains parked or held
};

class Run {
 public:
  Run(Harness& h, Input* in) : h_(h), dev_(device_config(), h.rcu, 64) {
    uint8_t hdr[11] = {};
    for (uint8_t& b : hdr)
      if (!in->u8(&b)) break;
    ap_ = (hdr[0] & 0x40) != 0;
    swapped_ = (hdr[1] & 1) != 0;
    self_control_ = (hdr[1] & 2) != 0;
    std::memset(guest_base(), 0, kMemBytes);
    set_mem_table();
    if (ap_) {
      control(encoded(attach_req(1, kEndpoint)));
      control(encoded(map_req(1, kIovaA, kIovaA + kMemBytes - 1, kGpa, kRW)));
    }
    const bool custom = (hdr[0] & 0x80) != 0;
    off_[0] = custom ? le16(hdr + 5) : kDescOff;
    off_[1] = custom ? le16(hdr + 7) : kAvailOff;
    off_[2] = custom ? le16(hdr + 9) : kUsedOff;
    QueueConfig q;
    q.size = queue_size(hdr[0] & 15);
    q.desc = guest_addr(off_[0]);
    q.avail = guest_addr(off_[1]);
    q.used = guest_addr(off_[2]);
    q.access_platform = ap_;
    q.event_idx = (hdr[0] & 0x20) != 0;
    q.indirect = (hdr[0] & 0x10) != 0;
    q.ep = EndpointId{kEndpoint};
    q.max_chain_bytes = uint32_t{le16(hdr + 2)} << ((hdr[1] & 4) ? 8 : 0);
    q.max_chain_descs = uint32_t{hdr[4]} * ((hdr[1] & 8) ? 16 : 1);
    q.hold_on_miss = (hdr[1] & 0x10) != 0;
    q.park_on_miss = (hdr[1] & 0x20) != 0;
    vq_.emplace(dev_, q);
    size_ = q.size;
    // Misses exist only where buffers are IOVAs; parking needs a FIFO.
    holds_ = q.hold_on_miss && ap_;
    parks_ = holds_ && q.park_on_miss && valid_queue_size(size_);
    FUZZ_CHECK(vq_->parks() == parks_);
    if (parks_) fifo_heads_.assign(size_, 0);
    max_descs_ = q.max_chain_descs == 0 ? kMaxChainDescs : std::min(q.max_chain_descs, kMaxChainDescs);
    make_ring_view();
  }

  ~Run() {
    if (burst_) end_burst();
    go_offline();
  }

  void step(uint8_t op, Input* in);

 private:
  static uint16_t le16(const uint8_t* b) { return static_cast<uint16_t>(b[0] | b[1] << 8); }
  // The driver's address of gpa offset `off` for the queue (IOVA in window A
  // with ACCESS_PLATFORM).
  uint64_t guest_addr(uint64_t off) const { return (ap_ ? kIovaA : kGpa) + off; }

  // Host byte behind gpa offset `off` (< kMemBytes), or nullptr in the hole.
  uint8_t* host(uint32_t off) const {
    if (!swapped_ || off < kBufOff) return guest_base() + off;
    const uint32_t k = (off - kBufOff) / kPage;
    if (k == kHoleChunk) return nullptr;
    return guest_base() + kBufOff + (k ^ 1) * kPage + (off - kBufOff) % kPage;
  }
  // Host view of [off, off + len) when it is guest memory, contiguous in host memory.
  uint8_t* host_span(uint64_t off, uint64_t len) const {
    if (len == 0 || off >= kMemBytes || len > kMemBytes - off) return nullptr;
    const uint64_t last = off + len - 1;
    if (swapped_ && last >= kBufOff && (off < kBufOff || (off - kBufOff) / kPage != (last - kBufOff) / kPage))
      return nullptr;
    return host(static_cast<uint32_t>(off));
  }
  void poke(uint32_t off, const uint8_t* src, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      uint8_t* p = host(static_cast<uint32_t>((off + i) % kMemBytes));
      if (p != nullptr) *p = src[i];
    }
  }
  void poke16(uint32_t off, uint16_t v) {
    const uint8_t b[2] = {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8)};
    poke(off, b, 2);
  }

  void set_mem_table() {
    std::vector<engine::MemRegion> r;
    const uint64_t base = reinterpret_cast<uint64_t>(guest_base());
    if (!swapped_) {
      r.push_back({kGpa, kMemBytes, base});
    } else {
      r.push_back({kGpa, kBufOff, base});
      for (uint32_t k = 0; k < kChunks; ++k)
        if (k != kHoleChunk) r.push_back({kGpa + kBufOff + k * kPage, kPage, base + kBufOff + (k ^ 1) * kPage});
    }
    FUZZ_CHECK(dev_.set_mem_table(r) == vxlate::Status::kOk);
  }

  // The rings are checked in memory only where the harness knows what the
  // device sees there: valid size, aligned, pairwise disjoint, each one host
  // span, and (with ACCESS_PLATFORM) window A as set up.
  void make_ring_view() {
    ring_view_ = false;
    if (!valid_queue_size(size_)) return;
    const uint64_t len[3] = {desc_bytes(size_), avail_bytes(size_), used_bytes(size_)};
    const uint64_t align[3] = {kDescAlign, kAvailAlign, kUsedAlign};
    for (int i = 0; i < 3; ++i) {
      if (off_[i] % align[i] != 0 || host_span(off_[i], len[i]) == nullptr) return;
      for (int j = 0; j < i; ++j)
        if (off_[i] < off_[j] + len[j] && off_[j] < off_[i] + len[i]) return;
    }
    avail_ = AvailRing{host_span(off_[1], len[1]), size_};
    used_ = UsedRing{host_span(off_[2], len[2]), size_};
    ring_view_ = true;
  }
  bool view() const { return ring_view_ && (!ap_ || window_a_ok_); }

  void go_online() {
    if (!online_) dev_.iotlb().online(h_.reader);
    online_ = true;
  }
  void go_offline() {
    if (online_) dev_.iotlb().offline(h_.reader);
    online_ = false;
  }

  // One request on the control side, as the harness's own driver.
  void control(const std::vector<uint8_t>& req) {
    uint8_t w[engine::kTailSize] = {};
    uint32_t used = 0;
    if (self_control_) {
      go_online();
      engine::Request r{req, w, 0};
      FUZZ_CHECK(dev_.handle_burst(std::span<engine::Request>(&r, 1), h_.reader) == 1);
      used = r.used;
    } else {
      go_offline();
      used = dev_.handle(req, w);
    }
    FUZZ_CHECK(used == engine::kTailSize);
  }

  void op_write(Input* in);
  void op_desc(Input* in);
  void op_avail(Input* in, bool jump);
  void begin_burst(uint32_t budget);
  void pop_step(uint8_t act, uint16_t arg);
  bool pop_one(uint8_t act, uint16_t arg);
  void unpop(uint8_t n);
  void give_back(uint8_t n);
  void complete_parked();
  void parked_misses(uint32_t room);
  void end_burst();
  void kicks(bool enable);
  void poll(uint8_t op);
  void check_chain(const Chain& c) const;
  void check_entry(uint16_t pos, uint16_t head, uint32_t len, bool exact) const;
  void push(const Chain& c, uint32_t len);
  void touch(const Chain& c, uint8_t fill);
  // The next avail slot pop() walks, as the harness counts.
  uint16_t next_slot() const {
    return static_cast<uint16_t>(last_avail_ + burst_->consumed - burst_->unpopped);
  }
  // The used entry `pos` entries after the last published one.
  VirtqUsedElem entry(uint64_t pos) const {
    return used_.ring(static_cast<uint16_t>(used_idx_ + pos) & (size_ - 1));
  }
  // The multiset of parked heads (while heads_known_).
  void fifo_add(uint16_t head) {
    FUZZ_CHECK(head < size_);
    ++fifo_heads_[head];
    ++fifo_known_;
  }
  void fifo_take(uint16_t head) {
    FUZZ_CHECK(head < size_ && fifo_heads_[head] != 0);
    --fifo_heads_[head];
    --fifo_known_;
  }
  // After a step that may have changed parked(): the harness's bounds and
  // multiset against it; an empty FIFO is known again.
  void sync_fifo() {
    const uint32_t f = vq_->parked();
    FUZZ_CHECK(f <= (parks_ ? size_ : 0u));
    if (f == 0) {
      if (!heads_known_) std::fill(fifo_heads_.begin(), fifo_heads_.end(), 0u);
      heads_known_ = true;
      fifo_known_ = 0;
    }
    if (heads_known_) FUZZ_CHECK(fifo_known_ == f);
    // Those pop() may walk again are a front part of the FIFO, the given-back
    // ones a front part of those.
    elig_hi_ = std::min<uint64_t>(elig_hi_, f);
    elig_lo_ = std::min(elig_lo_, elig_hi_);
    given_hi_ = std::min(given_hi_, elig_hi_);
    given_lo_ = std::min(given_lo_, given_hi_);
  }
  // Every avail slot consumed is completed, parked or a skipped head.
  void check_slots() const {
    FUZZ_CHECK(vq_->last_avail() == last_avail_);
    FUZZ_CHECK(static_cast<uint16_t>(used_idx_ + vq_->parked() + skipped_) == last_avail_);
  }

  Harness& h_;
  engine::Device dev_;
  std::optional<Virtqueue> vq_;
  std::unique_ptr<IommuQueues> iq_;
  bool ap_ = false;
  bool swapped_ = false;
  bool self_control_ = false;
  bool holds_ = false;  // hold_on_miss in effect
  bool parks_ = false;  // Virtqueue::parks()
  bool online_ = false;
  uint32_t size_ = 0;
  uint32_t max_descs_ = 0;
  uint32_t off_[3] = {};
  bool ring_view_ = false;
  bool window_a_ok_ = true;  // no step has touched the IOMMU state set up
  AvailRing avail_{nullptr, 0};
  UsedRing used_{nullptr, 0};
  uint16_t driver_idx_[3] = {};  // the driver's avail.idx per queue
  uint16_t last_avail_ = 0;      // the next avail slot, as the harness counts
  uint16_t used_idx_ = 0;        // used.idx as published, as the harness counts
  uint16_t skipped_ = 0;         // avail slots consumed with a head out of range
  uint32_t bursts_ = 0;
  // Parked chains (a queue that parks). gen_: maps_applied() + 1 at the last
  // begin() that succeeded. elig_*: bounds on how many parked chains, at the
  // FIFO's front, the next pop() may walk again (those that missed before
  // gen_, and the given-back ones, given_*, at the very front).
  uint64_t gen_ = 0;
  uint64_t elig_lo_ = 0, elig_hi_ = 0;
  uint64_t given_lo_ = 0, given_hi_ = 0;
  // Parked heads, a count per head, while the harness can tell them (rings in
  // view at every pop() that parked or unparked a chain).
  bool heads_known_ = true;
  std::vector<uint32_t> fifo_heads_;
  uint32_t fifo_known_ = 0;
  std::vector<uint16_t> slot_heads_;  // pop_one()'s scratch
  std::vector<Miss> misses_;          // parked_misses()' scratch

  // The burst in progress.
  std::optional<Burst> burst_;
  std::optional<Rcu::ReadSection> section_;
  Chain chain_;
};

void Run::op_write(Input* in) {
  uint16_t off = 0;
  uint8_t n = 0;
  const uint8_t* b = nullptr;
  if (!in->u16(&off) || !in->u8(&n) || !in->take(n, &b)) return;
  poke(off, b, n);
}

void Run::op_desc(Input* in) {
  uint8_t tgt = 0, fl = 0;
  uint16_t i = 0, aoff = 0, next = 0;
  uint32_t len = 0;
  if (!in->u8(&tgt) || !in->u16(&i) || !in->u8(&fl) || !in->u16(&aoff) || !in->u32(&len) || !in->u16(&next)) return;
  uint64_t slot = 0;
  switch (tgt % 4) {
    case 0: slot = off_[0] + 16 * uint64_t{size_ == 0 ? 0u : i % size_}; break;
    case 1: slot = kReqDescOff + 16 * (i % kIommuQueueSize); break;
    case 2: slot = kEvDescOff + 16 * (i % kIommuQueueSize); break;
    default: slot = 16 * uint64_t{i % (kMemBytes / 16)}; break;
  }
  static constexpr uint64_t kWindow[4] = {0, kIovaB, kWrapBase, 0};
  // The virtio-iommu queues' addresses are GPAs whatever the data queue negotiated.
  const bool iommu_queue = tgt % 4 == 1 || tgt % 4 == 2;
  const uint64_t window = (fl >> 4 & 3) != 0 ? kWindow[fl >> 4 & 3] : iommu_queue ? kGpa : guest_addr(0);
  uint16_t flags = fl & (kDescFlagNext | kDescFlagWrite | kDescFlagIndirect);
  if (fl & 8) flags |= 0x8000;
  const VirtqDesc d{window + aoff, len, flags, next};
  uint8_t raw[sizeof d];
  std::memcpy(raw, &d, sizeof d);
  poke(static_cast<uint32_t>(slot % kMemBytes), raw, sizeof raw);
}

void Run::op_avail(Input* in, bool jump) {
  uint8_t q = 0;
  uint16_t v = 0;
  if (!in->u8(&q) || !in->u16(&v)) return;
  q %= 3;
  static constexpr uint32_t kIommuAvail[2] = {kReqAvailOff, kEvAvailOff};
  const uint32_t avail = q == 0 ? off_[1] : kIommuAvail[q - 1];
  const uint32_t size = q == 0 ? size_ : kIommuQueueSize;
  uint16_t& idx = driver_idx_[q];
  if (jump) {
    idx = static_cast<uint16_t>(idx + v);
  } else {
    if (size != 0) poke16(avail + 4 + 2 * (idx & (size - 1)), v);
    ++idx;
  }
  poke16(avail + 2, idx);
}

void Run::check_chain(const Chain& c) const {
  const QueueConfig& q = vq_->config();
  FUZZ_CHECK(c.head < size_);
  FUZZ_CHECK(c.descs >= 1 && c.descs <= max_descs_);
  FUZZ_CHECK(c.nreadable <= c.nsegs && c.nsegs <= kMaxChainSegs);
  const uint64_t base = reinterpret_cast<uint64_t>(guest_base());
  uint64_t bytes[2] = {0, 0};
  for (uint32_t s = 0; s < c.nsegs; ++s) {
    const engine::Segment& g = c.segs[s];
    FUZZ_CHECK(g.len != 0 && g.len <= kMemBytes);
    FUZZ_CHECK(g.addr >= base && g.addr - base <= kMemBytes - g.len);
    bytes[s >= c.nreadable] += g.len;
  }
  FUZZ_CHECK(bytes[0] == c.readable_bytes && bytes[1] == c.writable_bytes);
  FUZZ_CHECK(c.writable_bytes <= UINT32_MAX);
  if (q.max_chain_bytes != 0) FUZZ_CHECK(c.readable_bytes + c.writable_bytes <= q.max_chain_bytes);
}

// The used entry `pos` entries after the last published one, just written.
void Run::check_entry(uint16_t pos, uint16_t head, uint32_t len, bool exact) const {
  if (!view()) return;
  const VirtqUsedElem e = used_.ring(static_cast<uint16_t>(used_idx_ + pos) & (size_ - 1));
  FUZZ_CHECK(e.id < size_);
  if (exact) FUZZ_CHECK(e.id == head);
  FUZZ_CHECK(e.len == len);
}

void Run::begin_burst(uint32_t budget) {
  if (burst_) end_burst();
  if (bursts_ == kMaxBursts || vq_->stats().descs >= kMaxInputDescs) return;
  ++bursts_;
  go_online();
  section_.emplace(h_.rcu, h_.reader);
  Burst& b = burst_.emplace();
  b.budget = budget;
  b.before = vq_->stats();
  b.broken_before = vq_->broken();
  b.parked_before = vq_->parked();
  const uint16_t idx = view() ? load16(avail_.idx(), std::memory_order_relaxed) : 0;
  const uint64_t gen = dev_.maps_applied() + 1;
  b.began = vq_->begin(h_.reader, budget);
  const VirtqueueStats& s = vq_->stats();
  FUZZ_CHECK(vq_->parked() == b.parked_before && s.parked == b.before.parked && s.held == b.before.held);
  if (b.began) {
    b.budget_lo = b.budget_hi = budget;
    // A MAP since the last burst: every parked chain may translate now.
    if (gen != gen_) elig_lo_ = elig_hi_ = b.parked_before;
    gen_ = gen;
    b.available = vq_->available();
    FUZZ_CHECK(b.available <= size_);
    FUZZ_CHECK(s.ring_faults == b.before.ring_faults && s.broken == b.before.broken && !vq_->broken());
    if (view()) FUZZ_CHECK(b.available == static_cast<uint16_t>(idx - last_avail_));
  } else {
    const uint64_t counted = (s.ring_faults - b.before.ring_faults) + (s.broken - b.before.broken);
    FUZZ_CHECK(counted == (b.broken_before ? 0u : 1u));
    FUZZ_CHECK(vq_->available() == 0);
    // With the rings in view only a jump of the avail index (or an earlier one) stops a burst.
    if (view()) FUZZ_CHECK(b.broken_before || static_cast<uint16_t>(idx - last_avail_) > size_);
  }
}

void Run::touch(const Chain& c, uint8_t fill) {
  volatile uint8_t sink = 0;
  for (uint32_t s = 0; s < c.nsegs; ++s) {
    auto* p = reinterpret_cast<uint8_t*>(c.segs[s].addr);
    const uint64_t len = c.segs[s].len;
    const uint64_t head = std::min(len, kTouchBytes);
    const uint64_t tail = std::min(len - head, kTouchBytes);
    if (s < c.nreadable) {
      for (uint64_t i = 0; i < head; ++i) sink = sink + p[i];
      for (uint64_t i = len - tail; i < len; ++i) sink = sink + p[i];
    } else {
      // The device writing into its buffers: a hostile guest may have put
      // them over its own rings and descriptors.
      std::memset(p, fill, head);
      std::memset(p + len - tail, fill, tail);
    }
  }
}

void Run::push(const Chain& c, uint32_t len) {
  vq_->push(c.head, len);
  check_entry(static_cast<uint16_t>(burst_->pushed), c.head, len, true);
  ++burst_->pushed;
}

bool Run::pop_one(uint8_t act, uint16_t arg) {
  Burst& b = *burst_;
  if (b.began && b.pushed >= size_) {
    // A queue's worth of entries waits to be published: pop() does nothing
    // (without parking the avail slots are spent by then; with it only a
    // driver that posts heads it has not got back gets here).
    const VirtqueueStats s0 = vq_->stats();
    const uint64_t f0 = vq_->parked();
    FUZZ_CHECK(!vq_->pop(&chain_));
    const VirtqueueStats s1 = vq_->stats();
    FUZZ_CHECK(vq_->parked() == f0 && s1.chains == s0.chains && s1.descs == s0.descs &&
               s1.bad_total() == s0.bad_total() && s1.parked == s0.parked && s1.held == s0.held &&
               s1.translations == s0.translations);
    return false;
  }
  const VirtqueueStats s0 = vq_->stats();
  const uint64_t f0 = vq_->parked();
  const uint16_t next = next_slot();
  const uint64_t avail_left = b.available - (b.consumed - b.unpopped);
  const bool got = vq_->pop(&chain_);
  const VirtqueueStats s1 = vq_->stats();
  const uint64_t f1 = vq_->parked();
  const uint64_t bad = s1.bad_total() - s0.bad_total();
  const uint64_t skipped = s1.bad[static_cast<size_t>(BadChain::kHeadRange)] -
                           s0.bad[static_cast<size_t>(BadChain::kHeadRange)];
  FUZZ_CHECK(s1.chains == s0.chains + (got ? 1 : 0));
  FUZZ_CHECK(s1.used == s0.used && s1.parked_returned == s0.parked_returned);
  FUZZ_CHECK(s1.parked >= s0.parked && s1.held >= s0.held);
  const uint64_t parked = s1.parked - s0.parked;
  const uint64_t held = s1.held - s0.held;
  // A chain held in its ring ends the burst's pops; with parking only when
  // the FIFO is full.
  FUZZ_CHECK(held <= (holds_ ? 1u : 0u) && !(held != 0 && got));
  FUZZ_CHECK(parks_ || parked == 0);
  FUZZ_CHECK(f1 <= (parks_ ? size_ : 0u));
  if (held != 0 && parks_) FUZZ_CHECK(f1 == size_);
  // What left the FIFO (walked again: good or bad; one that missed again
  // went back in) and what came from the avail ring.
  FUZZ_CHECK(f0 + parked >= f1);
  const uint64_t left = f0 + parked - f1;
  const bool from_fifo = left > bad;
  if (from_fifo) FUZZ_CHECK(left == bad + 1 && got && parked == 0 && held == 0 && skipped == 0);
  const uint64_t bad_fifo = left - (from_fifo ? 1 : 0);
  const uint64_t bad_avail = bad - bad_fifo;
  FUZZ_CHECK(skipped <= bad_avail);
  const uint64_t slots = bad_avail + parked + (got && !from_fifo ? 1 : 0);
  FUZZ_CHECK(slots <= avail_left);
  // The budget: first the parked chains that may be walked again (k of
  // them: all, or as many as the budget allows, or up to the one returned),
  // then the avail slots.
  auto sub = [](uint64_t x, uint64_t y) { return x > y ? x - y : 0; };
  const uint64_t k_lo = std::min(elig_lo_, b.budget_lo), k_hi = std::min(elig_hi_, b.budget_hi);
  FUZZ_CHECK(left <= k_hi);
  const uint64_t w_lo = from_fifo ? left : std::max(k_lo, bad_fifo), w_hi = k_hi;
  uint64_t b_lo = sub(b.budget_lo, w_hi), b_hi = b.budget_hi - w_lo;
  uint64_t e_lo = sub(elig_lo_, w_hi), e_hi = elig_hi_ - w_lo;
  uint64_t g_lo = sub(given_lo_, w_hi), g_hi = sub(given_hi_, w_lo);
  if (slots != 0 || held != 0) {
    // The avail ring is walked only once the FIFO's walk ran out of chains
    // (not of budget).
    FUZZ_CHECK(e_lo == 0 && b_hi >= slots + held);
    e_hi = g_lo = g_hi = 0;
    b_lo = sub(b_lo, slots);
    b_hi -= slots;
    if (held != 0) b_lo = b_hi = 0;
  }
  if (!got && held == 0) {
    // pop() stops short only without budget; with budget left it walked
    // every parked chain it could.
    if (avail_left != slots) {
      FUZZ_CHECK(b_lo == 0);
      b_hi = 0;
    }
    if (b_lo != 0) {
      FUZZ_CHECK(e_lo == 0);
      e_hi = g_lo = g_hi = 0;
    }
  }
  b.budget_lo = b_lo;
  b.budget_hi = b_hi;
  elig_lo_ = e_lo;
  elig_hi_ = e_hi;
  given_lo_ = g_lo;
  given_hi_ = g_hi;
  const uint64_t walks = w_hi + slots + held;
  FUZZ_CHECK(s1.descs - s0.descs <= walks * max_descs_);
  FUZZ_CHECK(s1.translations - s0.translations <= walks * (kMaxChainSegs + 1));
  if (!b.began) FUZZ_CHECK(!got && bad == 0 && slots == 0 && held == 0 && s1.descs == s0.descs &&
                           s1.translations == s0.translations);
  if (view() && b.began) {
    // The slots' heads: as many out of range as were skipped, the last the
    // chain returned (unless it came from the FIFO).
    std::vector<uint16_t>& cand = slot_heads_;
    cand.clear();
    uint64_t skips = 0;
    for (uint64_t j = 0; j < slots; ++j) {
      const uint16_t h = avail_.ring(static_cast<uint16_t>(next + j) & (size_ - 1));
      if (h >= size_) {
        ++skips;
      } else if (got && !from_fifo && j + 1 == slots) {
        FUZZ_CHECK(chain_.head == h);
      } else {
        cand.push_back(h);
      }
    }
    FUZZ_CHECK(skips == skipped);
  }
  // The entries of the bad chains completed: first the FIFO's (parked
  // heads), then, in order, among the slots' other heads; what is left of
  // those was parked. A pop() may complete more chains than the used ring
  // holds (parked ones walked bad, then as many bad avail slots; only a
  // hostile driver, one that posts heads it has not got back, gets there):
  // later entries then overwrite earlier ones before publish(), and none is
  // read.
  if (view() && b.began && bad - skipped <= size_) {
    std::vector<uint16_t>& cand = slot_heads_;
    for (uint64_t i = 0; i < bad_fifo; ++i) {
      const VirtqUsedElem e = entry(b.pushed + i);
      FUZZ_CHECK(e.id < size_ && e.len == 0);
      if (heads_known_) fifo_take(e.id);
    }
    if (from_fifo && heads_known_) fifo_take(chain_.head);
    size_t pos = 0, kept = 0;
    for (uint64_t i = 0; i < bad_avail - skipped; ++i) {
      const VirtqUsedElem e = entry(b.pushed + bad_fifo + i);
      FUZZ_CHECK(e.len == 0);
      while (pos < cand.size() && cand[pos] != e.id) cand[kept++] = cand[pos++];
      FUZZ_CHECK(pos < cand.size());
      ++pos;
    }
    while (pos < cand.size()) cand[kept++] = cand[pos++];
    FUZZ_CHECK(kept == parked);
    if (heads_known_)
      for (size_t i = 0; i < kept; ++i) fifo_add(cand[i]);
  } else {
    // Bad chains pop() completed on the way: length 0, a head within the queue.
    if (bad - skipped <= size_)
      for (uint64_t i = 0; i < bad - skipped; ++i) check_entry(static_cast<uint16_t>(b.pushed + i), 0, 0, false);
    if (left != 0 || parked != 0) heads_known_ = false;
  }
  sync_fifo();
  b.pushed += bad - skipped;
  b.consumed += slots;
  b.rewalks += w_hi;
  b.held_walks += held;
  b.missed += parked + held;
  skipped_ = static_cast<uint16_t>(skipped_ + skipped);
  // A bad chain completed (or skipped) on the way: nothing before it can be unpopped.
  if (bad != 0) b.unpoppable = 0;
  if (!got) return false;
  check_chain(chain_);
  ++b.unpoppable;
  if (act & 4) touch(chain_, static_cast<uint8_t>(arg));
  switch (act & 3) {
    case 0:
      push(chain_, static_cast<uint32_t>(std::min<uint64_t>(arg, chain_.writable_bytes)));
      b.unpoppable = 0;
      break;
    case 1: {
      const uint64_t refused = vq_->stats().bad[static_cast<size_t>(BadChain::kDirection)];
      vq_->refuse(chain_, BadChain::kDirection);
      FUZZ_CHECK(vq_->stats().chains == s1.chains - 1);
      FUZZ_CHECK(vq_->stats().bad[static_cast<size_t>(BadChain::kDirection)] == refused + 1);
      check_entry(static_cast<uint16_t>(b.pushed), chain_.head, 0, true);
      ++b.pushed;
      b.unpoppable = 0;
      break;
    }
    case 2: b.held.push_back(chain_); break;
    default:
      push(chain_, static_cast<uint32_t>(chain_.writable_bytes));
      b.unpoppable = 0;
      break;
  }
  return true;
}

void Run::pop_step(uint8_t act, uint16_t arg) {
  if (!burst_) return;
  if (act & 8) {
    while (pop_one(act, arg)) {
    }
  } else {
    pop_one(act, arg);
  }
}

void Run::unpop(uint8_t n) {
  if (!burst_) return;
  Burst& b = *burst_;
  // unpop(): only chains popped since the last completion (the tail of held).
  const uint16_t k = std::min<uint16_t>(n, b.unpoppable);
  if (k == 0) return;
  const uint64_t chains = vq_->stats().chains;
  vq_->unpop(k);
  FUZZ_CHECK(vq_->stats().chains == chains - k);
  b.held.resize(b.held.size() - k);
  b.unpoppable = static_cast<uint16_t>(b.unpoppable - k);
  b.unpopped += k;
}

void Run::give_back(uint8_t n) {
  if (!burst_) return;
  Burst& b = *burst_;
  // Chains popped this burst and not pushed: the first or the last k held.
  const size_t k = std::min<size_t>(n & 0x7f, b.held.size());
  if (k == 0) return;
  const size_t first = (n & 0x80) ? 0 : b.held.size() - k;
  const Chain* chains = b.held.data() + first;
  const VirtqueueStats s0 = vq_->stats();
  const uint64_t f0 = vq_->parked();
  vq_->give_back(chains, static_cast<uint32_t>(k));
  const VirtqueueStats& s1 = vq_->stats();
  // Last first, each to the FIFO's front while there is room; the others
  // completed empty, as looping chains.
  const uint64_t in = std::min<uint64_t>(k, size_ - f0), over = k - in;
  FUZZ_CHECK(vq_->parked() == f0 + in);
  FUZZ_CHECK(s1.chains == s0.chains - k);
  FUZZ_CHECK(s1.bad[static_cast<size_t>(BadChain::kLoop)] == s0.bad[static_cast<size_t>(BadChain::kLoop)] + over);
  FUZZ_CHECK(s1.bad_total() == s0.bad_total() + over);
  FUZZ_CHECK(s1.used == s0.used && s1.parked == s0.parked && s1.held == s0.held && s1.descs == s0.descs &&
             s1.translations == s0.translations && s1.parked_returned == s0.parked_returned);
  for (uint64_t i = 0; i < over; ++i)
    check_entry(static_cast<uint16_t>(b.pushed + i), chains[over - 1 - i].head, 0, true);
  b.pushed += over;
  if (heads_known_)
    for (uint64_t i = over; i < k; ++i) fifo_add(chains[i].head);
  // Walked again by the next pop(), this burst's included.
  elig_lo_ += in;
  elig_hi_ += in;
  given_lo_ += in;
  given_hi_ += in;
  sync_fifo();
  b.held.erase(b.held.begin() + static_cast<ptrdiff_t>(first), b.held.begin() + static_cast<ptrdiff_t>(first + k));
}

// The control side of a stopped queue: every parked chain completed empty.
void Run::complete_parked() {
  if (burst_) end_burst();
  const VirtqueueStats s0 = vq_->stats();
  const uint32_t f0 = vq_->parked();
  // Where the used ring is now for the control side, if anywhere (aligned).
  const QueueConfig& q = vq_->config();
  engine::Segment seg{};
  const bool writable = valid_queue_size(size_) &&
                        dev_.iotlb_translate(q.ep, q.used, used_bytes(size_), vxlate::pagetable::kPermWrite, &seg) ==
                            vxlate::Status::kOk &&
                        q.used % kUsedAlign == 0 && seg.addr % kUsedAlign == 0;
  const uint32_t n = vq_->complete_parked();
  VirtqueueStats s1 = vq_->stats();
  // All or nothing; all exactly when the used ring translates (in view it
  // lies in window A as set up, so it does).
  FUZZ_CHECK(n == (writable ? f0 : 0u));
  if (view()) FUZZ_CHECK(n == f0);
  FUZZ_CHECK(vq_->parked() == f0 - n);
  FUZZ_CHECK(s1.used == s0.used + n && s1.parked_returned == s0.parked_returned + n);
  s1.used = s0.used;
  s1.parked_returned = s0.parked_returned;
  FUZZ_CHECK(std::memcmp(&s1, &s0, sizeof s1) == 0);  // nothing else moves
  if (n != 0) {
    // The entries (parked head, 0) and used.idx, read where they were written.
    const UsedRing used{reinterpret_cast<uint8_t*>(seg.addr), size_};
    for (uint32_t i = 0; i < n; ++i) {
      const VirtqUsedElem e = used.ring(static_cast<uint16_t>(used_idx_ + i) & (size_ - 1));
      FUZZ_CHECK(e.id < size_ && e.len == 0);
      if (heads_known_) fifo_take(e.id);
    }
    FUZZ_CHECK(load16(used.idx(), std::memory_order_relaxed) == static_cast<uint16_t>(used_idx_ + n));
  }
  used_idx_ = static_cast<uint16_t>(used_idx_ + n);
  if (n != 0) {
    heads_known_ = false;  // sync_fifo(): empty, known again
    elig_lo_ = elig_hi_ = given_lo_ = given_hi_ = 0;
  }
  sync_fifo();
  check_slots();
  if (trace()) std::fprintf(stderr, "complete_parked: %u of %u\n", n, f0);
}

// Between bursts: the parked chains' misses, round robin, with room for
// `room` (0: one per parked chain).
void Run::parked_misses(uint32_t room) {
  if (burst_) end_burst();
  const uint32_t f = vq_->parked();
  if (room == 0) room = f;
  misses_.resize(std::max<uint32_t>(room, 1));
  const size_t n = vq_->parked_misses(std::span<Miss>(misses_.data(), room));
  // Every parked chain but the given-back ones has its miss.
  FUZZ_CHECK(n >= std::min<uint64_t>(room, f - given_hi_) && n <= std::min<uint64_t>(room, f - given_lo_));
  for (size_t i = 0; i < n; ++i) {
    const uint8_t a = misses_[i].access;
    FUZZ_CHECK(a == vxlate::pagetable::kPermRead || a == vxlate::pagetable::kPermWrite);
  }
}

void Run::kicks(bool enable) {
  if (!burst_) return;
  const Burst& b = *burst_;
  const uint16_t next = static_cast<uint16_t>(last_avail_ + b.consumed - b.unpopped);
  if (!enable) {
    vq_->disable_kicks();
    if (b.began && view()) FUZZ_CHECK(load16(used_.flags(), std::memory_order_relaxed) == kUsedFlagNoNotify);
    return;
  }
  const bool more = vq_->enable_kicks();
  if (!b.began) {
    FUZZ_CHECK(!more);
    return;
  }
  if (!view()) return;
  FUZZ_CHECK(more == (load16(avail_.idx(), std::memory_order_relaxed) != next));
  if (vq_->config().event_idx) {
    FUZZ_CHECK(load16(used_.avail_event(), std::memory_order_relaxed) == next);
  } else {
    FUZZ_CHECK(load16(used_.flags(), std::memory_order_relaxed) == 0);
  }
}

void Run::end_burst() {
  Burst& b = *burst_;
  for (const Chain& c : b.held) push(c, static_cast<uint32_t>(c.writable_bytes));
  b.held.clear();
  const uint16_t old_idx = used_idx_;
  const bool irq = vq_->publish();
  const VirtqueueStats& s = vq_->stats();
  const VirtqueueStats& p = b.before;
  // Counters only grow over a burst.
  FUZZ_CHECK(s.chains >= p.chains && s.descs >= p.descs && s.translations >= p.translations && s.used >= p.used &&
             s.interrupts >= p.interrupts && s.parked >= p.parked && s.held >= p.held);
  FUZZ_CHECK(s.parked_returned == p.parked_returned && s.held - p.held == b.held_walks && b.held_walks <= 1);
  for (size_t i = 0; i < s.bad.size(); ++i) FUZZ_CHECK(s.bad[i] >= p.bad[i]);
  const uint64_t chains = s.chains - p.chains;
  const uint64_t bad = s.bad_total() - p.bad_total();
  const uint64_t skipped = s.bad[static_cast<size_t>(BadChain::kHeadRange)] - p.bad[static_cast<size_t>(BadChain::kHeadRange)];
  // The bounded-work promise of virtqueue.h.
  FUZZ_CHECK(b.consumed <= b.budget);
  FUZZ_CHECK(b.unpopped <= b.consumed && b.consumed - b.unpopped <= b.available);
  // Each slot consumed ends good, bad or parked; each chain parked before
  // and taken from the FIFO, good or bad.
  const uint64_t parked = vq_->parked();
  FUZZ_CHECK(chains + bad + parked == b.consumed - b.unpopped + b.parked_before);
  const uint64_t walks = b.consumed + b.rewalks + b.held_walks;
  FUZZ_CHECK(s.descs - p.descs <= walks * max_descs_);
  FUZZ_CHECK(s.translations - p.translations <= 3 + walks * (kMaxChainSegs + 1));
  // Every slot consumed and not given back is completed once, except skipped heads.
  FUZZ_CHECK(s.used - p.used == b.pushed);
  FUZZ_CHECK(b.pushed == chains + bad - skipped);
  FUZZ_CHECK(s.interrupts - p.interrupts == (irq ? 1u : 0u));
  if (b.pushed == 0) FUZZ_CHECK(!irq);
  used_idx_ = static_cast<uint16_t>(used_idx_ + b.pushed);
  if (view() && b.pushed != 0) {
    FUZZ_CHECK(load16(used_.idx(), std::memory_order_relaxed) == used_idx_);
    const bool want = vq_->config().event_idx
                          ? need_event(load16(avail_.used_event(), std::memory_order_relaxed), used_idx_, old_idx)
                          : !(load16(avail_.flags(), std::memory_order_relaxed) & kAvailFlagNoInterrupt);
    FUZZ_CHECK(irq == want);
  }
  last_avail_ = static_cast<uint16_t>(last_avail_ + b.consumed - b.unpopped);
  check_slots();
  // The misses this burst ran into (the harness takes them all after each):
  // each page and access once, at most kMissesKept.
  Miss m[Virtqueue::kMissesKept + 1];
  size_t nm = 0;
  while (nm <= Virtqueue::kMissesKept && vq_->take_miss(&m[nm])) ++nm;
  FUZZ_CHECK(nm <= Virtqueue::kMissesKept && (holds_ || nm == 0));
  if (b.missed != 0) FUZZ_CHECK(nm != 0);
  for (size_t i = 0; i < nm; ++i) {
    FUZZ_CHECK(m[i].access == vxlate::pagetable::kPermRead || m[i].access == vxlate::pagetable::kPermWrite);
    for (size_t j = 0; j < i; ++j) FUZZ_CHECK(m[i].iova >> 12 != m[j].iova >> 12 || m[i].access != m[j].access);
  }
  if (trace()) {
    std::fprintf(stderr, "burst: began %d budget %u avail %u slots %lu unpopped %lu chains %lu bad %lu used %lu descs %lu translations %lu irq %d [",
                 b.began, b.budget, b.available, (unsigned long)b.consumed, (unsigned long)b.unpopped, (unsigned long)chains,
                 (unsigned long)bad, (unsigned long)b.pushed, (unsigned long)(s.descs - p.descs),
                 (unsigned long)(s.translations - p.translations), irq);
    for (size_t i = 0; i < s.bad.size(); ++i)
      if (s.bad[i] != p.bad[i]) std::fprintf(stderr, " %s %lu", to_string(static_cast<BadChain>(i)), (unsigned long)(s.bad[i] - p.bad[i]));
    std::fprintf(stderr, " ] faults %lu broken %lu parked %lu (+%lu) held %lu rewalks <= %lu misses %zu\n",
                 (unsigned long)s.ring_faults, (unsigned long)s.broken, (unsigned long)parked,
                 (unsigned long)(s.parked - p.parked), (unsigned long)b.held_walks, (unsigned long)b.rewalks, nm);
  }
  burst_.reset();
  section_.reset();
  if (self_control_) {
    dev_.iotlb().quiescent(h_.reader);
  } else {
    go_offline();
  }
}

// The bounds every queue keeps over one begin() .. publish(), for a queue the
// harness does not drive itself: every popped chain completed, none unpopped.
void check_queue_burst(const Virtqueue& q, const VirtqueueStats& p) {
  const VirtqueueStats& s = q.stats();
  FUZZ_CHECK(s.chains >= p.chains && s.bad_total() >= p.bad_total() && s.used >= p.used);
  const uint64_t chains = s.chains - p.chains;
  const uint64_t bad = s.bad_total() - p.bad_total();
  const uint64_t skipped = s.bad[static_cast<size_t>(BadChain::kHeadRange)] - p.bad[static_cast<size_t>(BadChain::kHeadRange)];
  const uint64_t slots = chains + bad;
  const uint32_t cap = q.config().max_chain_descs == 0 ? kMaxChainDescs : std::min(q.config().max_chain_descs, kMaxChainDescs);
  FUZZ_CHECK(slots <= q.config().size);
  FUZZ_CHECK(s.descs - p.descs <= slots * cap);
  FUZZ_CHECK(s.translations - p.translations <= 3 + slots * (kMaxChainSegs + 1));
  FUZZ_CHECK(s.used - p.used == chains + bad - skipped);
  FUZZ_CHECK((s.ring_faults - p.ring_faults) + (s.broken - p.broken) <= 1);
}

void Run::poll(uint8_t op) {
  if (burst_) end_burst();
  if (!iq_) {
    QueueConfig rq{kIommuQueueSize, kGpa + kReqDescOff, kGpa + kReqAvailOff, kGpa + kReqUsedOff};
    QueueConfig eq{kIommuQueueSize, kGpa + kEvDescOff, kGpa + kEvAvailOff, kGpa + kEvUsedOff};
    iq_ = std::make_unique<IommuQueues>(dev_, rq, eq);
  }
  const VirtqueueStats rs = iq_->requestq().stats(), es = iq_->eventq().stats();
  const IommuQueueStats is = iq_->stats();
  bool irq = false;
  size_t n = 0;
  const bool busy = (op & 0x10) != 0;
  if (busy && iq_->batching().min_requests <= 1) iq_->set_batching({4, std::chrono::nanoseconds(0)});
  if (op & 0x20) iq_->notify();
  if (self_control_) {
    go_online();
    n = iq_->poll(h_.reader, &irq, !busy);
  } else {
    go_offline();
    n = iq_->poll(Rcu::kNoReader, &irq, !busy);
  }
  FUZZ_CHECK(n <= engine::kMaxRequestBurst);
  FUZZ_CHECK(busy || iq_->stats().held == is.held);  // an idle poll holds nothing
  FUZZ_CHECK(iq_->stats().held == is.held || n == 0);
  FUZZ_CHECK(iq_->requestq().stats().chains - rs.chains == n);
  FUZZ_CHECK(iq_->stats().requests - is.requests == n);
  FUZZ_CHECK(iq_->stats().bursts - is.bursts == (n != 0 ? 1u : 0u));
  FUZZ_CHECK(iq_->stats().events - is.events == iq_->eventq().stats().chains - es.chains);
  check_queue_burst(iq_->requestq(), rs);
  check_queue_burst(iq_->eventq(), es);
  if (trace())
    std::fprintf(stderr, "poll: requests %zu events %lu reqq bad %lu evq bad %lu\n", n,
                 (unsigned long)(iq_->stats().events - is.events),
                 (unsigned long)(iq_->requestq().stats().bad_total() - rs.bad_total()),
                 (unsigned long)(iq_->eventq().stats().bad_total() - es.bad_total()));
  // The guest's own requests may have moved window A.
  if (n != 0) window_a_ok_ = false;
}

void Run::step(uint8_t op, Input* in) {
  uint8_t a = 0, b8 = 0, c8 = 0, d8 = 0;
  uint16_t v = 0;
  switch (op & 15) {
    case 0: op_write(in); break;
    case 1: op_desc(in); break;
    case 2: op_avail(in, false); break;
    case 3: op_avail(in, true); break;
    case 4:
      if (!in->u16(&v)) return;
      begin_burst(v == 0xffff ? kMaxQueueSize : v == 0xfffe ? UINT32_MAX : v);
      break;
    case 6:
      if (!in->u8(&a)) return;
      if (parks_) {
        give_back(a);
      } else {
        unpop(a);
      }
      break;
    case 7:
      if (burst_) end_burst();
      break;
    case 8:
      if (in->u8(&a)) kicks(a & 1);
      break;
    case 9:
      if (!in->u8(&a) || !in->u16(&v) || !in->u8(&b8) || !in->u8(&c8) || !in->u8(&d8)) return;
      if (burst_) end_burst();
      {
        const uint64_t iova = ((v & 0x8000) ? kIovaA : kIovaB) + uint64_t{v & 0x7fffu} * kPage;
        control(encoded(map_req(1 + a % 2, iova, iova + (uint64_t{b8} + 1) * kPage - 1, kGpa + c8 * kPage, d8 & 7)));
        if (v & 0x8000) window_a_ok_ = false;
      }
      break;
    case 10:
      if (!in->u8(&a) || !in->u16(&v) || !in->u8(&b8)) return;
      if (burst_) end_burst();
      {
        const uint64_t iova = ((v & 0x8000) ? kIovaA : kIovaB) + uint64_t{v & 0x7fffu} * kPage;
        control(encoded(unmap_req(1 + a % 2, iova, iova + (uint64_t{b8} + 1) * kPage - 1)));
        if (v & 0x8000) window_a_ok_ = false;
      }
      break;
    case 11:
      if (!in->u8(&a)) return;
      if (burst_) end_burst();
      control((a & 0x80) ? encoded(detach_req(1 + a % 2, kEndpoint)) : encoded(attach_req(1 + a % 2, kEndpoint)));
      window_a_ok_ = false;
      break;
    case 12: poll(op); break;
    case 15:
      if (op & 0x10) {
        parked_misses(op >> 5);
      } else {
        complete_parked();
      }
      break;
    default:  // 5, 13, 14: POP
      if (!in->u8(&a) || !in->u16(&v)) return;
      pop_step(a, v);
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Harness& h = harness();
  Input in{data, size};
  Run run(h, &in);
  uint8_t op = 0;
  while (in.u8(&op)) run.step(op, &in);
  return 0;
}
