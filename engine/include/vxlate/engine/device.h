// vxlate/engine/device.h: the virtio-iommu device model.
//
// One Device is one virtio-iommu device: its config, its endpoints, its domains
// (each an IoPageTable plus an index of the extents each MAP created, since
// UNMAP works per MAP: detail/extent_index.h), one Iotlb in front of all
// domains' page tables, the guest memory table (mem_table.h) and the
// per-reader fault-event rings (fault_events.h). The guest's requests arrive
// as the spec's little-endian structs (wire.h), as the request virtqueue hands
// them over: a device-readable part and a device-writable part. handle() decodes one request, checks every
// field in the order the Decisions table of shared/reference/virtio-iommu.md
// prescribes, applies it, writes the tail (and PROBE properties) into the
// writable part and returns the used length. handle_burst() does the same for
// a burst in order and completes them all after ONE sync of the IOTLB (one
// grace period for every UNMAP and DETACH of the burst), which is the driver's
// add_req ... sync_req split.
//
// Invariant 1 (no access after unmap) holds because page-table entries are
// cleared and IOTLB invalidations queued while the request is applied, and
// handle()/handle_burst() return only after the grace period: the caller
// publishes used entries after they return. A domain whose last endpoint left is
// unpublished at once and destroyed after that same grace period.
//
// The sources follow the thread roles: engine/src/requests.cpp (control side:
// requests, config space, domain lifetime), engine/src/translate.cpp (reader
// side: iova -> hva, iova -> gpa, gpa -> hva), engine/src/mem_table.cpp and
// engine/src/fault_events.cpp (one class each, both roles, tagged per call).
//
// Thread-safety contract (the fixed tags of docs/design.md):
//   - Control side: handle(), handle_burst(), the iotlb_*() calls,
//     set_mem_table(), drain_events(), write_bypass(), read_config(),
//     features(), config() and the counters; one
//     thread at a time per Device (its request-queue thread); not internally
//     locked; checked by VXLATE_DCHECK in debug builds.
//   - Reader side: iova_to_hva(), iova_to_gpa(), gpa_to_hva(); an online reader
//     of the Device's Rcu (iotlb().online(id) / iotlb().quiescent(id)),
//     wait-free, no allocation.
//   - Any thread: events_dropped().
//   - Setup only: construction and destruction; no reader may be online in the
//     Device's Rcu during destruction.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "vxlate/common/check.h"
#include "vxlate/common/ids.h"
#include "vxlate/common/rcu.h"
#include "vxlate/common/status.h"
#include "vxlate/engine/config.h"
#include "vxlate/engine/detail/extent_index.h"
#include "vxlate/engine/fault_events.h"
#include "vxlate/engine/mem_table.h"
#include "vxlate/engine/wire.h"
#include "vxlate/iotlb/iotlb.h"
#include "vxlate/pagetable/io_pgtable.h"

namespace vxlate::engine {

// One request of a burst: the caller's buffers and, on return, the used length.
struct Request {
  std::span<const uint8_t> readable;
  std::span<uint8_t> writable;
  uint32_t used = 0;
};

class Device {
  struct Domain;

 public:
  // Setup only. Throws std::invalid_argument for a config the page tables
  // cannot serve (granule below 4 KiB, input range past 48 bits or inverted,
  // empty ranges), std::bad_alloc when memory runs out.
  Device(const Config& config, Rcu& rcu, size_t iotlb_entries_per_reader = 4096);
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  // --- control side: requests and config space (requests.cpp) ---------------

  // Control side: one request, completed (synced) on return. Returns the used
  // length: 0 when the request is too short for its struct and tail or of an
  // unknown type (nothing written), else the full writable size.
  uint32_t handle(std::span<const uint8_t> readable, std::span<uint8_t> writable) noexcept;
  // Control side: applies up to kMaxRequestBurst requests in order, then one
  // sync; sets each request's used length. Returns how many were handled.
  // A caller that is an online reader of this Device's Rcu (a data-plane
  // lcore that also services the request queue, between its bursts) passes
  // its reader id as `self_reader`, so that the grace period does not wait on
  // it and its IOTLB cache applies the burst's invalidations; it must hold no
  // translation across the call.
  size_t handle_burst(std::span<Request> requests, uint32_t self_reader = Rcu::kNoReader) noexcept;

