// vxlate-vuload: netperf-like load through a vhost-user back end, from the
// VMM's side, with a vIOMMU (issue 12's front-end load tool).
//
//   vxlate-vuload --socket A --socket B [--mode identity|lazy|strict]
//                 [--workload udp_stream_64|tcp_stream|tcp_rr] [--queue-pairs N]
//                 [--queue-size N] [--seconds S] [--frame-size N] [--lazy-recycle N]
//                 [--lazy-flush N] [--recycle both|rx|tx] [--timeout-ms N] [--json]
//
// Two VhostUserFrontend instances (vxlate/load/vhost_user_frontend.h) connect
// to two back-end sockets that the back end cross-connects, so frames sent on
// A arrive on B and back: vxlate-switch --vhost-user A --vhost-user B (its
// default xconnect), or dpdk-testpmd --vdev net_vhost0,iface=A,iommu-support=1
// --vdev net_vhost1,iface=B,iommu-support=1 -- --forward-mode=io -a. With
// N > 1 queue pairs the back end must serve N (vxlate-switch: A,queues=N;
// testpmd: queues=N and --rxq=N --txq=N); pair q of A talks to pair q of B.
//
// Workloads (netperf's names and frame sizes, vxlate/load/netperf.h): A sends
// and B answers. udp_stream_64: 64-byte frames A -> B only (--frame-size N:
// N-byte frames, 60..1514, for a throughput-against-size curve). tcp_stream:
// 1514-byte frames A -> B, one 66-byte ACK B -> A per two frames, at most
// kTcpWindow frames unacknowledged per pair. tcp_rr: one 67-byte request and
// one 67-byte response at a time per pair, round trip timed. Frames are
// Ethernet (ethertype 0x88b5) with a Tag right after the header; both back
// ends forward them untouched. A frame lost on the way (DPDK drops a frame
// whose receive buffer misses) is written off after --timeout-ms (250): the
// tcp_stream window reopens, the tcp_rr transaction times out.
//
// Modes (the guest's DMA API, as netperf.h's): identity: no
// VIRTIO_F_ACCESS_PLATFORM, descriptors carry GPAs. lazy: every ring and
// buffer pool is mapped once at start; the back end learns pages through
// MISSes; every `lazy_recycle` completions a buffer is recycled (its page is
// unmapped and mapped again, as page_pool gives a buffer a fresh IOVA) and
// the recycled pages are INVALIDATEd in batches of `lazy_flush`, or after
// 10 ms, without the data side waiting (Linux's flush queue); `--recycle rx`
// or `tx` recycles the buffers of one direction only (how much of lazy mode's
// cost each direction's MISSes make). strict: every
// buffer the back end returns has its page INVALIDATEd (one message, ack
// awaited) and mapped again before the driver reuses it; the data side waits
// for that, as a guest vCPU waits in iommu_unmap. Each buffer fills one 4 KiB
// page, so a buffer's unmap is one page's INVALIDATE and a later use of it is
// one MISS and one UPDATE.
//
// Threads. One data thread per (front end, queue pair) runs the guest's
// driver for that pair: reap, receive, refill, send. The main thread is the
// vCPU + VMM of both front ends, their whole control side: it starts them
// (in parallel), serves MISSes, performs the unmaps the data threads post to
// their Lane's mailbox, prints progress once a second on stderr, drains, stops
// and reports. A mailbox belongs to its data thread while `mail_busy` is
// false and to the main thread while it is true.
//
// Reported: frames/s sent and received, drops (sent - received after a
// drain), MISSes (answered, unanswered), UPDATEs, INVALIDATEs with their ack
// latency p50/p99, and for tcp_rr transactions/s with round-trip p50/p99;
// text, or with --json one JSON object as the last line of stdout. Exit
// status 1 on a protocol failure or a malformed frame, 2 on bad usage.
//
// The command line and the run's Config: vuload_config.h. Here: the data
// threads (Lane), the control thread (main) and the report.
//
// Limits of this version. Strict mode finds the transmit buffers it must
// unmap by scanning the pool for the frames just sent (the front end does not
// name a buffer's index), and attributes completions in ring order; the
// unmaps of a round go out together, after the round's completions, where
// Linux unmaps each buffer as it is reaped. Drop reasons are the back end's
// to report; here only the count.
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "vxlate/common/le.h"
#include "vxlate/dataplane/net.h"
#include "vxlate/load/netperf.h"
#include "vxlate/load/vhost_user_frontend.h"
#include "vuload_config.h"

