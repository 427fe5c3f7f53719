#include "vxlate/dataplane/netperf.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_pause.h>

#include "vxlate/common/rcu.h"
#include "vxlate/dataplane/guest.h"
#include "vxlate/dataplane/iommu_queues.h"
#include "vxlate/dataplane/net.h"
#include "vxlate/engine/device.h"

namespace vxlate::dataplane {

const char* to_string(Workload w) noexcept {
  switch (w) {
    case Workload::kTcpStream: return "tcp_stream";
    case Workload::kUdpStream64: return "udp_stream_64";
    case Workload::kTcpRr: return "tcp_rr";
  }
  return "?";
}

const char* to_string(Mode m) noexcept {
  switch (m) {
    case Mode::kIdentity: return "identity";
    case Mode::kLazy: return "lazy";
    case Mode::kStrict: return "strict";
  }
  return "?";
}

bool parse_workload(std::string_view s, Workload* w) noexcept {
  for (Workload x : {Workload::kTcpStream, Workload::kUdpStream64, Workload::kTcpRr})
    if (s == to_string(x)) return *w = x, true;
  return false;
}

bool parse_mode(std::string_view s, Mode* m) noexcept {
  for (Mode x : {Mode::kIdentity, Mode::kLazy, Mode::kStrict})
    if (s == to_string(x)) return *m = x, true;
  return false;
}

bool init_eal(const char* argv0, unsigned lcores) {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::string cpus;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) {
        if (!cpus.empty()) cpus.push_back(',');
        cpus.append(std::to_string(c));
      }
  }
  if (cpus.empty()) cpus.push_back('0');
  // Lcores 0..n-1 float over every CPU we may use: with more lcores than CPUs
  // (2-core machines) the loops below yield when idle.
  char map[512];
  std::snprintf(map, sizeof map, "(0-%u)@(%s)", lcores - 1, cpus.c_str());
  std::vector<std::string> args = {argv0, "--no-huge", "--no-pci", "--no-shconf", "-m", "256", "--no-telemetry",
                                   "--log-level", "lib.eal:error", "--lcores", map};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0) {
    std::fprintf(stderr, "vxlate: rte_eal_init failed: %s\n", rte_strerror(rte_errno));
    return false;
  }
  return true;
}

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kGpaBase = 0x40000000;
constexpr uint32_t kDomain = 1;
constexpr uint32_t kNetEndpoint = 1;
constexpr uint32_t kRxBufLen = 2048;      // mergeable receive buffer
constexpr uint32_t kTcpHdr = 66;          // Ethernet + IPv4 + TCP with timestamps
constexpr uint32_t kUdpHdr = 42;          // Ethernet + IPv4 + UDP
constexpr uint32_t kMss = 1448;
constexpr uint32_t kSendSize = 65536;     // one TCP_STREAM send
constexpr uint8_t kPoison = 0xa5;
constexpr size_t kMaxRttSamples = 1 << 20;
// Idle poll iterations before the device lcore goes offline for a moment
// (a few hundred microseconds of nothing to do).
constexpr unsigned kIdleBeforeOffline = 1u << 16;

// Yields after a short spin: several busy lcores may share one CPU.
struct Backoff {
  unsigned spins = 0;
  void idle() {
    rte_pause();
    if (++spins % 256 == 0) sched_yield();
  }
  void reset() { spins = 0; }
};

void pause_idle() {
  thread_local Backoff b;
  b.idle();
}

// --- frames ----------------------------------------------------------------------
// Ethernet | IPv4 | TCP or UDP | payload. The 32-bit sequence number (TCP seq,
// or the first payload word for UDP) and a payload pattern derived from it let
// the peer check every frame.

uint32_t l4_hdr(Workload w) { return w == Workload::kUdpStream64 ? kUdpHdr : kTcpHdr; }

void write_frame(uint8_t* f, Workload w, uint16_t qp, uint32_t seq, uint32_t payload, uint32_t ack = 0) {
  const uint32_t hdr = l4_hdr(w);
  std::memset(f, 0, hdr);
  f[0] = 0x02;  // locally administered MACs
  f[6] = 0x02;
  f[5] = 1;
  f[11] = 2;
  f[12] = 0x08;  // IPv4
  f[14] = 0x45;
  const uint16_t tot = static_cast<uint16_t>(hdr - 14 + payload);
  f[16] = static_cast<uint8_t>(tot >> 8);
  f[17] = static_cast<uint8_t>(tot);
  f[23] = w == Workload::kUdpStream64 ? 17 : 6;
  f[34] = static_cast<uint8_t>(qp >> 8);  // source port = queue pair
  f[35] = static_cast<uint8_t>(qp);
  std::memcpy(f + 38, &seq, 4);  // TCP seq, or UDP length/checksum slot
  if (w != Workload::kUdpStream64) std::memcpy(f + 42, &ack, 4);  // TCP ack
  uint8_t* p = f + hdr;
  for (uint32_t i = 0; i < payload; ++i) p[i] = static_cast<uint8_t>(seq * 7 + i);
}

