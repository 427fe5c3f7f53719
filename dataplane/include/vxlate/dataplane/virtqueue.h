// vxlate/dataplane/virtqueue.h: the device side of one split virtqueue in guest
// memory, with every address translated through the engine.
//
// A poll-mode lcore owns the queue. Once per poll-loop iteration it calls
// begin(), which finds the three ring areas for this burst, then pop() chain
// after chain, push() a used entry for each, and publish() once. With
// VIRTIO_F_ACCESS_PLATFORM every address goes through a Device::Burst (the
// IOTLB, the endpoint's domain and the memory table loaded once per burst);
// without it through the memory table. The ring translations are kept across
// bursts while the Burst's stamp (domain, the reader's IOTLB epoch, memory
// table version) is unchanged: any invalidation this reader applied, a domain
// change or a new memory table makes begin() translate them again, as the
// kernel's vhost drops its ring address cache on an IOTLB invalidation. The
// ring pointers and every buffer pointer pop() returns are valid until the
// lcore's next quiescent report: an UNMAP of a ring or a buffer completes only
// after that report (and the report applies its invalidation, which changes
// the stamp), so nothing is touched after the driver sees the UNMAP completed
// (DESIGN.md invariant 1).
//
// pop() walks a chain (direct descriptors, then at most one indirect table),
// copies each descriptor out of guest memory once before checking it, and
// translates each buffer into host segments.
//
// Software prefetching (design note). A chain costs three dependent loads of
// lines the guest's CPU has just written (head descriptor, indirect table,
// frame), each a cross-core transfer. The hardware prefetchers hide the
// table's and the frame's only while the driver's buffers happen to lie at a
// constant stride (vxlate-netperf's LIFO free list of page-sized buffers):
// with the same buffers taken in random order (--random-buffers), or with
// lazy mode's recycling reordering them, udp_stream_64 fell from 5.6 to
// 3.7-4.2 M frames/s with no IOMMU change at all (bench/RESULTS.md). So
// begin() prefetches the first chains' head descriptors, and each pop()
// looks ahead before walking: three slots ahead the head descriptor's line;
// two ahead the line it points to (an indirect table's first descriptors,
// or a buffer); one ahead, the first buffer of the table translated at the
// previous pop (with the frame when it follows a header alone in its
// buffer). Each step reads only lines an earlier step prefetched, and every
// buffer is also prefetched as soon as the walk translates it, as DPDK's
// vhost prefetches the next descriptor and each buffer it translates.
// Bounded (a constant number of reads and hint translations per pop), and
// hints only: the walk re-reads and checks everything, and a hint
// translates through Device::Burst::peek (no fault reported, no hit
// counted; a miss is walked and filled, so the walk's own translation hits
// and strict mode's fresh IOVAs are prefetched too). An indirect table the
// lookahead translated is not translated again by its walk when the
// descriptor the walk reads names the same address and no more bytes (a
// translation made in a burst holds for all of it); nor is a buffer that
// lies inside the bytes its hint translated (a chain's first buffer, up to
// the end of its page: a virtio-net header and the short frame after it),
// with the same access. So a 64-byte frame's chain costs two IOTLB probes
// (its table's and its first buffer's), where its walk made one more and a
// page-memo check; and since a driver keeps its tables together, the table's
// is one compare when it lies in the page of the table peeked before, this
// burst (Device::Burst::peek_table). The price is ~15 ns of
// work per chain where the guest's lines are already in this core's cache
// (bench_virtqueue's *_no_lookahead variants); QueueConfig::lookahead turns
// it off.
//
// Bounded work whatever the guest writes: begin() reads avail.idx once, so a
// burst never sees more chains than were available when it began (a guest
// that keeps the index just ahead of the device cannot hold a call); pop()
// consumes at most the `budget` avail slots begin() was given, good, bad and
// refused chains alike; a chain visits at most kMaxChainDescs descriptors (or
// the queue's smaller max_chain_descs), direct and indirect, zero-length ones
// included; and bytes past the
// consumer's max_chain_bytes are never translated. So one burst call costs at
// most budget x kMaxChainDescs descriptor reads and budget x (kMaxChainSegs +
// table) translations, plus the lookahead's (below) at most 4 descriptor
// reads and 2 hint translations per pop. Hostile chains (DESIGN.md
// invariant 4) are never followed outside the table: an out-of-range head is
// skipped; any other bad chain (index out of range, a loop or a chain longer
// than the queue, a bad indirect table, a readable buffer after a writable one,
// a length that overflows 32 bits, a buffer that does not translate, too many
// segments) is completed with length 0 and counted by reason, and the queue
// goes on. An avail index that moves by more than the queue size marks the
// queue broken (the device needs a reset), as Linux vhost does.
//
// Out-of-order completion (park_on_miss; design note). With a device IOTLB
// a receive buffer the guest just posted at a fresh IOVA misses until the
// VMM answers the MISS (tens of µs to ms: bench/RESULTS.md, session 22);
// holding the chain in its ring holds every frame behind it, though the
// buffers behind it translate. A parked chain is consumed from the avail
// ring (last_avail() moves past it) but not completed; its head goes into a
// FIFO of at most size() entries, with the miss and the count of UPDATEs
// (Device::maps_applied()) its last walk saw. Each pop() first walks again,
// front to back, the parked chains whose count is older than the one
// begin() read (an UPDATE came since they missed; a chain given back with
// give_back() is always walked again), at most once each per burst, so a
// parked chain costs nothing until an UPDATE may have made it translate,
// and the FIFO stays ordered by that count (entries go to the back with the
// newest, given-back ones to the front with none). A walk that misses again
// parks the chain at the back; a bad one completes it empty, as any bad
// chain. With the FIFO full a missing chain is held in its ring as without
// park_on_miss. take_miss() names the misses of the chains a burst parked
// (up to kMissesKept, each page and access once: a read and a write MISS are
// different requests); parked_misses() names them again, round robin, for an
// owner that asks again while they wait. Bounded as the rest: each parked
// walk costs a unit of budget, and a burst that has a queue's worth of used
// entries waiting to be published pops nothing more (only a driver that
// posts heads it has not got back gets there). The price is the restart
// contract: used.idx no longer equals last_avail() while chains are parked,
// so an owner that stops the queue calls complete_parked() (control side,
// once no lcore uses the queue), which completes them empty; a front end
// that resumes from used.idx after a back end that died with chains parked
// (vhost-user reconnect without GET_VRING_BASE) would be offered completed
// chains again. Hence off by default (vhost_user.h's PortConfig).
//
// Notifications: publish() follows VIRTIO_F_EVENT_IDX (used_event) or the
// avail ring's NO_INTERRUPT flag and says whether the driver wants an
// interrupt. A polling device does not want kicks: disable_kicks() sets
// NO_NOTIFY; enable_kicks() (before the lcore idles) clears it or writes
// avail_event and re-checks the avail index.
//
// Thread-safety contract (the fixed tags of docs/design.md):
//   - Reader side: begin() .. publish(), by one owning thread, a registered,
//     online reader of the Device's Rcu (or the Device's control thread for
//     the virtio-iommu queues, see iommu_queues.h).
//   - Any thread: stats() once the owner has stopped (the owner at any time).
//   - Setup only: construction.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>