using namespace vxlate::load;
using namespace vxlate::vuload;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;
using vxlate::Le16;
using vxlate::Le32;
using vxlate::Le64;
using vxlate::dataplane::kNetHdrSize;

constexpr uint64_t kPage = VhostUserFrontend::kPageSize;
// One buffer per IOVA page: a buffer's unmap is exactly one page's INVALIDATE.
constexpr uint32_t kBufBytes = kPage;
constexpr size_t kBurst = 32;  // frames per send_burst()
constexpr uint32_t kTcpWindow = 256;  // tcp_stream frames unacknowledged per pair (about 370 KB)
constexpr auto kLazyFlushAge = 10ms;  // Linux's flush-queue timer (IOVA_FQ_TIMEOUT)
constexpr auto kDrainQuiet = 100ms;   // drain ends when nothing is in flight and nothing arrived this long
constexpr auto kDrainMax = 3s;
constexpr int kConnectTimeoutMs = 15000;  // the back end may still be coming up

constexpr uint8_t kDst[6] = {0x02, 0, 0, 0, 0, 0x0b};
constexpr uint8_t kSrc[6] = {0x02, 0, 0, 0, 0, 0x0a};
constexpr uint32_t kMagic = 0x766c6478;  // "xdlv"

enum Kind : uint8_t { kData = 1, kAck = 2, kRequest = 3, kResponse = 4 };

// Right after the 14-byte Ethernet header of every frame.
struct Tag {
  Le32 magic;
  uint8_t kind;
  uint8_t pad;
  Le16 qp;     // the A pair the exchange belongs to
  Le64 seq;    // data: frame number; ack: next frame expected; request/response: transaction
  Le32 txno;   // the sending lane's frame count: names the transmit buffer a frame landed in
};
static_assert(offsetof(Tag, kind) == 4 && offsetof(Tag, qp) == 6 && offsetof(Tag, seq) == 8 &&
              offsetof(Tag, txno) == 16 && sizeof(Tag) == 20);
constexpr size_t kTagOffset = 14;
static_assert(kTagOffset + sizeof(Tag) <= kMinFrame);

// One page the control thread unmaps (INVALIDATE, ack awaited) and maps again.
struct PageJob {
  uint64_t iova;
  uint64_t gpa;
  uint8_t perm;
};

// A buffer pool of one ring, as dma_map saw it.
struct PoolArea {
  uint64_t gpa = 0;
  uint64_t iova = 0;
  uint8_t perm = 0;
  const uint8_t* hva = nullptr;
};

// What every thread reads.
struct Shared {
  const Config& cfg;
  // release/acquire: the main thread's phase changes; data threads poll them.
  std::atomic<bool> sending{true};
  std::atomic<bool> quit{false};
  std::atomic<bool> failed{false};  // a thread threw: everyone stops
};

// The guest driver of one queue pair of one front end (a data thread), with
// its workload state and its mailbox to the control thread.
class Lane {
 public:
  Lane(Shared& sh, VhostUserFrontend& fe, int side, uint16_t qp)
      : sh_(sh), cfg_(sh.cfg), fe_(fe), side_(side), qp_(qp), frames_(kBurst, std::vector<uint8_t>(kMssFrame)) {}

  // Data thread entry.
  void run() noexcept {
    try {
      loop();
    } catch (const std::exception& e) {
      error = e.what();
      sh_.failed.store(true, std::memory_order_release);  // release: error is visible to the main thread
    }
  }

  // Control thread: performs a posted batch of unmaps; true when there was one.
  bool serve_mailbox() {
    if (!mail_busy.load(std::memory_order_acquire)) return false;  // acquire: pairs with the post's release
    for (const PageJob& j : mail) {
      fe_.unmap(j.iova, kPage);
      fe_.map(j.iova, j.gpa, kPage, j.perm);
    }
    mail.clear();
    mail_busy.store(false, std::memory_order_release);  // release: the mailbox goes back to the data thread
    return true;
  }

  // Setup (dma_map callback, start thread of this front end).
  PoolArea rx_pool, tx_pool;

  // Progress, owner-written, read by the main thread (relaxed).
  std::atomic<uint64_t> sent{0}, received{0}, transactions{0};
  std::atomic<bool> idle{false};  // while not sending: nothing in flight, nothing owed
  // Read by the main thread after join.
  uint64_t bad = 0;            // frames without a valid tag or of a kind this side never gets
  uint64_t stray = 0;          // valid frames for another pair (a back end that mixes queues)
  uint64_t rr_timeouts = 0;
  uint64_t window_resets = 0;
  uint64_t data_received = 0;  // data frames (B) or responses (A) that arrived
  std::vector<uint32_t> rtt_ns;
  std::string error;

