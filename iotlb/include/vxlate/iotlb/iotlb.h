// vxlate/iotlb/iotlb.h: the lock-free IOTLB in front of the I/O page tables.
//
// Design: one private, set-associative cache per data-plane reader (as a CPU has
// a TLB per core), keyed by (domain, leaf-aligned IOVA, leaf size). An entry is
// 32 bytes (two per cache line): key = leaf base | leaf code | valid, tag =
// domain << 32 | the domain's generation, out = output base | perms. A leaf's
// preferred entry is its leaf number xor a per-domain salt (XXH3 of the domain
// id, kept per reader for its last domain); its set is the 4 entries congruent
// to that modulo entries/4. A lookup probes, per cached leaf size from 4 KiB
// up, the preferred entry (one line, two compares: the tag folds domain and
// generation into one word), then the other 3 ways. A fill puts the new leaf
// at its preferred entry and moves a live occupant to another way (empty,
// then flushed, then round-robin). A hit touches only the reader's own cache
// lines plus one read-mostly shared word (the domain's generation): no lock,
// no read-modify-write, no store to a shared line; hits are counted once per
// burst (translate_burst, View), never per translation. A miss walks the
// domain's page table and fills the private cache.
//
// Why xor-indexed rather than hashed per page: adjacent leaves of a domain
// take adjacent entries, so a contiguous IOVA range (what guest IOVA
// allocators hand out) never conflicts with itself and its entries are dense
// in memory (2048 hot pages: 64 KiB of lines, not the whole cache), and the
// index is three ALU operations instead of an XXH3 per lookup. Two domains
// whose ranges land on the same entries share sets, whose 4 ways are spread
// over the cache so that one range's neighbours do not fill them. The burst
// path (translate_burst) runs one loop per burst with the leaf size a
// constant: per IOVA a shift, xor and mask, one line, two compares, the
// permission test and the output (27 instructions); anything else (another
// way or size, a miss, a permission fault) is collected in a mask and done
// after the loop. Measured (bench/RESULTS.md, 2048 entries, one core):
// ~500 M hits/s against 119 M/s for the XXH3-per-lookup design it replaced,
// 88 M/s for tbb::concurrent_hash_map and 900 M/s for a bare array index that
// checks no domain, generation or leaf size.
//
// Invalidation mirrors the virtio-iommu driver's add_req/sync_req: the writer
// add()s page, range, domain and global invalidations to a private batch, then
// sync() publishes the batch and waits for ONE grace period of the Rcu over all
// online readers. Range invalidations go into a shared log (a ring of records
// plus a head index; each slot carries its log position, so a reader checks
// its next slot, not the head); a reader applies the records it has not seen
// at its quiescent point, between bursts, never inside one. The IOTLB is an RcuClient
// of its Rcu: every quiescent report of a reader, made through this IOTLB,
// another IOTLB of the same Rcu or the Rcu itself, loads the token, applies
// every attached IOTLB's log for that reader, then acknowledges the token.
// Hence a reader that acknowledges a grace period has applied every record
// published before it, in every IOTLB that shares the Rcu (a vSwitch lcore
// serving many devices). When sync() returns, no reader holds a stale entry,
// and none is still inside a burst that began before the sync.
// A domain flush is O(1): the domain's generation is bumped and every entry
// filled under an older generation stops matching on the next lookup.
//
// Range size: a range record costs O(1) in the log whatever its size; a reader
// applies it by probing the sets of each leaf-sized page of the range, or, when
// that would be more probes than the cache has sets, by one scan of its whole
// cache (still exact). So large ranges never degrade to a flush; only a batch of
// more than kLogCapacity records does (it is published as one global flush),
// because the log slots of a batch must stay untouched until its grace period
// ends.
//
// Generations are 32-bit. Before a domain's generation would wrap, sync()
// publishes a global flush, waits for the grace period, then restarts it at 0,
// so an entry from 2^32 flushes ago can never match again.
//
// Why private caches rather than one shared cache with per-entry versions
// (bench/iotlb/baselines/shared_versioned.h, measured beside this one in
// bench_iotlb): the shared design's hit needs a version load before and after the
// entry and sees lines invalidated by other readers' fills, and its fills need an
// atomic read-modify-write to own an entry. Measured (bench/RESULTS.md, 2048
// entries): ~500 M hits/s here against 79 M/s for the shared design, even though
// the latter checks no domain, generation or leaf size. Private caches cost
// memory per reader (entries x 32 B) and one miss per reader for the same
// translation. A quiescent report with no new RCU token touches no client and
// no line another core wrote; each sync a reader sees costs it three lines
// the writer wrote or read (the token, the record's slot, which carries its
// log position so that no shared head is read, and its own acknowledgement
// line, which the writer reads), and a reader may coalesce acknowledgements
// (quiescent_busy) to pay them once per k bursts, or pace them
// (quiescent_paced) to pay them at most once per interval of its own time.
//
// Domain ids: a DomainId names one page table for the IOTLB's lifetime. Do not
// reuse an id for another table while readers may still hold the old one: a
// reader that loaded the old table just before a flush can fill an entry under
// the new generation. The engine gives every domain instance its own id.
//
// Thread-safety contract (the fixed tags of docs/design.md):
//   - Reader side: online(), offline(), quiescent(), quiescent_busy(),
//     quiescent_paced(), translate(), translate_burst(), epoch(), View;
//     reader id = the caller's Rcu reader id, owned by one thread;
//     wait-free apart from the page-table walk on a miss (also wait-free).
//     quiescent() is Rcu::quiescent(): either, through any IOTLB of the Rcu,
//     applies every attached IOTLB's invalidations. Once per poll-loop
//     iteration, between bursts. Debug builds check the id and
//     that the reader is online.
//   - Writer side: add_*(), sync(), pending(); one thread at a time per Iotlb
//     (the device's control thread; checked in debug builds). sync() blocks
//     for one grace period.
//   - Any thread: stats(), reader_stats(); relaxed sums, exact once quiet.
//   - Setup only: construction and destruction; no reader may be online.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "vxlate/common/check.h"
#include "vxlate/common/ids.h"
#include "vxlate/common/rcu.h"
#include "vxlate/common/status.h"
#include "vxlate/pagetable/io_pgtable.h"