#include "vxlate/common/ids.h"
#include "vxlate/dataplane/virtio_ring.h"
#include "vxlate/common/check.h"
#include "vxlate/engine/device.h"

namespace vxlate::dataplane {

// Host segments one chain may translate into. Bounds the copy loops and the
// per-lcore Chain (1 KiB); Linux's largest TX skb uses 19 descriptors.
inline constexpr uint32_t kMaxChainSegs = 64;
// Segments an indirect table may span in host memory (it is at most a page or
// two in practice).
inline constexpr uint32_t kMaxIndirectSegs = 4;
// Descriptors one chain may visit, direct and indirect together, zero-length
// ones included: bounds one pop() whatever the guest wrote. Linux vhost caps
// a chain at UIO_MAXIOV (1024) iovecs; virtio-net uses at most ~20.
inline constexpr uint32_t kMaxChainDescs = 1024;

// Where the device finds the queue: guest addresses of the three areas (IOVAs
// of endpoint `ep` with ACCESS_PLATFORM, else GPAs).
struct QueueConfig {
  uint32_t size = 0;
  uint64_t desc = 0;
  uint64_t avail = 0;
  uint64_t used = 0;
  bool access_platform = false;
  bool event_idx = false;
  bool indirect = false;
  EndpointId ep{0};
  // Bytes of a chain its consumer can use (0: no limit): readable bytes past
  // this make the chain bad (kLength) before anything is translated; writable
  // bytes past it are neither translated nor offered (Chain::writable_bytes
  // stops there).
  uint32_t max_chain_bytes = 0;
  // Descriptors one chain may visit (0: kMaxChainDescs, which also caps it).
  uint32_t max_chain_descs = 0;
  // desc/avail/used are host virtual addresses already, checked by the owner
  // to lie in memory it mapped for the queue's lifetime (vhost-user without
  // ACCESS_PLATFORM: ring addresses are the front end's virtual addresses,
  // translated once when the queue starts).
  bool rings_host = false;
  // A device IOTLB (vhost-user with ACCESS_PLATFORM) that learns translations
  // on demand: an IOVA that does not translate is a miss, not a fault. A
  // chain with a buffer that misses stays in the ring (pop() stops there and
  // the burst ends), a ring area that misses stops begin(); take_miss() says
  // which address to ask the VMM for. Without it such a chain is bad
  // (kUnmapped).
  bool hold_on_miss = false;
  // With hold_on_miss, on a receive queue: a chain that misses is set aside
  // ("parked") and the queue goes on with the chains behind it, which then
  // complete before it (out of order: virtio allows it unless IN_ORDER was
  // negotiated, which this device never offers). See "Out-of-order
  // completion" below. Off: the chain waits in its ring and so does
  // everything behind it. Never for a transmit queue: its frames would leave
  // out of order.
  bool park_on_miss = false;
  // pop() prefetches the chains after the one it walks (see the design note
  // above). Off saves ~15 ns per chain where the guest's lines are already in
  // this core's cache (bench_virtqueue) and costs the cross-core misses back.
  bool lookahead = true;
};

// The first address a burst could not translate with hold_on_miss, for the
// owner to ask the VMM for (vhost-user IOTLB MISS).
struct Miss {
  uint64_t iova;
  uint8_t access;  // pagetable::Perm bits
};

// One popped chain: readable segments first, then writable ones.
struct Chain {
  uint16_t head = 0;
  uint32_t nsegs = 0;
  uint32_t nreadable = 0;       // segs[0, nreadable) are device-readable
  uint64_t readable_bytes = 0;
  uint64_t writable_bytes = 0;
  uint32_t descs = 0;           // descriptors visited, direct and indirect
  std::array<engine::Segment, kMaxChainSegs> segs;
};

// Why a chain was refused; the stats count each.
enum class BadChain : uint8_t {
  kHeadRange,      // head index >= size (skipped: it cannot be completed)
  kIndexRange,     // a next index >= size (or >= the indirect table's count)
  kLoop,           // more descriptors than the queue (or table) holds, or than kMaxChainDescs
  kIndirect,       // indirect without the feature, nested, NEXT with INDIRECT, bad length
  kOrder,          // a readable buffer after a writable one
  kLength,         // total length over 32 bits, or readable bytes over max_chain_bytes
  kUnmapped,       // a buffer (or the indirect table) does not translate
  kTooManySegs,    // more than kMaxChainSegs host segments
  kDirection,      // refused by the caller: wrong buffer direction or size for this queue
  kCount
};
const char* to_string(BadChain why) noexcept;

struct VirtqueueStats {
  uint64_t chains = 0;          // good chains popped
  uint64_t descs = 0;           // descriptors visited, good and bad chains alike
  uint64_t translations = 0;    // translate calls (rings when not kept, each buffer and indirect table)
  uint64_t used = 0;            // used entries published (bad chains included)
  uint64_t interrupts = 0;      // publish() calls that asked for an interrupt
  uint64_t ring_faults = 0;     // begin() could not translate a ring area
  uint64_t broken = 0;          // the avail index jumped; queue stopped
  uint64_t held = 0;            // pops that left a chain in the ring for a miss (hold_on_miss)
  uint64_t parked = 0;          // chains set aside for a miss (park_on_miss), each counted once
  uint64_t parked_returned = 0; // parked chains completed empty by complete_parked()
  std::array<uint64_t, static_cast<size_t>(BadChain::kCount)> bad{};
  uint64_t bad_total() const noexcept {
    uint64_t n = 0;
    for (uint64_t b : bad) n += b;
    return n;
  }
};

class Virtqueue {
 public:
  // Control side. The config is checked in begin(), not here: a queue with a
  // bad size or misaligned rings never starts (begin() returns false, counted
  // as a ring fault).
  // Allocates the parked-chain FIFO (park_on_miss with hold_on_miss and a
  // valid size): std::bad_alloc.
  Virtqueue(engine::Device& dev, const QueueConfig& cfg);

