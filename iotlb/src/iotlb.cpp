#include "vxlate/iotlb/iotlb.h"

#include <bit>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

#include "vxlate/common/range.h"

namespace vxlate::iotlb {

Iotlb::Iotlb(Rcu& rcu, size_t entries_per_reader)
    : rcu_(rcu),
      entry_mask_(entries_per_reader - 1),
      set_stride_(entries_per_reader / kWays),
      num_readers_(rcu.max_readers()) {
  if (entries_per_reader < kWays || entries_per_reader > kMaxEntries ||
      (entries_per_reader & (entries_per_reader - 1)) != 0)
    throw std::invalid_argument("Iotlb: entries_per_reader must be a power of two in [kWays, kMaxEntries]");
  readers_ = std::make_unique<Reader[]>(num_readers_);
  const size_t bytes = entries_per_reader * sizeof(Entry);
  for (uint32_t i = 0; i < num_readers_; ++i) {
    void* mem = std::aligned_alloc(64, bytes);  // two whole entries per line
    if (mem == nullptr) throw std::bad_alloc();
    std::memset(mem, 0, bytes);
    readers_[i].entries = static_cast<Entry*>(mem);
  }
  gens_ = std::make_unique<std::atomic<uint32_t>[]>(kGenerationSlots);
  log_batch_.reserve(kLogCapacity);
  // Last: from here on, every reader's quiescent report applies this log.
  rcu_.attach(*this);
}

Iotlb::~Iotlb() {
  rcu_.detach(*this);  // no reader runs rcu_online/rcu_quiescent on us after this
  for (uint32_t i = 0; i < num_readers_; ++i) std::free(readers_[i].entries);
}

// --- reader side -----------------------------------------------------------

void Iotlb::online(uint32_t reader) noexcept { rcu_.online(reader); }

void Iotlb::offline(uint32_t reader) noexcept { rcu_.offline(reader); }

void Iotlb::quiescent(uint32_t reader) noexcept { rcu_.quiescent(reader); }

void Iotlb::rcu_online(uint32_t reader) noexcept {
  Reader& r = readers_[reader];
  // While offline the reader applied nothing and the writer did not wait for
  // it, so its cache and log position are both stale: start empty at the head.
  flush_reader(r);
  // seq_cst: after the reader's seq_cst counter store in Rcu::online(), and
  // paired with the seq_cst store in sync(): either sync() waits for this
  // reader or this load sees the head sync() published. Records before this
  // head are about page-table changes any later walk already sees.
  r.seq = head_.load(std::memory_order_seq_cst);
}

void Iotlb::rcu_quiescent(uint32_t reader) noexcept {
  Reader& r = readers_[reader];
  // The Rcu loaded the token first (acquire, pairs with Rcu::start()): a
  // record published before that token was taken is visible below. Records
  // of a batch still being published may be applied early, which only drops
  // entries whose page-table change is already visible (it precedes the
  // record). The writer reuses a slot only after a grace period that this
  // reader, online, acknowledged after applying the slot's record.
  for (;;) {
    const Slot& slot = log_[r.seq % kLogCapacity];
    // acquire: pairs with the release store in sync(); makes the record (and
    // the page-table changes before it) visible.
    const uint64_t seq = slot.seq.load(std::memory_order_acquire);
    if (seq == r.seq + 1) {
      if (slot.rec.kind == kAll)
        flush_reader(r);
      else
        apply_range(r, slot.rec);
      ++r.seq;
    } else if (seq > r.seq + 1) [[unlikely]] {
      // Lapped: cannot happen while online; kept as a safe fallback.
      flush_reader(r);
      r.seq = head_.load(std::memory_order_acquire);  // pairs with the store in sync()
      break;
    } else {
      break;  // nothing newer published
    }
  }
}

// The burst loop for one leaf size (a constant: immediate shifts and masks).
// Per IOVA: the preferred entry's byte offset (shift, xor, and), one line
// read, two compares, the permission test, the output. Whatever that does not
// answer (another way, another leaf size, a miss, a permission fault) is
// marked and done by burst_rest(), so the loop makes no call and keeps all it
// needs in registers. It runs backwards and shifts its mask left per IOVA,
// which needs no variable shift.
template <unsigned kCode>
uint32_t Iotlb::burst_loop(Reader& r, uint32_t domain, uint32_t gen, uint64_t salt, const IoPageTable& pt,
                           const uint64_t* iovas, size_t n, uint8_t need, Translation* out, uint64_t* hits) noexcept {
  constexpr unsigned kShift = code_shift(kCode);
  constexpr uint64_t kLeafMask = (uint64_t{1} << kShift) - 1;
  constexpr uint64_t kLow = make_key(0, kCode);
  constexpr unsigned kEntryShift = 5;
  static_assert(sizeof(Entry) == size_t{1} << kEntryShift);
  const uint64_t tag = make_tag(domain, gen);
  const uint64_t offset_salt = leaf_salt(salt, kCode) << kEntryShift;
  const uint64_t offset_mask = uint64_t{entry_mask_} << kEntryShift;
  const char* const entries = reinterpret_cast<const char*>(r.entries);
  const uint64_t need64 = need;
  uint32_t slow = 0;
  for (size_t i = n; i-- > 0;) {
    const uint64_t iova = iovas[i];
    const Entry& e =
        *reinterpret_cast<const Entry*>(entries + (((iova >> (kShift - kEntryShift)) ^ offset_salt) & offset_mask));
    slow <<= 1;
    if (!holds(e, (iova & ~kLeafMask) | kLow, tag) || (e.out & need64) != need64) [[unlikely]] {
      slow |= 1;
      continue;
    }
    out[i].out = (e.out & ~kOutPermMask) + (iova & kLeafMask);
    out[i].leaf_size = kLeafMask + 1;
    out[i].perms = static_cast<uint8_t>(e.out & pagetable::kPermReadWrite);
  }
  *hits = n - static_cast<unsigned>(std::popcount(slow));
  if (slow != 0) [[unlikely]]
    return burst_rest(r, domain, gen, salt, pt, iovas, slow, need, out, hits);
  return 0;
}

uint32_t Iotlb::burst_rest(Reader& r, uint32_t domain, uint32_t gen, uint64_t salt, const IoPageTable& pt,
                           const uint64_t* iovas, uint32_t todo, uint8_t need, Translation* out,
                           uint64_t* hits) noexcept {
  const uint64_t tag = make_tag(domain, gen);
  uint32_t faults = 0;
  for (; todo != 0; todo &= todo - 1) {
    const unsigned i = static_cast<unsigned>(std::countr_zero(todo));
    if (const Entry* e = find(r, tag, salt, iovas[i])) {
      ++*hits;
      if (hit(*e, iovas[i], need, &out[i]) != Status::kOk) faults |= uint32_t{1} << i;
    } else if (miss(r, domain, gen, pt, iovas[i], need, &out[i]) != Status::kOk) {
      faults |= uint32_t{1} << i;
    }
  }
  return faults;
}

size_t Iotlb::translate_burst(uint32_t reader, DomainId d, const IoPageTable& pt, std::span<const uint64_t> iovas,
                              uint8_t need, Translation* out, uint32_t* fault_mask) noexcept {
  VXLATE_DCHECK(reader < num_readers_, "Iotlb::translate_burst: reader id out of range");
  VXLATE_DCHECK(rcu_.is_online(reader), "Iotlb::translate_burst: the reader must be online");
  const size_t n = iovas.size() < kMaxBurst ? iovas.size() : kMaxBurst;
  Reader& r = readers_[reader];
  // One domain per burst: its generation is loaded once (acquire: pairs with
  // the release bump in sync(); before any walk below, as in translate()).
  const uint32_t gen = gens_[gen_slot(d)].load(std::memory_order_acquire);
  const uint64_t salt = salt_of(r, d.value);
  // The fast probe is the smallest cached leaf size's preferred entry, the
  // one find() tries first.
  uint64_t hits = 0;
  uint32_t faults;
  if (r.per_leaf[0] != 0 || (r.per_leaf[1] == 0 && r.per_leaf[2] == 0)) [[likely]]
    faults = burst_loop<0>(r, d.value, gen, salt, pt, iovas.data(), n, need, out, &hits);
  else if (r.per_leaf[1] != 0)
    faults = burst_loop<1>(r, d.value, gen, salt, pt, iovas.data(), n, need, out, &hits);
  else
    faults = burst_loop<2>(r, d.value, gen, salt, pt, iovas.data(), n, need, out, &hits);
  // Counted once per burst: one store to the reader's own line.
  if (hits != 0) r.hits.inc(hits);
  *fault_mask = faults;
  return n;
}

void Iotlb::fill(Reader& r, uint32_t domain, uint32_t gen, uint64_t iova, const Translation& t) noexcept {
  const unsigned code = leaf_code(t.leaf_size);
  const uint64_t base = iova & ~(t.leaf_size - 1);
  const uint64_t key = make_key(base, code);
  const size_t slot = slot_of(iova, code, salt_of(r, domain));
  auto same_leaf = [&](const Entry& e) { return e.key == key && static_cast<uint32_t>(e.tag >> 32) == domain; };
  auto drop = [&](Entry& e) {
    --r.per_leaf[e.key >> 1 & 3];
    e.key = 0;
  };
  // The new entry takes its preferred way, which lookups probe first. An older
  // copy of the same leaf (a flushed generation) elsewhere in the set goes.
  for (size_t s = set_of(slot); s <= entry_mask_; s += set_stride_)
    if (s != slot && same_leaf(r.entries[s])) drop(r.entries[s]);
  Entry& p = r.entries[slot];
  if (p.key != 0 && !same_leaf(p) && live(p)) {
    // A live occupant moves to another way of the set: an empty one, else a
    // flushed one, else a round-robin victim; so the set keeps kWays live
    // leaves, of which only the newest is sure to be at its preferred way.
    size_t to = SIZE_MAX;
    for (size_t s = set_of(slot); s <= entry_mask_ && to == SIZE_MAX; s += set_stride_)
      if (s != slot && r.entries[s].key == 0) to = s;
    for (size_t s = set_of(slot); s <= entry_mask_ && to == SIZE_MAX; s += set_stride_)
      if (s != slot && !live(r.entries[s])) to = s;
    if (to == SIZE_MAX) {
      to = (slot + (1 + r.victim) * set_stride_) & entry_mask_;  // another way of the same set
      r.victim = (r.victim + 1) % (kWays - 1);
    }
    if (r.entries[to].key != 0) drop(r.entries[to]);
    r.entries[to] = p;
  } else if (p.key != 0) {
    drop(p);
  }
  p.key = key;
  p.tag = make_tag(domain, gen);
  p.out = (t.out - (iova - base)) | t.perms;
  ++r.per_leaf[code];
  r.fills.inc();
}

void Iotlb::clear_entry(Reader& r, Entry& e) noexcept {
  --r.per_leaf[e.key >> 1 & 3];
  e.key = 0;
  r.invalidations.inc();
}

void Iotlb::flush_reader(Reader& r) noexcept {
  std::memset(static_cast<void*>(r.entries), 0, (entry_mask_ + 1) * sizeof(Entry));
  r.per_leaf[0] = r.per_leaf[1] = r.per_leaf[2] = 0;
  r.flushes.inc();
}

void Iotlb::apply_range(Reader& r, const Record& rec) noexcept {
  const size_t sets = set_stride_;
  // Probes a per-page walk of the range would take; past one per set, a scan
  // of the whole cache is cheaper and just as exact.
  uint64_t probes = 0;
  for (unsigned code = 0; code < 3; ++code) {
    if (r.per_leaf[code] == 0) continue;
    const unsigned shift = code_shift(code);
    probes += ((rec.last >> shift) - (rec.first >> shift)) + 1;
  }
  if (probes > sets) {
    for (size_t i = 0; i <= entry_mask_; ++i) {
      Entry& e = r.entries[i];
      if (e.key == 0 || (e.tag >> 32) != rec.domain) continue;
      const uint64_t base = e.key & ~uint64_t{7};
      const uint64_t last = base + ((uint64_t{1} << code_shift(static_cast<unsigned>(e.key >> 1 & 3))) - 1);
      if (base <= rec.last && last >= rec.first) clear_entry(r, e);
    }
    return;
  }
  const uint64_t salt = salt_of(r, rec.domain);
  for (unsigned code = 0; code < 3; ++code) {
    if (r.per_leaf[code] == 0) continue;
    const unsigned shift = code_shift(code);
    for (uint64_t page = rec.first >> shift; page <= rec.last >> shift; ++page) {
      const uint64_t key = make_key(page << shift, code);
      for (size_t s = set_of(slot_of(page << shift, code, salt)); s <= entry_mask_; s += set_stride_)
        if (r.entries[s].key == key && (r.entries[s].tag >> 32) == rec.domain) clear_entry(r, r.entries[s]);
    }
  }
}

// --- writer side -----------------------------------------------------------

void Iotlb::add_invalidate(DomainId d, uint64_t iova, uint64_t size) {
  OwnerCheck::Scope owner(writer_, "Iotlb::add_invalidate: writer calls must come from one thread at a time");
  uint64_t last = 0;
  if (!range_last(iova, size, &last)) {
    // A wrapping range still means "everything from iova up".
    last = ~uint64_t{0};
    if (size == 0) return;
  }
  if (log_batch_.size() < kLogCapacity) {
    log_batch_.push_back(Record{kRange, d.value, iova, last});  // capacity reserved
  } else {
    flush_all_pending_ = true;  // the batch outgrew the log
  }
}

void Iotlb::add_flush_domain(DomainId d) {
  OwnerCheck::Scope owner(writer_, "Iotlb::add_flush_domain: writer calls must come from one thread at a time");
  flush_slots_.push_back(gen_slot(d));
}

void Iotlb::add_flush_all() {
  OwnerCheck::Scope owner(writer_, "Iotlb::add_flush_all: writer calls must come from one thread at a time");
  flush_all_pending_ = true;
}

void Iotlb::sync(uint32_t self) noexcept {
  OwnerCheck::Scope owner(writer_, "Iotlb::sync: writer calls must come from one thread at a time");
  VXLATE_DCHECK(self == Rcu::kNoReader || self < num_readers_, "Iotlb::sync: self reader id out of range");
  if (pending() == 0) return;
  bool wrap = false;
  for (size_t slot : flush_slots_) {
    const uint32_t g = gens_[slot].load(std::memory_order_relaxed);  // only this writer stores
    if (g == UINT32_MAX)
      wrap = true;  // reset to 0 below, after every reader flushed
    else
      gens_[slot].store(g + 1, std::memory_order_release);  // pairs with translate()'s acquire
  }
  uint64_t head = head_.load(std::memory_order_relaxed);  // only this writer stores
  // Slots [head, head + n) held records of batches whose grace period has
  // ended: every online reader applied them, so none reads their records any
  // more (a reader at a later position reads only the seq, which tells it the
  // slot is not its record yet). Each record is written before its seq
  // (release: pairs with rcu_quiescent()'s acquire).
  auto publish = [&](const Record& rec) {
    Slot& slot = log_[head % kLogCapacity];
    slot.rec = rec;
    slot.seq.store(head + 1, std::memory_order_release);
    ++head;
  };
  if (flush_all_pending_ || wrap) {
    publish(Record{kAll, 0, 0, 0});
  } else {
    for (const Record& rec : log_batch_) publish(rec);
  }
  // seq_cst: a release that makes the records (and the page-table changes
  // before them) visible to a reader that loads this head (rcu_online(), the
  // lapped fallback), and ordered before Rcu::start()'s increment and
  // check()'s counter loads for a reader that is coming online (see
  // Rcu::online()).
  head_.store(head, std::memory_order_seq_cst);
  // A self reader that is online applies the batch in its own report inside
  // synchronize() (after the new token), and the wait skips it.
  rcu_.synchronize(self);
  if (wrap) {
    for (size_t slot : flush_slots_)
      if (gens_[slot].load(std::memory_order_relaxed) == UINT32_MAX) gens_[slot].store(0, std::memory_order_release);
  }
  log_batch_.clear();
  flush_slots_.clear();
  flush_all_pending_ = false;
}

Stats Iotlb::reader_stats(uint32_t reader) const noexcept {
  const Reader& r = readers_[reader];
  return Stats{r.hits.get(), r.misses.get(), r.fills.get(), r.invalidations.get(), r.flushes.get()};
}

Stats Iotlb::stats() const noexcept {
  Stats s;
  for (uint32_t i = 0; i < num_readers_; ++i) {
    const Stats r = reader_stats(i);
    s.hits += r.hits;
    s.misses += r.misses;
    s.fills += r.fills;
    s.invalidations += r.invalidations;
    s.flushes += r.flushes;
  }
  return s;
}

bool Iotlb::View::try_hit_elsewhere(uint64_t iova, uint8_t need, uint64_t* out, uint8_t* perms) const noexcept {
  Translation t;
  if (!try_hit(iova, need, &t)) return false;
  *out = t.out;
  *perms = t.perms;
  return true;
}

}  // namespace vxlate::iotlb
