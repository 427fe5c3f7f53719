// vxlate/common/mutex.h: a std::mutex that Clang's thread-safety analysis
// understands, for the control state that mutexes guard.
//
// libstdc++'s std::mutex carries no capability annotations, so
// -Wthread-safety cannot check what it guards. vxlate::Mutex is the same lock
// with the annotations (Clang's "Thread Safety Analysis" documentation), and
// VXLATE_GUARDED_BY(mu) on a member makes every access without `mu` held a
// compile error under clang (the fuzz build compiles the libraries with clang
// and -Wthread-safety). Under GCC the macros expand to nothing. No data path
// takes a lock: these guard registration and other control state only.
//
// Thread safety: Mutex and MutexLock from any thread, as std::mutex.
#pragma once

#include <mutex>

#if defined(__clang__)
#define VXLATE_TSA(x) __attribute__((x))
#else
#define VXLATE_TSA(x)
#endif

#define VXLATE_CAPABILITY(name) VXLATE_TSA(capability(name))
#define VXLATE_SCOPED_CAPABILITY VXLATE_TSA(scoped_lockable)
#define VXLATE_GUARDED_BY(mu) VXLATE_TSA(guarded_by(mu))
#define VXLATE_REQUIRES(...) VXLATE_TSA(requires_capability(__VA_ARGS__))
#define VXLATE_ACQUIRE(...) VXLATE_TSA(acquire_capability(__VA_ARGS__))
#define VXLATE_RELEASE(...) VXLATE_TSA(release_capability(__VA_ARGS__))
#define VXLATE_EXCLUDES(...) VXLATE_TSA(locks_excluded(__VA_ARGS__))

namespace vxlate {

class VXLATE_CAPABILITY("mutex") Mutex {
 public:
  void lock() VXLATE_ACQUIRE() { mu_.lock(); }
  void unlock() VXLATE_RELEASE() { mu_.unlock(); }

 private:
  std::mutex mu_;
};

class VXLATE_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) VXLATE_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() VXLATE_RELEASE() { mu_.unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

}  // namespace vxlate