  // Reader side: finds the ring areas for this burst (kept, or translated
  // again) and reads avail.idx (once: pop() never reads it again). pop() will
  // consume at most `budget` avail slots this burst. False when the queue is broken or a ring area does
  // not translate to one aligned host segment (counted in ring_faults); the
  // caller skips the queue this round.
  bool begin(uint32_t reader, uint32_t budget = kMaxQueueSize) noexcept;
  // Reader side, between bursts, for a queue without ACCESS_PLATFORM whose
  // ring translations begin() keeps (the control side's own queues): true
  // only when a burst would certainly find nothing, so that a poll loop can
  // skip begin(): the memory table is the one the kept rings came from (so
  // they still point where the guest's rings are), avail.idx is where the
  // last burst stopped popping, and no used entry waits to be published.
  // false says nothing (call begin()); an IOVA queue, a queue with host
  // rings, a broken one or one that never began always answers false.
  bool surely_empty() const noexcept { return avail_cache_ == last_avail_ && surely_unchanged(); }
  // Reader side, between bursts, for the same queues: true only when a
  // begin() now would certainly see what the last one saw: the kept rings
  // hold (as above), avail.idx is still the index the last begin() read, and
  // no used entry waits to be published; available() then still counts what
  // waits. For a caller that holds waiting chains (request batching) and
  // would otherwise begin() only to find the same chains. false says nothing.
  bool surely_unchanged() const noexcept {
    if (cfg_.access_platform || cfg_.rings_host || !rings_kept_ || broken_ || pending_ != 0 ||
        ring_stamp_.mem_version != dev_.mem_version())
      return false;
    // acquire: as begin()'s load of avail.idx (pairs with the driver's
    // release store); a chain published after it waits for the next poll.
    return load16(AvailRing{kept_avail_, cfg_.size}.idx(), std::memory_order_acquire) == avail_cache_;
  }
  // Reader side, after begin(): chains that were available at begin() and are
  // not yet popped (0 if broken).
  uint16_t available() const noexcept {
    return desc_ == nullptr || broken_ ? 0 : static_cast<uint16_t>(avail_cache_ - last_avail_);
  }
  // Reader side, after begin(): prefetches the head descriptors of the
  // chains `ahead` .. ahead + n - 1 places from the next pop (those this
  // burst may still pop), for a caller that pops chains in a row without the
  // lookahead (the virtio-iommu request queue): their lines, written by the
  // driver on another core, then come in together instead of one per pop.
  // Reads only the avail ring; a hint, no effect on results.
  void prefetch_heads(uint16_t ahead, uint16_t n) noexcept;
  // Reader side, after begin(): pops the next good chain into *c, completing
  // and counting bad ones on the way. False when nothing that was available at
  // begin() is left, or the burst's budget of avail slots is spent.
  bool pop(Chain* c) noexcept;
  // Reader side: gives back the last n popped chains (not yet pushed), for a
  // caller that could not use them (mergeable RX running out of buffers).
  // Rewinds avail slots: valid only when pop() completed no bad chain since
  // the first of them (stats().bad_total() unchanged), else a bad chain would
  // be completed twice.
  void unpop(uint16_t n) noexcept {
    VXLATE_DCHECK(park_cap_ == 0, "Virtqueue::unpop: a queue that parks chains takes them back with give_back()");
    VXLATE_DCHECK(n <= unpoppable_, "Virtqueue::unpop: more chains than were popped since the last completion");
    VXLATE_DEBUG_ONLY(unpoppable_ = static_cast<uint16_t>(unpoppable_ - n);)
    last_avail_ = static_cast<uint16_t>(last_avail_ - n);
    stats_.chains -= n;
  }
  // Reader side, for a queue that parks chains (parks()): gives back chains
  // popped this burst and not pushed, in their order, for the next pop()
  // (this burst's included) before anything else. Whether or not a bad chain
  // was completed in between. A chain that finds no room (a hostile driver
  // that posts one head many times can fill the FIFO) is completed empty.
  void give_back(const Chain* chains, uint32_t n) noexcept;
  bool parks() const noexcept { return park_cap_ != 0; }
  // Owner: chains parked now (consumed from the avail ring, not completed).
  uint32_t parked() const noexcept { return park_n_; }
  // Control side, once no reader uses the queue any more (the owner stopped
  // it): completes every parked chain with length 0 and publishes them, so
  // that used.idx is last_avail() again for a front end that resumes the
  // ring (vhost-user's GET_VRING_BASE). The used ring is translated here,
  // through Device::iotlb_translate() (only device-IOTLB queues park); when
  // it does not translate now nothing is written and the chains stay
  // parked. Returns how many were completed. No interrupt: the ring is
  // stopping.
  uint32_t complete_parked() noexcept;
  // Reader side: a used entry for `head` with `len` bytes written. Visible to
  // the driver only after publish().
  void push(uint16_t head, uint32_t len) noexcept;
  // Reader side: completes a popped chain the caller refuses (length 0), counted.
  void refuse(const Chain& c, BadChain why) noexcept;
  // Reader side: publishes the pushed entries (release store of used.idx);
  // returns true when the driver asked for an interrupt for them.
  bool publish() noexcept;