// Checks a frame's header fields and its payload pattern (all of it when
// `full`, else the first and last 16 bytes).
bool check_frame(const uint8_t* f, uint32_t len, Workload w, uint16_t qp, uint32_t seq, bool full) {
  const uint32_t hdr = l4_hdr(w);
  if (len < hdr || f[12] != 0x08 || f[23] != (w == Workload::kUdpStream64 ? 17 : 6)) return false;
  if (f[34] != static_cast<uint8_t>(qp >> 8) || f[35] != static_cast<uint8_t>(qp)) return false;
  uint32_t s;
  std::memcpy(&s, f + 38, 4);
  if (s != seq) return false;
  const uint32_t payload = len - hdr;
  const uint8_t* p = f + hdr;
  auto ok = [&](uint32_t i) { return p[i] == static_cast<uint8_t>(seq * 7 + i); };
  if (full || payload <= 32) {
    for (uint32_t i = 0; i < payload; ++i)
      if (!ok(i)) return false;
    return true;
  }
  for (uint32_t i = 0; i < 16; ++i)
    if (!ok(i) || !ok(payload - 1 - i)) return false;
  return true;
}

// --- guest IOVA allocator ------------------------------------------------------------
// Page-sized IOVAs from one range, LIFO like Linux's per-CPU IOVA rcache, so a
// freed IOVA is soon mapped again to a different buffer.
class IovaAlloc {
 public:
  IovaAlloc(uint64_t base, uint32_t pages) {
    for (uint32_t i = pages; i-- > 0;) free_.push_back(base + uint64_t{i} * kPage);
  }
  uint64_t get() {
    if (free_.empty()) throw std::runtime_error("netperf: guest IOVA range exhausted");
    const uint64_t v = free_.back();
    free_.pop_back();
    return v;
  }
  void put(uint64_t iova) { free_.push_back(iova); }

 private:
  std::vector<uint64_t> free_;
};

// --- shared state ------------------------------------------------------------------

struct Shared;

// One guest buffer: a page of guest memory and its current device address.
struct Buf {
  uint64_t gpa = 0;
  uint64_t addr = 0;      // what the descriptor carries (IOVA or GPA)
  bool poisoned = false;  // strict: poisoned after its UNMAP completed
};

// The guest side of one queue pair.
struct GuestQp {
  GuestQp(Shared& sh, uint16_t qp);
  bool step();
  bool budget_done() const;
  void run();
  void reap_tx();
  void reap_rx();
  void refill_rx();
  void send();
  void post_tx(uint32_t slot, uint32_t frame_len);
  void lazy_recycle(std::vector<uint32_t>& parked, std::vector<Buf>& bufs, uint32_t slot, uint8_t perm);
  void lazy_flush();
  void strict_unmap(std::vector<uint32_t>& slots, std::vector<Buf>& bufs, std::vector<uint32_t>& free_list,
                    bool rx);

  Shared& sh;
  uint16_t qp;
  std::unique_ptr<DriverQueue> rxq, txq;
  std::vector<Buf> tx, rx;
  std::vector<uint32_t> tx_free, rx_free;             // slots ready for use
  std::vector<uint32_t> tx_parked, rx_parked;         // lazy: moved, waiting for the flush
  std::vector<uint64_t> stale_iovas;                  // lazy: freed at the next flush
  std::vector<uint32_t> tx_done, rx_done;             // strict: completed, to unmap
  std::vector<std::pair<uint32_t, uint32_t>> rx_pending;  // strict: (slot, len) to process after the unmap
  std::unique_ptr<IovaAlloc> iovas;
  uint64_t completions = 0;
  uint32_t seq = 0;            // next frame's sequence number
  uint32_t send_left = 0;      // tcp_stream: bytes left in the current send
  bool rr_waiting = false;
  uint64_t rr_sent_tsc = 0;
  std::vector<uint32_t> rtt_cycles;
  uint64_t sync_cycles = 0;
  uint64_t total_cycles = 0;
  // Progress, read by the main lcore: owner-written, relaxed.
  std::atomic<uint64_t> packets{0};
  std::atomic<uint64_t> bytes{0};
  uint64_t rx_frames = 0;
  uint64_t corrupt = 0;
  uint64_t poison_violations = 0;
};

