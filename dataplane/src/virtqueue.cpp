#include "vxlate/dataplane/virtqueue.h"

#include <algorithm>
#include <cstring>

#include "vxlate/common/range.h"

namespace vxlate::dataplane {

using engine::Segment;
using pagetable::kPermRead;
using pagetable::kPermWrite;

const char* to_string(BadChain why) noexcept {
  switch (why) {
    case BadChain::kHeadRange: return "head_range";
    case BadChain::kIndexRange: return "index_range";
    case BadChain::kLoop: return "loop";
    case BadChain::kIndirect: return "indirect";
    case BadChain::kOrder: return "order";
    case BadChain::kLength: return "length";
    case BadChain::kUnmapped: return "unmapped";
    case BadChain::kTooManySegs: return "too_many_segs";
    case BadChain::kDirection: return "direction";
    case BadChain::kCount: break;
  }
  return "?";
}

Virtqueue::Virtqueue(engine::Device& dev, const QueueConfig& cfg)
    : dev_(dev),
      cfg_(cfg),
      max_descs_(cfg.max_chain_descs == 0 ? kMaxChainDescs : std::min(cfg.max_chain_descs, kMaxChainDescs)) {
  // Parking needs misses (a device IOTLB) and rings the used entries can be
  // written back into at a stop (IOVAs, translated then).
  if (cfg.park_on_miss && cfg.hold_on_miss && cfg.access_platform && !cfg.rings_host && valid_queue_size(cfg.size)) {
    parked_ = std::make_unique<Parked[]>(cfg.size);
    park_cap_ = cfg.size;
  }
}

Status Virtqueue::translate_holding(uint64_t addr, uint64_t len, uint8_t access, std::span<Segment> out, size_t* n,
                                    bool table) noexcept {
  engine::FaultEvent fault{};
  const Status st = table ? burst_.table_to_hva(addr, len, out, n, &fault)
                          : burst_.iova_to_hva(addr, len, access, out, n, &fault);
  if (st == Status::kFault && collecting_) {
    if (ncollected_ < collect_.size()) collect_[ncollected_++] = Miss{fault.address, access};
    return st;
  }
  if (st == Status::kFault) {
    if (!walk_missed_) walk_miss_ = Miss{fault.address, access};
    walk_missed_ = true;
    // Kept for take_miss(), each page and access once: a held chain's (the one the
    // rest waits behind) or ring's, or those of the chains parked since.
    const uint64_t page = fault.address >> 12;
    bool known = false;
    for (size_t i = 0; i < nmisses_; ++i) known |= misses_[i].iova >> 12 == page && misses_[i].access == access;
    if (!known && nmisses_ < kMissesKept) misses_[nmisses_++] = Miss{fault.address, access};
  }
  return st;
}

bool Virtqueue::translate_ring(uint64_t addr, uint64_t len, uint8_t access, uint64_t align, uint8_t** hva) noexcept {
  Segment seg;
  size_t n = 0;
  // A ring area must be one host segment, aligned as the spec requires of its
  // guest address, so that index fields can be accessed atomically in place.
  if (translate(addr, len, access, std::span<Segment>(&seg, 1), &n) != Status::kOk || n != 1 ||
      !is_aligned(addr, align) || !is_aligned(seg.addr, align)) {
    return false;
  }
  *hva = reinterpret_cast<uint8_t*>(seg.addr);
  return true;
}

bool Virtqueue::begin(uint32_t reader, uint32_t budget) noexcept {
  reader_ = reader;
  budget_ = 0;
  if (broken_) return false;
  const uint32_t size = cfg_.size;
  uint8_t* desc = nullptr;
  uint8_t* avail = nullptr;
  uint8_t* used = nullptr;
  // The device only reads the descriptor table and the avail ring and only
  // writes the used ring (avail_event included).
  if (cfg_.access_platform) burst_.begin(dev_, reader, cfg_.ep);
  if (cfg_.rings_host) {
    desc = reinterpret_cast<uint8_t*>(cfg_.desc);
    avail = reinterpret_cast<uint8_t*>(cfg_.avail);
    used = reinterpret_cast<uint8_t*>(cfg_.used);
  } else if (rings_kept_ && ring_stamp_ == current_stamp()) {
    // Nothing the ring translations depend on changed since they were made
    // (no invalidation applied by this reader, same domain, same memory
    // table): they are still what translate_ring() would return.
    desc = kept_desc_;
    avail = kept_avail_;
    used = kept_used_;
  } else {
    rings_kept_ = valid_queue_size(size) &&
                  translate_ring(cfg_.desc, desc_bytes(size), kPermRead, kDescAlign, &desc) &&
                  translate_ring(cfg_.avail, avail_bytes(size), kPermRead, kAvailAlign, &avail) &&
                  translate_ring(cfg_.used, used_bytes(size), kPermWrite, kUsedAlign, &used);
    if (rings_kept_) {
      kept_desc_ = desc;
      kept_avail_ = avail;
      kept_used_ = used;
      ring_stamp_ = current_stamp();
    }
  }
  if (!valid_queue_size(size) || (!cfg_.rings_host && !rings_kept_)) {
    desc_ = nullptr;
    ++stats_.ring_faults;
    return false;
  }
  desc_ = desc;
  avail_ = AvailRing{avail, size};
  used_ = UsedRing{used, size};
  // acquire: pairs with the driver's release store of avail.idx after it wrote
  // the ring entries and descriptors we are about to read. Read once per
  // burst: what arrives later waits for the next one.
  const uint16_t idx = load16(avail_.idx(), std::memory_order_acquire);
  if (static_cast<uint16_t>(idx - last_avail_) > size) {
    // The driver claims more chains than the queue holds: nothing in the ring
    // can be trusted any more (virtio: the device needs a reset).
    broken_ = true;
    ++stats_.broken;
    desc_ = nullptr;
    return false;
  }
  avail_cache_ = idx;
  budget_ = budget;
  // The parked chains' pass walks only those that missed before this count
  // moved (+ 1: never kGivenBack). Read before any walk of this burst, so a
  // chain that misses in it is walked again after any UPDATE that came later.
  if (park_cap_ != 0) burst_gen_ = dev_.maps_applied() + 1;
  // The first chains' descriptors, for lookahead() to read.
  ++bursts_;  // the tables hinted in earlier bursts go stale
  if (cfg_.lookahead)
    for (uint16_t k = 0; k < kLookahead; ++k) prefetch_desc(k);
  return true;
}

// Software prefetching (virtqueue.h's design note): three avail slots ahead
// of the chain being popped, its head descriptor's line; two ahead, the line
// that descriptor points to (an indirect table or a buffer); one ahead, the
// first buffer of the table translated two ahead. Each step reads only lines
// an earlier step prefetched, so a chain's three dependent misses
// (descriptor, table, frame) overlap the work on the chains before it
// instead of following one another. Hints only: what is read here may
// change before pop() reads it again and validates it; an address that does
// not translate (a fault, a page or region boundary) is simply not
// prefetched, and no fault is reported; an IOTLB miss is walked and filled
// (Device::Burst::peek), which the walk's translation would do anyway.
void Virtqueue::prefetch_desc(uint16_t ahead) noexcept {
  if (ahead >= available() || ahead >= budget_) return;
  const uint16_t head = avail_.ring(static_cast<uint16_t>(last_avail_ + ahead) & (cfg_.size - 1));
  if (head < cfg_.size) __builtin_prefetch(desc_ + 16 * head, 0, 3);
}

void Virtqueue::prefetch_heads(uint16_t ahead, uint16_t n) noexcept {
  const uint32_t end = std::min<uint32_t>({uint32_t{ahead} + n, available(), budget_});
  const uint16_t mask = static_cast<uint16_t>(cfg_.size - 1);
  for (uint32_t i = ahead; i < end; ++i) {
    const uint16_t head = avail_.ring(static_cast<uint16_t>(last_avail_ + i) & mask);
    if (head < cfg_.size) __builtin_prefetch(desc_ + 16 * head, 0, 3);
  }
}

const uint8_t* Virtqueue::hint(uint64_t addr, uint64_t len, bool writable) noexcept {
  if (cfg_.access_platform) return burst_.peek(addr, len, writable ? kPermWrite : kPermRead);
  return gpa_hint(addr, len);
}

const uint8_t* Virtqueue::hint_table(uint64_t addr, uint64_t len) noexcept {
  if (cfg_.access_platform) return burst_.peek_table(addr, len);
  return gpa_hint(addr, len);
}

namespace {
// The line of p and, when [p, p + min(len, 128)) goes on into the next one
// (a virtio-net header followed by a short frame), that line too.
void prefetch_lines(const uint8_t* p, uint64_t len, bool writable) noexcept {
  const bool two = (reinterpret_cast<uintptr_t>(p) & 63) + std::min<uint64_t>(len, 128) > 64;
  if (writable) {
    __builtin_prefetch(p, 1, 3);
    if (two) __builtin_prefetch(p + 64, 1, 3);
  } else {
    __builtin_prefetch(p, 0, 3);
    if (two) __builtin_prefetch(p + 64, 0, 3);
  }
}
}  // namespace

// A buffer's first line or two (prefetch_lines), through a hint translation
// of its bytes up to the end of their page, which the walk of the chain in
// avail slot `slot` then uses instead of translating them again.
void Virtqueue::prefetch_buffer(uint16_t slot, uint64_t addr, uint32_t len, bool writable) noexcept {
  const uint64_t in_page = std::min<uint64_t>(len, kHintPage - (addr & (kHintPage - 1)));
  if (in_page == 0) return;
  const uint8_t* p = hint(addr, in_page, writable);
  if (p == nullptr) return;
  prefetch_lines(p, std::min<uint64_t>(in_page, 128 - (addr & 63)), writable);
  hinted_bufs_[slot & 3] = Hinted{addr, p, bursts_, static_cast<uint32_t>(in_page), writable};
}

void Virtqueue::lookahead() noexcept {
  const uint32_t left = std::min<uint32_t>(available(), budget_);
  if (left <= 1) return;
  const uint16_t mask = static_cast<uint16_t>(cfg_.size - 1);
  auto desc_at = [&](uint16_t ahead, VirtqDesc* d) {
    const uint16_t head = avail_.ring(static_cast<uint16_t>(last_avail_ + ahead) & mask);
    if (head >= cfg_.size) return false;
    std::memcpy(d, desc_ + 16 * head, sizeof *d);
    return true;
  };
  prefetch_desc(kLookahead);
  // One ahead: the buffers of the indirect table an earlier pop translated
  // and prefetched (its descriptor still says the same table address), read
  // from that host address; a table not translated this burst is not read
  // here.
  VirtqDesc d;
  const Hinted& h = hinted_[static_cast<uint16_t>(last_avail_ + 1) & 3];
  if (h.burst == bursts_ && desc_at(1, &d) && (d.flags & kDescFlagIndirect) && d.addr == h.addr &&
      d.len >= sizeof(VirtqDesc)) {
    VirtqDesc e;
    std::memcpy(&e, h.hva, sizeof e);
    uint64_t len = e.len;
    // A header alone in its buffer with the frame right after it (Linux's
    // virtio-net without room to push the header): one span, one hint.
    if (len < 64 && h.len >= 2 * sizeof(VirtqDesc) && (e.flags & kDescFlagNext) && e.next == 1) {
      VirtqDesc f;
      std::memcpy(&f, h.hva + sizeof f, sizeof f);
      if (f.addr == e.addr + e.len && ((f.flags ^ e.flags) & kDescFlagWrite) == 0) len += f.len;
    }
    prefetch_buffer(static_cast<uint16_t>(last_avail_ + 1), e.addr,
                    static_cast<uint32_t>(std::min<uint64_t>(len, UINT32_MAX)), (e.flags & kDescFlagWrite) != 0);
  }
  // Two ahead: the line the head descriptor points to.
  if (left > 2 && desc_at(2, &d)) {
    if ((d.flags & kDescFlagIndirect) && cfg_.indirect) {
      // Its first two descriptors (one when the table is shorter).
      const uint64_t len = d.len >= 2 * sizeof(VirtqDesc) ? 2 * sizeof(VirtqDesc) : sizeof(VirtqDesc);
      const uint8_t* table = d.len >= sizeof(VirtqDesc) ? hint_table(d.addr, len) : nullptr;
      if (table != nullptr) {
        hinted_[static_cast<uint16_t>(last_avail_ + 2) & 3] =
            Hinted{d.addr, table, bursts_, static_cast<uint32_t>(len), false};
        __builtin_prefetch(table, 0, 3);
      }
    } else {
      prefetch_buffer(static_cast<uint16_t>(last_avail_ + 2), d.addr, d.len, (d.flags & kDescFlagWrite) != 0);
    }
  }
}

bool Virtqueue::pop_parked(Chain* c) noexcept {
  walk_hint_ = nullptr;  // the lookahead's hints are for avail slots
  // Front to back while the entry missed before this burst's count: each
  // chain is walked at most once a burst, and a walk that misses again puts
  // it at the back with the newest count, behind which nothing older lies.
  while (park_n_ != 0 && budget_ != 0) {
    const Parked p = park_at(0);
    if (p.gen == burst_gen_) return false;
    park_front_ = (park_front_ + 1) & (park_cap_ - 1);
    --park_n_;
    if (park_report_ != 0) --park_report_;  // still names the same entry
    --budget_;  // a walk, as an avail slot's
    BadChain why{};
    walk_missed_ = false;
    const bool good = walk(p.head, c, &why);
    stats_.descs += c->descs;
    if (good) {
      ++stats_.chains;
      return true;
    }
    if (why == BadChain::kUnmapped && walk_missed_) {
      park_back(p.head, walk_miss_);
      continue;
    }
    // The guest rewrote a chain it had handed over: bad like any other.
    count_bad(why);
    push(p.head, 0);
  }
  return false;
}

void Virtqueue::give_back(const Chain* chains, uint32_t n) noexcept {
  VXLATE_DCHECK(park_cap_ != 0, "Virtqueue::give_back: for a queue that parks chains");
  for (uint32_t i = n; i-- > 0;) {
    --stats_.chains;
    if (park_n_ == park_cap_) {
      // More chains outstanding than the queue holds: the driver posted a
      // head it had not got back. Completed empty, counted.
      count_bad(BadChain::kLoop);
      push(chains[i].head, 0);
      continue;
    }
    park_front_ = (park_front_ + park_cap_ - 1) & (park_cap_ - 1);
    ++park_n_;
    if (park_report_ != 0) ++park_report_;
    park_at(0) = Parked{Miss{}, kGivenBack, chains[i].head};
  }
}

uint32_t Virtqueue::complete_parked() noexcept {
  if (park_n_ == 0) return 0;
  VXLATE_DCHECK(pending_ == 0, "Virtqueue::complete_parked: the owner left entries unpublished");
  Segment seg;
  if (dev_.iotlb_translate(cfg_.ep, cfg_.used, used_bytes(cfg_.size), kPermWrite, &seg) != Status::kOk ||
      !is_aligned(cfg_.used, kUsedAlign) || !is_aligned(seg.addr, kUsedAlign))
    return 0;
  UsedRing used{reinterpret_cast<uint8_t*>(seg.addr), cfg_.size};
  const uint32_t n = park_n_;
  for (uint32_t i = 0; i < n; ++i) {
    // plain stores: published by the release store of used.idx below.
    VirtqUsedElem& e = used.ring(static_cast<uint16_t>(used_idx_ + i) & (cfg_.size - 1));
    e.id = park_at(i).head;
    e.len = 0;
  }
  used_idx_ = static_cast<uint16_t>(used_idx_ + n);
  // release: the entries before the index; pairs with the driver's acquire
  // load of used.idx.
  store16(used.idx(), used_idx_, std::memory_order_release);
  stats_.used += n;
  stats_.parked_returned += n;
  park_n_ = park_front_ = park_report_ = 0;
  return n;
}

bool Virtqueue::pop(Chain* c) noexcept {
  if (desc_ == nullptr || broken_) return false;  // no begin() this burst, or stopped
  // A queue's worth of entries waits to be published: nothing more this
  // burst. Without parking the avail slots are spent by then (a burst sees
  // at most size() of them); with it only a driver that posts heads it has
  // not got back gets here (parked chains that turn bad, give-back overflow).
  if (pending_ >= cfg_.size) return false;
  if (park_n_ != 0 && pop_parked(c)) return true;
  for (;;) {
    if (last_avail_ == avail_cache_ || budget_ == 0) return false;
    if (cfg_.lookahead) {
      lookahead();
      // Its hint translation of this chain's first buffer, if it made one
      // this burst, for the walk.
      const Hinted& hinted = hinted_bufs_[last_avail_ & 3];
      walk_hint_ = hinted.burst == bursts_ ? &hinted : nullptr;
    }
    --budget_;  // every slot counts, good or bad
    const uint16_t head = avail_.ring(last_avail_ & (cfg_.size - 1));  // plain: ordered by the acquire above
    ++last_avail_;
    BadChain why{};
    walk_missed_ = false;
    if (head >= cfg_.size) {
      // No descriptor to complete: skip it.
      count_bad(BadChain::kHeadRange);
      continue;
    }
    const bool good = walk(head, c, &why);
    stats_.descs += c->descs;
    if (!good && why == BadChain::kUnmapped && walk_missed_) {
      if (park_n_ < park_cap_) {
        // park_on_miss: set aside; the chains behind it go on.
        park_back(head, walk_miss_);
        ++stats_.parked;
        continue;
      }
      // hold_on_miss: the chain waits in its ring for the translation, and
      // so does everything behind it (used entries stay in order).
      --last_avail_;
      budget_ = 0;
      ++stats_.held;
      return false;
    }
    if (good) {
      ++stats_.chains;
      VXLATE_DEBUG_ONLY(++unpoppable_;)
      return true;
    }
    count_bad(why);
    push(head, 0);
  }
}

bool Virtqueue::add_buffer(Chain* c, uint64_t addr, uint32_t len, bool writable, BadChain* why) noexcept {
  // Only what the consumer can use is translated (a 4 GiB buffer is not
  // walked page by page to be refused afterwards).
  const uint64_t used = c->readable_bytes + c->writable_bytes;
  const uint64_t room = cfg_.max_chain_bytes == 0        ? UINT64_MAX
                        : used < cfg_.max_chain_bytes ? cfg_.max_chain_bytes - used
                                                      : 0;
  if (len > room) {
    if (!writable) {
      *why = BadChain::kLength;
      return false;
    }
    len = static_cast<uint32_t>(room);
  }
  if (len == 0) return true;  // nothing to transfer
  if (!writable && c->nsegs != c->nreadable) {
    *why = BadChain::kOrder;
    return false;
  }
  uint64_t last = 0;
  if (!range_last(addr, len, &last)) {
    *why = BadChain::kUnmapped;
    return false;
  }
  if (c->nsegs == kMaxChainSegs) {
    *why = BadChain::kTooManySegs;
    return false;
  }
  size_t n = 0;
  Status st;
  // The lookahead may have translated these bytes already, this burst.
  const Hinted* h = walk_hint_;
  if (h != nullptr && addr - h->addr < h->len && len <= h->len - (addr - h->addr) && h->writable == writable) {
    ++stats_.translations;
    if (cfg_.access_platform) burst_.count_peeked();
    c->segs[c->nsegs] = Segment{reinterpret_cast<uint64_t>(h->hva) + (addr - h->addr), len};
    n = 1;
    st = Status::kOk;
  } else {
    st = translate(addr, len, writable ? kPermWrite : kPermRead,
                   std::span<Segment>(c->segs.data() + c->nsegs, kMaxChainSegs - c->nsegs), &n);
  }
  if (st == Status::kFault && collecting_) return true;  // prefetch(): named, skipped
  if (st != Status::kOk) {
    // FAULT: some byte unmapped or without the permission; INVAL here (the range
    // was checked) means the segment array ran out.
    *why = st == Status::kInval ? BadChain::kTooManySegs : BadChain::kUnmapped;
    return false;
  }
  // The consumer reads or writes it next: its first line(s) on their way.
  if (!collecting_) {
    const Segment& seg = c->segs[c->nsegs];
    prefetch_lines(reinterpret_cast<const uint8_t*>(seg.addr), seg.len, writable);
  }
  c->nsegs += static_cast<uint32_t>(n);
  if (writable) {
    c->writable_bytes += len;
    if (c->writable_bytes > UINT32_MAX) {
      *why = BadChain::kLength;
      return false;
    }
  } else {
    c->nreadable = c->nsegs;
    c->readable_bytes += len;
  }
  return true;
}

bool Virtqueue::walk(uint16_t head, Chain* c, BadChain* why) noexcept {
  c->head = head;
  c->nsegs = 0;
  c->nreadable = 0;
  c->readable_bytes = 0;
  c->writable_bytes = 0;
  c->descs = 0;
  uint32_t idx = head;
  for (uint32_t count = 0;; ++count) {
    // A direct chain longer than the queue loops; any chain longer than
    // kMaxChainDescs costs too much, whatever its descriptors hold.
    if (count == cfg_.size || c->descs == max_descs_) {
      *why = BadChain::kLoop;
      return false;
    }
    ++c->descs;
    VirtqDesc d;
    std::memcpy(&d, desc_ + 16 * idx, sizeof d);  // read once; the guest may change it under us
    if (d.flags & kDescFlagIndirect) {
      // virtio 2.7.5.3.1: INDIRECT needs the feature and excludes NEXT; it ends the chain.
      if (!cfg_.indirect || (d.flags & kDescFlagNext)) {
        *why = BadChain::kIndirect;
        return false;
      }
      return walk_indirect(d, c, why);
    }
    if (!add_buffer(c, d.addr, d.len, (d.flags & kDescFlagWrite) != 0, why)) return false;
    if (!(d.flags & kDescFlagNext)) return true;
    if (d.next >= cfg_.size) {
      *why = BadChain::kIndexRange;
      return false;
    }
    idx = d.next;
  }
}

bool Virtqueue::walk_indirect(const VirtqDesc& table, Chain* c, BadChain* why) noexcept {
  // The table: a whole number of descriptors, no more than the queue holds.
  if (table.len == 0 || table.len % sizeof(VirtqDesc) != 0 || table.len / sizeof(VirtqDesc) > cfg_.size) {
    *why = BadChain::kIndirect;
    return false;
  }
  uint64_t table_last = 0;
  if (!range_last(table.addr, table.len, &table_last)) {
    *why = BadChain::kUnmapped;
    return false;
  }
  std::array<Segment, kMaxIndirectSegs> segs;
  size_t nsegs = 0;
  // The lookahead may have translated this table already, this burst (pop()
  // has moved last_avail_ past the chain being walked; prefetch()'s scan
  // walks other slots).
  const Hinted& h = hinted_[static_cast<uint16_t>(last_avail_ - 1) & 3];
  if (cfg_.lookahead && h.burst == bursts_ && h.addr == table.addr && table.len <= h.len && !collecting_) {
    // Counted as the translation (and IOTLB hit) it stands for, as a
    // buffer's is in add_buffer().
    ++stats_.translations;
    if (cfg_.access_platform) burst_.count_peeked();
    segs[0] = Segment{reinterpret_cast<uint64_t>(h.hva), table.len};
    nsegs = 1;
  } else {
    const Status st = translate_table(table.addr, table.len, segs, &nsegs);
    if (st != Status::kOk) {
      *why = st == Status::kInval ? BadChain::kTooManySegs : BadChain::kUnmapped;
      return false;
    }
  }
  const uint32_t n = table.len / sizeof(VirtqDesc);
  // Reads descriptor i (< n) of the table, which may straddle two host
  // segments. A table in one segment (nearly always: the guest allocates it
  // in one piece) is read with one fixed-size copy, two loads, instead of a
  // variable-length memcpy call per descriptor.
  const uint8_t* const whole =
      nsegs == 1 && segs[0].len >= table.len ? reinterpret_cast<const uint8_t*>(segs[0].addr) : nullptr;
  auto read = [&](uint32_t i, VirtqDesc* d) {
    if (whole != nullptr) {  // i < n: inside table.len bytes
      std::memcpy(d, whole + uint64_t{i} * sizeof(VirtqDesc), sizeof *d);
      return;
    }
    uint64_t off = uint64_t{i} * sizeof(VirtqDesc);
    auto* out = reinterpret_cast<uint8_t*>(d);
    size_t want = sizeof(VirtqDesc);
    for (size_t s = 0; s < nsegs && want > 0; ++s) {
      if (off >= segs[s].len) {
        off -= segs[s].len;
        continue;
      }
      const size_t take = std::min<uint64_t>(want, segs[s].len - off);
      std::memcpy(out, reinterpret_cast<const uint8_t*>(segs[s].addr) + off, take);
      out += take;
      want -= take;
      off = 0;
    }
  };
  uint32_t idx = 0;
  for (uint32_t count = 0;; ++count) {
    if (count == n || c->descs == max_descs_) {
      *why = BadChain::kLoop;
      return false;
    }
    ++c->descs;
    VirtqDesc d;
    read(idx, &d);
    if (d.flags & kDescFlagIndirect) {  // nested tables are forbidden
      *why = BadChain::kIndirect;
      return false;
    }
    if (!add_buffer(c, d.addr, d.len, (d.flags & kDescFlagWrite) != 0, why)) return false;
    if (!(d.flags & kDescFlagNext)) return true;
    if (d.next >= n) {
      *why = BadChain::kIndexRange;
      return false;
    }
    idx = d.next;
  }
}

size_t Virtqueue::prefetch(uint32_t max_chains, std::span<Miss> out) noexcept {
  if (desc_ == nullptr || broken_ || !cfg_.hold_on_miss || out.empty()) return 0;
  // Chains before last_avail_ are popped; the cursor restarts there when the
  // pops overtook it.
  const uint16_t posted = static_cast<uint16_t>(avail_cache_ - last_avail_);
  if (static_cast<uint16_t>(scan_ - last_avail_) > posted) scan_ = last_avail_;
  collect_ = out;
  ncollected_ = 0;
  collecting_ = true;
  walk_hint_ = nullptr;  // pop()'s, for the chain it walked; the scan walks others
  Chain& c = scan_chain_;
  while (scan_ != avail_cache_ && max_chains > 0 && ncollected_ < out.size()) {
    --max_chains;
    const uint16_t head = avail_.ring(scan_ & (cfg_.size - 1));
    ++scan_;
    BadChain why{};
    if (head < cfg_.size) (void)walk(head, &c, &why);  // bad chains are pop()'s business
  }
  collecting_ = false;
  return ncollected_;
}

size_t Virtqueue::parked_misses(std::span<Miss> out) noexcept {
  size_t n = 0;
  for (uint32_t seen = 0; seen < park_n_ && n < out.size(); ++seen) {
    if (park_report_ >= park_n_) park_report_ = 0;
    const Parked& p = park_at(park_report_++);
    if (p.gen != kGivenBack) out[n++] = p.miss;
  }
  return n;
}

void Virtqueue::push(uint16_t head, uint32_t len) noexcept {
  // plain stores: published by the release store of used.idx in publish().
  VirtqUsedElem& e = used_.ring(static_cast<uint16_t>(used_idx_ + pending_) & (cfg_.size - 1));
  e.id = head;
  e.len = len;
  ++pending_;
  VXLATE_DEBUG_ONLY(unpoppable_ = 0;)
}

void Virtqueue::refuse(const Chain& c, BadChain why) noexcept {
  count_bad(why);
  --stats_.chains;
  push(c.head, 0);
}

bool Virtqueue::publish() noexcept {
  if (cfg_.access_platform) burst_.end();  // the burst's IOTLB hits, counted once
  if (pending_ == 0) return false;
  const uint16_t old_idx = used_idx_;
  used_idx_ = static_cast<uint16_t>(used_idx_ + pending_);
  stats_.used += pending_;
  pending_ = 0;
  // seq_cst: releases the used entries and buffer contents (pairs with the
  // driver's acquire load of used.idx), and orders this store before the load
  // of used_event/flags below (pairs with the driver's seq_cst store of
  // used_event followed by its load of used.idx): either we see its new
  // used_event or it sees our new used.idx.
  store16(used_.idx(), used_idx_, std::memory_order_seq_cst);
  bool want = false;
  if (cfg_.event_idx) {
    want = need_event(load16(avail_.used_event(), std::memory_order_seq_cst), used_idx_, old_idx);
  } else {
    want = !(load16(avail_.flags(), std::memory_order_seq_cst) & kAvailFlagNoInterrupt);
  }
  if (want) ++stats_.interrupts;
  return want;
}

void Virtqueue::disable_kicks() noexcept {
  if (desc_ == nullptr) return;
  // relaxed: a hint; the driver may kick once more, which a polling device ignores.
  store16(used_.flags(), kUsedFlagNoNotify, std::memory_order_relaxed);
}

bool Virtqueue::enable_kicks(uint16_t* avail_idx) noexcept {
  if (desc_ == nullptr) return false;
  if (cfg_.event_idx) {
    // seq_cst: ordered before the re-check of avail.idx below; pairs with the
    // driver's seq_cst store of avail.idx followed by its load of avail_event.
    store16(used_.avail_event(), last_avail_, std::memory_order_seq_cst);
  } else {
    store16(used_.flags(), 0, std::memory_order_seq_cst);
  }
  const uint16_t idx = load16(avail_.idx(), std::memory_order_seq_cst);
  if (avail_idx != nullptr) *avail_idx = idx;
  return idx != last_avail_;
}

}  // namespace vxlate::dataplane
