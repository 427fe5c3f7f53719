#include "vxlate/iotlb/iotlb.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

#include "vxlate/common/range.h"

namespace vxlate::iotlb {

Iotlb::Iotlb(Rcu& rcu, size_t entries_per_reader)
    : rcu_(rcu), set_mask_(entries_per_reader / kWays - 1), num_readers_(rcu.max_readers()) {
  if (entries_per_reader < kWays || entries_per_reader > kMaxEntries ||
      (entries_per_reader & (entries_per_reader - 1)) != 0)
    throw std::invalid_argument("Iotlb: entries_per_reader must be a power of two in [kWays, kMaxEntries]");
  readers_ = std::make_unique<Reader[]>(num_readers_);
  const size_t bytes = (set_mask_ + 1) * sizeof(Set);
  for (uint32_t i = 0; i < num_readers_; ++i) {
    void* mem = std::aligned_alloc(alignof(Set), bytes);
    if (mem == nullptr) throw std::bad_alloc();
    std::memset(mem, 0, bytes);
    readers_[i].sets = static_cast<Set*>(mem);
  }
  gens_ = std::make_unique<std::atomic<uint32_t>[]>(kGenerationSlots);
  log_batch_.reserve(kLogCapacity);
  // Last: from here on, every reader's quiescent report applies this log.
  rcu_.attach(*this);
}

Iotlb::~Iotlb() {
  rcu_.detach(*this);  // no reader runs rcu_online/rcu_quiescent on us after this
  for (uint32_t i = 0; i < num_readers_; ++i) std::free(readers_[i].sets);
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
  // The Rcu loaded the token first (acquire, pairs with Rcu::start()): a head
  // published before that token was taken is visible to the load below.
  // acquire: pairs with the store in sync(); makes the records visible.
  const uint64_t head = head_.load(std::memory_order_acquire);
  if (head != r.seq) [[unlikely]] {
    if (head - r.seq > kLogCapacity) {
      flush_reader(r);  // cannot happen while online; kept as a safe fallback
    } else {
      for (uint64_t s = r.seq; s != head; ++s) {
        const Record& rec = log_[s % kLogCapacity];
        if (rec.kind == kAll)
          flush_reader(r);
        else
          apply_range(r, rec);
      }
    }
    r.seq = head;
  }
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
  const uint64_t tag = make_tag(d.value, gen);
  // Probe the smallest cached leaf size first; other sizes go to the slow path.
  unsigned code = 0;
  while (code < 2 && r.per_leaf[code] == 0) ++code;
  const unsigned shift = code_shift(code);
  // Pass 1: every set this burst will probe, independent of each other, so the
  // hashes overlap in the pipeline; pass 2 compares.
  const Set* sets[kMaxBurst];
  uint64_t keys[kMaxBurst];
  for (size_t i = 0; i < n; ++i) {
    keys[i] = make_key(iovas[i] >> shift << shift, code);
    sets[i] = set_of(r, keys[i], d.value);
  }
  uint32_t faults = 0;
  uint64_t hits = 0;
  for (size_t i = 0; i < n; ++i) {
    Translation* t = &out[i];
    if (const unsigned m = match(*sets[i], keys[i], tag)) [[likely]] {
      const unsigned w = static_cast<unsigned>(__builtin_ctz(m));
      ++hits;
      if (hit(*sets[i], w, iovas[i], shift, need, t) != Status::kOk) faults |= uint32_t{1} << i;
    } else if (translate(reader, d, pt, iovas[i], need, t) != Status::kOk) {
      faults |= uint32_t{1} << i;
    }
  }
  r.hits.inc(hits);
  *fault_mask = faults;
  return n;
}

void Iotlb::fill(Reader& r, uint32_t domain, uint32_t gen, uint64_t iova, const Translation& t) noexcept {
  const unsigned code = leaf_code(t.leaf_size);
  const uint64_t base = iova & ~(t.leaf_size - 1);
  const uint64_t key = make_key(base, code);
  Set& set = *set_of(r, key, domain);
  // Reuse, in order: the same key (stale generation), an empty way, a way of a
  // flushed generation, then round-robin.
  unsigned victim = kWays;
  for (unsigned w = 0; w < kWays && victim == kWays; ++w)
    if (set.key[w] == key && (set.tag[w] >> 32) == domain) victim = w;
  for (unsigned w = 0; w < kWays && victim == kWays; ++w)
    if (set.key[w] == 0) victim = w;
  for (unsigned w = 0; w < kWays && victim == kWays; ++w) {
    const uint32_t d = static_cast<uint32_t>(set.tag[w] >> 32);
    // relaxed: a stale guess only costs a useful entry
    if (static_cast<uint32_t>(set.tag[w]) != gens_[d & (kGenerationSlots - 1)].load(std::memory_order_relaxed))
      victim = w;
  }
  if (victim == kWays) {
    victim = r.victim;
    r.victim = (r.victim + 1) % kWays;
  }
  if (set.key[victim] != 0) --r.per_leaf[set.key[victim] >> 1 & 3];
  set.key[victim] = key;
  set.tag[victim] = make_tag(domain, gen);
  set.out[victim] = (t.out - (iova - base)) | t.perms;
  ++r.per_leaf[code];
  r.fills.inc();
}

void Iotlb::clear_way(Reader& r, Set& set, unsigned w) noexcept {
  --r.per_leaf[set.key[w] >> 1 & 3];
  set.key[w] = 0;
  r.invalidations.inc();
}

void Iotlb::flush_reader(Reader& r) noexcept {
  std::memset(static_cast<void*>(r.sets), 0, (set_mask_ + 1) * sizeof(Set));
  r.per_leaf[0] = r.per_leaf[1] = r.per_leaf[2] = 0;
  r.flushes.inc();
}

void Iotlb::apply_range(Reader& r, const Record& rec) noexcept {
  const size_t sets = set_mask_ + 1;
  // Probes a per-page walk of the range would take; past one per set, a scan
  // of the whole cache is cheaper and just as exact.
  uint64_t probes = 0;
  for (unsigned code = 0; code < 3; ++code) {
    if (r.per_leaf[code] == 0) continue;
    const unsigned shift = code_shift(code);
    probes += ((rec.last >> shift) - (rec.first >> shift)) + 1;
  }
  if (probes > sets) {
    for (size_t i = 0; i < sets; ++i) {
      Set& set = r.sets[i];
      for (unsigned w = 0; w < kWays; ++w) {
        if (set.key[w] == 0 || (set.tag[w] >> 32) != rec.domain) continue;
        const uint64_t base = set.key[w] & ~uint64_t{7};
        const uint64_t last = base + ((uint64_t{1} << code_shift(static_cast<unsigned>(set.key[w] >> 1 & 3))) - 1);
        if (base <= rec.last && last >= rec.first) clear_way(r, set, w);
      }
    }
    return;
  }
  for (unsigned code = 0; code < 3; ++code) {
    if (r.per_leaf[code] == 0) continue;
    const unsigned shift = code_shift(code);
    for (uint64_t page = rec.first >> shift; page <= rec.last >> shift; ++page) {
      const uint64_t key = make_key(page << shift, code);
      Set& set = *set_of(r, key, rec.domain);
      for (unsigned w = 0; w < kWays; ++w)
        if (set.key[w] == key && (set.tag[w] >> 32) == rec.domain) clear_way(r, set, w);
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
  // ended, so no reader reads them any more.
  if (flush_all_pending_ || wrap) {
    log_[head % kLogCapacity] = Record{kAll, 0, 0, 0};
    ++head;
  } else {
    for (const Record& rec : log_batch_) log_[head++ % kLogCapacity] = rec;
  }
  // seq_cst: a release that makes the records (and the page-table changes
  // before them) visible to a reader that loads this head (rcu_quiescent(),
  // rcu_online()), and ordered before Rcu::start()'s increment and check()'s
  // counter loads for a reader that is coming online (see Rcu::online()).
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

}  // namespace vxlate::iotlb