namespace vxlate::iotlb {

using pagetable::IoPageTable;
using pagetable::Translation;

// Largest burst translate_burst() takes (its fault mask is 32 bits).
inline constexpr size_t kMaxBurst = 32;
inline constexpr unsigned kWays = 4;
// Range records one sync() can publish; larger batches become a global flush.
// 256 covers the Linux driver's typical lazy-mode flush (one UNMAP per freed
// IOVA range, flushed in batches of up to ~256 by its flush queue).
inline constexpr size_t kLogCapacity = 256;
// Generation slots; domains are folded onto them by their low bits. Two domains
// sharing a slot flush each other, which is conservative, never wrong.
inline constexpr size_t kGenerationSlots = 1024;
// Entries per reader cache: a power of two from kWays up to this.
inline constexpr size_t kMaxEntries = size_t{1} << 20;

struct Stats {
  uint64_t hits = 0;
  uint64_t misses = 0;          // lookups that walked the page table
  uint64_t fills = 0;           // misses that found a translation and cached it
  uint64_t invalidations = 0;   // entries removed by range invalidations
  uint64_t flushes = 0;         // whole-cache flushes (global flush, going online)
};

class Iotlb : private RcuClient {
  struct Entry;
  struct Reader;

 public:
  // Setup only. One reader cache per Rcu reader id, each of
  // `entries_per_reader` entries (power of two, kWays..kMaxEntries).
  // Throws std::invalid_argument or std::bad_alloc.
  Iotlb(Rcu& rcu, size_t entries_per_reader);
  ~Iotlb();
  Iotlb(const Iotlb&) = delete;
  Iotlb& operator=(const Iotlb&) = delete;

