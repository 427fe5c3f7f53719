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
// synchronize() is start() + a loop over the non-blocking check(), both inline in
// rte_rcu_qsbr.h, rather than rte_rcu_qsbr_synchronize(): the inline path is
// compiled into our objects, so ThreadSanitizer sees its acquire/release pairs,
// and the loop yields the CPU after a short spin, which matters when readers
// and writer share oversubscribed cores.
//
// Thread-safety contract (the fixed tags of docs/design.md):
//   - Setup only: Rcu construction and destruction; no reader may be online.
//   - Any thread (internally locked): register_reader(), unregister_reader();
//     no reader may be online across unregister_reader().
//   - Reader side: online(), offline(), quiescent(), quiescent_token(),
//     report_quiescent(), ReadSection; wait-free, only by the thread that owns
//     the id; checked in debug builds (id in range, online, no quiescent
//     report inside a read section).
//   - Writer side: start(), check(), synchronize(), wait(); any thread that is
//     not an online reader (or passes its own id to synchronize()). DPDK reads
//     acked_token without an atomic load, so two threads calling check() at
//     once race on it (benign on x86, reported by TSan); vxlate calls them
//     from one control thread per Rcu.
//   - RcuDeferQueue: writer side, owned by one writer; not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

#include <rte_rcu_qsbr.h>

#include "vxlate/common/check.h"
#include "vxlate/common/mutex.h"

namespace vxlate {

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

  // Reader side, wait-free. online() before the first read section; offline()
  // before anything that may block or a long idle period.
  void online(uint32_t id) noexcept {
    VXLATE_DCHECK(id < max_readers_, "Rcu::online: reader id out of range");
    rte_rcu_qsbr_thread_online(v_, id);
  }
  void offline(uint32_t id) noexcept {
    VXLATE_DCHECK(id < max_readers_, "Rcu::offline: reader id out of range");
    VXLATE_DCHECK(sections_[id] == 0, "Rcu::offline: inside a read section (a burst)");
    rte_rcu_qsbr_thread_offline(v_, id);
  }
  // Reader side, wait-free: "I hold no protected pointer now." One call per
  // poll-loop iteration, between bursts. (release store of the reader's counter:
  // pairs with the acquire load in check().)
  void quiescent(uint32_t id) noexcept {
    check_quiescent_report(id);
    rte_rcu_qsbr_quiescent(v_, id);
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

  // Reader side, wait-free: quiescent() split in two, for a reader that must
  // act on everything writers published before the grace periods it
  // acknowledges (the IOTLB's invalidation log). quiescent_token() loads the
  // current token (acquire: pairs with the release increment in start(), so
  // whatever a writer published before start() is visible after it); the
  // reader then consumes what was published; report_quiescent() acknowledges
  // that token (release: pairs with the acquire load in check()). With plain
  // quiescent() the token is loaded last, so a reader could acknowledge a
  // grace period whose publications it read too early to see.
  uint64_t quiescent_token() const noexcept { return __atomic_load_n(&v_->token, __ATOMIC_ACQUIRE); }
  void report_quiescent(uint32_t id, uint64_t token) noexcept {
    check_quiescent_report(id);
    uint64_t* cnt = &v_->qsbr_cnt[id].cnt;
    // relaxed: only this reader writes its counter; skip the store (and the
    // cache-line write) when nothing changed, as rte_rcu_qsbr_quiescent does.
    if (__atomic_load_n(cnt, __ATOMIC_RELAXED) != token) __atomic_store_n(cnt, token, __ATOMIC_RELEASE);
  }

  // Writer side, non-blocking: a token for the current grace period. Call it
  // after unlinking (the token increment is a release that publishes the
  // unlink before any reader can acknowledge the token).
  uint64_t start() noexcept { return rte_rcu_qsbr_start(v_); }
  // Writer side, non-blocking: true once every online reader has passed a
  // quiescent state after `token` was taken.
  bool check(uint64_t token) noexcept { return rte_rcu_qsbr_check(v_, token, false) == 1; }
  // Writer side, blocking: one full grace period. A caller that is itself a
  // registered, online reader passes its id; it reports quiescent first so it
  // does not wait on itself.
  void synchronize(uint32_t self_id = kNoReader) noexcept;
  // Writer side, blocking: waits until check(token) is true.
  void wait(uint64_t token) noexcept;

  uint32_t max_readers() const noexcept { return max_readers_; }
  rte_rcu_qsbr* raw() noexcept { return v_; }

 private:
  void check_quiescent_report([[maybe_unused]] uint32_t id) const noexcept {
    VXLATE_DCHECK(id < max_readers_, "Rcu: quiescent report with a reader id out of range");
    VXLATE_DCHECK(sections_[id] == 0, "Rcu: quiescent report inside a read section (a burst)");
    VXLATE_DCHECK(is_online(id), "Rcu: quiescent report by an offline reader");
  }

  rte_rcu_qsbr* v_ = nullptr;
  uint32_t max_readers_ = 0;
  Mutex reg_mu_;
  std::vector<bool> used_ VXLATE_GUARDED_BY(reg_mu_);
  // Debug builds: open read sections per reader (empty otherwise); only that
  // reader touches its slot.
  std::vector<uint32_t> sections_;
};

// A FIFO of objects waiting for a grace period, owned by one writer.
// `free_fn(ctx, ptr, tag)` releases one object; `tag` is the owner's (a level,
// a size). Allocation happens here, on the writer side only.
class RcuDeferQueue {
 public:
  using FreeFn = void (*)(void* ctx, void* ptr, uintptr_t tag) noexcept;

  RcuDeferQueue(Rcu& rcu, FreeFn free_fn, void* ctx) noexcept
      : rcu_(rcu), free_fn_(free_fn), ctx_(ctx) {}
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