  // Control side: the feature bits this device offers: INPUT_RANGE,
  // DOMAIN_RANGE, MAP_UNMAP and PROBE always, MMIO and BYPASS_CONFIG as
  // configured.
  uint64_t features() const noexcept;
  // Control side: the 40-byte config space as the driver reads it
  // (little-endian; reserved bytes zero; the bypass byte as last written).
  void read_config(std::span<uint8_t, kConfigSize> out) const noexcept;
  // Control side: the driver writes the bypass byte. Values other than 0 and
  // 1 are refused (INVAL, nothing changes), as is any write without
  // BYPASS_CONFIG. A change takes effect for translations that start after
  // it; it returns after a grace period, so none that began before is left.
  Status write_bypass(uint8_t value) noexcept;

  // Control side: the config as it is now.
  const Config& config() const noexcept { return cfg_; }
  // Control side: the domain an endpoint is attached to, if any.
  bool endpoint_domain(EndpointId ep, DomainId* d) const noexcept;
  // Control side: live domains and mappings.
  size_t domain_count() const noexcept { return domains_.size(); }
  size_t mapping_count() const noexcept { return mappings_; }
  // Control side: page-table bytes of all live domains, and of domains that
  // died in the current burst (retired tables included until reclaimed).
  size_t table_bytes() const noexcept { return table_bytes_; }

  // --- control side: guest memory and fault events -------------------------

  // Control side: replaces the guest memory table (gpa -> hva), waits one grace
  // period, frees the old table. INVAL: overlapping, empty or wrapping regions,
  // or more than kMaxMemRegions. NOMEM: allocation failed. Nothing changes on error.
  Status set_mem_table(std::span<const MemRegion> regions) noexcept;
  // Control side: moves queued fault events into `out` (oldest first per
  // reader); returns how many. Starts a new rate-limit window.
  size_t drain_events(std::span<FaultEvent> out) noexcept;
  // Any thread: events dropped by the rate limit or full rings so far.
  uint64_t events_dropped() const noexcept { return faults_.dropped(); }

  // --- reader side: translation (translate.cpp) -----------------------------

  // Reader side: iova -> hva. Translates a DMA of `len` bytes at `iova` by
  // endpoint `ep` for `access` (pagetable::Perm bits) into host virtual
  // segments, split at every mapping and memory-region boundary and merged
  // where contiguous.
  // OK: *nsegs segments in segs. FAULT: some byte has no mapping with that
  // permission, or no guest memory behind it (the whole access fails; a fault
  // event is queued, rate-limited; *fault, when given, gets the same event
  // whether or not the rate limit queued it). INVAL: len 0, range wraps, no
  // access bit, endpoint out of range, or more segments needed than segs holds
  // (no event).
  Status iova_to_hva(uint32_t reader, EndpointId ep, uint64_t iova, uint64_t len, uint8_t access,
                     std::span<Segment> segs, size_t* nsegs, FaultEvent* fault = nullptr) noexcept;
  // Reader side: iova -> gpa. As iova_to_hva(), but stops at guest-physical
  // addresses (no memory table), for tools and tests.
  Status iova_to_gpa(uint32_t reader, EndpointId ep, uint64_t iova, uint64_t len, uint8_t access,
                     std::span<Segment> segs, size_t* nsegs, FaultEvent* fault = nullptr) noexcept;
  // Reader side: gpa -> hva through the memory table only, for a device that
  // did not negotiate VIRTIO_F_ACCESS_PLATFORM (its ring and buffer addresses
  // are GPAs and the IOMMU is not on its path). OK: *nsegs segments, split at
  // region boundaries. FAULT: a byte outside guest memory (no fault event: the
  // IOMMU did not refuse it). INVAL: len 0, the range wraps, or more segments
  // needed than segs holds.
  Status gpa_to_hva(uint64_t gpa, uint64_t len, std::span<Segment> segs, size_t* nsegs) const noexcept {
    return mem_.gpa_to_hva(gpa, len, segs, nsegs);
  }
  // The same through a reader's cursor (MemTable::Cursor): inline while the
  // translations stay in the region the cursor last used. One cursor per
  // reader thread and Device.
  Status gpa_to_hva(MemTable::Cursor& cursor, uint64_t gpa, uint64_t len, std::span<Segment> segs,
                    size_t* nsegs) const noexcept {
    return cursor.gpa_to_hva(mem_, gpa, len, segs, nsegs);
  }

