// load/src/thread_clock.h: a thread's CPU time, readable from another thread.
// Internal to vxlate::load.
//
// A run's lcores busy-poll, so an lcore's CPU time over an interval equals
// the interval unless the kernel ran something else on its CPU: CPU time /
// wall time is the share of the interval the lcore had its CPU (report.cpp's
// clean windows). Each lcore publishes its own clock once (own_cpu_clock());
// the main lcore reads them all (cpu_ns(), one clock_gettime system call).
//
// Thread safety: own_cpu_clock() on the thread itself; cpu_ns() on any
// thread while the clock's thread lives.
#pragma once

#include <pthread.h>
#include <time.h>

#include <cstdint>

namespace vxlate::load::detail {

inline clockid_t own_cpu_clock() noexcept {
  clockid_t c = CLOCK_THREAD_CPUTIME_ID;
  if (pthread_getcpuclockid(pthread_self(), &c) != 0) c = CLOCK_THREAD_CPUTIME_ID;
  return c;
}

// Nanoseconds of CPU time the clock's thread has used (0 on failure).
inline uint64_t cpu_ns(clockid_t c) noexcept {
  timespec ts{};
  if (clock_gettime(c, &ts) != 0) return 0;
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace vxlate::load::detail