  // The mailbox: the data thread's while mail_busy is false.
  std::vector<PageJob> mail;
  std::atomic<bool> mail_busy{false};

 private:
  bool is_a() const noexcept { return side_ == 0; }
  bool iommu() const noexcept { return cfg_.mode != Mode::kIdentity; }

  void loop() {
    fe_.post_rx(qp_, cfg_.queue_size);
    while (!sh_.quit.load(std::memory_order_acquire) && !sh_.failed.load(std::memory_order_acquire)) {
      bool busy = false;
      fe_.reap_tx(qp_);
      const uint64_t done = fe_.pair_stats(qp_).tx_completed;
      if (done != tx_done_) {
        on_tx_done(done - tx_done_);
        tx_done_ = done;
        busy = true;
      }
      busy |= fe_.poll_rx(qp_, [this](std::span<const uint8_t> f) { on_frame(f); }) != 0;
      post_jobs();
      fe_.post_rx(qp_, cfg_.queue_size);
      busy |= send();
      const bool sending = sh_.sending.load(std::memory_order_acquire);
      idle.store(!sending && tx_done_ == fe_.pair_stats(qp_).tx_frames && acks_owed_ == 0 && responses_owed_.empty(),
                 std::memory_order_relaxed);
      if (!busy) sched_yield();
    }
  }

  // --- vIOMMU patterns ---

  void page_job(const PoolArea& pool, uint32_t index) {
    jobs_.push_back({pool.iova + uint64_t{index} * kBufBytes, pool.gpa + uint64_t{index} * kBufBytes, pool.perm});
    if (jobs_.size() == 1) first_job_ = Clock::now();
  }

  void on_tx_done(uint64_t n) {
    if (cfg_.mode == Mode::kStrict) {
      // Completions come back in ring order from both back ends.
      for (uint64_t i = 0; i < n && !tx_inflight_.empty(); ++i) {
        page_job(tx_pool, tx_inflight_.front());
        tx_inflight_.pop_front();
      }
    } else if (cfg_.mode == Mode::kLazy) {
      for (uint64_t i = 0; i < n; ++i)
        if (++tx_completions_ % cfg_.lazy_recycle == 0 && cfg_.recycle_tx) {
          page_job(tx_pool, tx_recycle_cursor_);
          tx_recycle_cursor_ = (tx_recycle_cursor_ + 1) % cfg_.queue_size;
        }
    }
  }

  // The receive buffer a frame (header stripped) lies in.
  void on_rx_buffer(std::span<const uint8_t> f) {
    if (!iommu()) return;
    const uint8_t* buf = f.data() - kNetHdrSize;
    if (buf < rx_pool.hva || buf >= rx_pool.hva + uint64_t{cfg_.queue_size} * kBufBytes) return;  // gathered copy
    const auto index = static_cast<uint32_t>((buf - rx_pool.hva) / kBufBytes);
    if (cfg_.mode == Mode::kStrict || (++rx_completions_ % cfg_.lazy_recycle == 0 && cfg_.recycle_rx))
      page_job(rx_pool, index);
  }

  // Strict: the round's unmaps, waited for before any buffer is reused.
  // Lazy: a batch of lazy_flush recycled pages (or older than the flush
  // timer), not waited for.
  void post_jobs() {
    if (jobs_.empty()) return;
    if (cfg_.mode == Mode::kLazy) {
      if (jobs_.size() < cfg_.lazy_flush && Clock::now() - first_job_ < kLazyFlushAge) return;
      if (mail_busy.load(std::memory_order_acquire)) return;  // the last batch is still going out
    }
    mail.swap(jobs_);
    mail_busy.store(true, std::memory_order_release);  // release: the jobs, to serve_mailbox's acquire
    jobs_.clear();
    if (cfg_.mode != Mode::kStrict) return;
    while (mail_busy.load(std::memory_order_acquire)) {
      if (sh_.failed.load(std::memory_order_acquire) || sh_.quit.load(std::memory_order_acquire)) return;
      sched_yield();
    }
  }

  // --- workload ---