  // Reader side, after begin(): notification suppression (see file note).
  // enable_kicks() returns true when chains not yet popped are available
  // (its re-check of avail.idx, which it also stores in *avail_idx when given).
  void disable_kicks() noexcept;
  bool enable_kicks(uint16_t* avail_idx = nullptr) noexcept;

  // Setup only (before the first begin()): the index of the next avail slot
  // and of the next used entry (vhost-user's SET_VRING_BASE), for a queue
  // that resumes where another left off.
  void set_base(uint16_t idx) noexcept { last_avail_ = used_idx_ = idx; }
  // Owner, between bursts (or anyone once the owner stopped): the next avail
  // slot to pop (vhost-user's GET_VRING_BASE). Every chain before it has its
  // used entry published, except parked ones (complete_parked()).
  uint16_t last_avail() const noexcept { return last_avail_; }
  // Reader side, after begin() (any budget, 0 included): miss-ahead for a
  // hold_on_miss queue. Looks at up to max_chains chains the driver posted
  // beyond those popped and those looked at before, translating every buffer
  // without consuming anything, and writes the addresses that miss into out
  // (at most out.size(); a buffer that misses is skipped, so one chain can
  // name several). Returns how many. 0 for a queue without hold_on_miss.
  // Parked chains are not looked at (parked_misses()).
  size_t prefetch(uint32_t max_chains, std::span<Miss> out) noexcept;
  // Owner: the oldest miss this queue ran into and not yet taken
  // (hold_on_miss), if any; clears it. At most kMissesKept are kept (each
  // page and access once): a held chain's or ring's, or those of chains
  // parked since.
  static constexpr size_t kMissesKept = 4;
  bool take_miss(Miss* m) noexcept {
    if (nmisses_ == 0) return false;
    *m = misses_[0];
    for (size_t i = 1; i < nmisses_; ++i) misses_[i - 1] = misses_[i];
    --nmisses_;
    return true;
  }
  // Owner, between bursts: the misses of up to out.size() parked chains,
  // round robin over the FIFO from where the last call stopped, so that an
  // owner can ask for each again now and then while it waits (a first ask
  // may have been lost, or refused while the guest had the page unmapped).
  // Returns how many.
  size_t parked_misses(std::span<Miss> out) noexcept;

