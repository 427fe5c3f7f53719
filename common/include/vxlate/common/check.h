// vxlate/common/check.h: contract checks that debug builds compile in.
//
// VXLATE_DCHECK(cond, "what") states a caller's contract (a reader id in
// range, an online reader, the owning thread, a precondition) where it is
// relied on. With VXLATE_DEBUG_CHECKS (CMake option of the same name, on in the
// sanitizer builds) a broken contract prints the file, line, condition and
// message and aborts; without it the condition is not evaluated and the check
// costs nothing, as rte_rcu_qsbr's RTE_LIBRTE_RCU_DEBUG lock counter does.
// Conditions must have no side effects.
//
// vxlate::OwnerThread records the thread that owns a piece of control state
// (the first caller, or the one bind() names) and checks later callers
// against it; it holds nothing and checks nothing without VXLATE_DEBUG_CHECKS.
//
// Thread safety: VXLATE_DCHECK from any thread. OwnerThread: check() from any
// thread; bind()/release() by the owner or before the object is shared.
#pragma once

#include <atomic>
#include <thread>

namespace vxlate::detail {
[[noreturn]] void dcheck_failed(const char* file, int line, const char* cond, const char* msg) noexcept;
}  // namespace vxlate::detail

#ifdef VXLATE_DEBUG_CHECKS
#define VXLATE_DCHECK(cond, msg)                                                          \
  do {                                                                                    \
    if (!(cond)) [[unlikely]]                                                             \
      ::vxlate::detail::dcheck_failed(__FILE__, __LINE__, #cond, msg);                    \
  } while (0)
#define VXLATE_DEBUG_ONLY(...) __VA_ARGS__
#else
#define VXLATE_DCHECK(cond, msg) \
  do {                           \
    (void)sizeof(!(cond));       \
  } while (0)
#define VXLATE_DEBUG_ONLY(...)
#endif

namespace vxlate {

class OwnerThread {
 public:
  // True when the caller is the owner, or when no thread owns it yet (the
  // first caller becomes the owner). Always true without VXLATE_DEBUG_CHECKS.
  bool check() noexcept {
#ifdef VXLATE_DEBUG_CHECKS
    const std::thread::id me = std::this_thread::get_id();
    std::thread::id none{};
    // acq_rel/acquire: only the id itself is published; no other data rides on it.
    return owner_.compare_exchange_strong(none, me, std::memory_order_acq_rel, std::memory_order_acquire) ||
           none == me;
#else
    return true;
#endif
  }
  // Hands ownership to whichever thread calls check() next (a control thread
  // that changes, e.g. a device handed from its set-up thread to its queue lcore).
  void release() noexcept {
#ifdef VXLATE_DEBUG_CHECKS
    owner_.store(std::thread::id{}, std::memory_order_release);  // pairs with the CAS in check()
#endif
  }

 private:
#ifdef VXLATE_DEBUG_CHECKS
  std::atomic<std::thread::id> owner_{};
#endif
};

}  // namespace vxlate
