// vxlate/load/vhost_user_frontend.h: a vhost-user FRONT END (the VMM side of
// the protocol) for tests and load: it connects to any vhost-user-net back
// end's unix socket, drives it as QEMU 7.2 (>= 7.2.3) does with a vIOMMU, and
// plays the guest's virtio-net driver on the rings. A test double: it lives
// in vxlate::load, which no product target links.
//
// Control plane (shared/reference/vhost-user-notes.md 1.2-1.4, 3, 4). start()
// replays QEMU's sequence. vhost_dev_init, per queue pair: GET_FEATURES,
// GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES (MQ | REPLY_ACK | BACKEND_REQ
// as offered); pair 0 only: GET_QUEUE_NUM (with MQ), SET_BACKEND_REQ_FD (with
// BACKEND_REQ), SET_OWNER; GET_FEATURES again; per ring SET_VRING_CALL and
// SET_VRING_ERR. The guest's feature write: SET_VRING_ENABLE 1 for pair 0, 0
// for the others. DRIVER_OK (vhost_net_start): SET_VRING_ENABLE(1) restored
// for pair 0, then per pair SET_FEATURES, SET_MEM_TABLE (pair 0), per ring
// SET_VRING_NUM, SET_VRING_BASE(0), SET_VRING_ADDR, SET_VRING_KICK,
// SET_VRING_CALL (the guest notifier), and with an IOMMU one UPDATE for the
// first page of each used ring. Last, the guest's multiqueue command:
// SET_VRING_ENABLE(1) for pairs 1..N-1. SET_VRING_ENABLE goes out only when
// the back end offers VHOST_USER_F_PROTOCOL_FEATURES, as in QEMU. stop() is
// vhost_dev_stop: GET_VRING_BASE per ring; after it, as QEMU's unregistered
// IOMMU listener, unmap() sends nothing and a MISS gets no UPDATE.
//
// Every message is built from the layouts of vxlate/dataplane/vhost_user_wire.h,
// checked with the back end's own check_request() before it leaves (a refusal
// is a bug in this front end: std::logic_error), and sent with one sendmsg()
// carrying its descriptors in SCM_RIGHTS. Replies must have flags exactly
// 0x5, the request's id and the exact size, and a REPLY_ACK during setup must
// be 0; anything else throws std::runtime_error naming the message.
//
// vIOMMU. The front end keeps the guest IOMMU's IOVA -> GPA map in 4 KiB
// granules. map() records a mapping and sends nothing, as a real IOMMU: the
// back end learns it through a MISS, answered by serve_misses() with one
// 4 KiB UPDATE on the main channel (NEED_REPLY, ack awaited), or through
// prefetch_used_rings(). A MISS gets no answer, as in QEMU, when its IOVA is
// unmapped, when the mapping lacks the access (QEMU checks write access for
// any MISS perm but RO, read access for RO, and answers with the mapping's
// perm), or when the GPA is outside guest RAM. unmap() removes mappings and
// sends INVALIDATE with NEED_REPLY, blocking for the ack as QEMU's vCPU does,
// and records the ack latency. While waiting on the main channel it never
// reads the back-end channel (QEMU >= 7.2.3). By default rings and buffers
// live at IOVA = GPA - gpa_base + kIovaBase, distinct from GPAs and from
// front-end VAs, so a back end that confuses the spaces fails visibly.
//
// Data plane: the guest driver of queue pair qp, receiveq = ring 2qp,
// transmitq = ring 2qp+1, split rings (DriverQueue) with interrupts
// suppressed (the driver polls). Buffers are allocated once per ring at
// start() (queue_size each) and recycled; every frame carries the 12-byte
// virtio_net_hdr (VERSION_1 is required). With MRG_RXBUF, poll_rx gathers the
// num_buffers chains of a frame.
//
// Trade-off: against running QEMU with a guest, it starts in milliseconds,
// needs no VM, hugepages or root, is deterministic and exposes every message
// and counter, but reproduces only QEMU's order and blocking behaviour, not
// its timing: one thread drives control and misses, so a back end's MISS
// latency includes however long the caller takes to call serve_misses().
//
// Thread-safety contract. Control side (start, stop, disconnect, map, unmap,
// serve_misses, prefetch_used_rings, the feature and stats accessors): one
// thread; not thread-safe. Data side (post_rx, send, send_burst, poll_rx,
// reap_tx, pair_stats): queue pair qp belongs to one thread at a time;
// different pairs and the control side may run concurrently between start()
// returning and stop() being called, since the data side touches only its
// pair's rings, buffers and kick eventfds. Setup only: constructor, destructor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "vxlate/load/guest.h"

