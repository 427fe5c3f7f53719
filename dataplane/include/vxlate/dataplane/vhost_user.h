// vxlate/dataplane/vhost_user.h: a vhost-user-net back end whose translation
// path is vxlate's engine, with a device IOTLB (shared/reference/
// vhost-user-notes.md has the protocol as QEMU 7.2 and DPDK 22.11 speak it).
//
// A Port is one vhost-user-net device: the messages of its front end (QEMU, or
// DPDK's virtio-user) on the control side, and an rte_vhost-shaped burst API
// (dequeue_burst/enqueue_burst per queue pair) on the reader side. A Backend
// owns the ports' unix sockets (server or client, client reconnecting with
// back-off) and one control thread that serves every port's messages.
//
// Address modes. Without VIRTIO_F_ACCESS_PLATFORM, ring addresses are front-end
// virtual addresses, translated once when a queue starts, and descriptor
// addresses are guest-physical, translated through the engine's memory table.
// With it, every address is an IOVA, translated per burst through the port's
// engine::Device acting as a device IOTLB: UPDATE caches IOVA -> front-end
// virtual address (which must lie in one memory region; the memory table then
// maps it to ours), INVALIDATE removes and is acknowledged only after one
// grace period of the Rcu over every data-plane lcore, so that no lcore uses
// the translation after the front end sees the ack. The grace period never
// waits on the front end: lcores never block on it.
//
// Misses. A chain whose buffer (or a ring whose area) does not translate stays
// in its ring (Virtqueue hold_on_miss): a host-to-guest frame that finds no
// translated receive buffer stays with the caller (enqueue_burst takes fewer),
// never dropped for a miss. The lcore leaves the missing page in a per-ring
// mailbox and wakes the control thread, which sends one IOTLB MISS per page
// on the back-end channel (no NEED_REPLY, MSG_DONTWAIT, no lock held) and
// sends it again only after kMissRetry without an UPDATE (QEMU answers nothing
// for an IOVA the guest has not mapped), and once the front end has read the
// first.
//
// Data-plane state is one immutable Session per port, published through an
// atomic pointer: the queue pairs that run (both rings configured, kicked and
// enabled, memory mapped) with their Virtqueues. Any message that changes a
// running ring, the features or the memory unpublishes it, waits one grace
// period (no lcore is inside a burst on it any more), reads the rings' avail
// indices back, applies the change and publishes a new Session. So
// GET_VRING_BASE returns an index no lcore will move again, a new memory table
// is mapped before and the old one unmapped after no lcore can use it, and a
// disconnect leaves no mapping, fd or translation behind. The device IOTLB is
// flushed on GET_VRING_BASE, on a new memory table and on disconnect (QEMU
// sends no invalidations for a stopped device).
//
// Hostile front ends: every message passes check_header()/check_request()
// (vhost_user_wire.h) and the rules here (features within the offer,
// messages the negotiated features allow, memory regions that fit their file,
// rings inside memory, IOTLB updates inside one region). A refused message
// with NEED_REPLY gets a failure reply; any other refused message closes that
// connection. Every descriptor that came with a message is closed on every
// path that does not keep it. Other ports are untouched.
//
// Thread-safety contract (the fixed tags of docs/design.md):
//   - Reader side: Port::dequeue_burst(), Port::enqueue_burst(): each queue
//     pair of a port owned by one lcore at a time, a registered reader of the
//     Rcu that is online during the call and reports quiescent states between
//     calls (never inside one); wait-free apart from the mempool and, on a
//     miss or an interrupt, one eventfd write. Nothing allocates or throws.
//   - Control side: Port::handle_message(), Port::service(), Port::disconnect(),
//     all of a port's messages from one thread at a time (the Backend's control
//     thread, or a test or fuzz driver that has no Backend).
//   - Any thread: Port::stats(), Port::running(), Port::config().
//   - Setup only: construction, Backend::add_port(), start(), stop(),
//     destruction (no lcore may still call a port's bursts).
#pragma once