  bool broken() const noexcept { return broken_; }
  const QueueConfig& config() const noexcept { return cfg_; }
  const VirtqueueStats& stats() const noexcept { return stats_; }

 private:
  bool translate_ring(uint64_t addr, uint64_t len, uint8_t access, uint64_t align, uint8_t** hva) noexcept;
  // Software prefetching of the chains after the one pop() walks next
  // (virtqueue.cpp): kLookahead avail slots ahead, the head descriptor.
  static constexpr uint16_t kLookahead = 3;
  void lookahead() noexcept;
  void prefetch_desc(uint16_t ahead) noexcept;
  void prefetch_buffer(uint16_t slot, uint64_t addr, uint32_t len, bool writable) noexcept;
  // A hint translates a buffer's bytes up to the end of their 4 KiB page
  // (Device::Burst::peek's limit).
  static constexpr uint64_t kHintPage = 4096;
  const uint8_t* hint(uint64_t addr, uint64_t len, bool writable) noexcept;
  // hint() for reading an indirect table (Device::Burst::peek_table()).
  const uint8_t* hint_table(uint64_t addr, uint64_t len) noexcept;
  // Both without ACCESS_PLATFORM: the GPAs through the queue's cursor.
  const uint8_t* gpa_hint(uint64_t addr, uint64_t len) noexcept {
    engine::Segment seg;
    size_t n = 0;
    return dev_.gpa_to_hva(gpa_cursor_, addr, len, std::span<engine::Segment>(&seg, 1), &n) == Status::kOk
               ? reinterpret_cast<const uint8_t*>(seg.addr)
               : nullptr;
  }
  // Bytes lookahead() translated, by their chain's avail slot (mod 4: the
  // chain two ahead, one ahead and the one being walked): [addr, addr + len)
  // translated to hva (with write access iff `writable`) in burst `burst`.
  // A translation made in this burst is valid for all of it; one made in an
  // earlier burst (burst != bursts_) is not used, and an entry is used only
  // for the bytes it names.
  struct Hinted {
    uint64_t addr = 0;
    const uint8_t* hva = nullptr;
    uint64_t burst = 0;
    uint32_t len = 0;
    bool writable = false;
  };
  // The indirect tables (their first one or two descriptors, len 16 or 32):
  // read by the next lookahead's step one ahead, and used by
  // walk_indirect() instead of translating the same bytes again.
  std::array<Hinted, 4> hinted_{};
  // The first buffer of each of those chains (prefetch_buffer()), for
  // add_buffer().
  std::array<Hinted, 4> hinted_bufs_{};
  const Hinted* walk_hint_ = nullptr;  // pop()'s walk: its chain's entry, if from this burst
  uint64_t bursts_ = 1;  // begin() calls; 64 bits, so that it never wraps back onto an old entry
  bool add_buffer(Chain* c, uint64_t addr, uint32_t len, bool writable, BadChain* why) noexcept;
  bool walk(uint16_t head, Chain* c, BadChain* why) noexcept;
  bool walk_indirect(const VirtqDesc& d, Chain* c, BadChain* why) noexcept;
  // One translation of a ring area or a buffer. Inline for the two common
  // queues (GPAs through the cursor, IOVAs through the burst without holding
  // on a miss), whose fast paths are inline in turn; a queue that holds on a
  // miss goes to translate_holding(), apart, so that its fault bookkeeping
  // does not weigh on every call of the others.
  Status translate(uint64_t addr, uint64_t len, uint8_t access, std::span<engine::Segment> out,
                   size_t* n) noexcept {
    ++stats_.translations;
    if (!cfg_.access_platform) return dev_.gpa_to_hva(gpa_cursor_, addr, len, out, n);
    if (!cfg_.hold_on_miss) return burst_.iova_to_hva(addr, len, access, out, n);
    return translate_holding(addr, len, access, out, n);
  }
  // translate() of an indirect table: through the burst's table memo
  // (Device::Burst::table_to_hva) where translate() would use its page memo.
  // Apart from translate(), not a flag of it: the flag cost every pop 40-60
  // instructions (callgrind, BM_VirtqueueTx/iova_burst1), the inlined
  // translate() growing in each of its callers.
  Status translate_table(uint64_t addr, uint64_t len, std::span<engine::Segment> out, size_t* n) noexcept {
    if (!cfg_.access_platform) return translate(addr, len, pagetable::kPermRead, out, n);
    ++stats_.translations;
    if (!cfg_.hold_on_miss) return burst_.table_to_hva(addr, len, out, n);
    return translate_holding(addr, len, pagetable::kPermRead, out, n, true);
  }
  // `table`: an indirect table, through the table memo.
  Status translate_holding(uint64_t addr, uint64_t len, uint8_t access, std::span<engine::Segment> out, size_t* n,
                           bool table = false) noexcept;
  // What the kept ring translations depend on (see begin()).
  engine::Device::Burst::Stamp current_stamp() const noexcept {
    if (cfg_.access_platform) return burst_.stamp();
    engine::Device::Burst::Stamp s;
    s.mode = engine::Device::Burst::kIdentity;
    s.mem_version = dev_.mem_version();
    return s;
  }
  void count_bad(BadChain why) noexcept {
    ++stats_.bad[static_cast<size_t>(why)];
    VXLATE_DEBUG_ONLY(unpoppable_ = 0;)
  }

