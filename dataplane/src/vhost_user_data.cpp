// A vhost-user-net port's reader side (vhost_user.h): the burst API, the
// misses the lcores leave for the control thread, interrupts and counters.
// Runs on data-plane lcores: no lock, no allocation, no read-modify-write
// (the mailbox slots are filled with plain stores; the control side empties
// them); a syscall only to write an eventfd (a miss, an interrupt).
#include <unistd.h>

#include <chrono>

#include "vhost_user_session.h"

namespace vxlate::dataplane::vhost_user {

using detail::bump;
using detail::kPage;

void Port::after_burst(const Session& cs, uint16_t qp, bool rx) noexcept {
  // The owner's own fields of the session (see Session).
  Session& s = const_cast<Session&>(cs);
  NetDevice& net = *s.pairs[qp];
  const uint32_t ring = 2u * qp + (rx ? 0 : 1);
  Virtqueue& vq = rx ? net.rxq(0) : net.txq(0);
  Miss m;
  bool posted = false;
  while (vq.take_miss(&m)) posted |= post_miss(s, ring, m);
  if (posted && wake_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof one);
  }
  bool irq_rx = false, irq_tx = false;
  net.take_interrupts(0, &irq_rx, &irq_tx);
  PairCounters& c = counters_[qp];
  const PortStats& b = s.base[qp];
  for (int i = 0; i < 2; ++i) {
    const bool want = i == 0 ? irq_rx : irq_tx;
    const int fd = s.call_fd[2u * qp + i];
    if (want && fd >= 0) {
      const uint64_t one = 1;
      (void)!::write(fd, &one, sizeof one);
      bump(c.interrupts);
    }
  }
  auto set = [](std::atomic<uint64_t>& a, uint64_t v) { a.store(v, std::memory_order_relaxed); };
  const VirtqueueStats& rs = net.rxq(0).stats();
  const VirtqueueStats& ts = net.txq(0).stats();
  if (rx) {
    set(c.rx_packets, b.rx_packets + net.rx_stats(0).packets);
    set(c.rx_bytes, b.rx_bytes + net.rx_stats(0).bytes);
    set(c.rx_dropped, b.rx_dropped + net.rx_stats(0).dropped);
    set(c.rx_held, b.rx_held + s.held[qp]);
    set(c.rx_parked, b.rx_parked + rs.parked);
  } else {
    set(c.tx_packets, b.tx_packets + net.tx_stats(0).packets);
    set(c.tx_bytes, b.tx_bytes + net.tx_stats(0).bytes);
    set(c.tx_no_mbuf, b.tx_no_mbuf + net.tx_stats(0).no_mbuf);
  }
  set(c.bad_chains, b.bad_chains + rs.bad_total() + ts.bad_total());
  set(c.ring_misses, b.ring_misses + rs.ring_faults + ts.ring_faults);
}

bool Port::post_miss(Session& s, uint32_t ring, const Miss& m) noexcept {
  const uint64_t v = (m.iova & ~(kPage - 1)) | (uint64_t{m.access} << 1) | 1;
  const auto now = std::chrono::steady_clock::now();
  // relaxed: a hint; a stale value costs one extra post or one kMissRetry wait.
  const uint32_t gen = inval_gen_.load(std::memory_order_relaxed);
  Session::Posted* recent = s.posted[ring];
  Session::Posted* slot = &recent[0];
  for (uint32_t i = 0; i < kMissSlots; ++i) {
    if (recent[i].v == v) {
      if (recent[i].gen == gen && now - recent[i].at < kMissRetry) return false;  // asked lately
      slot = &recent[i];
      break;
    }
    if (recent[i].at < slot->at) slot = &recent[i];
  }
  std::atomic<uint64_t>* box = &miss_box_[ring * kMissSlots];
  for (uint32_t i = 0; i < kMissSlots; ++i) {
    // relaxed: only this lcore fills slots; release: pairs with the control
    // side's exchange (nothing else rides on it, but the value is whole).
    if (box[i].load(std::memory_order_relaxed) == 0) {
      box[i].store(v, std::memory_order_release);
      *slot = Session::Posted{v, now, gen};
      bump(counters_[ring / 2].miss_posts);
      return true;
    }
  }
  return false;  // the mailbox is full: asked again on a later burst
}

