// A vhost-user-net port's control side (vhost_user.h): the front end's
// messages, the memory table, the sessions published to the lcores, the
// misses sent on the back-end channel; and the counters (any thread). The
// reader side is in vhost_user_data.cpp.
#include <linux/sockios.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "vhost_user_session.h"

namespace vxlate::dataplane::vhost_user {

using detail::bump;
using detail::kEp;
using detail::kPage;

namespace {

// The port's Device: one endpoint, no reserved regions, no bypass; a cache
// bound (mappings, tables) a guest cannot push past: an UPDATE beyond it
// evicts the port's other entries (Device::iotlb_update).
engine::Config device_config() {
  engine::Config c;
  c.endpoint_first = c.endpoint_last = kEp.value;
  c.resv.clear();
  c.feature_bypass_config = false;
  c.max_mappings = size_t{1} << 16;
  c.max_table_bytes = size_t{256} << 20;
  return c;
}

void close_fd(int* fd) noexcept {
  if (*fd >= 0) ::close(*fd);
  *fd = -1;
}

bool is_get(uint32_t request) noexcept {
  switch (request) {
    case kGetFeatures:
    case kGetProtocolFeatures:
    case kGetQueueNum:
    case kGetVringBase:
    case kGetMaxMemSlots:
      return true;
    default:
      return false;
  }
}

}  // namespace

Port::Port(Rcu& rcu, const PortConfig& cfg, int wake_fd)
    : rcu_(rcu),
      cfg_(cfg),
      wake_fd_(wake_fd),
      dev_(device_config(), rcu),
      miss_box_(std::make_unique<std::atomic<uint64_t>[]>(kMaxVrings * kMissSlots)),
      counters_(std::make_unique<PairCounters[]>(kMaxQueuePairs)) {
  if (cfg.queue_pairs == 0 || cfg.queue_pairs > kMaxQueuePairs)
    throw std::invalid_argument("vhost-user port: queue_pairs must be 1.." + std::to_string(kMaxQueuePairs));
}

Port::~Port() { disconnect(); }

uint64_t Port::offered_features() const noexcept {
  uint64_t f = kFeatureVersion1 | kFeatureProtocolFeatures | kNetFeatureMrgRxbuf | kFeatureIndirectDesc |
               kFeatureEventIdx;
  if (cfg_.queue_pairs > 1) f |= kNetFeatureMq;
  if (cfg_.iommu) f |= kFeatureAccessPlatform;
  return f;
}

uint64_t Port::offered_protocol_features() const noexcept {
  // Only what is implemented and safe with QEMU 7.2 (notes 0.9): no CONFIG,
  // STATUS, CONFIGURE_MEM_SLOTS or INBAND_NOTIFICATIONS.
  uint64_t p = kProtocolReplyAck | kProtocolBackendReq;
  if (cfg_.queue_pairs > 1) p |= kProtocolMq;
  return p;
}

PortStats Port::pair_stats(uint16_t qp) const noexcept {
  PortStats s;
  if (qp >= kMaxQueuePairs) return s;
  auto get = [](const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  const PairCounters& c = counters_[qp];
  s.rx_packets = get(c.rx_packets);
  s.rx_bytes = get(c.rx_bytes);
  s.rx_dropped = get(c.rx_dropped);
  s.rx_held = get(c.rx_held);
  s.rx_parked = get(c.rx_parked);
  s.tx_packets = get(c.tx_packets);
  s.tx_bytes = get(c.tx_bytes);
  s.tx_no_mbuf = get(c.tx_no_mbuf);
  s.bad_chains = get(c.bad_chains);
  s.ring_misses = get(c.ring_misses);
  s.interrupts = get(c.interrupts);
  s.miss_posts = get(c.miss_posts);
  return s;
}

PortStats Port::stats() const noexcept {
  PortStats s;
  auto get = [](const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  for (uint16_t q = 0; q < kMaxQueuePairs; ++q) {
    const PortStats p = pair_stats(q);
    s.rx_packets += p.rx_packets;
    s.rx_bytes += p.rx_bytes;
    s.rx_dropped += p.rx_dropped;
    s.rx_held += p.rx_held;
    s.rx_parked += p.rx_parked;
    s.tx_packets += p.tx_packets;
    s.tx_bytes += p.tx_bytes;
    s.tx_no_mbuf += p.tx_no_mbuf;
    s.bad_chains += p.bad_chains;
    s.ring_misses += p.ring_misses;
    s.interrupts += p.interrupts;
    s.miss_posts += p.miss_posts;
  }
  const iotlb::Stats t = const_cast<engine::Device&>(dev_).iotlb().stats();  // any thread: relaxed sums
  s.iotlb_hits = t.hits;
  s.iotlb_lookups = t.hits + t.misses;
  s.connects = get(ctl_.connects);
  s.disconnects = get(ctl_.disconnects);
  s.messages = get(ctl_.messages);
  s.refused = get(ctl_.refused);
  s.updates = get(ctl_.updates);
  s.updates_refused = get(ctl_.updates_refused);
  s.invalidates = get(ctl_.invalidates);
  s.ack_ns_total = get(ctl_.ack_ns_total);
  s.ack_ns_max = get(ctl_.ack_ns_max);
  s.misses_sent = get(ctl_.misses_sent);
  s.misses_deduped = get(ctl_.misses_deduped);
  s.misses_retried = get(ctl_.misses_retried);
  s.misses_unsent = get(ctl_.misses_unsent);
  s.misses_stale = get(ctl_.misses_stale);
  s.misses_held = get(ctl_.misses_held);
  s.iotlb_flushes = get(ctl_.iotlb_flushes);
  s.sessions = get(ctl_.sessions);
  s.rx_parked_returned = get(ctl_.rx_parked_returned);
  s.rx_parked_lost = get(ctl_.rx_parked_lost);
  return s;
}

// --- control side ------------------------------------------------------------

void Port::reply_u64(const Header& h, uint64_t v, std::vector<uint8_t>* reply) {
  reply->resize(sizeof(Header) + sizeof(uint64_t));
  encode(std::span<uint8_t>(*reply), reply_header(h.request.get(), sizeof(uint64_t)));
  Le64 le;
  le.set(v);
  encode(std::span<uint8_t>(*reply).subspan(sizeof(Header)), le);
}

Port::Action Port::refuse(const Header& h, std::vector<uint8_t>* reply) {
  bump(ctl_.refused);
  // A request that asked for an ack gets a failure; one whose reply is a
  // value cannot be answered, nor can anything else be told: close.
  if ((h.flags.get() & kFlagNeedReply) != 0 && !is_get(h.request.get())) {
    reply_u64(h, 1, reply);
    return Action::kContinue;
  }
  return Action::kClose;
}

void Port::connected() {
  disconnect();
  bump(ctl_.connects);
  attached_.store(true, std::memory_order_relaxed);
}

Port::Action Port::handle_message(const Header& h, std::span<const uint8_t> payload, std::span<const int> fds,
                                  std::vector<uint8_t>* reply) {
  reply->clear();
  bump(ctl_.messages);
  // Every descriptor is closed unless a handler keeps it (sets its slot to -1).
  std::vector<int> own(fds.begin(), fds.end());
  struct Closer {
    std::vector<int>& fds;
    ~Closer() {
      for (int& fd : fds) close_fd(&fd);
    }
  } closer{own};

  if (check_header(h) != Refusal::kNone) {
    bump(ctl_.refused);
    return Action::kClose;
  }
  if (check_request(h, payload, own.size(), 2u * cfg_.queue_pairs) != Refusal::kNone) return refuse(h, reply);
  const uint32_t request = h.request.get();
  bool ok = true;
  try {
    switch (request) {
      case kGetFeatures:
        reply_u64(h, offered_features(), reply);
        return Action::kContinue;
      case kGetProtocolFeatures:
        reply_u64(h, offered_protocol_features(), reply);
        return Action::kContinue;
      case kGetQueueNum:
        reply_u64(h, cfg_.queue_pairs, reply);
        return Action::kContinue;
      case kSetFeatures:
        ok = set_features(decode<Le64>(payload).get());
        break;
      case kSetProtocolFeatures: {
        const uint64_t v = decode<Le64>(payload).get();
        ok = (v & ~offered_protocol_features()) == 0;
        if (ok) {
          protocol_features_ = v;
          protocol_negotiated_ = true;
        }
        break;
      }
      case kSetOwner:
        owner_ = true;
        break;
      case kResetOwner: {
        const uint64_t connects = ctl_.connects.load(std::memory_order_relaxed);
        disconnect();  // the same clean slate, on the same connection
        ctl_.connects.store(connects, std::memory_order_relaxed);
        attached_.store(true, std::memory_order_relaxed);
        break;
      }
      case kSetMemTable:
        ok = set_mem_table(payload, own);
        std::fill(own.begin(), own.end(), -1);  // set_mem_table() closed them
        break;
      case kSetVringNum:
      case kSetVringBase:
      case kSetVringEnable: {
        const auto st = decode<VringState>(payload);
        Vring& v = vrings_[st.index.get()];
        stop_session();
        if (request == kSetVringNum) {
          v.num = st.num.get();
        } else if (request == kSetVringBase) {
          v.base = static_cast<uint16_t>(st.num.get());
        } else {
          v.enable_set = true;
          v.enabled = st.num.get() == 1;
        }
        break;
      }
      case kSetVringAddr: {
        const auto a = decode<VringAddr>(payload);
        Vring& v = vrings_[a.index.get()];
        stop_session();
        v.desc = a.desc_user_addr.get();
        v.avail = a.avail_user_addr.get();
        v.used = a.used_user_addr.get();
        v.addr_set = true;
        break;
      }
      case kGetVringBase: {
        const auto st = decode<VringState>(payload);
        Vring& v = vrings_[st.index.get()];
        stop_session();  // no lcore moves the index any more
        // The ring stops: QEMU sends no invalidations for a stopped device, so
        // nothing cached may outlive it (DPDK e7cb7fdf54).
        v.kicked = false;
        close_fd(&v.kick_fd);
        close_fd(&v.call_fd);
        flush_iotlb();
        VringState out{};
        out.index.set(st.index.get());
        out.num.set(v.base);
        reply->resize(sizeof(Header) + sizeof(VringState));
        encode(std::span<uint8_t>(*reply), reply_header(request, sizeof(VringState)));
        encode(std::span<uint8_t>(*reply).subspan(sizeof(Header)), out);
        start_session();  // the other pairs go on
        return Action::kContinue;
      }
      case kSetVringKick:
      case kSetVringCall:
      case kSetVringErr: {
        const uint64_t u = decode<Le64>(payload).get();
        Vring& v = vrings_[u & kVringIndexMask];
        const int fd = own.empty() ? -1 : own[0];
        if (!own.empty()) own[0] = -1;
        if (request == kSetVringErr) {  // never written: QEMU only logs it
          close_fd(&v.err_fd);
          v.err_fd = fd;
          break;
        }
        stop_session();  // the data plane may be writing the old call fd
        int* slot = request == kSetVringKick ? &v.kick_fd : &v.call_fd;
        close_fd(slot);
        *slot = fd;
        if (request == kSetVringKick) v.kicked = true;
        break;
      }
      case kSetBackendReqFd:
        if ((protocol_features_ & kProtocolBackendReq) == 0) {
          ok = false;
          break;
        }
        close_fd(&backend_fd_);
        backend_fd_ = own[0];
        own[0] = -1;
        break;
      case kIotlbMsg:
        ok = iommu_mode() && iotlb_msg(decode<IotlbMsg>(payload));
        break;
      default:
        // GET_MAX_MEM_SLOTS, ADD/REM_MEM_REG: CONFIGURE_MEM_SLOTS is not offered.
        ok = false;
        break;
    }
    if (!session_.load(std::memory_order_relaxed)) start_session();
  } catch (const std::exception&) {
    // Allocation failed building a session or a table: this connection ends.
    bump(ctl_.refused);
    return Action::kClose;
  }
  if (!ok) return refuse(h, reply);
  if ((h.flags.get() & kFlagNeedReply) != 0) reply_u64(h, 0, reply);
  return Action::kContinue;
}

bool Port::set_features(uint64_t features) {
  // Within the offer, and VERSION_1: the 12-byte header NetDevice frames with.
  if ((features & ~offered_features()) != 0 || (features & kFeatureVersion1) == 0) return false;
  stop_session();
  const bool mode_change = ((features ^ features_) & kFeatureAccessPlatform) != 0;
  features_ = features;
  features_set_ = true;
  if (mode_change && !maps_.empty()) {
    // The memory table is keyed by front-end virtual addresses with
    // ACCESS_PLATFORM (UPDATE targets), by guest-physical ones without.
    flush_iotlb();
    return rebuild_mem_table();
  }
  return true;
}

bool Port::rebuild_mem_table() {
  std::vector<engine::MemRegion> regions;
  regions.reserve(maps_.size());
  for (const Mapping& m : maps_) regions.push_back({iommu_mode() ? m.uaddr : m.gpa, m.size, m.hva});
  std::sort(regions.begin(), regions.end(), [](const auto& a, const auto& b) { return a.gpa < b.gpa; });
  return dev_.set_mem_table(regions) == Status::kOk;  // waits out readers of the old table
}

bool Port::set_mem_table(std::span<const uint8_t> payload, std::span<const int> fds) {
  const auto head = decode<MemoryHead>(payload);
  const uint32_t n = head.nregions.get();  // == fds.size(), checked by check_request()
  std::vector<Mapping> fresh;
  bool ok = true;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  for (uint32_t i = 0; i < n && ok; ++i) {
    const auto r = decode<MemRegion>(payload.subspan(sizeof(MemoryHead) + i * sizeof(MemRegion)));
    Mapping m;
    m.gpa = r.guest_phys_addr.get();
    m.size = r.memory_size.get();
    m.uaddr = r.userspace_addr.get();
    const uint64_t offset = r.mmap_offset.get();
    struct stat st {};
    // The file must hold the whole region (else touching it raises SIGBUS);
    // offset + size does not wrap (check_request()).
    if (::fstat(fds[i], &st) != 0 || st.st_size < 0 || static_cast<uint64_t>(st.st_size) < offset + m.size) {
      ok = false;
      break;
    }
    // mmap offsets must be aligned to the file's block (a huge page on hugetlbfs).
    uint64_t align = st.st_blksize > 0 ? static_cast<uint64_t>(st.st_blksize) : page;
    if ((align & (align - 1)) != 0 || align < page) align = page;
    const uint64_t start = offset & ~(align - 1);
    m.len = offset + m.size - start;
    m.base = ::mmap(nullptr, m.len, PROT_READ | PROT_WRITE, MAP_SHARED, fds[i], static_cast<off_t>(start));
    if (m.base == MAP_FAILED) {
      ok = false;
      break;
    }
    m.hva = reinterpret_cast<uint64_t>(m.base) + (offset - start);
    fresh.push_back(m);
  }
  for (int fd : fds) ::close(fd);  // the mappings keep the memory
  if (!ok) {
    for (const Mapping& m : fresh) ::munmap(m.base, m.len);
    return false;
  }
  // No lcore may use the old table or a translation into it any more.
  stop_session();
  flush_iotlb();
  std::vector<Mapping> old = std::move(maps_);
  maps_ = std::move(fresh);
  const bool built = rebuild_mem_table();
  for (const Mapping& m : old) ::munmap(m.base, m.len);
  if (!built) unmap_all();
  return built;
}

bool Port::ring_in_memory(uint64_t uaddr, uint64_t len, uint64_t* hva) const noexcept {
  uint64_t last = 0;
  if (!range_last(uaddr, len, &last)) return false;
  for (const Mapping& m : maps_) {
    if (uaddr >= m.uaddr && last <= m.uaddr + (m.size - 1)) {
      *hva = m.hva + (uaddr - m.uaddr);
      return true;
    }
  }
  return false;
}

bool Port::iotlb_msg(const IotlbMsg& m) {
  const uint64_t iova = m.iova.get(), size = m.size.get();
  if (m.type == kIotlbInvalidate) {
    const auto t0 = std::chrono::steady_clock::now();
    (void)dev_.iotlb_invalidate(kEp, iova, size);  // returns after the grace period
    inval_gen_.fetch_add(1, std::memory_order_relaxed);  // lcores may ask for these pages again at once
    forget_misses(iova, size);
    const uint64_t ns = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
    bump(ctl_.invalidates);
    bump(ctl_.ack_ns_total, ns);
    if (ns > ctl_.ack_ns_max.load(std::memory_order_relaxed)) ctl_.ack_ns_max.store(ns, std::memory_order_relaxed);
    return true;
  }
  // UPDATE (check_iotlb() allowed nothing else): its front-end virtual range
  // must lie inside one region, which the memory table maps.
  const uint64_t uaddr = m.uaddr.get();
  uint64_t hva = 0;
  const uint8_t perms = static_cast<uint8_t>(
      ((m.perm & kPermRo) ? pagetable::kPermRead : 0) | ((m.perm & kPermWo) ? pagetable::kPermWrite : 0));
  if (!ring_in_memory(uaddr, size, &hva) || dev_.iotlb_update(kEp, iova, size, uaddr, perms) != Status::kOk) {
    bump(ctl_.updates_refused);
    return false;
  }
  bump(ctl_.updates);
  // The pages it covers are no longer missing.
  const uint64_t last = iova + (size - 1);
  if (size / kPage <= 64) {
    for (uint64_t p = iova & ~(kPage - 1); p <= last && p >= (iova & ~(kPage - 1)); p += kPage)
      for (uint64_t a = 1; a <= 3; ++a) pending_misses_.erase(p | a);
  } else {
    std::erase_if(pending_misses_, [&](const auto& e) {
      const uint64_t p = e.first & ~(kPage - 1);
      return p + (kPage - 1) >= iova && p <= last;
    });
  }
  return true;
}

void Port::forget_misses(uint64_t iova, uint64_t size) {
  uint64_t last = UINT64_MAX;
  if (size == 0) iova = 0;
  else if (!range_last(iova, size, &last)) last = UINT64_MAX;
  const uint64_t first = iova & ~(kPage - 1);
  auto in_range = [&](uint64_t page) { return page + (kPage - 1) >= first && page <= last; };
  // Misses the lcores left before this INVALIDATE's grace period ended were
  // seen in bursts that began before it: the guest has since unmapped those
  // pages, and asking for them now would only make its IOMMU log a fault. A
  // slot the lcore refilled meanwhile is newer and stays (the CAS fails).
  for (uint32_t i = 0; i < kMaxVrings * kMissSlots; ++i) {
    uint64_t v = miss_box_[i].load(std::memory_order_acquire);
    if (v != 0 && in_range(v & ~(kPage - 1)))
      (void)miss_box_[i].compare_exchange_strong(v, 0, std::memory_order_acquire, std::memory_order_relaxed);
  }
  std::erase_if(pending_misses_, [&](const auto& e) { return in_range(e.first & ~(kPage - 1)); });
}

void Port::stop_session() {
  Session* s = session_.load(std::memory_order_relaxed);
  if (s == nullptr) return;
  // release: nothing to publish; the grace period below is the ordering.
  session_.store(nullptr, std::memory_order_release);
  rcu_.synchronize();  // every burst that loaded s has ended
  for (uint16_t q = 0; q < kMaxQueuePairs; ++q) {
    if (!s->pairs[q]) continue;
    // Receive buffers set aside for a miss (rx_out_of_order) go back empty,
    // so that the base below is where the front end resumes: no lcore uses
    // the ring any more, and the translations are still the front end's.
    Virtqueue& rx = s->pairs[q]->rxq(0);
    bump(ctl_.rx_parked_returned, rx.complete_parked());
    bump(ctl_.rx_parked_lost, rx.parked());
    vrings_[2 * q].base = rx.last_avail();
    vrings_[2 * q + 1].base = s->pairs[q]->txq(0).last_avail();
  }
  for (uint32_t i = 0; i < kMaxVrings * kMissSlots; ++i) miss_box_[i].store(0, std::memory_order_relaxed);
  delete s;
}

void Port::start_session() {
  if (session_.load(std::memory_order_relaxed) != nullptr || maps_.empty() || !features_set_) return;
  auto s = std::make_unique<Session>();
  const bool iommu = iommu_mode();
  bool any = false;
  for (uint16_t q = 0; q < cfg_.queue_pairs; ++q) {
    QueueConfig qc[2];
    bool ready = true;
    for (int i = 0; i < 2 && ready; ++i) {
      const Vring& v = vrings_[2 * q + i];
      const bool enabled = v.enable_set ? v.enabled : !protocol_negotiated_;
      if (v.num == 0 || !v.addr_set || !v.kicked || !enabled) {
        ready = false;
        break;
      }
      QueueConfig& c = qc[i];
      c.size = v.num;
      c.access_platform = iommu;
      c.hold_on_miss = iommu;
      c.park_on_miss = iommu && cfg_.rx_out_of_order && i == 0;  // qc[0]: the receive queue
      c.event_idx = (features_ & kFeatureEventIdx) != 0;
      c.indirect = (features_ & kFeatureIndirectDesc) != 0;
      c.ep = kEp;
      if (iommu) {
        c.desc = v.desc;  // IOVAs, translated per burst
        c.avail = v.avail;
        c.used = v.used;
      } else {
        // Front-end virtual addresses: the whole of each ring inside one
        // region, and aligned in our mapping too (a region whose uaddr and
        // file offset disagree mod the alignment would misalign the index
        // fields the Virtqueue accesses in place).
        c.rings_host = true;
        ready = ring_in_memory(v.desc, desc_bytes(v.num), &c.desc) && c.desc % kDescAlign == 0 &&
                ring_in_memory(v.avail, avail_bytes(v.num), &c.avail) && c.avail % kAvailAlign == 0 &&
                ring_in_memory(v.used, used_bytes(v.num), &c.used) && c.used % kUsedAlign == 0;
      }
    }
    if (!ready) continue;
    s->pairs[q] = std::make_unique<NetDevice>(dev_, std::span<const QueueConfig>(qc, 2),
                                              (features_ & kNetFeatureMrgRxbuf) != 0);
    s->pairs[q]->rxq(0).set_base(vrings_[2 * q].base);
    s->pairs[q]->txq(0).set_base(vrings_[2 * q + 1].base);
    any = true;
  }
  if (!any) return;
  s->iommu = iommu;
  for (uint32_t i = 0; i < kMaxVrings; ++i) s->call_fd[i] = vrings_[i].call_fd;
  for (uint16_t q = 0; q < kMaxQueuePairs; ++q) {
    // Each pair's counters go on from where the last session left them.
    PortStats& b = s->base[q];
    const PairCounters& c = counters_[q];
    auto get = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    b.rx_packets = get(c.rx_packets);
    b.rx_bytes = get(c.rx_bytes);
    b.rx_dropped = get(c.rx_dropped);
    b.rx_held = get(c.rx_held);
    b.rx_parked = get(c.rx_parked);
    b.tx_packets = get(c.tx_packets);
    b.tx_bytes = get(c.tx_bytes);
    b.tx_no_mbuf = get(c.tx_no_mbuf);
    b.bad_chains = get(c.bad_chains);
    b.ring_misses = get(c.ring_misses);
  }
  bump(ctl_.sessions);
  // release: the session, its queues and fds are built before an lcore can
  // load the pointer (acquire in the bursts).
  session_.store(s.release(), std::memory_order_release);
}

void Port::flush_iotlb() {
  dev_.iotlb_flush(kEp);
  inval_gen_.fetch_add(1, std::memory_order_relaxed);
  forget_misses(0, 0);
  bump(ctl_.iotlb_flushes);
}

void Port::unmap_all() {
  (void)dev_.set_mem_table({});  // waits out any reader of the old table
  for (const Mapping& m : maps_) ::munmap(m.base, m.len);
  maps_.clear();
}

void Port::reset_vring(Vring& v) {
  close_fd(&v.kick_fd);
  close_fd(&v.call_fd);
  close_fd(&v.err_fd);
  v = Vring{};
}

void Port::disconnect() {
  const bool was_connected = owner_ || features_set_ || !maps_.empty() || backend_fd_ >= 0;
  stop_session();
  flush_iotlb();
  unmap_all();
  for (Vring& v : vrings_) reset_vring(v);
  close_fd(&backend_fd_);
  features_ = protocol_features_ = 0;
  protocol_negotiated_ = features_set_ = owner_ = false;
  pending_misses_.clear();
  attached_.store(false, std::memory_order_relaxed);
  if (was_connected) bump(ctl_.disconnects);
}

bool Port::backend_drained() const noexcept {
  // SIOCOUTQ on a unix stream socket: what the peer has not yet read of what
  // was sent (in buffer units, not bytes: a sent buffer stays charged to the
  // sender until it is read whole), so only 0 is meaningful. Should the
  // ioctl fail, retries go out as without this check.
  int n = 0;
  return backend_fd_ < 0 || ::ioctl(backend_fd_, SIOCOUTQ, &n) != 0 || n <= 0;
}

std::chrono::steady_clock::time_point Port::service(std::chrono::steady_clock::time_point now) {
  auto next = std::chrono::steady_clock::time_point::max();
  const bool drained = pending_misses_.empty() || backend_drained();
  for (uint32_t i = 0; i < kMaxVrings * kMissSlots; ++i) {
    // acquire: takes the lcore's miss (pairs with its release store).
    const uint64_t v = miss_box_[i].exchange(0, std::memory_order_acquire);
    if (v == 0) continue;
    // Nothing goes to a front end whose rings are all stopped (vhost-user
    // "suspended device state"), nor without a back-end channel.
    // QEMU 7.2 serves the back-end channel through queue pair 0's vhost
    // device: with pair 0 stopped it refuses every MISS.
    const Session* s = session_.load(std::memory_order_relaxed);
    if (backend_fd_ < 0 || !iommu_mode() || s == nullptr || !s->pairs[0]) continue;
    const uint64_t page = v & ~(kPage - 1);
    const uint8_t access = static_cast<uint8_t>((v >> 1) & 3);
    const uint64_t key = page | access;
    // Answered since the lcore asked (an UPDATE raced with its post): a MISS
    // now would be stale, and if the guest unmaps the page before the VMM
    // reads it, the guest's IOMMU logs a fault.
    if (dev_.iotlb_maps(kEp, page, access)) {
      bump(ctl_.misses_stale);
      continue;
    }
    auto it = pending_misses_.find(key);
    if (it != pending_misses_.end() && now < it->second) {
      bump(ctl_.misses_deduped);
      continue;
    }
    // A retry goes out only once the front end has read the first: QEMU
    // handles a MISS whole (its UPDATE sent and acknowledged) before it reads
    // the next message, so a retry can no longer wait unread behind a first
    // that is answered, used and unmapped meanwhile, and then ask for a page
    // the guest has mapped again with other permissions (its IOMMU logs a
    // DMA fault). Until then the retry is not needed: the first is still to
    // be answered; the ring asks again after kMissRetry. The first went out
    // in an earlier call, so `drained` (read before this call sent anything)
    // says whether it has been read.
    if (it != pending_misses_.end() && !drained) {
      bump(ctl_.misses_held);
      continue;
    }
    // One MISS, no NEED_REPLY, never blocking (notes section 4).
    uint8_t msg[sizeof(Header) + sizeof(IotlbMsg)];
    Header h{};
    h.request.set(kBackendIotlbMsg);
    h.flags.set(kFlagVersion);
    h.size.set(sizeof(IotlbMsg));
    IotlbMsg m{};
    m.iova.set(page);
    m.perm = static_cast<uint8_t>(((access & pagetable::kPermRead) ? kPermRo : 0) |
                                  ((access & pagetable::kPermWrite) ? kPermWo : 0));
    m.type = kIotlbMiss;
    encode(std::span<uint8_t>(msg), h);
    encode(std::span<uint8_t>(msg).subspan(sizeof(Header)), m);
    const ssize_t sent = ::send(backend_fd_, msg, sizeof msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent != static_cast<ssize_t>(sizeof msg)) {
      // A full channel: the lcore posts the miss again after kMissRetry. (A
      // partial write cannot happen below the socket's minimum buffer.)
      bump(ctl_.misses_unsent);
      continue;
    }
    if (it != pending_misses_.end()) bump(ctl_.misses_retried);
    bump(ctl_.misses_sent);
    if (pending_misses_.size() >= kMaxPendingMisses)
      std::erase_if(pending_misses_, [&](const auto& e) { return e.second <= now; });
    if (pending_misses_.size() >= kMaxPendingMisses) pending_misses_.clear();
    pending_misses_[key] = now + kMissRetry;
  }
  if (!pending_misses_.empty()) next = now + kMissRetry;
  return next;
}

}  // namespace vxlate::dataplane::vhost_user