namespace vxlate::load {

// An area of guest memory the driver hands the device (dma_alloc_coherent for
// a ring area, dma_map for a buffer pool).
struct VhostUserDmaArea {
  enum Use : uint8_t { kRing, kRxBuffers, kTxBuffers } use;
  uint32_t ring;   // virtqueue index: 2qp (receiveq) or 2qp+1 (transmitq)
  uint64_t gpa;    // 4 KiB aligned
  uint64_t bytes;  // a multiple of 4 KiB
  uint8_t perm;    // what the device needs: RW for rings and receive buffers, RO for transmit buffers
};

struct VhostUserFrontendOptions {
  std::string path;               // back end's unix socket (it listens)
  uint16_t queue_pairs = 1;       // > 1 needs the back end's MQ
  uint32_t queue_size = 256;      // power of two
  uint64_t mem_bytes = 64 << 20;  // guest RAM (memfd), a multiple of 4 KiB
  uint64_t gpa_base = 0x1'0000'0000;  // guest-physical base, so GPA != front-end VA
  bool iommu = false;             // VIRTIO_F_ACCESS_PLATFORM: rings and buffers are IOVAs
  bool event_idx = false, indirect = false, mrg_rxbuf = true;  // wanted; negotiated if offered
  uint32_t rx_buf_len = 2048;     // each receive buffer (header included)
  uint32_t tx_buf_len = 2048;     // each transmit buffer: frames up to tx_buf_len - 12
  int reply_timeout_ms = 5000;    // a reply later than this throws (QEMU would wait forever)
  int connect_timeout_ms = 0;     // keep retrying a refused/absent socket this long (0: one try)
  bool prefetch_used_on_start = true;  // QEMU 7.2's UPDATE of each used ring's first page
  uint32_t drop_every_nth_miss = 0;    // 0: answer every mapped MISS; N: leave every Nth MISS unanswered
  bool garbage_invalidate_fields = false;  // INVALIDATE's uaddr/perm/padding as junk (QEMU's stack garbage)
  // iommu only: chooses the IOVA of one contiguous guest area (see
  // VhostUserDmaArea) and may call map() for it, or deliberately not. Called
  // from start(), per pair: receiveq ring area, receive buffers, transmitq
  // ring area, transmit buffers. Empty: iova = default_iova(gpa), mapped with
  // the area's perm.
  std::function<uint64_t(const VhostUserDmaArea&)> dma_map;
};

// Control-side counters.
struct VhostUserFrontendStats {
  uint64_t misses = 0;            // MISS messages read
  uint64_t misses_answered = 0;   // answered with an UPDATE
  uint64_t misses_unmapped = 0;   // no usable translation: no answer, as QEMU
  uint64_t misses_dropped = 0;    // left unanswered by drop_every_nth_miss
  uint64_t misses_stopped = 0;    // arrived after stop(): no answer, as QEMU
  uint64_t updates = 0;           // UPDATEs sent (misses and prefetch)
  uint64_t update_nacks = 0;      // UPDATE acks != 0
  uint64_t invalidates = 0;       // INVALIDATEs sent
  uint64_t invalidate_nacks = 0;  // INVALIDATE acks != 0
  uint64_t backend_unexpected = 0;  // back-end requests other than a MISS (QEMU: error reply)
  uint64_t backend_malformed = 0;   // framing errors: the channel is closed, as QEMU does
  std::vector<uint64_t> invalidate_ack_ns;  // INVALIDATE send -> ack, per message
  std::vector<uint64_t> update_ack_ns;      // UPDATE send -> ack, per message
  uint64_t misses_unanswered() const noexcept { return misses_unmapped + misses_dropped + misses_stopped; }
};

// Data-side counters of one queue pair.
struct VhostUserPairStats {
  uint64_t tx_frames = 0;     // frames posted
  uint64_t tx_completed = 0;  // transmit chains returned by the back end
  uint64_t tx_full = 0;       // send attempts without a free buffer or slot
  uint64_t rx_frames = 0;     // frames delivered to poll_rx's callback
  uint64_t rx_bytes = 0;      // their bytes, header excluded
  uint64_t rx_buffers = 0;    // receive buffers returned by the back end
  uint64_t rx_errors = 0;     // used entries shorter than the header or a bad num_buffers
  uint64_t kicks = 0;         // kick eventfd writes
};

class VhostUserFrontend {
 public:
  static constexpr uint64_t kPageSize = 4096;      // IOTLB granule of map()/UPDATE
  static constexpr uint64_t kIovaBase = 0x10000;   // default IOVA of gpa_base
  // Frames one send_burst() or poll_rx() handles at most per call.
  static constexpr size_t kMaxBurst = 64;

