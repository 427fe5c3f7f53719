// vxlate/common/rcu.h: quiescent-state RCU for data-plane readers, a thin wrapper
// over DPDK's rte_rcu_qsbr, and a writer-side deferred-free list.
//
// Readers are poll-mode threads (DPDK lcores). Each takes a dense reader id once,
// goes online, and reports a quiescent state between bursts (never inside one);
// a reader about to block or idle goes offline so it never stalls a writer.
// Between two quiescent reports a reader may hold any pointer it loaded from an
// RCU-protected structure. A writer unlinks an object, takes a token with
// start(), and frees the object only once check(token) is true (or after
// synchronize()): by then every online reader has passed a quiescent point, so
// none can still hold the pointer.
//
// Deferred free: DPDK's own defer queue (rte_rcu_qsbr_dq) needs an initialised
// EAL because it allocates an rte_ring. vxlate's core libraries must stay
// embeddable in back ends that are not DPDK applications, and every vxlate writer
// is already serialised, so RcuDeferQueue is a plain FIFO of (token, object)
// owned by one writer: no ring, no EAL, no atomics of its own. Tokens from
// start() only grow, so reclaim() stops at the first entry that is not ready.
//
// Several objects, one grace period (RcuClient). An object that keeps state
// per reader which must be brought up to date before the reader acknowledges a
// grace period (an IOTLB's private cache and its position in the IOTLB's
// invalidation log) attaches itself to the Rcu. Every quiescent report of a
// reader, through whichever object it is made (Rcu::quiescent, any IOTLB's
// quiescent(), a writer's synchronize(self)), first loads the token; when it
// differs from the token the reader last acknowledged, the report runs every
// attached client's rcu_quiescent(id), then acknowledges the token; going
// online runs every client's rcu_online(id). So a grace period covers every
// device and IOTLB that shares the Rcu, however many there are and whichever
// one the reader reported through. Writers publish before they take a token,
// so an unchanged token means nothing new for the clients: such a report is
// two loads (the token, a read-mostly line, and the reader's own counter) and
// touches no client; a reader meets a line another core wrote (the token,
// then what its clients read) only when something was published.
//
// Coalesced acknowledgements (quiescent_busy). Each grace period a reader
// acknowledges costs it cross-core transfers whatever it applies: the token's
// line (the writer wrote it), its counter's line (the waiting writer polls
// it, so the store must take it back), and what its clients read (an IOTLB's
// log record). At two-vCPU placements where a line transfer costs
// ~200 ns, a writer that syncs as fast as the reader acknowledges (about a
// million grace periods a second) takes half to two thirds of a busy
// reader's time (bench/RESULTS.md, BM_HitUnderChurn). A busy reader may
// therefore acknowledge on every k-th busy report instead: the same misses,
// once per k bursts, for grace periods up to k - 1 bursts longer, as DPDK's
// QSBR documentation leaves the reporting frequency to the application. Or it
// may pace them by time (quiescent_paced): at most one acknowledgement per
// min_gap of its own clock while grace periods keep coming, and at once for
// one that follows a quiet spell, as Linux's RCU reports quiescent states
// from its scheduler tick rather than at every context switch. An idle
// report always acknowledges at once.
//
// Grace periods are vxlate's own code over rte_rcu_qsbr's reader counters:
// start() is an atomic increment of the token, check() scans the registered
// readers' counters with atomic loads, online() stores the reader's counter
// with seq_cst. rte_rcu_qsbr_check() caches the oldest acknowledged token in a
// plain field (acked_token) that two concurrent callers would race on; our
// check() keeps the same cache in an atomic (raised by compare-and-swap), so
// several control threads (one per device) may run start()/check()/
// synchronize() on one Rcu at the same time. The
// store->load pairs that coming online relies on (the reader stores its
// counter, then loads what writers published; a writer publishes, then loads
// the counters) are seq_cst on both sides, not a fence that only x86's locked
// instructions imply, so the promise holds on weaker memory models too. Our
// loops are inline, so ThreadSanitizer sees every pair, and wait() yields the
// CPU after a short spin, which matters when readers and writers share
// oversubscribed cores.
//
// Thread-safety contract (the fixed tags of docs/design.md):
//   - Setup only: Rcu construction and destruction; no reader may be online.
//   - Any thread (internally locked): register_reader(), unregister_reader();
//     no reader may be online across unregister_reader().
//   - Reader side: online(), offline(), quiescent(), quiescent_busy(),
//     quiescent_paced(), quiescent_token(), ReadSection; wait-free, only by
//     the thread that owns the id; checked in debug builds (id in range,
//     online, no quiescent report inside a read section).
//   - Writer side: start(), check(), synchronize(), wait(); any number of
//     threads at once (each device's control thread), none of them an online
//     reader unless it passes its own id to synchronize().
//   - Any thread (internally locked): attach(); detach() also waits a grace
//     period, so it must not be called by an online reader.
//   - RcuDeferQueue: writer side, owned by one writer; not thread-safe.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include <rte_rcu_qsbr.h>