  // --- reader side --------------------------------------------------------
  // Reader side: Rcu::online(): every IOTLB of the Rcu drops this reader's
  // cache and takes the log's head position.
  void online(uint32_t reader) noexcept;
  // Reader side: Rcu::offline(); the caches are dropped at the next online.
  void offline(uint32_t reader) noexcept;
  // Reader side, between bursts: Rcu::quiescent(): every IOTLB of the Rcu
  // applies its pending invalidations for this reader, then the reader
  // reports a quiescent state. The reader must be online.
  void quiescent(uint32_t reader) noexcept;
  // Reader side, after a burst that did work: Rcu::quiescent_busy(), which
  // acknowledges a new grace period (and applies the invalidations) only on
  // the max_deferred-th busy report that finds one pending (see rcu.h).
  void quiescent_busy(uint32_t reader, uint32_t max_deferred) noexcept { rcu_.quiescent_busy(reader, max_deferred); }
  // Reader side, after a burst that did work: Rcu::quiescent_paced(), which
  // acknowledges new grace periods at most once per `min_gap` of `now()`
  // while they keep coming, and at once after a quiet spell (see rcu.h).
  template <typename Clock>
  void quiescent_paced(uint32_t reader, uint64_t min_gap, Clock&& now) noexcept {
    rcu_.quiescent_paced(reader, min_gap, std::forward<Clock>(now));
  }

  // Reader side: translates one IOVA of domain `d`, whose page table is `pt`, for
  // access `need` (pagetable::Perm bits). OK: *t filled (t->out is the host
  // address of `iova`; the translation is contiguous to the end of its leaf).
  // FAULT: not mapped, or mapped without `need`.
  Status translate(uint32_t reader, DomainId d, const IoPageTable& pt, uint64_t iova, uint8_t need,
                   Translation* t) noexcept;
  // What a reader checks to keep a translation across bursts (a virtqueue's
  // ring areas) instead of translating it again: a translation of domain d
  // that this reader obtained while epoch(reader, d) returned E is still
  // valid while epoch(reader, d) == E. The epoch is the reader's log position
  // (it moves when the reader applies any invalidation record of this IOTLB,
  // global flushes included, and when it comes online after records were
  // published) and d's generation (it moves on a domain flush). Every removal
  // of a translation is followed by one of the two before sync() returns, and
  // a reader applies records only at its quiescent reports, so a translation
  // checked this way is never used after the sync() that removed it returned.
  // Coarse on purpose: any invalidation drops every kept translation, which
  // costs one re-translation per kept area per sync.
  struct Epoch {
    uint64_t seq = ~uint64_t{0};
    uint32_t gen = 0;
    friend bool operator==(const Epoch&, const Epoch&) = default;
  };
  // Reader side: the current epoch of domain d for this reader (a load of the
  // reader's own log position and one of the read-mostly generation).
  Epoch epoch(uint32_t reader, DomainId d) const noexcept {
    // acquire: pairs with the release bump in sync(), as in translate().
    return Epoch{readers_[reader].seq, gens_[gen_slot(d)].load(std::memory_order_acquire)};
  }