  // Setup only. Creates guest RAM; connects nothing. Throws
  // std::invalid_argument for bad options, std::system_error for memfd.
  explicit VhostUserFrontend(VhostUserFrontendOptions o);
  // Setup only. disconnect().
  ~VhostUserFrontend();
  VhostUserFrontend(const VhostUserFrontend&) = delete;
  VhostUserFrontend& operator=(const VhostUserFrontend&) = delete;

  // Control side. Connects, negotiates and starts every queue pair (file
  // note). Once per object. Throws std::runtime_error naming the message on a
  // connect failure, a feature the back end lacks (VERSION_1; with iommu: bit
  // 33, REPLY_ACK, BACKEND_REQ; MQ or enough queues for queue_pairs > 1), a
  // malformed or late reply, or a non-zero REPLY_ACK.
  void start();
  // Control side. GET_VRING_BASE for every ring, in ring order (vhost_dev_stop);
  // returns the back end's next avail index per ring. The data side must be
  // idle. Throws std::runtime_error like start().
  std::vector<uint32_t> stop();
  // Control side. Closes the sockets and eventfds; idempotent.
  void disconnect();

  // Control side (iommu). Records IOVA -> GPA, all three 4 KiB aligned, size
  // > 0, not overlapping an existing mapping (std::invalid_argument else).
  // Sends nothing.
  void map(uint64_t iova, uint64_t gpa, uint64_t size, uint8_t perm);
  // Control side (iommu). Removes every mapping byte in [iova, iova + size)
  // (splitting mappings at the edges; size 0 means the whole space, as
  // virtio-iommu's full unmap; an end past 2^64 saturates) and, between
  // start() and stop(), sends INVALIDATE {iova, size} verbatim with
  // NEED_REPLY and blocks for the ack. Returns false when the ack was
  // non-zero. Throws std::runtime_error on a protocol failure.
  bool unmap(uint64_t iova, uint64_t size);
  // Control side. Reads every message waiting on the back-end channel, waiting
  // up to timeout_ms for the first one (0: non-blocking), and answers each
  // MISS that has a usable mapping with an UPDATE (page-aligned iova, 4 KiB,
  // uaddr = this process's VA of the GPA, the mapping's perm; NEED_REPLY, ack
  // awaited). Returns the number answered.
  size_t serve_misses(int timeout_ms = 0);
  // Control side (iommu, started). QEMU 7.2's vhost_dev_start tail: an UPDATE
  // for the first page of each ring's used area, if mapped.
  void prefetch_used_rings();

  // Control side. Default IOVA of a guest-physical address.
  uint64_t default_iova(uint64_t gpa) const noexcept { return gpa - opts_.gpa_base + kIovaBase; }
  // Control side. Guest RAM (for callers that place their own buffers).
  GuestMemory& memory() noexcept { return *mem_; }
  // Control side, after start(). Features the back end offered and those acked
  // (SET_FEATURES, bit 30 included); protocol features offered and acked.
  uint64_t offered_features() const noexcept { return offered_features_; }
  uint64_t features() const noexcept { return features_; }
  uint64_t offered_protocol_features() const noexcept { return offered_protocol_; }
  uint64_t protocol_features() const noexcept { return protocol_features_; }
  // Control side.
  const VhostUserFrontendStats& stats() const noexcept { return stats_; }