  engine::Device& dev_;
  QueueConfig cfg_;
  uint32_t max_descs_;  // per chain: cfg_.max_chain_descs, capped at kMaxChainDescs
  uint32_t reader_ = 0;
  // This burst's translations (ACCESS_PLATFORM): the endpoint's domain, IOTLB
  // generation and memory table loaded once per burst.
  engine::Device::Burst burst_;
  // The same for a queue without ACCESS_PLATFORM: its GPAs' last memory region.
  engine::MemTable::Cursor gpa_cursor_;
  // Ring translations kept across bursts while ring_stamp_ == current_stamp().
  bool rings_kept_ = false;
  engine::Device::Burst::Stamp ring_stamp_;
  uint8_t* kept_desc_ = nullptr;
  uint8_t* kept_avail_ = nullptr;
  uint8_t* kept_used_ = nullptr;
  // This burst's host views of the rings (valid until the next quiescent report).
  const uint8_t* desc_ = nullptr;
  AvailRing avail_{nullptr, 0};
  UsedRing used_{nullptr, 0};
  uint16_t last_avail_ = 0;   // next avail slot to pop
  uint16_t used_idx_ = 0;     // used.idx as last published
  // Entries pushed since the last publish. 32 bits: with parking a hostile
  // driver that posts heads it has not got back can make a burst complete
  // more than size() chains (bad avail slots, parked chains that turned bad,
  // give-back overflow), which 16 bits could wrap to 0 at size 32768.
  uint32_t pending_ = 0;
  uint16_t avail_cache_ = 0;  // avail.idx as read by begin()
  uint32_t budget_ = 0;       // avail slots pop() may still consume this burst
  // Debug builds: chains popped since the last completion (push, refuse, bad
  // chain), the most unpop() may give back.
  uint16_t unpoppable_ = 0;
  bool broken_ = false;
  std::array<Miss, kMissesKept> misses_{};  // not yet taken, oldest first
  uint8_t nmisses_ = 0;
  bool walk_missed_ = false;  // the chain being walked ran into a miss
  Miss walk_miss_{};          // its first miss
  // Parked chains (park_on_miss; see the design note): a FIFO of park_cap_
  // entries from park_front_, ordered by `gen` (kGivenBack at the front).
  struct Parked {
    Miss miss;
    uint64_t gen;   // maps_applied() + 1 as the chain last missed; kGivenBack: given back
    uint16_t head;
  };
  static constexpr uint64_t kGivenBack = 0;
  std::unique_ptr<Parked[]> parked_;
  uint32_t park_cap_ = 0;
  uint32_t park_front_ = 0;
  uint32_t park_n_ = 0;
  uint32_t park_report_ = 0;  // parked_misses()' round robin: entries from the front
  uint64_t burst_gen_ = 1;    // maps_applied() + 1 as begin() read it (never kGivenBack)
  Parked& park_at(uint32_t i) noexcept { return parked_[(park_front_ + i) & (park_cap_ - 1)]; }
  void park_back(uint16_t head, const Miss& m) noexcept {
    park_at(park_n_++) = Parked{m, burst_gen_, head};
  }
  // The parked chains' pass of pop(): true with *c when one walks good now.
  bool pop_parked(Chain* c) noexcept;
  // prefetch(): the next avail slot to look at, and where misses go while it runs.
  uint16_t scan_ = 0;
  std::span<Miss> collect_;
  size_t ncollected_ = 0;
  bool collecting_ = false;
  Chain scan_chain_;  // prefetch()'s scratch
  VirtqueueStats stats_;
};

}  // namespace vxlate::dataplane