  // Reader side: the translations one reader makes for one endpoint during
  // one burst, between two of its quiescent reports (a virtqueue's pop loop).
  // begin() loads once what every translation of the burst shares: the
  // endpoint's domain, the domain's IOTLB generation, the bypass state and
  // the memory table. iova_to_hva() is then Device::iova_to_hva() without
  // those loads, with the last memory region found tried before the search,
  // and with IOTLB hits counted once per burst, in end(). Same results and
  // fault events as Device::iova_to_hva(). A begin() for the same endpoint,
  // still in the same domain instance and memory table as the previous
  // burst (a virtqueue polled again, empty or not) reloads only the domain's
  // generation and the epoch, inline: a poll of an IOVA queue whose ring
  // translations are kept costs 137 instructions in Virtqueue::begin(), 156
  // with this check out of line and 175 without it.
  //
  // stamp() says what the burst's translations depend on: a translation made
  // in a burst whose stamp was S stays valid in a later burst of the same
  // reader and endpoint whose stamp() == S. The stamp is the domain instance
  // (or identity, or no translation), the IOTLB epoch of that domain for this
  // reader (iotlb.h: it moves when the reader applies any invalidation) and
  // the memory table's version. A data plane keeps its ring translations this
  // way instead of translating three ring areas per burst.
  //
  // A Burst is owned by one reader thread; no allocation, no store to a
  // shared line. begin() of the next burst counts the previous one's hits
  // itself; end() is for a caller that wants them counted now.
  class Burst {
   public:
    struct Stamp {
      uint32_t tag = 0;        // the domain instance's IOTLB tag (mode kTranslate)
      uint8_t mode = kNone;    // kNone: every translation faults
      iotlb::Iotlb::Epoch epoch;
      uint64_t mem_version = 0;
      friend bool operator==(const Stamp&, const Stamp&) = default;
    };
    static constexpr uint8_t kNone = 0, kTranslate = 1, kIdentity = 2;

    Burst() = default;
    // Inline for a burst that begins where the previous one did (defined
    // after Device); anything else goes to begin_slow().
    void begin(Device& dev, uint32_t reader, EndpointId ep) noexcept;
    // Inline for the common case: a DMA inside one 4 KiB page whose
    // translation is cached and whose guest memory lies in the last region
    // this burst used costs one IOTLB probe and a range check, with no call.
    // The probe (Iotlb::View::try_hit_page) loads the page's 4 KiB leaf from
    // its preferred entry; there is none when the page is the one the
    // burst's last fast translation used (a virtio-net header and its frame,
    // a chain's buffers in one page). One remembered page, not more: a
    // memo check costs about half a probe, so a second entry pays only when
    // most translations hit it (two entries cost 16 instructions more per
    // BM_VirtqueueTx/iova frame than one). Anything else (a miss, a fault, a
    // page or region boundary, a bad argument) goes to iova_to_hva_slow(),
    // which gives the same result. The remembered page is a translation
    // this burst or an earlier one with the same stamp made: valid under
    // stamp()'s rule, so begin() keeps it while the stamp stands and forgets
    // it when it moved (an invalidation applied, another domain instance or
    // memory table).
    Status iova_to_hva(uint64_t iova, uint64_t len, uint8_t access, std::span<Segment> segs, size_t* nsegs,
                       FaultEvent* fault = nullptr) noexcept {
      return translate(page_, iova, len, access, segs, nsegs, fault);
    }
    // iova_to_hva() of an indirect table (read access): the same result, with
    // the table's page remembered apart from the buffers' (peek_table()'s
    // memo), so that a chain's buffers do not push it out and the next
    // chain's table, which a driver keeps in the same page, costs a compare
    // instead of a probe.
    Status table_to_hva(uint64_t iova, uint64_t len, std::span<Segment> segs, size_t* nsegs,
                        FaultEvent* fault = nullptr) noexcept {
      return translate(table_page_, iova, len, pagetable::kPermRead, segs, nsegs, fault);
    }
    // A hint, for prefetching what a later translation of this burst will
    // read: the host address of [iova, iova + len) (one page, in the last
    // memory region this burst used), else nullptr. A cached page costs one
    // IOTLB probe (a hint names the next chain's pages, seldom the one
    // remembered, so it does not look there); a miss is walked and filled
    // (counted as a miss), so that the translation it prepares then hits. No
    // fault is reported and no hit counted, and the remembered page stays
    // that of the burst's last translation (a hint for the next chain must
    // not push out the page of the one being walked).
    const uint8_t* peek(uint64_t iova, uint64_t len, uint8_t access) noexcept {
      uint64_t hva = 0;
      if (fast_path<false>(page_, iova, len, access, &hva)) [[likely]]
        return reinterpret_cast<const uint8_t*>(hva);
      return peek_miss(iova, len, access);
    }
    // peek() for reading an indirect table: a driver keeps its tables
    // together (a page holds 128 two-descriptor tables), so the page of the
    // last table peeked is remembered apart from the walk's, and a table in
    // it costs a compare instead of a probe. Kept across bursts as page_ is.
    const uint8_t* peek_table(uint64_t iova, uint64_t len) noexcept {
      uint64_t hva = 0;
      if (fast_path<true>(table_page_, iova, len, pagetable::kPermRead, &hva)) [[likely]]
        return reinterpret_cast<const uint8_t*>(hva);
      return peek_miss(iova, len, pagetable::kPermRead);
    }
    // A buffer translation peek() made earlier in this burst, used instead of
    // translating the buffer again: counted as the IOTLB hit it stands for
    // (peek() counts none; when its probe missed, it counted the miss and
    // filled the entry this use would have hit).
    void count_peeked() noexcept {
      if (stamp_.mode == kTranslate) view_.count_hit();
    }
    const Stamp& stamp() const noexcept { return stamp_; }
    void end() noexcept { view_.end(); }