  // Data side, queue pair qp < queue_pairs, after start(). Posts up to n free
  // receive buffers (burst); returns how many were posted.
  size_t post_rx(uint16_t qp, size_t n);
  // Data side. Writes a zeroed 12-byte virtio_net_hdr and `frame` into a free
  // transmit buffer, posts and publishes it, kicking when the back end wants
  // it. Reaps completed transmit chains first when none is free. False when
  // no buffer is free or the frame is over tx_buf_len - 12 bytes.
  bool send(uint16_t qp, std::span<const uint8_t> frame);
  // Data side. Burst of up to kMaxBurst frames, one publish; returns how many
  // were posted (stops at the first that does not fit).
  size_t send_burst(uint16_t qp, std::span<const std::span<const uint8_t>> frames);
  // Data side. Takes up to kMaxBurst received frames, calls fn(frame) for
  // each (header stripped; the span lives only during the call; merged
  // buffers gathered), and returns their buffers to the free pool (repost them
  // with post_rx()). Returns the number of frames delivered.
  size_t poll_rx(uint16_t qp, const std::function<void(std::span<const uint8_t>)>& fn);
  // Data side. Takes completed transmit chains; returns how many.
  size_t reap_tx(uint16_t qp);
  // Data side (qp's owner).
  const VhostUserPairStats& pair_stats(uint16_t qp) const noexcept;

 private:
  struct Mapping {
    uint64_t size;
    uint64_t gpa;
    uint8_t perm;
  };
  struct Pool;  // a ring's buffers
  struct Pair;  // a queue pair's rings, buffers, eventfds and counters

  void connect_main();
  void init_pair(uint16_t qp);
  void start_pair(uint16_t qp);
  uint64_t dma(const VhostUserDmaArea& area);
  // Sends one message (header + payload) with its descriptors; `need_reply`
  // sets NEED_REPLY. Checks it with check_request() first.
  void send_request(uint32_t request, std::span<const uint8_t> payload, std::span<const int> fds = {},
                    bool need_reply = false);
  // Reads the reply to `request`: flags exactly 0x5, exactly `size` bytes.
  std::vector<uint8_t> read_reply(uint32_t request, uint32_t size);
  uint64_t get_u64(uint32_t request);
  void send_u64(uint32_t request, uint64_t v, std::span<const int> fds = {});
  void send_state(uint32_t request, uint32_t index, uint32_t num);
  // Waits for a REPLY_ACK; returns its u64.
  uint64_t read_ack(uint32_t request);
  // Answers a MISS-like lookup of `iova` needing write (else read) access with
  // an UPDATE; false when there is no usable translation.
  bool send_update(uint64_t iova, bool write);
  void handle_backend_message(uint32_t request, uint32_t flags, std::span<const uint8_t> payload, size_t* answered);
  void close_backend_channel();
  const Mapping* lookup(uint64_t iova, uint64_t* start) const;
  void kick(Pair& p, int ring);

  VhostUserFrontendOptions opts_;
  std::unique_ptr<GuestMemory> mem_;
  enum class State : uint8_t { kIdle, kStarted, kStopped } state_ = State::kIdle;
  int sock_ = -1;          // main channel
  int backend_fd_ = -1;    // our end of the back-end channel
  std::vector<uint8_t> backend_buf_;  // partial back-end messages
  uint64_t offered_features_ = 0;
  uint64_t features_ = 0;
  uint64_t offered_protocol_ = 0;
  uint64_t protocol_features_ = 0;
  bool reply_ack_ = false;
  std::map<uint64_t, Mapping> iova_map_;  // by IOVA; non-overlapping
  uint64_t miss_seq_ = 0;
  VhostUserFrontendStats stats_;
  std::vector<std::unique_ptr<Pair>> pairs_;
};

}  // namespace vxlate::load