#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "vxlate/common/rcu.h"
#include "vxlate/dataplane/net.h"
#include "vxlate/dataplane/vhost_user_wire.h"
#include "vxlate/engine/device.h"

namespace vxlate::dataplane::vhost_user {

// Queue pairs one port offers at most (GET_QUEUE_NUM); each costs two
// mailboxes and counters, and a NetDevice while it runs.
inline constexpr uint16_t kMaxQueuePairs = 16;
inline constexpr uint32_t kMaxVrings = 2 * kMaxQueuePairs;
// How long a MISS stays unanswered before the same page is asked for again,
// and then only once the front end has read everything the back-end channel
// carried before (SIOCOUTQ is 0; Port::service()). A retry queued behind an
// unread first MISS raced with it: QEMU answers the first, the chain
// completes, the guest unmaps the page and maps it again (another buffer,
// other permissions) before QEMU reads the second, and the second makes the
// guest's IOMMU log a DMA fault (one e2e_vm strict run on a loaded machine:
// 81 retries at 20 ms and 6 guest DMA faults, write MISSes for a page by then
// mapped read-only). QEMU 7.2.3 and later (Debian 12 has 7.2.22) handle a
// MISS whole, UPDATE sent and acknowledged, before reading the next message
// (7.2.0-7.2.2 served the channel again while waiting for the UPDATE's ack:
// notes section 4, hazard 3), so a retry it reads after the first can
// only meet a page the first left unanswered. What is left of the race: the
// retry goes out after QEMU has read the first but before its UPDATE reaches
// this control thread, and the guest then completes, unmaps and remaps the
// page between QEMU's ack and its next read of the channel: a window of one
// message's handling, not of a queue of them. 100 ms keeps retries of
// slow answers under TCG rare, short beside what a MISS that was really lost
// (sent while the device was stopped, or refused) costs.
inline constexpr std::chrono::milliseconds kMissRetry{100};
// Pages with a MISS outstanding per port; past it the oldest are forgotten
// (and asked for again when a ring still needs them).
inline constexpr size_t kMaxPendingMisses = 4096;
// Misses one ring may have waiting for the control thread (its mailbox), and
// chains one prefetch() looks at per ring.
inline constexpr uint32_t kMissSlots = 8;
inline constexpr uint32_t kPrefetchChains = 32;

// Feature bits this back end offers (virtio and vhost-user).
inline constexpr uint64_t kFeatureProtocolFeatures = uint64_t{1} << 30;
inline constexpr uint64_t kNetFeatureMq = uint64_t{1} << 22;
inline constexpr uint64_t kProtocolMq = uint64_t{1} << 0;
inline constexpr uint64_t kProtocolReplyAck = uint64_t{1} << 3;
inline constexpr uint64_t kProtocolBackendReq = uint64_t{1} << 5;

struct PortConfig {
  std::string path;          // the unix socket
  bool client = false;       // connect to path (reconnecting) rather than listen on it
  uint16_t queue_pairs = 1;  // offered (GET_QUEUE_NUM), 1..kMaxQueuePairs
  bool iommu = true;         // offer VIRTIO_F_ACCESS_PLATFORM (device IOTLB)
  // With the device IOTLB: a receive buffer that misses is set aside until
  // its UPDATE and the frames go on into the buffers behind it, completed out
  // of order (virtqueue.h, "Out-of-order completion"), instead of waiting in
  // the ring with everything behind it. Whenever the data plane stops (any
  // message that changes a running ring, the features or the memory;
  // GET_VRING_BASE; a disconnect) every pair's set-aside buffers are first
  // completed empty (the guest's driver drops a short frame and reposts), so
  // the index GET_VRING_BASE reports is where the front end resumes. Off by
  // default: a front end that resumes after a back end that died (QEMU's
  // reconnect, from used.idx) would be offered completed buffers again and
  // lose the set-aside ones, where an in-order ring loses nothing.
  bool rx_out_of_order = false;
};

// Counters of one port, summed over its queue pairs and connections. Frames:
// rx = host to guest (enqueue_burst), tx = guest to host (dequeue_burst).
struct PortStats {
  uint64_t rx_packets = 0, rx_bytes = 0, rx_dropped = 0;
  uint64_t rx_held = 0;       // frames that had to wait for a receive buffer's MISS (counted when they start waiting)
  uint64_t rx_parked = 0;     // rx_out_of_order: receive buffers set aside for a MISS (each counted once)
  uint64_t rx_parked_returned = 0;  // ... completed empty when their ring stopped
  uint64_t rx_parked_lost = 0;      // ... not completed at a stop: the used ring did not translate
  uint64_t tx_packets = 0, tx_bytes = 0, tx_no_mbuf = 0;
  uint64_t bad_chains = 0;    // chains completed empty (virtqueue.h reasons)
  uint64_t ring_misses = 0;   // bursts that found a ring area untranslated
  uint64_t interrupts = 0;    // call eventfd writes
  uint64_t miss_posts = 0;    // misses the lcores left for the control thread
  uint64_t connects = 0, disconnects = 0, messages = 0, refused = 0;
  uint64_t updates = 0, updates_refused = 0, invalidates = 0;
  uint64_t ack_ns_total = 0, ack_ns_max = 0;  // INVALIDATE: message read to ack sent
  uint64_t misses_sent = 0, misses_deduped = 0, misses_retried = 0, misses_unsent = 0;
  uint64_t misses_stale = 0;  // left by an lcore, answered before they went out: not sent
  uint64_t misses_held = 0;   // retries not sent: the front end had not read the first yet
  uint64_t iotlb_flushes = 0;
  uint64_t iotlb_hits = 0, iotlb_lookups = 0;  // the device IOTLB's caches (all lcores)
  uint64_t sessions = 0;      // data-plane sessions published
};

class Port {
 public:
  // What the control side does with a connection after a message.
  enum class Action { kContinue, kClose };

