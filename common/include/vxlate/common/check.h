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
// vxlate::OwnerCheck checks the "one thread at a time" contract of writer and
// control calls: a call opens an OwnerCheck::Scope, which records the calling
// thread as the owner until the outermost scope closes; a second thread that
// enters while the owner is inside fails the check. Ownership may pass between
// threads between calls (a device set up on one thread and then served by its
// queue lcore); ThreadSanitizer checks the hand-over's ordering. Without
// VXLATE_DEBUG_CHECKS it holds nothing and checks nothing.
//
// Thread safety: VXLATE_DCHECK and OwnerCheck::Scope from any thread.
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

class OwnerCheck {
 public:
  class Scope {
   public:
    Scope(OwnerCheck& c, const char* what) noexcept : c_(c) {
#ifdef VXLATE_DEBUG_CHECKS
      c_.enter(what);
#else
      (void)what;
#endif
    }
    ~Scope() {
#ifdef VXLATE_DEBUG_CHECKS
      c_.exit();
#endif
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    [[maybe_unused]] OwnerCheck& c_;
  };

 private:
#ifdef VXLATE_DEBUG_CHECKS
  void enter(const char* what) noexcept {
    const std::thread::id me = std::this_thread::get_id();
    std::thread::id none{};
    // acquire (success): pairs with the release in exit(), so this call sees
    // everything the previous owner's call wrote. Failure: relaxed, the id alone.
    if (owner_.compare_exchange_strong(none, me, std::memory_order_acquire, std::memory_order_relaxed)) {
      depth_ = 1;
      return;
    }
    VXLATE_DCHECK(none == me, what);
    ++depth_;  // nested call on the owning thread
  }
  void exit() noexcept {
    if (--depth_ == 0) owner_.store(std::thread::id{}, std::memory_order_release);  // pairs with enter()
  }
  std::atomic<std::thread::id> owner_{};
  unsigned depth_ = 0;  // owner-only
#endif
};

}  // namespace vxlate