#include "vxlate/common/check.h"
#include "vxlate/common/mutex.h"

namespace vxlate {

// Per-reader state kept by another object that a grace period must cover (see
// the file note). Both calls are reader side: they run on reader `id`'s own
// thread, inside Rcu::online() and inside every quiescent report, with no
// read section open; they must be wait-free and must not report quiescent.
class RcuClient {
 public:
  // Reader `id` just came online (its counter is published): restart its view.
  virtual void rcu_online(uint32_t id) noexcept = 0;
  // Reader `id` loaded the token it is about to acknowledge: apply everything
  // published before that token.
  virtual void rcu_quiescent(uint32_t id) noexcept = 0;

 protected:
  ~RcuClient() = default;
};

class Rcu {
 public:
  // Largest reader count one Rcu supports; each reader costs one cache line
  // that check() scans, so data planes size this to their lcore count.
  static constexpr uint32_t kMaxReadersLimit = 1024;
  // Spins of wait() before it starts yielding: ~a few microseconds, longer than
  // one reader burst on a running core.
  static constexpr unsigned kSpinsBeforeYield = 1024;
  // "No reader": the self id of a writer that is not an online reader.
  static constexpr uint32_t kNoReader = RTE_QSBR_THRID_INVALID;
  // Clients one Rcu holds (one IOTLB per device): bounds the scan in every
  // quiescent report.
  static constexpr uint32_t kMaxClients = 1024;

  // Setup only. Throws std::invalid_argument for 0 or > kMaxReadersLimit,
  // std::bad_alloc when memory runs out.
  explicit Rcu(uint32_t max_readers);
  ~Rcu();
  Rcu(const Rcu&) = delete;
  Rcu& operator=(const Rcu&) = delete;

  // Any thread (internally locked): takes the lowest free dense id and registers it (offline).
  // Throws std::length_error when all max_readers ids are taken.
  uint32_t register_reader();
  // Any thread (internally locked): the reader must be offline.
  void unregister_reader(uint32_t id);

  // Any thread (internally locked): `c` takes part in every reader's online
  // and quiescent reports from now on. Readers that are online now have not
  // run c.rcu_online(): c's per-reader state must start valid (empty).
  // Throws std::length_error when kMaxClients are attached.
  void attach(RcuClient& c);
  // Any thread but an online reader, blocking: no reader runs `c` after this
  // returns (it waits one grace period). No-op when `c` is not attached.
  void detach(RcuClient& c) noexcept;