   private:
    // iova_to_hva()'s fast path (and peek()'s, peek_table()'s): true with
    // *hva set when [iova, iova + len) lies in one 4 KiB page whose
    // translation is an IOTLB hit with `access` (or, `remember`, the page
    // `memo` holds: page_ or table_page_), and in the last memory region this
    // burst used; `remember`: an IOTLB hit becomes `memo`.
    struct PageMemo;
    // iova_to_hva() through `memo` (page_ or table_page_).
    Status translate(PageMemo& memo, uint64_t iova, uint64_t len, uint8_t access, std::span<Segment> segs,
                     size_t* nsegs, FaultEvent* fault) noexcept {
      uint64_t hva = 0;
      if (!segs.empty() && fast_path<true>(memo, iova, len, access, &hva)) [[likely]] {
        if (stamp_.mode == kTranslate) view_.count_hit();
        segs[0] = Segment{hva, len};
        *nsegs = 1;
        return Status::kOk;
      }
      return iova_to_hva_slow(iova, len, access, segs, nsegs, fault);
    }
    template <bool remember>
    bool fast_path(PageMemo& memo, uint64_t iova, uint64_t len, uint8_t access, uint64_t* hva) noexcept {
      constexpr uint64_t kOffsetMask = pagetable::kPageSize - 1;
      const MemRegion* reg = last_region_;
      // len - 1 wraps for len 0, which the slow path refuses.
      if (len - 1 >= pagetable::kPageSize - (iova & kOffsetMask) || reg == nullptr || access == 0 ||
          (access & ~pagetable::kPermReadWrite) != 0) [[unlikely]]
        return false;
      uint64_t gpa = iova;
      bool hit = stamp_.mode == kIdentity;
      if (stamp_.mode == kTranslate) {
        const uint64_t page = iova & ~kOffsetMask;
        if (remember && page == memo.iova && (memo.perms & access) == access) {
          gpa = memo.out | (iova & kOffsetMask);
          hit = true;
        } else {
          uint8_t perms = 0;
          hit = view_.try_hit_page(iova, access, &gpa, &perms);
          if (remember && hit) memo = PageMemo{page, gpa & ~kOffsetMask, perms};
        }
      }
      // gpa .. gpa + len - 1 inside the region (no overflow: len - 1 < 4096).
      if (!hit || gpa - reg->gpa >= reg->size || len - 1 > reg->size - 1 - (gpa - reg->gpa)) return false;
      *hva = reg->hva + (gpa - reg->gpa);
      return true;
    }
    Status iova_to_hva_slow(uint64_t iova, uint64_t len, uint8_t access, std::span<Segment> segs, size_t* nsegs,
                            FaultEvent* fault) noexcept;
    void begin_slow(Device& dev, uint32_t reader, EndpointId ep, const MemTable::Snapshot* mem) noexcept;
    const uint8_t* peek_miss(uint64_t iova, uint64_t len, uint8_t access) noexcept;