  // Setup only. `rcu`: the Rcu whose readers call the bursts. `wake_fd`: an
  // eventfd the lcores write to when they leave a miss (-1: none; the owner
  // then calls service() on its own schedule). Throws std::invalid_argument
  // for a bad config.
  Port(Rcu& rcu, const PortConfig& cfg, int wake_fd = -1);
  ~Port();
  Port(const Port&) = delete;
  Port& operator=(const Port&) = delete;

  // --- reader side --------------------------------------------------------

  // Guest-to-host frames of queue pair qp into up to `count` mbufs from mp;
  // returns how many (0 while the pair does not run).
  uint16_t dequeue_burst(uint32_t reader, uint16_t qp, rte_mempool* mp, rte_mbuf** pkts, uint16_t count) noexcept;
  // Host-to-guest frames; returns how many were taken (copied, or dropped
  // and counted: too big for the buffers). The caller keeps ownership of
  // every mbuf and frees them; those past the return value found no (or no
  // translated) receive buffer and may be offered again.
  uint16_t enqueue_burst(uint32_t reader, uint16_t qp, rte_mbuf* const* pkts, uint16_t count) noexcept;
  // Whether the last enqueue_burst() on qp left frames because a receive
  // buffer's translation is missing (a MISS is out: offer them again, they
  // go once the UPDATE arrives) rather than for want of buffers.
  bool rx_waiting_for_miss(uint16_t qp) const noexcept;
  // Miss-ahead: looks at the buffers the guest posted on qp's rings that no
  // burst has reached yet and asks for the translations they miss, so that
  // the first frame finds them. For the poll loop's idle moments (cheap when
  // nothing new was posted: the ring translations and one index load).
  void prefetch(uint32_t reader, uint16_t qp) noexcept;

  // --- control side ---------------------------------------------------------

