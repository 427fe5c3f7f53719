#include "vxlate/dataplane/net.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace vxlate::dataplane {

NetDevice::NetDevice(engine::Device& dev, std::span<const QueueConfig> queues, bool mrg_rxbuf) : rcu_(dev.rcu()), mrg_rxbuf_(mrg_rxbuf) {
  if (queues.empty() || queues.size() % 2 != 0)
    throw std::invalid_argument("NetDevice: queues come in receive/transmit pairs");
  for (size_t i = 0; i < queues.size(); i += 2) {
    // Nothing past a header and the largest frame is ever copied, so nothing
    // past it is translated.
    QueueConfig rx = queues[i], tx = queues[i + 1];
    rx.max_chain_bytes = tx.max_chain_bytes = kNetHdrSize + kMaxFrame;
    pairs_.push_back(std::make_unique<Pair>(dev, rx, tx));
  }
}

namespace {
// True when m's segments hold exactly pkt_len bytes (checked over at most
// nb_segs segments, so a looping chain is refused too).
bool consistent(const rte_mbuf* m) noexcept {
  uint64_t len = 0;
  uint16_t segs = 0;
  for (const rte_mbuf* s = m; s != nullptr; s = s->next) {
    if (++segs > m->nb_segs) return false;
    len += s->data_len;
  }
  return segs == m->nb_segs && len == m->pkt_len;
}
}  // namespace

// Copies the frame after the virtio-net header into a chain of mbufs.
bool NetDevice::to_mbuf(const Chain& c, rte_mempool* mp, rte_mbuf** out) noexcept {
  rte_mbuf* head = rte_pktmbuf_alloc(mp);
  if (head == nullptr) return false;
  rte_mbuf* cur = head;
  uint64_t skip = kNetHdrSize;
  for (uint32_t s = 0; s < c.nreadable; ++s) {
    const uint8_t* src = reinterpret_cast<const uint8_t*>(c.segs[s].addr);
    uint64_t len = c.segs[s].len;
    if (skip >= len) {
      skip -= len;
      continue;
    }
    src += skip;
    len -= skip;
    skip = 0;
    while (len > 0) {
      uint16_t room = rte_pktmbuf_tailroom(cur);
      if (room == 0) {
        rte_mbuf* next = rte_pktmbuf_alloc(mp);
        if (next == nullptr) {
          rte_pktmbuf_free(head);
          return false;
        }
        cur->next = next;
        ++head->nb_segs;
        cur = next;
        room = rte_pktmbuf_tailroom(cur);
      }
      const uint16_t take = static_cast<uint16_t>(std::min<uint64_t>(room, len));
      std::memcpy(rte_pktmbuf_mtod_offset(cur, uint8_t*, cur->data_len), src, take);
      cur->data_len = static_cast<uint16_t>(cur->data_len + take);
      head->pkt_len += take;
      src += take;
      len -= take;
    }
  }
  *out = head;
  return true;
}

uint16_t NetDevice::dequeue_burst(uint32_t reader, uint16_t qp, rte_mempool* mp, rte_mbuf** pkts,
                                  uint16_t count) noexcept {
  Pair& p = *pairs_[qp];
  const Rcu::ReadSection burst(rcu_, reader);  // debug builds: no quiescent report inside
  count = std::min(count, kMaxNetBurst);
  // Every chain popped, good, bad or refused, counts against the burst.
  if (!p.tx.begin(reader, count)) return 0;
  uint16_t n = 0;
  Chain& c = p.tx_chain;
  while (n < count && p.tx.pop(&c)) {
    // Transmit buffers are device-readable only and start with the header.
    if (c.nreadable != c.nsegs || c.readable_bytes < kNetHdrSize || c.readable_bytes - kNetHdrSize > kMaxFrame) {
      p.tx.refuse(c, BadChain::kDirection);
      continue;
    }
    if (!to_mbuf(c, mp, &pkts[n])) {
      // No mbuf now: the chain goes back to the ring for the next call.
      p.tx.unpop(1);
      ++p.tx_stats.no_mbuf;
      break;
    }
    p.tx_stats.bytes += pkts[n]->pkt_len;
    p.tx.push(c.head, 0);
    ++n;
  }
  p.tx_stats.packets += n;
  p.tx_irq |= p.tx.publish();
  return n;
}