  // Reader side: one burst's lookups in one domain. begin() loads the domain's
  // generation once; translate() is Iotlb::translate() without that load and
  // without a counter store per hit; end() adds the burst's hits to the
  // reader's stats. A View lives in its reader's read section (between two
  // quiescent reports): a generation bumped meanwhile only makes this burst's
  // fills stale for the next one, and the sync() that bumped it waits for
  // this reader's next report anyway.
  class View {
   public:
    View() = default;
    void begin(Iotlb& tlb, uint32_t reader, DomainId d, const IoPageTable& pt) noexcept {
      VXLATE_DCHECK(reader < tlb.num_readers_, "Iotlb::View: reader id out of range");
      VXLATE_DCHECK(tlb.rcu_.is_online(reader), "Iotlb::View: the reader must be online");
      tlb_ = &tlb;
      r_ = &tlb.readers_[reader];
      pt_ = &pt;
      domain_ = d.value;
      // acquire: pairs with the release bump in sync(); before any walk.
      gen_ = tlb.gens_[gen_slot(d)].load(std::memory_order_acquire);
      tag_ = make_tag(domain_, gen_);
      salt_ = salt_of(*r_, domain_);
      entries_ = r_->entries;
      mask_ = tlb.entry_mask_;
      hits_ = 0;
    }
    // begin() again with the same reader, domain and page table, after
    // end(): only the domain's generation can have moved.
    void rebegin() noexcept {
      VXLATE_DCHECK(tlb_ != nullptr && tlb_->rcu_.is_online(static_cast<uint32_t>(r_ - tlb_->readers_.get())),
                    "Iotlb::View: rebegin() needs a begin() and an online reader");
      // acquire: pairs with the release bump in sync(), as in begin().
      gen_ = tlb_->gens_[gen_slot(DomainId{domain_})].load(std::memory_order_acquire);
      tag_ = make_tag(domain_, gen_);
      hits_ = 0;
    }
    Status translate(uint64_t iova, uint8_t need, Translation* t) noexcept {
      if (const Entry* e = tlb_->find(*r_, tag_, salt_, iova)) [[likely]] {
        ++hits_;
        return hit(*e, iova, need, t);
      }
      return tlb_->miss(*r_, domain_, gen_, *pt_, iova, need, t);
    }
    // The hit path alone, for a caller with a fast path of its own: true with
    // *t filled when a cached entry translates iova with `need`; false on a
    // miss or a permission fault, and the caller then goes through
    // translate(), which walks or faults. Counts nothing: a caller that uses
    // the hit calls count_hit().
    bool try_hit(uint64_t iova, uint8_t need, Translation* t) const noexcept {
      const Entry* e = tlb_->find(*r_, tag_, salt_, iova);
      return e != nullptr && hit(*e, iova, need, t) == Status::kOk;
    }
    // try_hit() for an access inside one 4 KiB page, the common case first:
    // the page's 4 KiB leaf in its preferred entry costs one line and two
    // compares, with no loop over leaf sizes and ways; anything else (another
    // way of the set, a 2 MiB or 1 GiB leaf) goes through try_hit(). True
    // with *out (the output address of iova) and *perms (the entry's) when a
    // cached entry translates iova with `need`.
    bool try_hit_page(uint64_t iova, uint8_t need, uint64_t* out, uint8_t* perms) const noexcept {
      const Entry& e = entries_[slot_index(iova, 0, salt_, mask_)];
      if (holds(e, make_key(iova & ~kOutPermMask, 0), tag_)) [[likely]] {
        *perms = static_cast<uint8_t>(e.out & pagetable::kPermReadWrite);
        *out = (e.out & ~kOutPermMask) | (iova & kOutPermMask);
        return (*perms & need) == need;
      }
      return try_hit_elsewhere(iova, need, out, perms);
    }
    void count_hit() noexcept { ++hits_; }
    // After a try_hit() that failed: FAULT when the IOVA is cached (without
    // `need`); else translate()'s miss path (walk, fill, a miss counted). No
    // hit counted.
    Status fill(uint64_t iova, uint8_t need, Translation* t) noexcept {
      if (tlb_->find(*r_, tag_, salt_, iova) != nullptr) return Status::kFault;
      return tlb_->miss(*r_, domain_, gen_, *pt_, iova, need, t);
    }
    Epoch epoch() const noexcept { return Epoch{r_->seq, gen_}; }
    // try_hit_page()'s rest, out of line (iotlb.cpp) so that the inline part
    // stays small enough to inline into its callers.
    bool try_hit_elsewhere(uint64_t iova, uint8_t need, uint64_t* out, uint8_t* perms) const noexcept;
    void end() noexcept {
      if (hits_ != 0) r_->hits.inc(hits_);
      hits_ = 0;
    }