struct Shared {
  const NetperfConfig& cfg;
  GuestMemory mem;
  Rcu rcu;
  engine::Device dev;
  DriverQueue reqq, evq;
  IommuQueues iq;
  std::mutex iommu_lock;  // the guest's viommu request_lock
  IommuDriver iommu;
  std::vector<std::unique_ptr<GuestQp>> guests;
  std::unique_ptr<NetDevice> net;
  rte_mempool* mp = nullptr;
  std::atomic<bool> guest_stop{false};
  std::atomic<bool> device_stop{false};
  std::atomic<unsigned> guests_running{0};
  // The lcore launch and join go through EAL's own synchronisation, which
  // ThreadSanitizer does not see (DPDK is not instrumented): these two flags
  // make the hand-over explicit. release by the main lcore after setup,
  // acquire by each worker before it starts; release by the device lcore when
  // it is done, acquire by the main lcore before it reads the results.
  std::atomic<bool> setup_done{false};
  std::atomic<bool> device_done{false};
  // Device lcore results (written by it, read after it stopped).
  uint32_t reader = 0;
  uint64_t dev_iters = 0, dev_busy_iters = 0, dev_cycles = 0, dev_req_cycles = 0;
  uint64_t peer_corrupt = 0;

  Shared(const NetperfConfig& c, uint64_t mem_bytes)
      : cfg(c),
        mem(kGpaBase, mem_bytes),
        rcu(8),
        dev(engine::Config{}, rcu),
        reqq(mem, 256, true, false),
        evq(mem, 64, true, false),
        iq(dev, reqq.device_config(false, EndpointId{0}), evq.device_config(false, EndpointId{0})),
        iommu(mem, reqq, [this] { iq.poll(); }) {}

  bool iommu_on() const { return cfg.mode != Mode::kIdentity; }
  Status sync_locked(GuestQp* g) {
    const uint64_t t0 = rte_rdtsc();
    const Status st = iommu.sync();
    if (g != nullptr) g->sync_cycles += rte_rdtsc() - t0;
    return st;
  }
};

// Maps a DriverQueue's coherent area once (dma_alloc_coherent) and points it there.
void map_coherent(Shared& sh, DriverQueue& q, uint64_t iova) {
  sh.iommu.add_map(kDomain, iova, q.area_bytes(), q.area_gpa(), engine::kMapFlagRead | engine::kMapFlagWrite);
  q.set_dma_base(iova);
}

GuestQp::GuestQp(Shared& s, uint16_t q) : sh(s), qp(q) {
  const NetperfConfig& c = sh.cfg;
  rxq = std::make_unique<DriverQueue>(sh.mem, c.queue_size, c.event_idx, false);
  txq = std::make_unique<DriverQueue>(sh.mem, c.queue_size, c.event_idx, c.indirect);
  // A polling driver: no interrupts wanted.
  txq->disable_interrupts();
  rxq->disable_interrupts();
  // Enough buffers for a full ring plus the ones parked or being unmapped.
  const uint32_t spare = std::max(c.lazy_flush, c.strict_batch) + 8;
  const uint32_t ntx = c.queue_size + spare, nrx = c.queue_size + spare;
  const uint64_t iova_base = (uint64_t{qp} + 1) << 32;  // above the x86 MSI window
  iovas = std::make_unique<IovaAlloc>(iova_base, 4 * (ntx + nrx) + 4 * spare);
  auto make = [&](std::vector<Buf>& bufs, std::vector<uint32_t>& free_list, uint32_t n) {
    bufs.resize(n);
    for (uint32_t i = 0; i < n; ++i) {
      bufs[i].gpa = sh.mem.alloc(kPage, kPage);
      bufs[i].addr = bufs[i].gpa;
      free_list.push_back(i);
    }
  };
  make(tx, tx_free, ntx);
  make(rx, rx_free, nrx);
  if (c.workload == Workload::kTcpRr) rtt_cycles.reserve(kMaxRttSamples);
}

// Runs with the iommu lock held: maps the rings and, in lazy mode, every buffer.
void setup_guest_mappings(Shared& sh, GuestQp& g) {
  if (!sh.iommu_on()) return;
  const uint64_t ring_iova = (uint64_t{1} << 40) + (uint64_t{g.qp} << 24);
  map_coherent(sh, *g.rxq, ring_iova);
  map_coherent(sh, *g.txq, ring_iova + (uint64_t{1} << 23));
  if (sh.cfg.mode == Mode::kLazy) {
    for (Buf& b : g.tx) {
      b.addr = g.iovas->get();
      sh.iommu.add_map(kDomain, b.addr, kPage, b.gpa, engine::kMapFlagRead);
    }
    for (Buf& b : g.rx) {
      b.addr = g.iovas->get();
      sh.iommu.add_map(kDomain, b.addr, kPage, b.gpa, engine::kMapFlagWrite);
    }
  }
}

void GuestQp::lazy_recycle(std::vector<uint32_t>& parked, std::vector<Buf>& bufs, uint32_t slot, uint8_t perm) {
  // The buffer moves to a new IOVA: UNMAP queued (not waited for), the old
  // IOVA held until the flush, the new MAP queued; the slot waits for the flush.
  std::lock_guard lock(sh.iommu_lock);
  Buf& b = bufs[slot];
  sh.iommu.add_unmap(kDomain, b.addr, kPage);
  stale_iovas.push_back(b.addr);
  b.addr = iovas->get();
  sh.iommu.add_map(kDomain, b.addr, kPage, b.gpa, perm);
  parked.push_back(slot);
}

