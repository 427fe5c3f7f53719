// load/src/report.h: the figures of a netperf run, read out of its RunState
// on the main lcore. Internal to vxlate::load; to_json() (netperf.h) formats
// them.
//
// Thread-safety contract: progress() and Windows while the run goes (they
// read only relaxed live counters and CPU clocks); collect() once every lcore
// stopped and the main lcore acquired guests_running == 0 and device_done.
#pragma once

#include <time.h>

#include <cstdint>
#include <vector>

#include "run_state.h"
#include "vxlate/load/netperf.h"

namespace vxlate::load::detail {

// Packets and payload bytes so far over all queue pairs, `seconds` in.
NetperfProgress progress(const RunState& run, double seconds);

// The clean windows of a run's measured interval (netperf.h, Timing): every
// window_seconds the main lcore reads each lcore's CPU clock and the live
// counts (frames the device dequeued, busy cycles of the device and of the
// guests); a window is clean when each lcore's CPU time covered kCleanShare
// of it and of the window before (the first after a stall may be a catch-up
// burst or a refill). Main lcore only, from start() to stop(), while every
// lcore of the run is running (their clocks are read).
class Windows {
 public:
  explicit Windows(const RunState& run);
  // The measured interval starts at tsc (the first sample).
  void start(uint64_t tsc);
  // Samples when a window ends at or before tsc.
  void poll(uint64_t tsc) {
    if (tsc >= next_) sample(tsc);
  }
  // TSC cycles of clean windows so far.
  uint64_t clean_cycles() const { return clean_cycles_; }
  // Paired runs (netperf.h): the run stops moving at the end of its slice
  // (the partial window is dropped) and moves again from tsc, where the next
  // window starts; the time between is in no window.
  void pause() { next_ = UINT64_MAX; }
  void resume(uint64_t tsc);
  // The measured interval ends at tsc (CPU shares; a partial window is dropped).
  void stop(uint64_t tsc);
  // The clean-window figures and CPU shares into r.
  void finish(NetperfResult& r) const;

 private:
  struct Window {
    double pps;
    uint64_t frames, device_busy, guest_busy;
    bool clean;
  };
  void read_cpu(std::vector<uint64_t>& ns) const;
  void sample(uint64_t tsc);

  const RunState& run_;
  std::vector<clockid_t> clocks_;  // the main lcore, the device, guests 1..
  double ns_per_cycle_;
  uint64_t period_, next_ = UINT64_MAX;
  uint64_t tsc_ = 0, frames_ = 0, device_busy_ = 0, guest_busy_ = 0;
  uint64_t t_start_ = 0, t_stop_ = 0;
  std::vector<uint64_t> cpu_, cpu_start_, cpu_stop_, scratch_;
  std::vector<Window> windows_;
  uint64_t same_cpu_ = 0;
  uint64_t clean_cycles_ = 0;
  bool prev_served_ = true;
};

// The result of a finished run whose measured interval ran from TSC t_begin
// to t1; iommu: the driver's request counts at t_begin. Drains the device's
// fault events.
NetperfResult collect(RunState& run, uint64_t t_begin, uint64_t t1, const IommuBase& iommu, const Windows& windows);

}  // namespace vxlate::load::detail