   private:
    Iotlb* tlb_ = nullptr;
    Reader* r_ = nullptr;
    const IoPageTable* pt_ = nullptr;
    uint32_t domain_ = 0;
    uint32_t gen_ = 0;
    uint64_t tag_ = 0;
    uint64_t salt_ = 0;
    const Entry* entries_ = nullptr;  // r_->entries and tlb_->entry_mask_, for try_hit_page()
    size_t mask_ = 0;
    uint64_t hits_ = 0;
  };

  // Reader side, burst: translates the first min(iovas.size(), kMaxBurst) IOVAs into
  // out[]; bit i of *fault_mask is set when IOVA i faulted. Returns the count.
  size_t translate_burst(uint32_t reader, DomainId d, const IoPageTable& pt, std::span<const uint64_t> iovas,
                         uint8_t need, Translation* out, uint32_t* fault_mask) noexcept;

  // --- writer side --------------------------------------------------------
  // Writer side: queue invalidations; nothing changes for readers until sync().
  void add_invalidate(DomainId d, uint64_t iova, uint64_t size);
  void add_flush_domain(DomainId d);
  void add_flush_all();
  // Writer side, blocking: publishes the batch and waits one grace period. When it
  // returns, no reader uses an entry the batch removed, and none is inside a
  // burst that began before. Returns at once when nothing is pending. A
  // writer that is itself an online reader (a data-plane lcore servicing the
  // request queue between its bursts) passes its id as `self`: its own cache
  // applies the batch and reports quiescent, and the wait skips it.
  void sync(uint32_t self = Rcu::kNoReader) noexcept;
  size_t pending() const noexcept {
    return log_batch_.size() + flush_slots_.size() + (flush_all_pending_ ? 1 : 0);
  }

  Stats stats() const noexcept;
  Stats reader_stats(uint32_t reader) const noexcept;
  size_t entries_per_reader() const noexcept { return entry_mask_ + 1; }

  // Tests only: sets the generation of `d`'s slot (to exercise wrap-around).
  void set_generation_for_test(DomainId d, uint32_t gen) noexcept {
    gens_[gen_slot(d)].store(gen, std::memory_order_release);
  }

 private:
  // RcuClient: run by the Rcu for every reader of every attached IOTLB.
  void rcu_online(uint32_t reader) noexcept override;
  void rcu_quiescent(uint32_t reader) noexcept override;

  // One cached leaf. Two entries share a cache line, so a hit reads one line.
  // The kWays entries of a set are set_stride_ apart (see slot_of()).
  struct alignas(32) Entry {
    uint64_t key;     // leaf base IOVA | leaf code << 1 | 1 (valid); 0 = empty
    uint64_t tag;     // domain << 32 | the domain's generation when filled
    uint64_t out;     // leaf output base (4 KiB aligned at least) | perms in kOutPermMask
    uint64_t unused;  // pads the entry to a power of two
  };
  static_assert(sizeof(Entry) == 32);
  // A counter only its reader writes: load + store, never a locked RMW; other
  // threads read it relaxed for stats.
  struct Counter {
    std::atomic<uint64_t> v{0};
    void inc(uint64_t n = 1) noexcept { v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
    uint64_t get() const noexcept { return v.load(std::memory_order_relaxed); }
  };
  struct alignas(64) Reader {
    Entry* entries = nullptr;
    uint64_t seq = 0;             // log records applied so far
    uint32_t victim = 0;          // round-robin choice among the non-preferred ways
    uint32_t per_leaf[3] = {};    // cached entries per leaf code, to skip empty sizes
    uint32_t salt_domain = 0;     // salt == domain_salt(salt_domain)
    uint64_t salt = domain_salt(0);
    Counter hits, misses, fills, invalidations, flushes;
  };
  enum RecordKind : uint32_t { kRange = 0, kAll = 1 };
  struct Record {
    uint32_t kind;
    uint32_t domain;
    uint64_t first;
    uint64_t last;
  };

  // The low bits of Entry::out that hold the permissions: a leaf's output base is
  // at least page aligned, so they are free.
  static constexpr uint64_t kOutPermMask = pagetable::kPageSize - 1;
  static_assert((pagetable::kPermReadWrite & ~kOutPermMask) == 0);