void GuestQp::lazy_flush() {
  if (tx_parked.size() + rx_parked.size() < sh.cfg.lazy_flush) return;
  {
    std::lock_guard lock(sh.iommu_lock);
    sh.sync_locked(this);
  }
  for (uint64_t v : stale_iovas) iovas->put(v);
  stale_iovas.clear();
  tx_free.insert(tx_free.end(), tx_parked.begin(), tx_parked.end());
  rx_free.insert(rx_free.end(), rx_parked.begin(), rx_parked.end());
  tx_parked.clear();
  rx_parked.clear();
}

void GuestQp::strict_unmap(std::vector<uint32_t>& slots, std::vector<Buf>& bufs, std::vector<uint32_t>& free_list,
                           bool rx_side) {
  if (slots.empty()) return;
  {
    std::lock_guard lock(sh.iommu_lock);
    for (uint32_t s : slots) sh.iommu.add_unmap(kDomain, bufs[s].addr, kPage);
    sh.sync_locked(this);
  }
  // The UNMAPs completed: from here on the device must not touch these pages.
  for (uint32_t s : slots) {
    iovas->put(bufs[s].addr);
    bufs[s].addr = 0;
    if (!rx_side) {
      std::memset(sh.mem.hva(bufs[s].gpa), kPoison, kPage);
      bufs[s].poisoned = true;
      free_list.push_back(s);
    }
  }
  slots.clear();
}

void GuestQp::post_tx(uint32_t slot, uint32_t frame_len) {
  Buf& b = tx[slot];
  const DriverBuf bufs[2] = {{b.addr, kNetHdrSize, false}, {b.addr + kNetHdrSize, frame_len, false}};
  if (!txq->add(bufs, slot, sh.cfg.indirect)) throw std::logic_error("netperf: transmit ring full");
}

void GuestQp::reap_tx() {
  uint64_t slot = 0;
  uint32_t len = 0;
  while (txq->get_used(&slot, &len)) {
    const uint32_t s = static_cast<uint32_t>(slot);
    ++completions;
    switch (sh.cfg.mode) {
      case Mode::kIdentity: tx_free.push_back(s); break;
      case Mode::kStrict: tx_done.push_back(s); break;
      case Mode::kLazy:
        if (completions % sh.cfg.lazy_recycle == 0)
          lazy_recycle(tx_parked, tx, s, engine::kMapFlagRead);
        else
          tx_free.push_back(s);
        break;
    }
  }
  if (sh.cfg.mode == Mode::kStrict) strict_unmap(tx_done, tx, tx_free, false);
}