  void on_frame(std::span<const uint8_t> f) {
    on_rx_buffer(f);
    if (f.size() < kTagOffset + sizeof(Tag)) {
      ++bad;
      return;
    }
    const Tag t = vxlate::decode<Tag>(f.subspan(kTagOffset));
    if (t.magic.get() != kMagic) {
      ++bad;
      return;
    }
    received.store(received.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (t.qp.get() != qp_) {
      ++stray;
      return;
    }
    const uint64_t seq = t.seq.get();
    switch (t.kind) {
      case kData:
        if (is_a()) break;
        ++data_received;
        if (cfg_.workload != Workload::kTcpStream) return;
        ack_value_ = seq + 1;
        if (++unacked_ == 2) {
          unacked_ = 0;
          ++acks_owed_;
        }
        return;
      case kAck:
        if (!is_a()) break;
        if (seq > acked_) {
          acked_ = seq;
          last_ack_ = Clock::now();
        }
        return;
      case kRequest:
        if (is_a()) break;
        ++data_received;
        responses_owed_.push_back(seq);
        return;
      case kResponse:
        if (!is_a()) break;
        ++data_received;
        if (rr_out_ && seq == rr_seq_) {
          rr_out_ = false;
          rtt_ns.push_back(static_cast<uint32_t>(
              std::min<int64_t>(UINT32_MAX, std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - rr_t0_).count())));
          transactions.store(transactions.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        }
        return;
      default: break;
    }
    ++bad;
  }

  // Writes frame i of the burst: kind, seq, and this lane's next txno.
  std::span<const uint8_t> frame(size_t i, Kind kind, uint64_t seq, uint32_t len) {
    uint8_t* p = frames_[i].data();
    std::memcpy(p, kDst, 6);
    std::memcpy(p + 6, kSrc, 6);
    p[12] = 0x88;  // local experimental ethertype 0x88b5
    p[13] = 0xb5;
    Tag t{};
    t.magic.set(kMagic);
    t.kind = kind;
    t.qp.set(qp_);
    t.seq.set(seq);
    t.txno.set(txno_ + static_cast<uint32_t>(i));
    vxlate::encode(std::span<uint8_t>(p + kTagOffset, sizeof t), t);
    return {p, len};
  }

  // Sends what the workload wants now; true when anything went out.
  bool send() {
    const bool sending = sh_.sending.load(std::memory_order_acquire);
    size_t room = kBurst;
    if (cfg_.mode == Mode::kStrict) {
      // Keep a burst's worth of buffers free so send_burst() never reaps (and
      // reuses) a buffer this lane has not unmapped yet.
      const uint64_t inflight = sent.load(std::memory_order_relaxed) - tx_done_;
      const uint64_t cap = cfg_.queue_size - VhostUserFrontend::kMaxBurst;
      room = inflight >= cap ? 0 : std::min<uint64_t>(room, cap - inflight);
    }
    std::span<const uint8_t> out[kBurst];
    size_t n = 0;
    const auto now = Clock::now();
    switch (cfg_.workload) {
      case Workload::kUdpStream64:
        if (is_a() && sending)
          for (; n < room; ++n) out[n] = frame(n, kData, data_seq_ + n, cfg_.frame_size);
        break;
      case Workload::kTcpStream:
        if (is_a()) {
          if (!sending) break;
          if (data_seq_ - acked_ >= kTcpWindow && now - last_ack_ > cfg_.stall) {
            acked_ = data_seq_;  // the frames or ACKs were lost: reopen the window
            last_ack_ = now;
            ++window_resets;
          }
          const uint64_t window = kTcpWindow - std::min<uint64_t>(kTcpWindow, data_seq_ - acked_);
          for (; n < std::min<uint64_t>(room, window); ++n) out[n] = frame(n, kData, data_seq_ + n, kMssFrame);
        } else {
          for (; n < std::min<uint64_t>(room, acks_owed_); ++n) out[n] = frame(n, kAck, ack_value_, kAckFrame);
        }
        break;
      case Workload::kTcpRr:
        if (is_a()) {
          if (rr_out_ && now - rr_t0_ > cfg_.stall) {
            rr_out_ = false;
            ++rr_timeouts;
          }
          if (!rr_out_ && sending && room > 0) out[n++] = frame(0, kRequest, rr_seq_ + 1, kRrFrame);
        } else {
          for (; n < std::min<size_t>(room, responses_owed_.size()); ++n)
            out[n] = frame(n, kResponse, responses_owed_[n], kRrFrame);
        }
        break;
    }
    if (n == 0) return false;
    const size_t k = fe_.send_burst(qp_, std::span<const std::span<const uint8_t>>(out, n));
    if (k == 0) return false;
    if (cfg_.mode == Mode::kStrict) find_tx_buffers(k);
    txno_ += static_cast<uint32_t>(k);
    sent.store(sent.load(std::memory_order_relaxed) + k, std::memory_order_relaxed);
    switch (cfg_.workload) {
      case Workload::kUdpStream64: data_seq_ += k; break;
      case Workload::kTcpStream:
        if (is_a()) {
          if (data_seq_ == acked_) last_ack_ = now;  // the window's clock starts with its first frame
          data_seq_ += k;
        } else {
          acks_owed_ -= k;
        }
        break;
      case Workload::kTcpRr:
        if (is_a()) {
          rr_out_ = true;
          rr_seq_ += 1;
          rr_t0_ = now;
        } else {
          responses_owed_.erase(responses_owed_.begin(), responses_owed_.begin() + static_cast<ptrdiff_t>(k));
        }
        break;
    }
    return true;
  }

  // Strict: the transmit buffers the last k frames went into, in ring order
  // (the front end does not say; their txno names them).
  void find_tx_buffers(size_t k) {
    uint32_t found[kBurst];
    std::fill(found, found + k, UINT32_MAX);
    for (uint32_t i = 0; i < cfg_.queue_size; ++i) {
      const uint8_t* p = tx_pool.hva + uint64_t{i} * kBufBytes + kNetHdrSize + kTagOffset;
      const Tag t = vxlate::decode<Tag>(std::span<const uint8_t>(p, sizeof(Tag)));
      const uint32_t d = t.txno.get() - txno_;
      if (t.magic.get() == kMagic && d < k) found[d] = i;
    }
    for (size_t i = 0; i < k; ++i)
      if (found[i] != UINT32_MAX) tx_inflight_.push_back(found[i]);
  }

  Shared& sh_;
  const Config& cfg_;
  VhostUserFrontend& fe_;
  int side_;  // 0: A (sends data, requests), 1: B (answers)
  uint16_t qp_;
  std::vector<std::vector<uint8_t>> frames_;
  uint32_t txno_ = 0;
  uint64_t tx_done_ = 0;  // tx_completed seen
  // vIOMMU state.
  std::vector<PageJob> jobs_;
  Clock::time_point first_job_{};
  std::deque<uint32_t> tx_inflight_;  // strict: transmit buffers posted, in ring order
  uint64_t tx_completions_ = 0, rx_completions_ = 0;
  uint32_t tx_recycle_cursor_ = 0;
  // Workload state.
  uint64_t data_seq_ = 0;         // A: next data frame
  uint64_t acked_ = 0;            // A, tcp_stream: frames acknowledged
  Clock::time_point last_ack_{};  // A, tcp_stream: the window's last progress
  uint32_t unacked_ = 0;          // B, tcp_stream: frames since the last ACK
  uint64_t acks_owed_ = 0;        // B, tcp_stream
  uint64_t ack_value_ = 0;        // B, tcp_stream: next frame expected
  std::vector<uint64_t> responses_owed_;  // B, tcp_rr
  bool rr_out_ = false;           // A, tcp_rr: a request is outstanding
  uint64_t rr_seq_ = 0;
  Clock::time_point rr_t0_{};
};

// The q-quantile of v in microseconds (reorders v).
template <typename T>
double quantile_us(std::vector<T>& v, double q) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(k), v.end());
  return static_cast<double>(v[k]) / 1000.0;
}