  static constexpr unsigned leaf_code(uint64_t leaf_size) noexcept {
    return leaf_size == pagetable::kLeaf4K ? 0 : leaf_size == pagetable::kLeaf2M ? 1 : 2;
  }
  static constexpr unsigned code_shift(unsigned code) noexcept { return 12 + 9 * code; }
  static constexpr uint64_t make_key(uint64_t base, unsigned code) noexcept { return base | code << 1 | 1; }
  static size_t gen_slot(DomainId d) noexcept { return d.value & (kGenerationSlots - 1); }
  static constexpr uint64_t make_tag(uint32_t domain, uint32_t gen) noexcept {
    return uint64_t{domain} << 32 | gen;
  }
  // The set-index salt of a domain: XXH3 of its id. A reader keeps the salt
  // of the last domain it translated in (its own line), so a run of bursts in
  // one domain hashes once.
  static uint64_t domain_salt(uint32_t domain) noexcept { return XXH3_64bits(&domain, sizeof domain); }
  static uint64_t salt_of(Reader& r, uint32_t domain) noexcept {
    if (r.salt_domain != domain) [[unlikely]] {
      r.salt_domain = domain;
      r.salt = domain_salt(domain);
    }
    return r.salt;
  }
  // Salt of one leaf size: the domain's, rotated so that sizes spread apart.
  static uint64_t leaf_salt(uint64_t salt, unsigned code) noexcept {
    return code == 0 ? salt : salt << (21 * code) | salt >> (64 - 21 * code);
  }
  // The preferred entry of a leaf: its leaf number xor the salt. Adjacent
  // leaves of a domain take adjacent entries: a contiguous IOVA range (what a
  // guest's IOVA allocator hands out) never conflicts with itself and is dense
  // in memory. Its set is the kWays entries congruent to it modulo
  // set_stride_ (the low index bits pick the set, the high ones the way), so
  // two domains whose ranges land on the same entries still get kWays ways
  // each set, where adjacent ways would be taken by one range's neighbours.
  static size_t slot_index(uint64_t iova, unsigned code, uint64_t salt, size_t entry_mask) noexcept {
    return ((iova >> code_shift(code)) ^ leaf_salt(salt, code)) & entry_mask;
  }
  size_t slot_of(uint64_t iova, unsigned code, uint64_t salt) const noexcept {
    return slot_index(iova, code, salt, entry_mask_);
  }
  size_t set_of(size_t slot) const noexcept { return slot & (set_stride_ - 1); }
  // Both compares on the entry's one line: the tag folds the domain and its
  // generation into one word, so a flushed generation simply stops matching.
  static bool holds(const Entry& e, uint64_t key, uint64_t tag) noexcept { return e.key == key && e.tag == tag; }