uint16_t NetDevice::enqueue_burst(uint32_t reader, uint16_t qp, rte_mbuf* const* pkts, uint16_t count) noexcept {
  Pair& p = *pairs_[qp];
  const Rcu::ReadSection burst(rcu_, reader);  // debug builds: no quiescent report inside
  count = std::min(count, kMaxNetBurst);
  // Every chain popped, good, bad or refused, counts against the burst: at
  // most kMaxMergeChains per frame.
  if (!p.rx.begin(reader, uint32_t{count} * kMaxMergeChains)) return 0;
  uint16_t n = 0;
  for (; n < count; ++n) {
    const rte_mbuf* m = pkts[n];
    const uint64_t need = uint64_t{m->pkt_len} + kNetHdrSize;
    // The caller's frame, not the guest's fault: one over kMaxFrame, or whose
    // segments do not add up to pkt_len (the copy below walks data_len and
    // must stay inside the buffers gathered for pkt_len), is dropped.
    if (m->pkt_len > kMaxFrame || !consistent(m)) {
      ++p.rx_stats.dropped;
      continue;
    }
    // Gather receive chains until the frame fits.
    const uint64_t bad_before = p.rx.stats().bad_total();
    uint32_t k = 0;
    uint64_t room = 0;
    const uint32_t max_chains = mrg_rxbuf_ ? kMaxMergeChains : 1;
    while (room < need && k < max_chains && p.rx.pop(&p.rx_chains[k])) {
      if (p.rx_chains[k].nreadable != 0) {
        p.rx.refuse(p.rx_chains[k], BadChain::kDirection);
        continue;
      }
      room += p.rx_chains[k].writable_bytes;
      ++k;
    }
    if (room < need) {
      if (!mrg_rxbuf_ && k == 1) {
        // Without MRG_RXBUF the frame must fit one buffer: it is lost and the
        // buffer goes back unused, as Linux vhost-net does.
        p.rx.push(p.rx_chains[0].head, 0);
        ++p.rx_stats.dropped;
        continue;
      }
      // The chains go back: for the next frame when this one can never fit
      // (more than kMaxMergeChains buffers), else for the next call. A queue
      // that parks chains takes them first in line; otherwise, when a bad
      // chain was completed in between, the ring cannot be rewound past it
      // and the gathered chains are returned empty.
      if (p.rx.parks()) {
        p.rx.give_back(p.rx_chains, k);
      } else if (p.rx.stats().bad_total() == bad_before) {
        p.rx.unpop(static_cast<uint16_t>(k));
      } else {
        for (uint32_t i = 0; i < k; ++i) p.rx.push(p.rx_chains[i].head, 0);
      }
      if (k == max_chains) {
        ++p.rx_stats.dropped;
        continue;
      }
      break;
    }
    // Header, then the mbuf's segments, filling each chain's buffers in order.
    VirtioNetHdr net_hdr{};
    net_hdr.num_buffers.set(static_cast<uint16_t>(k));
    uint8_t hdr[kNetHdrSize];
    encode(std::span<uint8_t>(hdr), net_hdr);
    uint32_t ci = 0, si = 0;  // chain and segment being filled
    uint64_t off = 0;         // offset in that segment
    uint32_t written = 0;     // bytes written into chain ci
    auto put = [&](const uint8_t* src, uint64_t len) {
      while (len > 0) {
        const Chain& c = p.rx_chains[ci];
        if (si == c.nsegs) {
          p.rx.push(c.head, written);
          ++ci;
          si = 0;
          off = 0;
          written = 0;
          continue;
        }
        const uint64_t take = std::min(len, c.segs[si].len - off);
        std::memcpy(reinterpret_cast<uint8_t*>(c.segs[si].addr) + off, src, take);
        src += take;
        len -= take;
        off += take;
        written += static_cast<uint32_t>(take);
        if (off == c.segs[si].len) {
          ++si;
          off = 0;
        }
      }
    };
    put(hdr, kNetHdrSize);
    for (const rte_mbuf* s = m; s != nullptr; s = s->next) put(rte_pktmbuf_mtod(s, const uint8_t*), s->data_len);
    p.rx.push(p.rx_chains[ci].head, written);
    // Chains gathered but not needed (possible only when the last one was
    // never touched) go back unused.
    for (uint32_t i = ci + 1; i < k; ++i) p.rx.push(p.rx_chains[i].head, 0);
    p.rx_stats.bytes += m->pkt_len;
    ++p.rx_stats.packets;
  }
  p.rx_irq |= p.rx.publish();
  return n;
}

}  // namespace vxlate::dataplane