  // Reader side, wait-free. online() before the first read section; offline()
  // before anything that may block or a long idle period.
  void online(uint32_t id) noexcept {
    VXLATE_DCHECK(id < max_readers_, "Rcu::online: reader id out of range");
    // seq_cst store: ordered before the clients' loads of what writers
    // published (seq_cst in rcu_online) and paired with check()'s seq_cst
    // loads, so either the writer waits for this reader or the reader sees
    // the writer's publication. The token may be stale: the writer then waits.
    // acquire: pairs with start()'s increment, so what was published before
    // this token is visible to rcu_online() below, and a later report that
    // finds the same token may skip the clients.
    __atomic_store_n(&v_->qsbr_cnt[id].cnt, __atomic_load_n(&v_->token, __ATOMIC_ACQUIRE), __ATOMIC_SEQ_CST);
    self_ = Self{serial_, id};
    local_[id].deferred = 0;
    for_each_client([id](RcuClient& c) { c.rcu_online(id); });
  }
  void offline(uint32_t id) noexcept {
    VXLATE_DCHECK(id < max_readers_, "Rcu::offline: reader id out of range");
    VXLATE_DCHECK(sections_[id] == 0, "Rcu::offline: inside a read section (a burst)");
    if (self_.rcu == serial_ && self_.id == id) self_ = Self{0, kNoReader};
    rte_rcu_qsbr_thread_offline(v_, id);
  }
  // Reader side, wait-free: "I hold no protected pointer now." One call per
  // poll-loop iteration, between bursts: loads the token and, when it is new
  // to this reader, brings every attached client up to date for this reader,
  // then acknowledges it. A token equal to the reader's counter was taken
  // before the report (or the online()) that stored the counter, which
  // already applied everything published before it.
  void quiescent(uint32_t id) noexcept {
    check_quiescent_report(id);
    const uint64_t token = quiescent_token();
    // relaxed: the reader's own counter, only it stores it while online.
    if (__atomic_load_n(&v_->qsbr_cnt[id].cnt, __ATOMIC_RELAXED) == token) return;
    acknowledge(id, token);
  }
  // Reader side, wait-free: quiescent() for the report after a burst that did
  // work, with acknowledgements coalesced. A token new to this reader is
  // acknowledged on the `max_deferred`-th busy report in a row that finds a
  // token pending (on every one when max_deferred <= 1), or at the next
  // quiescent() or going offline, whichever comes first. A grace period thus
  // lasts up to max_deferred - 1 of this reader's busy bursts longer, and a
  // reader under constant churn pays the cross-core misses of an
  // acknowledgement (the token's line, its counter's line the writer polls,
  // and what its clients read) once per max_deferred bursts instead of once
  // per burst. A report that finds no new token costs what quiescent()'s
  // does. Use quiescent() after idle iterations: an idle reader acknowledges
  // at once, so a grace period never waits on a reader that has nothing to do.
  void quiescent_busy(uint32_t id, uint32_t max_deferred) noexcept {
    check_quiescent_report(id);
    const uint64_t token = quiescent_token();
    // relaxed: the reader's own counter, only it stores it while online.
    if (__atomic_load_n(&v_->qsbr_cnt[id].cnt, __ATOMIC_RELAXED) == token) return;
    if (++local_[id].deferred < max_deferred) return;
    acknowledge(id, token);
  }

  // Reader side, wait-free: quiescent() for the report after a burst that did
  // work, with acknowledgements paced by time rather than counted. A token
  // new to this reader is acknowledged at once when this reader's last paced
  // acknowledgement is at least `min_gap` old, and otherwise deferred; the
  // next quiescent() or going offline acknowledges at once. `now()` is the
  // caller's monotonic clock (TSC cycles in a data plane; `min_gap` in the
  // same unit) and is read only on the 1st, 2nd, 4th, 8th, ... busy report
  // in a row that finds a token pending, so a deferred report costs what
  // quiescent_busy()'s does (two loads, an increment, a test), and the
  // reader's clock reads are logarithmic in the deferral. Hence: a grace period that follows a quiet spell of `min_gap`
  // is acknowledged on the first report that sees it, as quiescent() would;
  // under sustained churn this reader acknowledges at most once per
  // `min_gap` (the gap between two acknowledgements lies between `min_gap`
  // and about twice that, plus one burst), so what the churn costs it is
  // bounded by its acknowledgement's cross-core misses times 1/min_gap,
  // whatever rate the writers sync at, and each grace period waits up to
  // about 2 * min_gap for it. Against quiescent_busy(k): the bound is on
  // time, not bursts, so it holds whatever the burst length, and a lone
  // grace period is not delayed. min_gap 0 acknowledges on every report.
  template <typename Clock>
  void quiescent_paced(uint32_t id, uint64_t min_gap, Clock&& now) noexcept {
    check_quiescent_report(id);
    const uint64_t token = quiescent_token();
    // relaxed: the reader's own counter, only it stores it while online.
    if (__atomic_load_n(&v_->qsbr_cnt[id].cnt, __ATOMIC_RELAXED) == token) return;
    Local& l = local_[id];
    const uint32_t d = ++l.deferred;
    if ((d & (d - 1)) != 0) return;  // the clock is read on pending reports 1, 2, 4, 8, ...
    const uint64_t t = now();
    if (t - l.last_paced_ack < min_gap) return;
    l.last_paced_ack = t;
    acknowledge(id, token);
  }