    Device* dev_ = nullptr;
    uint32_t reader_ = 0;
    EndpointId ep_{0};
    const Domain* dom_ = nullptr;
    const MemTable::Snapshot* mem_ = nullptr;
    const MemRegion* last_region_ = nullptr;
    // The page of the fast path's last IOTLB hit; perms 0: none.
    struct PageMemo {
      uint64_t iova = 0;
      uint64_t out = 0;
      uint8_t perms = 0;
    };
    PageMemo page_;
    PageMemo table_page_;  // peek_table()'s
    iotlb::Iotlb::View view_;
    Stamp stamp_;
  };

  // Reader side: the version of the memory table now (MemTable::Snapshot::
  // version; 0 before the first): what a GPA-addressed queue's kept ring
  // translations depend on.
  uint64_t mem_version() const noexcept {
    const MemTable::Snapshot* m = mem_.snapshot();
    return m != nullptr ? m->version : 0;
  }

  // --- control side: device IOTLB (device_iotlb.cpp) ------------------------
  //
  // For a Device that is a vhost-user device IOTLB rather than a virtio-iommu
  // device: the VMM pushes translations and invalidations; each endpoint gets
  // a private domain (its id = the endpoint's) on its first update, and the
  // reader side translates through it as through any domain. Do not mix these
  // calls with virtio-iommu requests on one Device.

  // Control side: caches iova [iova, iova + size) -> gpa (the address the
  // memory table maps: for vhost-user, the front end's virtual address) with
  // `perms` (pagetable::Perm bits). An identical entry is kept; overlapping
  // stale entries are removed first (with a grace period). OK; INVAL: size 0,
  // the range wraps, no or unknown perms; RANGE: not granule-aligned or past
  // the input range; NOENT: endpoint out of range; NOMEM: no room even after
  // dropping the endpoint's other entries.
  Status iotlb_update(EndpointId ep, uint64_t iova, uint64_t size, uint64_t gpa, uint8_t perms) noexcept;
  // Control side: removes every cached entry that overlaps [iova, iova +
  // size) (size 0: everything; an end past 2^64 saturates), whole; when it
  // returns after removing any, one grace period has passed, so no reader
  // uses them any more. OK, or NOENT for an endpoint out of range.
  Status iotlb_invalidate(EndpointId ep, uint64_t iova, uint64_t size) noexcept;
  // Control side: iotlb_invalidate() of everything of endpoint `ep`.
  void iotlb_flush(EndpointId ep) noexcept;
  // Control side: whether a cached entry of `ep` translates `iova` for
  // `access` (pagetable::Perm bits) now: a MISS for it would be stale.
  bool iotlb_maps(EndpointId ep, uint64_t iova, uint8_t access) const noexcept;
  // Control side: [iova, iova + len) of `ep` through the cached entries to
  // host memory for `access`, when they map it to one range of guest
  // addresses (one entry, or adjacent ones that continue each other) inside
  // one memory region (a ring area the control side writes once its lcores
  // stopped: vhost_user.h's receive chains completed out of order). OK;
  // FAULT when some byte is not cached with that access, the entries do not
  // continue each other or the memory is not one region; INVAL for len 0 or
  // a range that wraps.
  Status iotlb_translate(EndpointId ep, uint64_t iova, uint64_t len, uint8_t access, Segment* out) const noexcept;
  // Reader side: a count of the mappings added so far (virtio-iommu MAPs,
  // device-IOTLB UPDATEs). A reader that kept something back for a miss (a
  // receive chain parked out of order) looks again only once it moved: in a
  // device IOTLB an UPDATE is the only way a miss can start to translate.
  uint64_t maps_applied() const noexcept {
    // acquire: pairs with the release increment after the mapping's
    // page-table entries were published: a reader that sees the count sees them.
    return maps_applied_.load(std::memory_order_acquire);
  }