void GuestQp::reap_rx() {
  uint64_t slot = 0;
  uint32_t len = 0;
  const Workload w = sh.cfg.workload;
  auto process = [&](uint32_t s, uint32_t used_len) {
    ++rx_frames;
    const uint8_t* p = sh.mem.hva(rx[s].gpa);
    uint16_t nbufs = 0;
    std::memcpy(&nbufs, p + kNetHdrNumBuffersOffset, 2);
    const uint8_t* f = p + kNetHdrSize;
    const uint32_t flen = used_len >= kNetHdrSize ? used_len - kNetHdrSize : 0;
    if (nbufs != 1) {
      ++corrupt;
      return;
    }
    if (w == Workload::kTcpRr) {
      if (!rr_waiting || !check_frame(f, flen, w, qp, seq - 1, true)) {
        ++corrupt;
        return;
      }
      const uint64_t rtt = rte_rdtsc() - rr_sent_tsc;
      if (rtt_cycles.size() < kMaxRttSamples) rtt_cycles.push_back(static_cast<uint32_t>(std::min<uint64_t>(rtt, UINT32_MAX)));
      rr_waiting = false;
      packets.store(packets.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      bytes.store(bytes.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    } else if (flen != kTcpHdr || f[12] != 0x08 || f[35] != static_cast<uint8_t>(qp)) {
      ++corrupt;  // tcp_stream ACK
    }
  };
  std::vector<uint32_t>& done = rx_done;
  while (rxq->get_used(&slot, &len)) {
    const uint32_t s = static_cast<uint32_t>(slot);
    ++completions;
    if (sh.cfg.mode == Mode::kStrict) {
      done.push_back(s);
      rx_pending.emplace_back(s, len);
      continue;
    }
    process(s, len);
    if (sh.cfg.mode == Mode::kLazy && completions % sh.cfg.lazy_recycle == 0)
      lazy_recycle(rx_parked, rx, s, engine::kMapFlagWrite);
    else
      rx_free.push_back(s);
  }
  if (sh.cfg.mode == Mode::kStrict && !done.empty()) {
    strict_unmap(done, rx, rx_free, true);
    // Unmapped: read the frame (as the stack does after dma_unmap), then poison.
    for (auto [s, l] : rx_pending) {
      process(s, l);
      std::memset(sh.mem.hva(rx[s].gpa), kPoison, kPage);
      rx[s].poisoned = true;
      rx_free.push_back(s);
    }
    rx_pending.clear();
  }
}

void GuestQp::refill_rx() {
  static const std::vector<uint8_t> poison(kPage, kPoison);
  std::vector<uint32_t> batch;
  while (!rx_free.empty() && rxq->free_count() > 0 && batch.size() < sh.cfg.queue_size) {
    const uint32_t s = rx_free.back();
    rx_free.pop_back();
    if (rx[s].poisoned) {
      // The device must not have written this page since its UNMAP completed.
      if (std::memcmp(sh.mem.hva(rx[s].gpa), poison.data(), kPage) != 0) ++poison_violations;
      rx[s].poisoned = false;
    }
    batch.push_back(s);
    if (sh.cfg.mode == Mode::kStrict) rx[s].addr = iovas->get();
    if (!rxq->add(std::span<const DriverBuf>(std::array<DriverBuf, 1>{{{rx[s].addr, kRxBufLen, true}}}), s))
      throw std::logic_error("netperf: receive ring full");
  }
  if (batch.empty()) return;
  if (sh.cfg.mode == Mode::kStrict) {
    // Map before the device can see the buffers (they are not published yet).
    std::lock_guard lock(sh.iommu_lock);
    for (uint32_t s : batch) sh.iommu.add_map(kDomain, rx[s].addr, kPage, rx[s].gpa, engine::kMapFlagWrite);
    sh.sync_locked(this);
  }
  rxq->publish();
}

void GuestQp::send() {
  const NetperfConfig& c = sh.cfg;
  const Workload w = c.workload;
  // Transmit chains: one indirect descriptor, or two direct ones.
  const uint32_t per_frame = c.indirect ? 1 : 2;
  std::vector<std::pair<uint32_t, uint32_t>> batch;  // (slot, frame length)
  const uint32_t limit = c.mode == Mode::kStrict ? c.strict_batch : kMaxNetBurst;
  while (batch.size() < limit && !tx_free.empty() && txq->free_count() >= per_frame * (batch.size() + 1)) {
    if (c.packets != 0 && packets.load(std::memory_order_relaxed) + batch.size() >= c.packets) break;
    uint32_t payload = 0;
    if (w == Workload::kTcpRr) {
      if (rr_waiting || !batch.empty()) break;
      payload = 1;
      rr_waiting = true;
      rr_sent_tsc = rte_rdtsc();
    } else if (w == Workload::kUdpStream64) {
      payload = 64;
    } else {
      if (send_left == 0) send_left = kSendSize;
      payload = std::min(send_left, kMss);
      send_left -= payload;
    }
    const uint32_t s = tx_free.back();
    tx_free.pop_back();
    tx[s].poisoned = false;
    write_frame(sh.mem.hva(tx[s].gpa) + kNetHdrSize, w, qp, seq++, payload);
    std::memset(sh.mem.hva(tx[s].gpa), 0, kNetHdrSize);
    if (c.mode == Mode::kStrict) tx[s].addr = iovas->get();
    batch.emplace_back(s, l4_hdr(w) + payload);
    if (w != Workload::kTcpRr) {
      packets.store(packets.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      bytes.store(bytes.load(std::memory_order_relaxed) + payload, std::memory_order_relaxed);
    }
  }
  if (batch.empty()) return;
  if (c.mode == Mode::kStrict) {
    std::lock_guard lock(sh.iommu_lock);
    for (auto [s, len] : batch) sh.iommu.add_map(kDomain, tx[s].addr, kPage, tx[s].gpa, engine::kMapFlagRead);
    sh.sync_locked(this);
  }
  for (auto [s, len] : batch) post_tx(s, len);
  txq->publish();
}

bool GuestQp::budget_done() const {
  return sh.cfg.packets != 0 && packets.load(std::memory_order_relaxed) >= sh.cfg.packets && !rr_waiting;
}

// One pass of the driver loop; true when it made progress.
bool GuestQp::step() {
  const uint64_t before = packets.load(std::memory_order_relaxed) + rx_frames + completions;
  reap_tx();
  reap_rx();
  if (sh.cfg.mode == Mode::kLazy) lazy_flush();
  refill_rx();
  send();
  return packets.load(std::memory_order_relaxed) + rx_frames + completions != before;
}

void GuestQp::run() {
  const uint64_t t0 = rte_rdtsc();
  Backoff backoff;
  // relaxed: a stop request; the final counts are read after the lcore joins.
  while (!sh.guest_stop.load(std::memory_order_relaxed) && !budget_done()) {
    if (step())
      backoff.reset();
    else
      backoff.idle();
  }
  total_cycles = rte_rdtsc() - t0;
  sh.guests_running.fetch_sub(1, std::memory_order_release);  // release: pairs with the main lcore's acquire wait
}

// --- device side --------------------------------------------------------------------

// The netserver-like peer of one queue pair: checks every frame in order and
// answers (tcp_stream ACKs, tcp_rr responses).
struct Peer {
  uint32_t expect = 0;
  uint32_t unacked = 0;
  rte_mbuf* out[kMaxNetBurst * 2];
  uint16_t nout = 0;
};

rte_mbuf* make_reply(rte_mempool* mp, Workload w, uint16_t qp, uint32_t seq, uint32_t payload) {
  rte_mbuf* m = rte_pktmbuf_alloc(mp);
  if (m == nullptr) return nullptr;
  const uint32_t len = l4_hdr(w) + payload;
  auto* f = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, static_cast<uint16_t>(len)));
  if (f == nullptr) {
    rte_pktmbuf_free(m);
    return nullptr;
  }
  write_frame(f, w, qp, seq, payload, seq);
  return m;
}

void wait_setup(Shared& sh) {
  while (!sh.setup_done.load(std::memory_order_acquire)) rte_pause();
}

int device_main(void* arg) {
  Shared& sh = *static_cast<Shared*>(arg);
  wait_setup(sh);
  const Workload w = sh.cfg.workload;
  const uint16_t qps = sh.net->queue_pairs();
  std::vector<Peer> peers(qps);
  rte_mbuf* pkts[kMaxNetBurst];
  iotlb::Iotlb& tlb = sh.dev.iotlb();
  tlb.online(sh.reader);
  const uint64_t t_start = rte_rdtsc();
  Backoff backoff;
  // relaxed: a stop request; results are read after the lcore joins.
  while (!sh.device_stop.load(std::memory_order_relaxed)) {
    bool work = false;
    for (uint16_t q = 0; q < qps; ++q) {
      Peer& p = peers[q];
      const uint16_t n = sh.net->dequeue_burst(sh.reader, q, sh.mp, pkts, kMaxNetBurst);
      for (uint16_t i = 0; i < n; ++i) {
        rte_mbuf* m = pkts[i];
        const uint8_t* f = rte_pktmbuf_mtod(m, const uint8_t*);
        // Frames of one mbuf segment here (<= 1514 bytes); check the payload fully
        // for small frames, head and tail for MSS frames.
        if (m->nb_segs != 1 || !check_frame(f, m->data_len, w, q, p.expect, m->data_len <= 128)) ++sh.peer_corrupt;
        ++p.expect;
        if (w == Workload::kTcpStream && ++p.unacked == 2 && p.nout < std::size(p.out)) {
          p.unacked = 0;
          if (rte_mbuf* a = make_reply(sh.mp, w, q, p.expect - 1, 0)) p.out[p.nout++] = a;
        } else if (w == Workload::kTcpRr && p.nout < std::size(p.out)) {
          if (rte_mbuf* r = make_reply(sh.mp, w, q, p.expect - 1, 1)) p.out[p.nout++] = r;
        }
        rte_pktmbuf_free(m);
      }
      if (p.nout > 0) {
        const uint16_t sent = sh.net->enqueue_burst(sh.reader, q, p.out, std::min<uint16_t>(p.nout, kMaxNetBurst));
        for (uint16_t i = 0; i < sent; ++i) rte_pktmbuf_free(p.out[i]);
        std::memmove(p.out, p.out + sent, (p.nout - sent) * sizeof(rte_mbuf*));
        p.nout = static_cast<uint16_t>(p.nout - sent);
        work |= sent > 0;
      }
      work |= n > 0;
    }
    tlb.quiescent(sh.reader);  // between bursts: no guest pointer held
    const uint64_t t0 = rte_rdtsc();
    if (sh.iq.poll(sh.reader) > 0) {
      sh.dev_req_cycles += rte_rdtsc() - t0;
      work = true;
    }
    ++sh.dev_iters;
    if (work) {
      ++sh.dev_busy_iters;
      backoff.reset();
    } else {
      backoff.idle();  // pauses, and yields now and then (lcores may share a CPU)
      if (backoff.spins % kIdleBeforeOffline == 0) {
        // Idle for a while: go offline so no writer waits on us, let others
        // run, and come back (with an empty IOTLB cache) to poll again.
        tlb.offline(sh.reader);
        sched_yield();
        tlb.online(sh.reader);
      }
    }
  }
  sh.dev_cycles = rte_rdtsc() - t_start;
  for (Peer& p : peers)
    for (uint16_t i = 0; i < p.nout; ++i) rte_pktmbuf_free(p.out[i]);
  tlb.offline(sh.reader);
  sh.device_done.store(true, std::memory_order_release);
  return 0;
}

int guest_main(void* arg) {
  auto* g = static_cast<GuestQp*>(arg);
  wait_setup(g->sh);
  g->run();
  return 0;
}

double percentile(std::vector<uint32_t>& v, double q) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return static_cast<double>(v[k]);
}

}  // namespace