  // Reader side: marks a read section (one burst) for the debug checks, as
  // rte_rcu_qsbr_lock/unlock do under RTE_LIBRTE_RCU_DEBUG: a quiescent report
  // or going offline inside one fails VXLATE_DCHECK. Costs nothing without
  // VXLATE_DEBUG_CHECKS. The reader must be online.
  class ReadSection {
   public:
    ReadSection(Rcu& rcu, uint32_t id) noexcept : rcu_(rcu), id_(id) {
      VXLATE_DCHECK(id < rcu.max_readers_, "Rcu::ReadSection: reader id out of range");
      VXLATE_DCHECK(rcu.is_online(id), "Rcu::ReadSection: the reader must be online");
      VXLATE_DEBUG_ONLY(++rcu_.sections_[id_];)
    }
    ~ReadSection() { VXLATE_DEBUG_ONLY(--rcu_.sections_[id_];) }
    ReadSection(const ReadSection&) = delete;
    ReadSection& operator=(const ReadSection&) = delete;

   private:
    [[maybe_unused]] Rcu& rcu_;
    [[maybe_unused]] uint32_t id_;
  };

  // Any thread: whether reader `id` is online now (for debug checks; relaxed,
  // exact only for the reader itself).
  bool is_online(uint32_t id) const noexcept {
    return __atomic_load_n(&v_->qsbr_cnt[id].cnt, __ATOMIC_RELAXED) != __RTE_QSBR_CNT_THR_OFFLINE;
  }

  // Any thread: the current token (acquire: pairs with the increment in
  // start(), so whatever a writer published before start() is visible after
  // it). A reader's quiescent report loads it before its clients read what
  // writers published, so it never acknowledges a grace period whose
  // publications it read too early to see.
  uint64_t quiescent_token() const noexcept { return __atomic_load_n(&v_->token, __ATOMIC_ACQUIRE); }

  // Writer side, non-blocking: a token for the current grace period. Call it
  // after unlinking. seq_cst increment: a release that publishes the unlink
  // before any reader can acknowledge the token, and ordered before the
  // counter loads in check() (see online()).
  uint64_t start() noexcept { return __atomic_add_fetch(&v_->token, 1, __ATOMIC_SEQ_CST); }
  // Writer side, non-blocking: true once every online reader has passed a
  // quiescent state after `token` was taken.
  bool check(uint64_t token) const noexcept;
  // Writer side, blocking: one full grace period. A caller that is itself a
  // registered reader passes its id: when it is online it reports quiescent
  // (applying every client) after the new token, so it does not wait on
  // itself; when it is offline it stays offline. A caller that went online on
  // this thread through online() is recognised without the id.
  void synchronize(uint32_t self_id = kNoReader) noexcept;
  // Writer side, blocking: waits until check(token) is true. A caller that is
  // an online reader of this Rcu on this thread (between its bursts: a
  // data-plane lcore running a control call) reports quiescent first instead
  // of waiting on itself forever.
  void wait(uint64_t token) noexcept;

  uint32_t max_readers() const noexcept { return max_readers_; }

 private:
  // Reader side: brings every client up to date for `token`, which is new
  // to this reader, then acknowledges it.
  void acknowledge(uint32_t id, uint64_t token) noexcept {
    for_each_client([id](RcuClient& c) { c.rcu_quiescent(id); });
    local_[id].deferred = 0;
    report_quiescent(id, token);
  }
  // Reader side: acknowledges a token new to this reader (release: pairs
  // with the acquire loads in check()).
  void report_quiescent(uint32_t id, uint64_t token) noexcept {
    __atomic_store_n(&v_->qsbr_cnt[id].cnt, token, __ATOMIC_RELEASE);
  }
  // The reader id this thread went online with, per thread, so that a
  // blocking writer call made by an online reader between its bursts does not
  // wait on itself (set by online(), cleared by offline(); one Rcu per thread
  // is remembered, the last one it went online in). The Rcu is named by a
  // serial number, never reused, rather than its address: a thread that never
  // went offline must not be mistaken for a reader of a later Rcu that happens
  // to live at the same address.
  struct Self {
    uint64_t rcu;  // serial_ of the Rcu, 0 for none
    uint32_t id;
  };
  static inline thread_local Self self_{0, kNoReader};
  uint32_t self_on_this_thread() const noexcept { return self_.rcu == serial_ ? self_.id : kNoReader; }

  template <typename F>
  void for_each_client(F&& f) noexcept {
    // acquire: pairs with the release stores in attach(): a client is fully
    // built before a reader calls it.
    const uint32_t n = nclients_.load(std::memory_order_acquire);
    for (uint32_t i = 0; i < n; ++i)
      if (RcuClient* c = clients_[i].load(std::memory_order_acquire)) f(*c);
  }

