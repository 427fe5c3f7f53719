#include "vxlate/common/rcu.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <thread>

#include <rte_pause.h>

namespace vxlate {

Rcu::Rcu(uint32_t max_readers) : max_readers_(max_readers), used_(max_readers, false) {
  if (max_readers == 0 || max_readers > kMaxReadersLimit)
    throw std::invalid_argument("Rcu: max_readers must be 1..kMaxReadersLimit");
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

void Rcu::wait(uint64_t token) noexcept {
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
  // After start(): the caller's report must acknowledge the new token.
  if (self_id != kNoReader) quiescent(self_id);
  wait(token);
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