struct Totals {
  uint64_t sent = 0, received = 0, transactions = 0;
};

Totals totals(const std::vector<std::unique_ptr<Lane>>& lanes) {
  Totals t;
  for (const auto& l : lanes) {
    // relaxed: progress counters, owner-written.
    t.sent += l->sent.load(std::memory_order_relaxed);
    t.received += l->received.load(std::memory_order_relaxed);
    t.transactions += l->transactions.load(std::memory_order_relaxed);
  }
  return t;
}

// The figures of a finished run, as text (and with --json one JSON object as
// the last line) on stdout; returns the exit status: 0 when clean, 1 when a
// frame was malformed, a ring error was seen or the back end refused an
// UPDATE or INVALIDATE. `at_deadline`: the totals when sending stopped;
// `seconds`: the sending time.
int report(const Config& cfg, const std::vector<std::unique_ptr<Lane>>& lanes,
           const std::unique_ptr<VhostUserFrontend> (&fes)[2], const Totals& at_deadline, double seconds,
           bool drained) {
  const Totals fin = totals(lanes);
  uint64_t bad = 0, stray = 0, rr_timeouts = 0, window_resets = 0, tx_full = 0, rx_errors = 0;
  uint64_t a_sent = 0, b_received = 0;
  std::vector<uint32_t> rtts;
  for (size_t i = 0; i < lanes.size(); ++i) {
    const Lane& l = *lanes[i];
    bad += l.bad;
    stray += l.stray;
    rr_timeouts += l.rr_timeouts;
    window_resets += l.window_resets;
    rtts.insert(rtts.end(), l.rtt_ns.begin(), l.rtt_ns.end());
    const int side = i < cfg.queue_pairs ? 0 : 1;
    const auto& ps = fes[side]->pair_stats(static_cast<uint16_t>(i % cfg.queue_pairs));
    tx_full += ps.tx_full;
    rx_errors += ps.rx_errors;
    if (side == 0) a_sent += l.sent.load(std::memory_order_relaxed);
    if (side == 1) b_received += l.received.load(std::memory_order_relaxed);
  }
  uint64_t misses = 0, answered = 0, unanswered = 0, updates = 0, update_nacks = 0, invalidates = 0, inval_nacks = 0;
  std::vector<uint64_t> inval_ns, update_ns;
  for (auto& fe : fes) {
    const auto& s = fe->stats();
    misses += s.misses;
    answered += s.misses_answered;
    unanswered += s.misses_unanswered();
    updates += s.updates;
    update_nacks += s.update_nacks;
    invalidates += s.invalidates;
    inval_nacks += s.invalidate_nacks;
    inval_ns.insert(inval_ns.end(), s.invalidate_ack_ns.begin(), s.invalidate_ack_ns.end());
    update_ns.insert(update_ns.end(), s.update_ack_ns.begin(), s.update_ack_ns.end());
  }
  const uint64_t drops = fin.sent > fin.received ? fin.sent - fin.received : 0;
  const double inval_p50 = quantile_us(inval_ns, 0.50), inval_p99 = quantile_us(inval_ns, 0.99);
  const double update_p50 = quantile_us(update_ns, 0.50), update_p99 = quantile_us(update_ns, 0.99);
  const double rtt_p50 = quantile_us(rtts, 0.50), rtt_p99 = quantile_us(rtts, 0.99);
  const double tx_pps = seconds > 0 ? double(at_deadline.sent) / seconds : 0;
  const double rx_pps = seconds > 0 ? double(at_deadline.received) / seconds : 0;
  const double tps = seconds > 0 ? double(at_deadline.transactions) / seconds : 0;
  const bool clean = bad == 0 && rx_errors == 0 && inval_nacks == 0 && update_nacks == 0;

  std::printf("%s %s qp=%u %.2f s: sent %.0f/s received %.0f/s (A->B sent %llu, received on B %llu)\n",
              to_string(cfg.workload), to_string(cfg.mode), unsigned{cfg.queue_pairs}, seconds, tx_pps, rx_pps,
              static_cast<unsigned long long>(a_sent), static_cast<unsigned long long>(b_received));
  std::printf("  frames sent %llu received %llu drops %llu%s (bad %llu, stray %llu, ring full %llu)\n",
              static_cast<unsigned long long>(fin.sent), static_cast<unsigned long long>(fin.received),
              static_cast<unsigned long long>(drops), drained ? "" : " (drain incomplete)",
              static_cast<unsigned long long>(bad), static_cast<unsigned long long>(stray),
              static_cast<unsigned long long>(tx_full));
  if (cfg.mode != Mode::kIdentity)
    std::printf("  misses %llu answered %llu unanswered %llu, updates %llu (ack p50 %.1f us p99 %.1f us), "
                "invalidates %llu (ack p50 %.1f us p99 %.1f us), nacks %llu\n",
                static_cast<unsigned long long>(misses), static_cast<unsigned long long>(answered),
                static_cast<unsigned long long>(unanswered), static_cast<unsigned long long>(updates), update_p50,
                update_p99, static_cast<unsigned long long>(invalidates), inval_p50, inval_p99,
                static_cast<unsigned long long>(update_nacks + inval_nacks));
  if (cfg.workload == Workload::kTcpRr)
    std::printf("  transactions %.0f/s, rtt p50 %.1f us p99 %.1f us, timeouts %llu\n", tps, rtt_p50, rtt_p99,
                static_cast<unsigned long long>(rr_timeouts));
  if (cfg.workload == Workload::kTcpStream)
    std::printf("  window resets %llu\n", static_cast<unsigned long long>(window_resets));
  if (cfg.json)
    std::printf("{\"tool\":\"vxlate-vuload\",\"workload\":\"%s\",\"mode\":\"%s\",\"queue_pairs\":%u,\"queue_size\":%u,"
                "\"frame_size\":%u,\"recycle\":\"%s\","
                "\"seconds\":%.3f,\"tx_frames\":%llu,\"rx_frames\":%llu,\"tx_pps\":%.0f,\"rx_pps\":%.0f,"
                "\"drops\":%llu,\"drained\":%s,\"bad_frames\":%llu,\"stray_frames\":%llu,\"tx_ring_full\":%llu,"
                "\"misses\":%llu,\"misses_answered\":%llu,\"misses_unanswered\":%llu,\"updates\":%llu,"
                "\"update_ack_p50_us\":%.2f,\"update_ack_p99_us\":%.2f,\"invalidates\":%llu,"
                "\"invalidate_ack_p50_us\":%.2f,\"invalidate_ack_p99_us\":%.2f,\"nacks\":%llu,"
                "\"rr_tps\":%.0f,\"rr_p50_us\":%.2f,\"rr_p99_us\":%.2f,\"rr_timeouts\":%llu,\"window_resets\":%llu,"
                "\"clean\":%s}\n",
                to_string(cfg.workload), to_string(cfg.mode), unsigned{cfg.queue_pairs}, cfg.queue_size,
                data_frame_bytes(cfg), recycle_name(cfg), seconds,
                static_cast<unsigned long long>(fin.sent), static_cast<unsigned long long>(fin.received), tx_pps,
                rx_pps, static_cast<unsigned long long>(drops), drained ? "true" : "false",
                static_cast<unsigned long long>(bad), static_cast<unsigned long long>(stray),
                static_cast<unsigned long long>(tx_full), static_cast<unsigned long long>(misses),
                static_cast<unsigned long long>(answered), static_cast<unsigned long long>(unanswered),
                static_cast<unsigned long long>(updates), update_p50, update_p99,
                static_cast<unsigned long long>(invalidates), inval_p50, inval_p99,
                static_cast<unsigned long long>(update_nacks + inval_nacks), tps, rtt_p50, rtt_p99,
                static_cast<unsigned long long>(rr_timeouts), static_cast<unsigned long long>(window_resets),
                clean ? "true" : "false");
  std::fflush(stdout);
  return clean ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const Config cfg = parse(argc, argv);
  Shared sh{cfg};
  const bool iommu = cfg.mode != Mode::kIdentity;

  // Two front ends, one lane per (front end, pair): lanes [0, N) are A's.
  std::unique_ptr<VhostUserFrontend> fes[2];
  std::vector<std::unique_ptr<Lane>> lanes;
  for (int side = 0; side < 2; ++side) {
    VhostUserFrontendOptions o;
    o.path = cfg.sockets[side];
    o.queue_pairs = cfg.queue_pairs;
    o.queue_size = cfg.queue_size;
    // Rings, indirect tables and two pools of queue_size pages per pair, with room to spare.
    o.mem_bytes = (64ull << 20) + uint64_t{cfg.queue_pairs} * cfg.queue_size * 4 * kBufBytes;
    o.iommu = iommu;
    o.event_idx = true;  // as Linux's virtio-net
    o.rx_buf_len = kBufBytes;
    o.tx_buf_len = kBufBytes;
    o.connect_timeout_ms = kConnectTimeoutMs;
    // From start() (this side's start thread): every area mapped with the
    // perm it asks (RW for receive buffers: DPDK asks RW), pools recorded.
    o.dma_map = [&fes, &lanes, side, &cfg](const VhostUserDmaArea& a) {
      VhostUserFrontend& fe = *fes[side];
      const uint64_t iova = fe.default_iova(a.gpa);
      fe.map(iova, a.gpa, a.bytes, a.perm);
      Lane& l = *lanes[size_t{static_cast<size_t>(side)} * cfg.queue_pairs + a.ring / 2];
      const PoolArea pool{a.gpa, iova, a.perm, fe.memory().hva(a.gpa)};
      if (a.use == VhostUserDmaArea::kRxBuffers) l.rx_pool = pool;
      if (a.use == VhostUserDmaArea::kTxBuffers) l.tx_pool = pool;
      return iova;
    };
    fes[side] = std::make_unique<VhostUserFrontend>(std::move(o));
  }
  for (int side = 0; side < 2; ++side)
    for (uint16_t qp = 0; qp < cfg.queue_pairs; ++qp) lanes.push_back(std::make_unique<Lane>(sh, *fes[side], side, qp));

  // Both front ends start at once (DPDK takes about a second to read a new
  // connection's first message); their control sides come to this thread
  // at join().
  {
    std::string errs[2];
    std::thread starters[2];
    for (int side = 0; side < 2; ++side)
      starters[side] = std::thread([&, side] {
        try {
          fes[side]->start();
        } catch (const std::exception& e) {
          errs[side] = e.what();
        }
      });
    for (auto& t : starters) t.join();
    for (int side = 0; side < 2; ++side)
      if (!errs[side].empty()) {
        std::fprintf(stderr, "vxlate-vuload: %s: %s\n", cfg.sockets[side].c_str(), errs[side].c_str());
        return 1;
      }
  }

  std::vector<std::thread> threads;
  for (auto& l : lanes) threads.emplace_back([p = l.get()] { p->run(); });

  // The vCPU + VMM of both front ends.
  const bool tty = isatty(2);
  const auto t0 = Clock::now();
  const auto deadline = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(cfg.seconds));
  auto next_progress = t0 + 1s;
  Totals last{}, at_deadline{};
  auto drain_until = Clock::time_point::max();
  auto quiet_since = Clock::time_point::max();
  uint64_t last_rx = 0;
  std::string control_error;
  bool drained = false;
  try {
    for (;;) {
      bool work = false;
      for (auto& fe : fes) work |= fe->serve_misses(0) != 0;
      for (auto& l : lanes) work |= l->serve_mailbox();
      if (sh.failed.load(std::memory_order_acquire)) break;
      const auto now = Clock::now();
      if (now >= next_progress && now < deadline) {
        const Totals t = totals(lanes);
        const auto& s0 = fes[0]->stats();
        const auto& s1 = fes[1]->stats();
        std::fprintf(stderr, "%s%-13s %-8s %4.0f s  sent %9.0f/s  received %9.0f/s", tty ? "\r" : "",
                     to_string(cfg.workload), to_string(cfg.mode), std::chrono::duration<double>(now - t0).count(),
                     double(t.sent - last.sent), double(t.received - last.received));
        if (cfg.workload == Workload::kTcpRr) std::fprintf(stderr, "  %7.0f trans/s", double(t.transactions - last.transactions));
        if (iommu)
          std::fprintf(stderr, "  misses %llu  invalidates %llu",
                       static_cast<unsigned long long>(s0.misses_answered + s1.misses_answered),
                       static_cast<unsigned long long>(s0.invalidates + s1.invalidates));
        std::fprintf(stderr, "%s", tty ? "\033[K" : "\n");
        last = t;
        next_progress += 1s;
      }
      if (now >= deadline && drain_until == Clock::time_point::max()) {
        at_deadline = totals(lanes);
        sh.sending.store(false, std::memory_order_release);  // release: pairs with the lanes' acquire
        drain_until = now + kDrainMax;
        quiet_since = now;
        last_rx = at_deadline.received;
      }
      if (drain_until != Clock::time_point::max()) {
        const uint64_t rx = totals(lanes).received;
        if (rx != last_rx) {
          last_rx = rx;
          quiet_since = now;
        }
        const bool idle = std::all_of(lanes.begin(), lanes.end(),
                                      [](const auto& l) { return l->idle.load(std::memory_order_relaxed); });
        if ((idle && now - quiet_since >= kDrainQuiet) || now >= drain_until) {
          drained = idle;
          break;
        }
      }
      if (!work) sched_yield();
    }
  } catch (const std::exception& e) {
    control_error = e.what();
  }
  if (tty) std::fprintf(stderr, "\r\033[K");
  const double seconds = std::chrono::duration<double>(std::min(Clock::now(), deadline) - t0).count();
  sh.quit.store(true, std::memory_order_release);  // release: pairs with the lanes' acquire
  // A lane waiting on its mailbox needs the control side until it sees quit.
  for (auto& t : threads) t.join();
  for (auto& l : lanes)
    if (!l->error.empty()) {
      std::fprintf(stderr, "vxlate-vuload: data thread: %s\n", l->error.c_str());
      if (control_error.empty()) control_error = l->error;
    }
  if (control_error.empty()) {
    for (auto& fe : fes) {
      try {
        fe->stop();
      } catch (const std::exception& e) {
        control_error = e.what();
      }
    }
  }
  if (!control_error.empty()) {
    std::fprintf(stderr, "vxlate-vuload: %s\n", control_error.c_str());
    return 1;
  }

  return report(cfg, lanes, fes, at_deadline, seconds, drained);
}
