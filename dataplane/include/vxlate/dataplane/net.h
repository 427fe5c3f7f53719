// vxlate/dataplane/net.h: the device side of virtio-net's queues, with a burst
// API shaped like rte_vhost's, so a vSwitch can call it directly.
//
// Queue pair q is virtqueue 2q (receiveq: host to guest) and 2q+1 (transmitq:
// guest to host). dequeue_burst() pops transmit chains, translates every
// descriptor through the engine (the IOTLB with VIRTIO_F_ACCESS_PLATFORM, the
// memory table without) and copies the frame after the 12-byte
// virtio_net_hdr into mbufs from the caller's mempool, as rte_vhost's dequeue
// does; the chains go back with used length 0. enqueue_burst() copies mbufs
// into receive buffers: with VIRTIO_NET_F_MRG_RXBUF a frame spans as many
// chains as it needs (num_buffers in the header), else it must fit one chain.
// Like rte_vhost it neither frees nor keeps the caller's mbufs on enqueue.
//
// A bad chain is completed with length 0 and counted (Virtqueue's reasons; a
// transmit chain with writable buffers, a receive chain with readable ones or
// a frame shorter than the header: kDirection). A frame that finds too few
// receive buffers stays with the caller (the return value says how many were
// taken), as rte_vhost_enqueue_burst does.
//
// Thread-safety contract (the fixed tags of docs/design.md). Reader side:
// each queue pair is owned by one data-plane lcore, a
// registered reader of the Device's Rcu that is online while it calls
// dequeue_burst()/enqueue_burst() and reports a quiescent state between calls,
// never inside one (pointers into guest memory live only inside a call).
// Wait-free apart from the mempool; no allocation beyond mbufs; nothing throws.
// Each burst is a read section (Rcu::ReadSection), so debug builds catch a
// quiescent report inside one. Setup only: construction. Any thread: the
// stats accessors once the owner has stopped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "vxlate/common/le.h"
#include "vxlate/dataplane/virtqueue.h"
#include "vxlate/engine/device.h"

namespace vxlate::dataplane {

// struct virtio_net_hdr_mrg_rxbuf (VERSION_1: always 12 bytes).
// struct virtio_net_hdr (virtio spec 5.1.6, VERSION_1: num_buffers always
// present), the header before every frame in both directions.
struct VirtioNetHdr {
  uint8_t flags;
  uint8_t gso_type;
  Le16 hdr_len;
  Le16 gso_size;
  Le16 csum_start;
  Le16 csum_offset;
  Le16 num_buffers;
};
static_assert(offsetof(VirtioNetHdr, hdr_len) == 2 && offsetof(VirtioNetHdr, csum_start) == 6 &&
              offsetof(VirtioNetHdr, num_buffers) == 10 && sizeof(VirtioNetHdr) == 12);
inline constexpr uint32_t kNetHdrSize = sizeof(VirtioNetHdr);
inline constexpr uint32_t kNetHdrNumBuffersOffset = offsetof(VirtioNetHdr, num_buffers);
// Largest frame either direction accepts: a 64 KiB GSO frame plus headers.
inline constexpr uint32_t kMaxFrame = 65536 + 256;
// Receive chains one frame may merge (kMaxFrame over 1 KiB buffers).
inline constexpr uint32_t kMaxMergeChains = 66;
// Frames one burst call handles (rte_vhost's MAX_PKT_BURST).
inline constexpr uint16_t kMaxNetBurst = 32;

struct NetQueueStats {
  uint64_t packets = 0;
  uint64_t bytes = 0;        // frame bytes, header excluded
  uint64_t dropped = 0;      // frames lost: too big for the receive chain without MRG_RXBUF
  uint64_t no_mbuf = 0;      // transmit chains left in the ring for want of mbufs
};

class NetDevice {
 public:
  // queues: receiveq/transmitq configs in virtqueue order (2 per pair).
  // Throws std::invalid_argument for an odd count.
  NetDevice(engine::Device& dev, std::span<const QueueConfig> queues, bool mrg_rxbuf);

  uint16_t queue_pairs() const noexcept { return static_cast<uint16_t>(pairs_.size()); }

  // Reader side (see contract): guest-to-host frames of pair `qp` into up to
  // `count` (<= kMaxNetBurst) mbufs from mp. Returns how many.
  uint16_t dequeue_burst(uint32_t reader, uint16_t qp, rte_mempool* mp, rte_mbuf** pkts, uint16_t count) noexcept;
  // Reader side: host-to-guest frames; returns how many were taken: copied,
  // or dropped and counted (a frame over kMaxFrame, one that needs more than
  // kMaxMergeChains receive chains, or without MRG_RXBUF one that does not fit
  // a single chain). The caller still owns and
  // frees every mbuf; those past the return value found no receive buffers.
  uint16_t enqueue_burst(uint32_t reader, uint16_t qp, rte_mbuf* const* pkts, uint16_t count) noexcept;

  // Owner (or anyone once the owner stopped).
  const Virtqueue& rxq(uint16_t qp) const noexcept { return pairs_[qp]->rx; }
  const Virtqueue& txq(uint16_t qp) const noexcept { return pairs_[qp]->tx; }
  // Owner: the queues themselves (set_base() before the first burst,
  // take_miss() between bursts).
  Virtqueue& rxq(uint16_t qp) noexcept { return pairs_[qp]->rx; }
  Virtqueue& txq(uint16_t qp) noexcept { return pairs_[qp]->tx; }
  // Owner, between bursts: whether the driver asked for an interrupt for the
  // used entries published since the last call, per queue; clears both.
  void take_interrupts(uint16_t qp, bool* rx, bool* tx) noexcept {
    Pair& p = *pairs_[qp];
    *rx = p.rx_irq;
    *tx = p.tx_irq;
    p.rx_irq = p.tx_irq = false;
  }
  const NetQueueStats& rx_stats(uint16_t qp) const noexcept { return pairs_[qp]->rx_stats; }
  const NetQueueStats& tx_stats(uint16_t qp) const noexcept { return pairs_[qp]->tx_stats; }
  uint64_t interrupts(uint16_t qp) const noexcept { return pairs_[qp]->rx.stats().interrupts + pairs_[qp]->tx.stats().interrupts; }

 private:
  struct Pair {
    Pair(engine::Device& dev, const QueueConfig& rxc, const QueueConfig& txc) : rx(dev, rxc), tx(dev, txc) {}
    Virtqueue rx;
    Virtqueue tx;
    NetQueueStats rx_stats;
    NetQueueStats tx_stats;
    bool rx_irq = false;  // publish() asked for an interrupt since take_interrupts()
    bool tx_irq = false;
    Chain tx_chain;
    Chain rx_chains[kMaxMergeChains];
  };
  bool to_mbuf(const Chain& c, rte_mempool* mp, rte_mbuf** out) noexcept;

  Rcu& rcu_;  // the Device's: read sections for the debug checks
  bool mrg_rxbuf_;
  std::vector<std::unique_ptr<Pair>> pairs_;
};

}  // namespace vxlate::dataplane