  // One message of the front end: `h` already read, `payload` exactly
  // h.size bytes, `fds` the descriptors that came with it (ownership passes
  // to the port: each is kept or closed). Writes the reply, if any, into
  // *reply (cleared first). kClose: the connection must be closed (then call
  // disconnect()).
  Action handle_message(const Header& h, std::span<const uint8_t> payload, std::span<const int> fds,
                        std::vector<uint8_t>* reply);
  // Sends the misses the lcores left (deduplicated, retried after
  // kMissRetry); returns when the next retry is due (or time_point::max()).
  std::chrono::steady_clock::time_point service(std::chrono::steady_clock::time_point now);
  // A front end connected (counted; the port starts from a clean state).
  void connected();
  // The connection is gone: stops the data plane, forgets every translation,
  // unmaps memory, closes every descriptor; ready for the next connection.
  void disconnect();

  // --- any thread ---------------------------------------------------------

  const PortConfig& config() const noexcept { return cfg_; }
  // A data-plane session is published (some queue pair runs).
  bool running() const noexcept { return session_.load(std::memory_order_acquire) != nullptr; }
  // A front end is connected (it may be between sessions: reconfiguring a
  // ring restarts the session for a moment).
  bool attached() const noexcept { return attached_.load(std::memory_order_relaxed); }
  // Relaxed sums; exact once the lcores and the control thread are quiet.
  PortStats stats() const noexcept;
  // The data-plane counters of one queue pair (the frame, chain, miss and
  // interrupt fields; the rest 0).
  PortStats pair_stats(uint16_t qp) const noexcept;
  // The features and protocol features this port offers.
  uint64_t offered_features() const noexcept;
  uint64_t offered_protocol_features() const noexcept;

 private:
  struct Session;
  struct Vring {
    uint32_t num = 0;
    uint16_t base = 0;
    bool addr_set = false;
    uint64_t desc = 0, avail = 0, used = 0;
    bool kicked = false;        // SET_VRING_KICK seen since the last stop
    bool enable_set = false;    // SET_VRING_ENABLE seen
    bool enabled = false;
    int kick_fd = -1, call_fd = -1, err_fd = -1;
  };
  struct Mapping {
    uint64_t gpa = 0, size = 0, uaddr = 0;  // as the front end sent them
    void* base = nullptr;                   // our mmap of the region's file
    size_t len = 0;
    uint64_t hva = 0;  // our address of the region's first byte
  };
  // One counter block per queue pair: written by its owning lcore with
  // relaxed stores (one writer), read by stats() anywhere.
  struct alignas(64) PairCounters {
    std::atomic<uint64_t> rx_packets{0}, rx_bytes{0}, rx_dropped{0}, rx_held{0}, rx_parked{0};
    std::atomic<uint64_t> tx_packets{0}, tx_bytes{0}, tx_no_mbuf{0};
    std::atomic<uint64_t> bad_chains{0}, ring_misses{0}, interrupts{0}, miss_posts{0};
  };
  // Control counters: written by the control side only (relaxed).
  struct ControlCounters {
    std::atomic<uint64_t> connects{0}, disconnects{0}, messages{0}, refused{0};
    std::atomic<uint64_t> updates{0}, updates_refused{0}, invalidates{0}, ack_ns_total{0}, ack_ns_max{0};
    std::atomic<uint64_t> misses_sent{0}, misses_deduped{0}, misses_retried{0}, misses_unsent{0}, misses_stale{0};
    std::atomic<uint64_t> misses_held{0};
    std::atomic<uint64_t> iotlb_flushes{0}, sessions{0};
    std::atomic<uint64_t> rx_parked_returned{0}, rx_parked_lost{0};
  };