  // The entry that holds (iova's leaf, tag), or nullptr: per cached leaf size,
  // smallest first, the preferred entry, then the rest of its set.
  const Entry* find(const Reader& r, uint64_t tag, uint64_t salt, uint64_t iova) const noexcept;
  // The translation of `iova` from entry e.
  static Status hit(const Entry& e, uint64_t iova, uint8_t need, Translation* t) noexcept {
    const uint64_t offset_mask = (uint64_t{1} << code_shift(static_cast<unsigned>(e.key >> 1 & 3))) - 1;
    t->out = (e.out & ~kOutPermMask) + (iova & offset_mask);
    t->leaf_size = offset_mask + 1;
    t->perms = static_cast<uint8_t>(e.out & pagetable::kPermReadWrite);
    return (t->perms & need) == need ? Status::kOk : Status::kFault;
  }
  // translate_burst()'s loop for leaf code kCode; returns the fault mask.
  template <unsigned kCode>
  uint32_t burst_loop(Reader& r, uint32_t domain, uint32_t gen, uint64_t salt, const IoPageTable& pt,
                      const uint64_t* iovas, size_t n, uint8_t need, Translation* out, uint64_t* hits) noexcept;
  // The IOVAs (bits of `todo`) the loop's one probe did not answer.
  [[gnu::noinline]] uint32_t burst_rest(Reader& r, uint32_t domain, uint32_t gen, uint64_t salt,
                                        const IoPageTable& pt, const uint64_t* iovas, uint32_t todo, uint8_t need,
                                        Translation* out, uint64_t* hits) noexcept;
  void fill(Reader& r, uint32_t domain, uint32_t gen, uint64_t iova, const Translation& t) noexcept;
  // The miss path: walks pt, fills, counts the miss.
  Status miss(Reader& r, uint32_t domain, uint32_t gen, const IoPageTable& pt, uint64_t iova, uint8_t need,
              Translation* t) noexcept {
    r.misses.inc();
    if (!pt.walk(iova, t)) return Status::kFault;
    fill(r, domain, gen, iova, *t);
    return (t->perms & need) == need ? Status::kOk : Status::kFault;
  }
  void flush_reader(Reader& r) noexcept;
  void apply_range(Reader& r, const Record& rec) noexcept;
  void clear_entry(Reader& r, Entry& e) noexcept;
  bool live(const Entry& e) const noexcept {
    // relaxed: a stale guess only costs a useful entry (fill's victim choice)
    return static_cast<uint32_t>(e.tag) ==
           gens_[(e.tag >> 32) & (kGenerationSlots - 1)].load(std::memory_order_relaxed);
  }

  Rcu& rcu_;
  size_t entry_mask_;  // entries per reader - 1
  size_t set_stride_;  // sets per reader cache: the distance between two ways of a set
  std::unique_ptr<Reader[]> readers_;
  uint32_t num_readers_;
  std::unique_ptr<std::atomic<uint32_t>[]> gens_;

  // A log slot: the record at log position p lies in slot p % kLogCapacity
  // with seq == p + 1 (0: never written). A reader at position p checks that
  // slot's seq instead of a shared head, so a sync costs it the record's
  // line and no other (two slots per line).
  struct alignas(32) Slot {
    std::atomic<uint64_t> seq{0};
    Record rec{};
  };
  static_assert(sizeof(Slot) == 32);
  // Shared log: slots written by the writer only between grace periods (see
  // sync()). From a line of its own: the fields above are read on every
  // burst, and a record written beside them would cost each reader a miss.
  alignas(64) Slot log_[kLogCapacity];
  // The next log position: written by the writer (seq_cst in sync()), read
  // by a reader only when it comes online (and in the lapped fallback).
  alignas(64) std::atomic<uint64_t> head_{0};

  // Writer-private batch.
  alignas(64) std::vector<Record> log_batch_;
  OwnerCheck writer_;  // debug builds: one writer call at a time
  std::vector<size_t> flush_slots_;
  bool flush_all_pending_ = false;
};

inline const Iotlb::Entry* Iotlb::find(const Reader& r, uint64_t tag, uint64_t salt,
                                       uint64_t iova) const noexcept {
  for (unsigned code = 0; code < 3; ++code) {
    if (r.per_leaf[code] == 0) continue;
    const unsigned shift = code_shift(code);
    const uint64_t key = make_key(iova >> shift << shift, code);
    const size_t slot = slot_of(iova, code, salt);
    if (holds(r.entries[slot], key, tag)) [[likely]]
      return &r.entries[slot];
    for (size_t s = set_of(slot); s <= entry_mask_; s += set_stride_)
      if (holds(r.entries[s], key, tag)) return &r.entries[s];
  }
  return nullptr;
}

inline Status Iotlb::translate(uint32_t reader, DomainId d, const IoPageTable& pt, uint64_t iova, uint8_t need,
                               Translation* t) noexcept {
  // A burst of one: the View loads the generation before any walk, so a fill
  // from a walk older than a flush carries the older generation.
  View v;
  v.begin(*this, reader, d, pt);
  const Status st = v.translate(iova, need, t);
  v.end();
  return st;
}

}  // namespace vxlate::iotlb