void Port::prefetch(uint32_t reader, uint16_t qp) noexcept {
  const Session* cs = session_.load(std::memory_order_acquire);  // as in dequeue_burst()
  if (cs == nullptr || qp >= kMaxQueuePairs || !cs->pairs[qp] || !cs->iommu) return;
  Session& s = const_cast<Session&>(*cs);  // owner-only fields
  NetDevice& net = *s.pairs[qp];
  const Rcu::ReadSection section(rcu_, reader);  // debug builds: no quiescent report inside
  bool posted = false;
  for (uint32_t i = 0; i < 2; ++i) {
    Virtqueue& vq = i == 0 ? net.rxq(0) : net.txq(0);
    Miss misses[kMissSlots + Virtqueue::kMissesKept + kMissSlots / 2];
    size_t n = 0;
    if (vq.begin(reader, 0)) n = vq.prefetch(kPrefetchChains, std::span<Miss>(misses, kMissSlots));
    while (vq.take_miss(&misses[n])) ++n;  // a ring that misses, a held chain's, parked ones'
    // Parked receive chains (rx_out_of_order) wait for their pages: asked
    // for again every kMissRetry, a few at a time, as a held chain's page is
    // (post_miss() throttles each page). Not at every call: every parked
    // page at every idle round would flood the front end with repeats of
    // MISSes it may be unable to answer yet.
    if (i == 0 && vq.parked() != 0) {
      const auto now = std::chrono::steady_clock::now();
      if (now - s.parked_asked[qp] >= kMissRetry) {
        s.parked_asked[qp] = now;
        n += vq.parked_misses(std::span<Miss>(misses + n, kMissSlots / 2));
      }
    }
    for (size_t k = 0; k < n; ++k) posted |= post_miss(s, 2 * qp + i, misses[k]);
  }
  if (posted && wake_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof one);
  }
}

uint16_t Port::dequeue_burst(uint32_t reader, uint16_t qp, rte_mempool* mp, rte_mbuf** pkts,
                             uint16_t count) noexcept {
  // acquire: pairs with the release store in start_session(): the session's
  // queues and fds are fully built.
  const Session* s = session_.load(std::memory_order_acquire);
  if (s == nullptr || qp >= kMaxQueuePairs || !s->pairs[qp]) return 0;
  const uint16_t n = s->pairs[qp]->dequeue_burst(reader, 0, mp, pkts, count);
  after_burst(*s, qp, false);
  return n;
}

uint16_t Port::enqueue_burst(uint32_t reader, uint16_t qp, rte_mbuf* const* pkts, uint16_t count) noexcept {
  const Session* s = session_.load(std::memory_order_acquire);  // as in dequeue_burst()
  if (s == nullptr || qp >= kMaxQueuePairs || !s->pairs[qp]) return 0;
  NetDevice& net = *s->pairs[qp];
  const uint64_t held_before = net.rxq(0).stats().held;
  const uint16_t n = net.enqueue_burst(reader, 0, pkts, count);
  Session& own = const_cast<Session&>(*s);  // owner-only fields
  const bool was_waiting = own.waiting[qp];
  // Waiting for a miss: a buffer held in the ring, or (rx_out_of_order) none
  // left but some set aside.
  own.waiting[qp] = n < count && (net.rxq(0).stats().held != held_before || net.rxq(0).parked() != 0);
  // Frames are counted when they start waiting, not on every offer again.
  if (own.waiting[qp] && !was_waiting) own.held[qp] += count - n;
  after_burst(*s, qp, true);
  return n;
}

bool Port::rx_waiting_for_miss(uint16_t qp) const noexcept {
  const Session* s = session_.load(std::memory_order_acquire);  // as in dequeue_burst()
  return s != nullptr && qp < kMaxQueuePairs && s->pairs[qp] && s->waiting[qp];
}

}  // namespace vxlate::dataplane::vhost_user