  // Control side (vhost_user.cpp).
  Action refuse(const Header& h, std::vector<uint8_t>* reply);
  void reply_u64(const Header& h, uint64_t v, std::vector<uint8_t>* reply);
  bool set_features(uint64_t features);
  bool set_mem_table(std::span<const uint8_t> payload, std::span<const int> fds);
  bool iotlb_msg(const IotlbMsg& m);
  bool ring_in_memory(uint64_t uaddr, uint64_t len, uint64_t* hva) const noexcept;
  bool rebuild_mem_table();
  void stop_session();
  void start_session();
  void flush_iotlb();
  void forget_misses(uint64_t iova, uint64_t size);
  // Whether the front end has read everything sent on the back-end channel.
  bool backend_drained() const noexcept;
  void unmap_all();
  void reset_vring(Vring& v);
  bool iommu_mode() const noexcept { return (features_ & kFeatureAccessPlatform) != 0; }

  // Reader side helpers.
  void after_burst(const Session& s, uint16_t qp, bool rx) noexcept;
  bool post_miss(Session& s, uint32_t ring, const Miss& m) noexcept;

  Rcu& rcu_;
  const PortConfig cfg_;
  const int wake_fd_;
  engine::Device dev_;  // the memory table, and the device IOTLB (endpoint 0)

  // Control only.
  uint64_t features_ = 0;           // acked (SET_FEATURES)
  uint64_t protocol_features_ = 0;  // acked (SET_PROTOCOL_FEATURES)
  bool protocol_negotiated_ = false;
  bool features_set_ = false;
  bool owner_ = false;
  int backend_fd_ = -1;
  std::vector<Mapping> maps_;
  Vring vrings_[kMaxVrings];
  std::unordered_map<uint64_t, std::chrono::steady_clock::time_point> pending_misses_;  // key: page | perm

  // Reader-visible. release store in start_session()/stop_session(), acquire
  // load at the start of each burst.
  std::atomic<Session*> session_{nullptr};
  std::atomic<bool> attached_{false};  // relaxed: a hint for the caller's drop policy
  // Bumped after every INVALIDATE and flush (relaxed: a hint read by
  // post_miss(), which re-posts a page at once when it changed).
  std::atomic<uint32_t> inval_gen_{0};
  // Per ring, kMissSlots slots: misses left by the owning lcore (page |
  // access << 1 | 1; 0: empty). The lcore fills empty slots (release), the
  // control side empties them (exchange, acquire).
  std::unique_ptr<std::atomic<uint64_t>[]> miss_box_;
  std::unique_ptr<PairCounters[]> counters_;
  ControlCounters ctl_;
};

// The sockets and the control thread of a set of ports.
class Backend {
 public:
  // Setup only. `rcu`: the Rcu the lcores that call the ports' bursts read.
  explicit Backend(Rcu& rcu);
  ~Backend();  // stop()
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  // Setup only, before start(): a port; a server port's socket is bound and
  // listening on return (an old socket file at the path is replaced). Throws
  // std::system_error (socket), std::invalid_argument (config).
  Port& add_port(const PortConfig& cfg);
  // Setup only: starts the control thread, restricted to `cpus` when given.
  // Every INVALIDATE's ack and every MISS waits on this thread: a vSwitch
  // keeps it off the CPUs its lcores busy-poll, as DPDK keeps its control
  // threads (rte_ctrl_thread_create), or the guest's unmap waits for the
  // scheduler to preempt a polling lcore. Throws std::system_error when the
  // affinity cannot be set.
  void start(const cpu_set_t* cpus = nullptr);
  // Setup only: stops the control thread, disconnects every port.
  void stop();

  size_t port_count() const noexcept { return ports_.size(); }
  Port& port(size_t i) noexcept;

 private:
  struct Endpoint;  // a port's sockets
  void run();
  void accept_on(Endpoint& e);
  bool try_connect(Endpoint& e);
  void serve(Endpoint& e);
  void close_conn(Endpoint& e);
  void watch(int fd, Endpoint* e);

  Rcu& rcu_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: lcores left a miss
  int stop_fd_ = -1;  // eventfd: stop()
  std::vector<std::unique_ptr<Endpoint>> ports_;
  std::thread thread_;
};

}  // namespace vxlate::dataplane::vhost_user
