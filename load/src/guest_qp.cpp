#include "guest_qp.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <mutex>
#include <span>

#include <rte_cycles.h>

#include "backoff.h"
#include "frames.h"
#include "run_state.h"
#include "thread_clock.h"
#include "vxlate/dataplane/net.h"
#include "vxlate/engine/wire.h"

namespace vxlate::load::detail {

using dataplane::kMaxNetBurst;
using dataplane::kNetHdrSize;

namespace {

constexpr uint32_t kRxBufLen = 2048;   // mergeable receive buffer
constexpr uint32_t kSendSize = 65536;  // one TCP_STREAM send
constexpr uint8_t kPoison = 0xa5;
constexpr size_t kMaxRttSamples = 1 << 20;

}  // namespace

GuestQp::GuestQp(RunState& r, uint16_t q) : run(r), qp(q) {
  const NetperfConfig& c = run.cfg;
  rxq = std::make_unique<DriverQueue>(run.mem, c.queue_size, c.event_idx, false);
  txq = std::make_unique<DriverQueue>(run.mem, c.queue_size, c.event_idx, c.indirect);
  // A polling driver: no interrupts wanted.
  txq->disable_interrupts();
  rxq->disable_interrupts();
  // Enough buffers for a full ring plus a strict batch being unmapped (the
  // same pool in every mode).
  const uint32_t spare = std::max(c.lazy_flush, c.strict_batch) + 8;
  const uint32_t ntx = c.queue_size + spare, nrx = c.queue_size + spare;
  const uint64_t iova_base = (uint64_t{qp} + 1) << 32;  // above the x86 MSI window
  iovas = std::make_unique<IovaAlloc>(iova_base, 4 * (ntx + nrx) + 4 * spare, kPage);
  // In address order, slot by slot (the receive free list relies on it).
  auto make = [&](LineVector<Buf>& bufs, uint32_t n) {
    bufs.resize(n);
    for (uint32_t i = 0; i < n; ++i) {
      bufs[i].gpa = run.mem.alloc(kPage, kPage);
      bufs[i].addr = bufs[i].gpa;
    }
  };
  make(tx, ntx);
  make(rx, nrx);
  for (uint32_t i = 0; i < ntx; ++i) tx_free.push_back(i);
  rx_free.reset(nrx, c.random_buffers);
  for (uint32_t i = 0; i < nrx; ++i) rx_free.put(i);
  rx_batch.reserve(c.queue_size);
  tx_batch.reserve(std::max<uint32_t>(c.strict_batch, kMaxNetBurst));
  if (c.workload == Workload::kTcpRr) rtt_cycles.reserve(kMaxRttSamples);
}

// Maps a DriverQueue's coherent area once (dma_alloc_coherent) and points it there.
void GuestQp::map_coherent(DriverQueue& q, uint64_t iova) {
  run.iommu.add_map(kDomain, iova, q.area_bytes(), q.area_gpa(), engine::kMapFlagRead | engine::kMapFlagWrite);
  q.set_dma_base(iova);
}

void GuestQp::setup_mappings() {
  if (!run.iommu_on()) return;
  const uint64_t ring_iova = (uint64_t{1} << 40) + (uint64_t{qp} << 24);
  map_coherent(*rxq, ring_iova);
  map_coherent(*txq, ring_iova + (uint64_t{1} << 23));
  if (run.cfg.mode == Mode::kLazy) {
    for (Buf& b : tx) {
      b.addr = iovas->get();
      run.iommu.add_map(kDomain, b.addr, kPage, b.gpa, engine::kMapFlagRead);
    }
    for (Buf& b : rx) {
      b.addr = iovas->get();
      run.iommu.add_map(kDomain, b.addr, kPage, b.gpa, engine::kMapFlagWrite);
    }
  }
}

Status GuestQp::sync_locked() {
  const uint64_t t0 = rte_rdtsc();
  const Status st = run.iommu.sync();
  sync_cycles += rte_rdtsc() - t0;
  return st;
}

bool GuestQp::lazy_recycle(Buf& b, uint8_t perm) {
  if (b.next_addr != 0) return false;  // its last move is not done yet: the next buffer moves
  std::lock_guard lock(run.iommu_lock);
  if (run.cfg.lazy_move) {
    // The new IOVA's MAP, queued; the buffer keeps its IOVA until a sync has
    // completed the MAP (lazy_flush()) and moves when next posted (move_if_ready()).
    b.next_addr = iovas->get();
    run.iommu.add_map(kDomain, b.next_addr, kPage, b.gpa, perm);
    moving.push_back(&b);
  } else {
    // The same two requests for a spare IOVA the data path never uses.
    if (spare_iova != 0) {
      run.iommu.add_unmap(kDomain, spare_iova, kPage);
      stale_iovas.push_back(spare_iova);
    }
    spare_iova = iovas->get();
    run.iommu.add_map(kDomain, spare_iova, kPage, b.gpa, perm);
  }
  ++recycles;
  return true;
}

void GuestQp::lazy_complete(Buf& b, uint8_t perm) {
  if (completions % run.cfg.lazy_recycle == 0) recycle_due = true;
  if (recycle_due && lazy_recycle(b, perm)) recycle_due = false;
}

void GuestQp::move_if_ready(Buf& b) {
  if (!b.next_ready) return;
  // Free, so no posted descriptor carries its old IOVA: unmapped lazily (the
  // UNMAP queued, the IOVA reused only after the next sync).
  std::lock_guard lock(run.iommu_lock);
  run.iommu.add_unmap(kDomain, b.addr, kPage);
  stale_iovas.push_back(b.addr);
  b.addr = b.next_addr;
  b.next_addr = 0;
  b.next_ready = false;
}

uint64_t GuestQp::next_random() {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

uint32_t GuestQp::take_tx() {
  if (run.cfg.random_buffers) std::swap(tx_free.back(), tx_free[next_random() % tx_free.size()]);
  const uint32_t s = tx_free.back();
  tx_free.pop_back();
  return s;
}

void GuestQp::lazy_flush() {
  if (recycles < run.cfg.lazy_flush) return;
  {
    std::lock_guard lock(run.iommu_lock);
    sync_locked();
  }
  for (uint64_t v : stale_iovas) iovas->put(v);
  stale_iovas.clear();
  // Every MAP queued so far has completed: the buffers may move.
  for (Buf* b : moving) b->next_ready = true;
  moving.clear();
  recycles = 0;
}

void GuestQp::strict_unmap(LineVector<uint32_t>& slots, LineVector<Buf>& bufs, LineVector<uint32_t>* tx_free_list) {
  if (slots.empty()) return;
  {
    std::lock_guard lock(run.iommu_lock);
    for (uint32_t s : slots) run.iommu.add_unmap(kDomain, bufs[s].addr, kPage);
    sync_locked();
  }
  // The UNMAPs completed: from here on the device must not touch these pages.
  for (uint32_t s : slots) {
    iovas->put(bufs[s].addr);
    bufs[s].addr = 0;
    if (tx_free_list != nullptr) {
      std::memset(run.mem.hva(bufs[s].gpa), kPoison, kPage);
      bufs[s].poisoned = true;
      tx_free_list->push_back(s);
    }
  }
  slots.clear();
}

void GuestQp::post_tx(uint32_t slot, uint32_t frame_len) {
  Buf& b = tx[slot];
  const DriverBuf bufs[2] = {{b.addr, kNetHdrSize, false}, {b.addr + kNetHdrSize, frame_len, false}};
  if (!txq->add(bufs, slot, run.cfg.indirect)) throw std::logic_error("netperf: transmit ring full");
}

void GuestQp::reap_tx() {
  uint64_t slot = 0;
  uint32_t len = 0;
  while (txq->get_used(&slot, &len)) {
    const uint32_t s = static_cast<uint32_t>(slot);
    ++completions;
    switch (run.cfg.mode) {
      case Mode::kIdentity: tx_free.push_back(s); break;
      case Mode::kStrict: tx_done.push_back(s); break;
      case Mode::kLazy:
        lazy_complete(tx[s], engine::kMapFlagRead);
        tx_free.push_back(s);
        break;
    }
  }
  if (run.cfg.mode == Mode::kStrict) strict_unmap(tx_done, tx, &tx_free);
}

// One received frame: a tcp_rr response (completes the transaction) or a
// tcp_stream ACK.
void GuestQp::process_rx(uint32_t s, uint32_t used_len) {
  const Workload w = run.cfg.workload;
  ++rx_frames;
  const uint8_t* p = run.mem.hva(rx[s].gpa);
  const uint16_t nbufs = decode<dataplane::VirtioNetHdr>(std::span<const uint8_t>(p, kNetHdrSize)).num_buffers.get();
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
  } else if (!check_ack(f, flen, qp)) {
    ++corrupt;  // tcp_stream ACK
  }
}

void GuestQp::reap_rx() {
  uint64_t slot = 0;
  uint32_t len = 0;
  LineVector<uint32_t>& done = rx_done;
  while (rxq->get_used(&slot, &len)) {
    const uint32_t s = static_cast<uint32_t>(slot);
    ++completions;
    if (run.cfg.mode == Mode::kStrict) {
      done.push_back(s);
      rx_pending.emplace_back(s, len);
      continue;
    }
    process_rx(s, len);
    if (run.cfg.mode == Mode::kLazy) lazy_complete(rx[s], engine::kMapFlagWrite);
    rx_free.put(s);
  }
  if (run.cfg.mode == Mode::kStrict && !done.empty()) {
    strict_unmap(done, rx, nullptr);
    // Unmapped: read the frame (as the stack does after dma_unmap), then poison.
    for (auto [s, l] : rx_pending) {
      process_rx(s, l);
      std::memset(run.mem.hva(rx[s].gpa), kPoison, kPage);
      rx[s].poisoned = true;
      rx_free.put(s);
    }
    rx_pending.clear();
  }
}

void GuestQp::refill_rx() {
  static const std::vector<uint8_t> poison(kPage, kPoison);
  LineVector<uint32_t>& batch = rx_batch;
  batch.clear();
  while (!rx_free.empty() && rxq->free_count() > 0 && batch.size() < run.cfg.queue_size) {
    const uint32_t s = rx_free.take(run.cfg.random_buffers ? next_random() : 0);
    move_if_ready(rx[s]);
    if (rx[s].poisoned) {
      // The device must not have written this page since its UNMAP completed.
      if (std::memcmp(run.mem.hva(rx[s].gpa), poison.data(), kPage) != 0) ++poison_violations;
      rx[s].poisoned = false;
    }
    batch.push_back(s);
    if (run.cfg.mode == Mode::kStrict) rx[s].addr = iovas->get();
    if (!rxq->add(std::span<const DriverBuf>(std::array<DriverBuf, 1>{{{rx[s].addr, kRxBufLen, true}}}), s))
      throw std::logic_error("netperf: receive ring full");
  }
  if (batch.empty()) return;
  if (run.cfg.mode == Mode::kStrict) {
    // Map before the device can see the buffers (they are not published yet).
    std::lock_guard lock(run.iommu_lock);
    for (uint32_t s : batch) run.iommu.add_map(kDomain, rx[s].addr, kPage, rx[s].gpa, engine::kMapFlagWrite);
    sync_locked();
  }
  rxq->publish();
}

void GuestQp::send() {
  const NetperfConfig& c = run.cfg;
  const Workload w = c.workload;
  // Transmit chains: one indirect descriptor, or two direct ones.
  const uint32_t per_frame = c.indirect ? 1 : 2;
  LineVector<std::pair<uint32_t, uint32_t>>& batch = tx_batch;  // (slot, frame length)
  batch.clear();
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
    const uint32_t s = take_tx();
    move_if_ready(tx[s]);
    tx[s].poisoned = false;
    write_frame(run.mem.hva(tx[s].gpa) + kNetHdrSize, w, qp, seq++, payload);
    std::memset(run.mem.hva(tx[s].gpa), 0, kNetHdrSize);
    if (c.mode == Mode::kStrict) tx[s].addr = iovas->get();
    batch.emplace_back(s, l4_hdr(w) + payload);
    if (w != Workload::kTcpRr) {
      packets.store(packets.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      bytes.store(bytes.load(std::memory_order_relaxed) + payload, std::memory_order_relaxed);
    }
  }
  if (batch.empty()) return;
  if (c.mode == Mode::kStrict) {
    std::lock_guard lock(run.iommu_lock);
    for (auto [s, len] : batch) run.iommu.add_map(kDomain, tx[s].addr, kPage, tx[s].gpa, engine::kMapFlagRead);
    sync_locked();
  }
  for (auto [s, len] : batch) post_tx(s, len);
  txq->publish();
}

bool GuestQp::budget_done() const {
  return run.cfg.packets != 0 && packets.load(std::memory_order_relaxed) >= run.cfg.packets && !rr_waiting;
}

bool GuestQp::step() {
  const uint64_t before = packets.load(std::memory_order_relaxed) + rx_frames + completions;
  reap_tx();
  reap_rx();
  if (run.cfg.mode == Mode::kLazy) lazy_flush();
  refill_rx();
  send();
  return packets.load(std::memory_order_relaxed) + rx_frames + completions != before;
}

bool GuestQp::timed_step() {
  const uint64_t t0 = rte_rdtsc();
  if (!step()) return false;
  // relaxed: a live count the main lcore samples; owner-written.
  busy_cycles.store(busy_cycles.load(std::memory_order_relaxed) + (rte_rdtsc() - t0), std::memory_order_relaxed);
  return true;
}

void GuestQp::begin_measure() {
  measuring = true;
  base.tsc = rte_rdtsc();
  // relaxed: owner-written counts, read by their owner.
  base.packets = packets.load(std::memory_order_relaxed);
  base.bytes = bytes.load(std::memory_order_relaxed);
  base.rx_frames = rx_frames;
  base.sync_cycles = sync_cycles;
  base.rtts = rtt_cycles.size();
}

void GuestQp::run_loop() {
  clock = own_cpu_clock();
  if (run.cfg.warmup_seconds == 0) begin_measure();
  started.store(true, std::memory_order_release);  // release: pairs with the main lcore's acquire; clock is set
  // acquire: pairs with the main lcore's release of go.
  while (!run.go.load(std::memory_order_acquire)) pause_idle();
  if (measuring) base.tsc = rte_rdtsc();
  Backoff backoff;
  // relaxed: a stop request; the final counts are read after the lcore joins.
  while (!run.guest_stop.load(std::memory_order_relaxed) && !budget_done()) {
    // relaxed: a request to take the base counts (see RunState::measuring).
    if (!measuring && run.measuring.load(std::memory_order_relaxed)) begin_measure();
    if (timed_step())
      backoff.reset();
    else
      backoff.idle();
  }
  if (!measuring) begin_measure();
  total_cycles = rte_rdtsc() - base.tsc;
  run.guests_running.fetch_sub(1, std::memory_order_release);  // release: pairs with the main lcore's acquire wait
}

int guest_lcore_main(void* arg) {
  auto* g = static_cast<GuestQp*>(arg);
  g->run.wait_setup();
  g->run_loop();
  return 0;
}

}  // namespace vxlate::load::detail