NetperfResult run_netperf(const NetperfConfig& cfg) {
  if (cfg.queue_pairs == 0 || !valid_queue_size(cfg.queue_size) || cfg.queue_size < 16 || cfg.lazy_recycle == 0 ||
      cfg.lazy_flush == 0 || cfg.strict_batch == 0 || cfg.strict_batch > cfg.queue_size / 2)
    throw std::runtime_error("netperf: bad configuration (queue size a power of two >= 16, batches >= 1)");
  if (rte_lcore_count() < unsigned{cfg.queue_pairs} + 1u)
    throw std::runtime_error("netperf: needs " + std::to_string(cfg.queue_pairs + 1) + " lcores");
  static std::atomic<unsigned> run_id{0};
  const uint64_t per_qp = 2 * (cfg.queue_size + std::max(cfg.lazy_flush, cfg.strict_batch) + 8) * kPage +
                          2 * (desc_bytes(cfg.queue_size) * (1 + DriverQueue::kMaxIndirect) + 3 * kPage);
  Shared sh(cfg, ((uint64_t{cfg.queue_pairs} * per_qp + (8 << 20)) + kPage - 1) & ~(kPage - 1));
  if (sh.dev.set_mem_table(std::array<engine::MemRegion, 1>{sh.mem.region()}) != Status::kOk)
    throw std::runtime_error("netperf: memory table refused");
  const std::string pool = "vxlate_np" + std::to_string(run_id.fetch_add(1));
  sh.mp = rte_pktmbuf_pool_create(pool.c_str(), 8191, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, static_cast<int>(rte_socket_id()));
  if (sh.mp == nullptr) throw std::runtime_error("netperf: mbuf pool: " + std::string(rte_strerror(rte_errno)));
  struct PoolFree {
    rte_mempool* mp;
    ~PoolFree() { rte_mempool_free(mp); }
  } pool_free{sh.mp};

  // Setup on the main lcore: it services the request queue itself while the
  // device lcore is not running yet.
  std::vector<QueueConfig> queues;
  for (uint16_t q = 0; q < cfg.queue_pairs; ++q) sh.guests.push_back(std::make_unique<GuestQp>(sh, q));
  if (sh.iommu_on()) sh.iommu.add_attach(kDomain, kNetEndpoint);
  for (auto& g : sh.guests) setup_guest_mappings(sh, *g);
  if (sh.iommu.sync() != Status::kOk) throw std::runtime_error("netperf: guest setup requests failed");
  for (auto& g : sh.guests) {
    queues.push_back(g->rxq->device_config(sh.iommu_on(), EndpointId{kNetEndpoint}));
    queues.push_back(g->txq->device_config(sh.iommu_on(), EndpointId{kNetEndpoint}));
  }
  sh.net = std::make_unique<NetDevice>(sh.dev, queues, true);
  sh.reader = sh.rcu.register_reader();
  const uint64_t setup_maps = sh.iommu.maps();
  sh.iommu.set_idle(pause_idle);

  sh.setup_done.store(true, std::memory_order_release);
  std::vector<unsigned> workers;
  unsigned l;
  RTE_LCORE_FOREACH_WORKER(l) workers.push_back(l);
  if (rte_eal_remote_launch(device_main, &sh, workers[0]) != 0) throw std::runtime_error("netperf: device lcore busy");
  sh.guests_running.store(cfg.queue_pairs, std::memory_order_relaxed);
  for (uint16_t q = 1; q < cfg.queue_pairs; ++q) rte_eal_remote_launch(guest_main, sh.guests[q].get(), workers[q]);

  // Guest queue pair 0 runs here, between clock and progress checks.
  const uint64_t hz = rte_get_tsc_hz();
  const uint64_t t0 = rte_rdtsc();
  const uint64_t deadline = cfg.packets != 0 ? UINT64_MAX : t0 + static_cast<uint64_t>(cfg.seconds * double(hz));
  GuestQp& g0 = *sh.guests[0];
  uint64_t next_progress = t0 + hz / 2;
  Backoff backoff;
  for (;;) {
    if (g0.step())
      backoff.reset();
    else
      backoff.idle();
    const uint64_t now = rte_rdtsc();
    if (cfg.progress && now >= next_progress) {
      NetperfProgress pr{double(now - t0) / double(hz), 0, 0};
      for (auto& g : sh.guests) {
        pr.packets += g->packets.load(std::memory_order_relaxed);
        pr.payload_bytes += g->bytes.load(std::memory_order_relaxed);
      }
      cfg.progress(pr);
      next_progress += hz / 2;
    }
    if (now >= deadline || g0.budget_done()) break;
  }
  g0.total_cycles = rte_rdtsc() - t0;
  sh.guests_running.fetch_sub(1, std::memory_order_release);
  if (cfg.packets == 0) sh.guest_stop.store(true, std::memory_order_relaxed);
  // acquire: pairs with each guest's release decrement; their counts are final.
  while (sh.guests_running.load(std::memory_order_acquire) != 0) pause_idle();
  const uint64_t t1 = rte_rdtsc();
  sh.device_stop.store(true, std::memory_order_relaxed);
  while (!sh.device_done.load(std::memory_order_acquire)) pause_idle();
  rte_eal_mp_wait_lcore();

  NetperfResult r;
  r.seconds = double(t1 - t0) / double(hz);
  std::vector<uint32_t> rtts;
  uint64_t sync_cycles = 0, guest_cycles = 0;
  for (auto& g : sh.guests) {
    r.packets += g->packets.load(std::memory_order_relaxed);
    r.payload_bytes += g->bytes.load(std::memory_order_relaxed);
    r.rx_frames += g->rx_frames;
    r.corrupt += g->corrupt;
    r.poison_violations += g->poison_violations;
    rtts.insert(rtts.end(), g->rtt_cycles.begin(), g->rtt_cycles.end());
    sync_cycles += g->sync_cycles;
    guest_cycles += g->total_cycles;
  }
  r.corrupt += sh.peer_corrupt;
  for (uint16_t q = 0; q < cfg.queue_pairs; ++q) {
    for (const Virtqueue* vq : {&sh.net->rxq(q), &sh.net->txq(q)}) {
      r.translations += vq->stats().translations;
      r.bad_chains += vq->stats().bad_total();
    }
  }
  r.map_requests = sh.iommu.maps() - setup_maps;
  r.unmap_requests = sh.iommu.unmaps();
  r.syncs = sh.iommu.syncs() - 1;  // the setup sync is not part of the load
  r.request_bursts = sh.iq.stats().bursts;
  r.request_failures = sh.iommu.failures();
  const iotlb::Stats ts = sh.dev.iotlb().reader_stats(sh.reader);
  r.iotlb_hits = ts.hits;
  r.iotlb_misses = ts.misses;
  engine::FaultEvent ev[64];
  while (size_t n = sh.dev.drain_events(ev)) r.fault_events += n;
  r.fault_events += sh.iq.stats().events;
  if (!rtts.empty()) {
    r.rr_p50_us = percentile(rtts, 0.50) * 1e6 / double(hz);
    r.rr_p99_us = percentile(rtts, 0.99) * 1e6 / double(hz);
  }
  r.device_busy_share = sh.dev_iters ? double(sh.dev_busy_iters) / double(sh.dev_iters) : 0;
  r.device_request_share = sh.dev_cycles ? double(sh.dev_req_cycles) / double(sh.dev_cycles) : 0;
  r.guest_sync_share = guest_cycles ? double(sync_cycles) / double(guest_cycles) : 0;
  sh.rcu.unregister_reader(sh.reader);
  sh.net.reset();
  return r;
}

