#include "vxlate/common/rcu.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <thread>

#include <rte_pause.h>

namespace vxlate {

Rcu::Rcu(uint32_t max_readers)
    : max_readers_(max_readers),
      clients_(std::make_unique<std::atomic<RcuClient*>[]>(kMaxClients)),
      used_(max_readers, false) {
  if (max_readers == 0 || max_readers > kMaxReadersLimit)
    throw std::invalid_argument("Rcu: max_readers must be 1..kMaxReadersLimit");
  local_ = std::make_unique<Local[]>(max_readers);
  VXLATE_DEBUG_ONLY(sections_.assign(max_readers, 0);)
  size_t size = rte_rcu_qsbr_get_memsize(max_readers);
  size = (size + RTE_CACHE_LINE_SIZE - 1) & ~size_t{RTE_CACHE_LINE_SIZE - 1};
  // rte_rcu_qsbr needs cache-line alignment; it works without EAL.
  void* mem = std::aligned_alloc(RTE_CACHE_LINE_SIZE, size);
  if (mem == nullptr) throw std::bad_alloc();
  std::memset(mem, 0, size);
  v_ = static_cast<rte_rcu_qsbr*>(mem);
  if (rte_rcu_qsbr_init(v_, max_readers) != 0) {
    std::free(mem);
    throw std::invalid_argument("Rcu: rte_rcu_qsbr_init failed");
  }
}

Rcu::~Rcu() { std::free(v_); }

uint32_t Rcu::register_reader() {
  MutexLock lock(reg_mu_);
  for (uint32_t id = 0; id < max_readers_; ++id) {
    if (used_[id]) continue;
    used_[id] = true;
    rte_rcu_qsbr_thread_register(v_, id);
    if (id >= id_bound_.load(std::memory_order_relaxed))
      id_bound_.store(id + 1, std::memory_order_release);  // pairs with the acquire in check()
    return id;
  }
  throw std::length_error("Rcu: all reader ids are taken");
}

void Rcu::unregister_reader(uint32_t id) {
  MutexLock lock(reg_mu_);
  if (id >= max_readers_ || !used_[id]) return;
  rte_rcu_qsbr_thread_unregister(v_, id);
  used_[id] = false;
}

void Rcu::attach(RcuClient& c) {
  MutexLock lock(reg_mu_);
  const uint32_t n = nclients_.load(std::memory_order_relaxed);  // only writers under reg_mu_ store
  for (uint32_t i = 0; i < n; ++i) {
    if (clients_[i].load(std::memory_order_relaxed) == nullptr) {
      clients_[i].store(&c, std::memory_order_release);  // pairs with for_each_client()
      return;
    }
  }
  if (n == kMaxClients) throw std::length_error("Rcu: kMaxClients clients are attached");
  clients_[n].store(&c, std::memory_order_release);  // before the count that exposes it
  nclients_.store(n + 1, std::memory_order_release);  // pairs with for_each_client()
}

void Rcu::detach(RcuClient& c) noexcept {
  {
    MutexLock lock(reg_mu_);
    const uint32_t n = nclients_.load(std::memory_order_relaxed);
    uint32_t i = 0;
    while (i < n && clients_[i].load(std::memory_order_relaxed) != &c) ++i;
    if (i == n) return;
    clients_[i].store(nullptr, std::memory_order_release);
  }
  // A reader that loaded the slot before the store above is still inside its
  // report; the grace period ends only after that report.
  synchronize();
}

bool Rcu::check(uint64_t token) const noexcept {
  // acquire: pairs with the release CAS below, made after a scan whose
  // acquire loads saw every online reader acknowledge at least acked_: what
  // those readers did before acknowledging happens-before our return.
  if (token <= acked_.load(std::memory_order_acquire)) return true;
  const uint32_t n = id_bound_.load(std::memory_order_acquire);  // pairs with register_reader()
  uint64_t least = UINT64_MAX;  // the oldest token an online reader acknowledged
  for (uint32_t id = 0; id < n; ++id) {
    // seq_cst: pairs with online()'s seq_cst store (see there) and, as an
    // acquire, with the release store of each quiescent report.
    const uint64_t c = __atomic_load_n(&v_->qsbr_cnt[id].cnt, __ATOMIC_SEQ_CST);
    if (c == __RTE_QSBR_CNT_THR_OFFLINE) continue;
    if (c < token) return false;
    least = std::min(least, c);
  }
  // Every token up to `least` (up to `token`, with no reader online) is now
  // acknowledged: later checks of such tokens need no scan, which would touch
  // every reader's counter line, as DPDK's acked_token saves them. An atomic
  // max, so that concurrent writers may check at once.
  const uint64_t acked = least == UINT64_MAX ? token : least;
  uint64_t cur = acked_.load(std::memory_order_relaxed);
  while (cur < acked && !acked_.compare_exchange_weak(cur, acked, std::memory_order_release, std::memory_order_relaxed)) {
  }
  return true;
}

void Rcu::wait(uint64_t token) noexcept {
  // An online reader waiting for a grace period would wait for itself.
  if (const uint32_t me = self_on_this_thread(); me != kNoReader && is_online(me)) quiescent(me);
  // Spin briefly (a grace period is normally one reader burst), then yield so
  // that on an oversubscribed machine the readers we wait for get the CPU.
  for (unsigned spins = 0; !check(token); ++spins) {
    if (spins < kSpinsBeforeYield)
      rte_pause();
    else
      std::this_thread::yield();
  }
}

void Rcu::synchronize(uint32_t self_id) noexcept {
  const uint64_t token = start();
  // After start(): the caller's report must acknowledge the new token. An
  // offline caller is not waited for, and a report would bring it online.
  if (self_id != kNoReader && is_online(self_id)) quiescent(self_id);
  wait(token);  // also reports for the thread's own reader id, if online
}

RcuDeferQueue::~RcuDeferQueue() { discard(); }

void RcuDeferQueue::discard() noexcept {
  for (const Entry& e : q_) free_fn_(ctx_, e.ptr, e.tag);
  q_.clear();
}

void RcuDeferQueue::retire(void* ptr, uintptr_t tag) noexcept {
  const uint64_t token = rcu_.start();
  try {
    q_.push_back(Entry{token, ptr, tag});
  } catch (const std::bad_alloc&) {
    rcu_.wait(token);
    free_fn_(ctx_, ptr, tag);
  }
}

size_t RcuDeferQueue::reclaim() noexcept {
  size_t n = 0;
  while (!q_.empty() && rcu_.check(q_.front().token)) {
    free_fn_(ctx_, q_.front().ptr, q_.front().tag);
    q_.pop_front();
    ++n;
  }
  return n;
}

void RcuDeferQueue::drain() noexcept {
  if (q_.empty()) return;
  rcu_.wait(q_.back().token);
  reclaim();
}

}  // namespace vxlate
