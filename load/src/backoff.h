// load/src/backoff.h: how the load's busy-polling loops idle. Internal to
// vxlate::load.
//
// Every loop of a run (guest queue pairs, device lcore, the main lcore's
// waits) spins with rte_pause() and yields the CPU every 256 idle spins where
// lcores may share a CPU (init_eal() without pinning lets them float): a
// spinner that never yields would starve the lcore it waits for there.
// Where every lcore has a CPU of its own (init_eal() with pin), they do not
// yield: on an EEVDF kernel (Linux 6.6 and later) each sched_yield() pushes
// the caller's virtual deadline a slice further, so a poller that yields
// thousands of times a second loses its CPU almost entirely to any busy
// process that shares it (measured on a 2-vCPU 6.18 guest: a pause-and-yield
// loop pinned to a CPU got 1% of it over 2 s beside a busy shell loop, the
// same loop without sched_yield 50%), and a run stalls whenever another
// process lands on one of its CPUs.
//
// Thread safety: a Backoff belongs to the loop that owns it; idle_yield is
// written by init_eal() before any lcore runs.
#pragma once

#include <sched.h>

#include <atomic>

#include <rte_pause.h>

namespace vxlate::load::detail {

// Whether idle loops yield: lcores may share a CPU. relaxed: written once by
// init_eal() before the lcores start.
inline std::atomic<bool> idle_yield{true};

// Yields after a short spin where several busy lcores may share one CPU.
struct Backoff {
  unsigned spins = 0;
  void idle() {
    rte_pause();
    if (++spins % 256 == 0 && idle_yield.load(std::memory_order_relaxed)) sched_yield();
  }
  void reset() { spins = 0; }
};

// One idle step of the calling thread's own Backoff (waits with no progress
// signal of their own: sync_req, joins).
inline void pause_idle() {
  thread_local Backoff b;
  b.idle();
}

}  // namespace vxlate::load::detail