  // The IOTLB: its reader side (online/quiescent/offline) is how data-plane
  // lcores take part in this Device's grace periods.
  iotlb::Iotlb& iotlb() noexcept { return tlb_; }
  // Tests only (control side): the IOTLB tag the next new domain starts
  // looking from, to exercise wrap-around.
  void set_next_tag_for_test(uint32_t tag) noexcept { next_tag_ = tag; }
  // Any thread: the Rcu whose readers this Device's grace periods wait for.
  Rcu& rcu() noexcept { return rcu_; }

 private:
  struct Domain {
    Domain(Rcu& rcu, uint32_t tag, bool bypass) : pt(rcu), tag(tag), bypass(bypass) {}
    pagetable::IoPageTable pt;
    // The IOTLB key of this domain instance, never the wire id: a reader that
    // loaded a domain just before it died may still fill entries from its
    // table, and those must never match the next domain with the same wire id.
    const uint32_t tag;
    const bool bypass;                   // readers: identity translation
    detail::ExtentIndex extents;         // control only: the mappings, by virt_start
    uint32_t endpoints = 0;              // control only
  };

  // Control side (requests.cpp).
  // One request without the sync; writes the tail. Returns the used length.
  uint32_t apply(std::span<const uint8_t> readable, std::span<uint8_t> writable) noexcept;
  Status attach(const wire::ReqAttach& req) noexcept;
  Status detach(const wire::ReqDetach& req) noexcept;
  Status map(const wire::ReqMap& req) noexcept;
  Status unmap(const wire::ReqUnmap& req) noexcept;
  Status probe(const wire::ReqProbe& req, std::span<uint8_t> props) noexcept;
  using DomainMap = std::unordered_map<uint32_t, std::unique_ptr<Domain>>;
  Status create_domain(uint32_t domain, bool bypass, DomainMap::iterator* out) noexcept;
  void leave_domain(uint32_t ep, uint32_t domain) noexcept;
  Status mappable_domain(uint32_t domain, uint64_t virt_start, uint64_t virt_last, Domain** dom) noexcept;
  void retally(const Domain& dom, size_t before) noexcept;
  bool overlaps_resv(const Domain& dom, uint32_t domain_id, uint64_t start, uint64_t last) const noexcept;
  bool endpoint_exists(uint32_t ep) const noexcept { return ep >= cfg_.endpoint_first && ep <= cfg_.endpoint_last; }
  bool domain_in_range(uint32_t d) const noexcept { return d >= cfg_.domain_start && d <= cfg_.domain_last; }
  void sync() noexcept;
  bool reclaim_dying() noexcept;
  // Device IOTLB (device_iotlb.cpp).
  Status iotlb_domain(EndpointId ep, Domain** dom) noexcept;
  size_t drop_extents(Domain& dom, uint64_t start, uint64_t last) noexcept;
  // Removes one mapping, found at `at`: its page-table entries, its IOTLB
  // entries (queued for the next sync) and its extent.
  void remove_extent(Domain& dom, const detail::Extent& e, detail::ExtentIndex::Slot at) noexcept;
  void publish_endpoint(uint32_t ep, const Domain* d) noexcept;
  // The page-table access (pagetable::Perm bits) a mapping's flags grant.
  static uint8_t map_perms(uint32_t flags) noexcept {
    return static_cast<uint8_t>(((flags & kMapFlagRead) ? pagetable::kPermRead : 0) |
                                ((flags & kMapFlagWrite) ? pagetable::kPermWrite : 0));
  }