std::string to_json(const NetperfConfig& cfg, const NetperfResult& r) {
  char buf[1536];
  std::snprintf(buf, sizeof buf,
                "{\"workload\":\"%s\",\"mode\":\"%s\",\"queue_pairs\":%u,\"queue_size\":%u,\"seconds\":%.3f,"
                "\"packets\":%llu,\"packets_per_s\":%.0f,\"gbit_per_s\":%.3f,\"rx_frames\":%llu,"
                "\"translations_per_s\":%.0f,\"map_per_s\":%.0f,\"unmap_per_s\":%.0f,\"syncs\":%llu,"
                "\"unmaps_per_sync\":%.2f,\"request_bursts\":%llu,\"iotlb_hit_rate\":%.4f,"
                "\"rr_p50_us\":%.2f,\"rr_p99_us\":%.2f,\"device_busy_share\":%.3f,\"device_request_share\":%.3f,"
                "\"guest_sync_share\":%.3f,\"corrupt\":%llu,\"poison_violations\":%llu,\"bad_chains\":%llu,"
                "\"request_failures\":%llu,\"fault_events\":%llu}",
                to_string(cfg.workload), to_string(cfg.mode), unsigned{cfg.queue_pairs}, cfg.queue_size, r.seconds,
                static_cast<unsigned long long>(r.packets), r.pps(), r.gbps(),
                static_cast<unsigned long long>(r.rx_frames), r.translations / r.seconds, r.map_requests / r.seconds,
                r.unmap_requests / r.seconds, static_cast<unsigned long long>(r.syncs), r.unmaps_per_sync(),
                static_cast<unsigned long long>(r.request_bursts), r.hit_rate(), r.rr_p50_us, r.rr_p99_us,
                r.device_busy_share, r.device_request_share, r.guest_sync_share,
                static_cast<unsigned long long>(r.corrupt), static_cast<unsigned long long>(r.poison_violations),
                static_cast<unsigned long long>(r.bad_chains), static_cast<unsigned long long>(r.request_failures),
                static_cast<unsigned long long>(r.fault_events));
  return buf;
}

}  // namespace vxlate::dataplane
