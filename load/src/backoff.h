// load/src/backoff.h: how the load's busy-polling loops idle. Internal to
// vxlate::load.
//
// Every loop of a run (guest queue pairs, device lcore, the main lcore's
// waits) spins with rte_pause() and yields the CPU every 256 idle spins:
// init_eal() lets several lcores share a CPU, and a spinner that never yields
// would starve the lcore it waits for.
//
// Thread safety: a Backoff belongs to the loop that owns it.
#pragma once

#include <sched.h>

#include <rte_pause.h>

namespace vxlate::load::detail {

// Yields after a short spin: several busy lcores may share one CPU.
struct Backoff {
  unsigned spins = 0;
  void idle() {
    rte_pause();
    if (++spins % 256 == 0) sched_yield();
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