  void check_quiescent_report([[maybe_unused]] uint32_t id) const noexcept {
    VXLATE_DCHECK(id < max_readers_, "Rcu: quiescent report with a reader id out of range");
    VXLATE_DCHECK(sections_[id] == 0, "Rcu: quiescent report inside a read section (a burst)");
    VXLATE_DCHECK(is_online(id), "Rcu: quiescent report by an offline reader");
  }

  // What readers read, on lines no writer stores to while readers run: a
  // report loads v_ (then the token) every burst, and clients_ and local_
  // whenever the token is new.
  rte_rcu_qsbr* v_ = nullptr;
  uint32_t max_readers_ = 0;
  const uint64_t serial_ = next_serial();  // this instance, for self_
  static uint64_t next_serial() noexcept {
    static std::atomic<uint64_t> n{0};
    return n.fetch_add(1, std::memory_order_relaxed) + 1;  // relaxed: only uniqueness matters
  }
  // Attached clients: slots [0, nclients_) hold a client or nullptr. Written
  // under reg_mu_ (release), read by readers (acquire).
  std::unique_ptr<std::atomic<RcuClient*>[]> clients_;
  std::atomic<uint32_t> nclients_{0};
  // Per reader, only that reader's thread touches its line.
  struct alignas(64) Local {
    uint32_t deferred = 0;         // busy reports that found a token pending (quiescent_busy, _paced)
    uint64_t last_paced_ack = 0;  // quiescent_paced(): when it last acknowledged, on the caller's clock
  };
  std::unique_ptr<Local[]> local_;
  // Debug builds: open read sections per reader (empty otherwise); only that
  // reader touches its slot.
  std::vector<uint32_t> sections_;

  // Writer side. Tokens up to this are acknowledged by every reader
  // (check()'s cache). Its own line: check() stores it after every grace
  // period, and on a line with v_ or clients_ that store would cost every
  // reader one more cross-core miss per grace period.
  alignas(64) mutable std::atomic<uint64_t> acked_{0};
  // Registered ids are below this (release in register_reader(), acquire in
  // check()): bounds the counter scan.
  std::atomic<uint32_t> id_bound_{0};
  Mutex reg_mu_;
  std::vector<bool> used_ VXLATE_GUARDED_BY(reg_mu_);
};

// A FIFO of objects waiting for a grace period, owned by one writer.
// `free_fn(ctx, ptr, tag)` releases one object; `tag` is the owner's (a level,
// a size). Allocation happens here, on the writer side only.
class RcuDeferQueue {
 public:
  using FreeFn = void (*)(void* ctx, void* ptr, uintptr_t tag) noexcept;

  // Setup only. Throws std::bad_alloc (libstdc++'s std::deque allocates
  // when it is constructed).
  RcuDeferQueue(Rcu& rcu, FreeFn free_fn, void* ctx) : rcu_(rcu), free_fn_(free_fn), ctx_(ctx) {}
  // Frees everything still queued without waiting: the owner guarantees no
  // reader can reach these objects any more (teardown).
  ~RcuDeferQueue();
  RcuDeferQueue(const RcuDeferQueue&) = delete;
  RcuDeferQueue& operator=(const RcuDeferQueue&) = delete;

  // Writer side: `ptr` is already unlinked; free it after a grace period. Takes a
  // fresh token (so the unlink is ordered before it). Never fails: if the queue
  // cannot grow it waits out a grace period and frees `ptr` at once.
  void retire(void* ptr, uintptr_t tag) noexcept;
  // Writer side, non-blocking: frees every queued object whose grace period ended.
  // Returns how many were freed.
  size_t reclaim() noexcept;
  // Writer side, blocking: waits one grace period, then frees everything queued.
  void drain() noexcept;

  // Setup only (teardown): frees everything queued now, without a grace period. The
  // owner guarantees that no reader can reach these objects.
  void discard() noexcept;

  size_t pending() const noexcept { return q_.size(); }
  bool empty() const noexcept { return q_.empty(); }

 private:
  struct Entry {
    uint64_t token;
    void* ptr;
    uintptr_t tag;
  };
  Rcu& rcu_;
  FreeFn free_fn_;
  void* ctx_;
  std::deque<Entry> q_;
};

}  // namespace vxlate