  // Reader side (translate.cpp).
  // The endpoint's translation mode and domain, as a burst begins.
  uint8_t resolve(uint32_t ep, const Domain** dom) const noexcept;
  // iova -> hva (to_hva, through mem) or gpa of [iova, last] for an
  // argument-checked access: through view (mode kTranslate) or identity
  // (kIdentity); *last_region is tried before searching mem, and updated.
  Status walk_range(uint8_t mode, iotlb::Iotlb::View& view, bool to_hva, const MemTable::Snapshot* mem,
                    const MemRegion** last_region, uint32_t reader, uint32_t ep, uint64_t iova, uint64_t last,
                    uint8_t access, std::span<Segment> segs, size_t* nsegs, FaultEvent* fault) noexcept;
  Status translate(uint32_t reader, EndpointId ep, uint64_t iova, uint64_t len, uint8_t access,
                   std::span<Segment> segs, size_t* nsegs, bool to_hva, FaultEvent* fault) noexcept;
  Status report_fault(uint32_t reader, uint8_t reason, uint8_t access, uint32_t ep, uint64_t iova,
                      FaultEvent* fault) noexcept;

  Config cfg_;
  Rcu& rcu_;
  iotlb::Iotlb tlb_;
  uint64_t granule_;
  OwnerCheck control_;  // debug builds: one control call at a time

  // Control only.
  DomainMap domains_;
  std::unordered_map<uint32_t, uint32_t> attached_;  // endpoint -> domain
  std::vector<std::unique_ptr<Domain>> dying_;       // destroyed after the next grace period
  size_t mappings_ = 0;      // of live and dying domains
  size_t table_bytes_ = 0;   // sum of the live and dying domains' pt.table_bytes()
  uint32_t self_reader_ = Rcu::kNoReader;  // the handle_burst() caller's reader id, during the call
  bool need_grace_ = false;  // a translation readers may hold was removed this burst
  uint32_t next_tag_ = 0;    // IOTLB tags handed to domain instances
  std::unordered_set<uint32_t> tags_;  // tags of live and dying domains

  // Reader-visible. Endpoint -> domain (nullptr: unattached), indexed by
  // ep - endpoint_first; release stores on attach/detach pair with the
  // acquire load in translate(). A replaced domain stays valid until the
  // grace period of the burst that replaced it.
  std::unique_ptr<std::atomic<const Domain*>[]> ep_table_;
  MemTable mem_;
  FaultEvents faults_;
  std::atomic<uint8_t> bypass_{0};  // the config byte; relaxed: a plain flag, ordered by the grace period in write_bypass()
  std::atomic<uint64_t> maps_applied_{0};  // maps_applied(); written by the control side only
};

inline void Device::Burst::begin(Device& dev, uint32_t reader, EndpointId ep) noexcept {
  VXLATE_DCHECK(reader < dev.rcu_.max_readers(), "Device::Burst: reader id out of range");
  VXLATE_DCHECK(dev.rcu_.is_online(reader), "Device::Burst: a reader must be online (Iotlb::online) to translate");
  view_.end();  // the previous burst's hits
  const MemTable::Snapshot* const mem = dev.mem_.snapshot();
  // The same endpoint, still in the same domain instance (its tag is unique
  // among the live and dying domains, so an instance reallocated at the same
  // address has another) and the same memory table (its version names one
  // published table, and that table is current, so alive): of the View only
  // the domain's generation can have moved, and of the stamp only the epoch.
  // A burst per poll of each queue, empty or not, makes this the common case;
  // inline, it costs a poll no call. stamp_.mode == kTranslate says dom_ is
  // set and ep_ exists.
  if (mem == mem_ && mem != nullptr && dev_ == &dev && reader_ == reader && ep_ == ep &&
      stamp_.mode == kTranslate && mem->version == stamp_.mem_version) [[likely]] {
    // acquire: pairs with the release in publish_endpoint(), as in resolve().
    const Domain* dom = dev.ep_table_[ep.value - dev.cfg_.endpoint_first].load(std::memory_order_acquire);
    if (dom == dom_ && dom->tag == stamp_.tag && !dom->bypass) [[likely]] {
      view_.rebegin();
      // The remembered pages are translations of an earlier burst with this
      // stamp: valid while the epoch stands (the rule for kept ring
      // translations, above), forgotten when it moved.
      if (const iotlb::Iotlb::Epoch epoch = view_.epoch(); epoch != stamp_.epoch) [[unlikely]] {
        stamp_.epoch = epoch;
        page_ = PageMemo{};
        table_page_.perms = 0;
      }
      return;
    }
  }
  page_ = PageMemo{};
  table_page_.perms = 0;
  begin_slow(dev, reader, ep, mem);
}

}  // namespace vxlate::engine
