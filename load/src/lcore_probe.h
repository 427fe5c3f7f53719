// load/src/lcore_probe.h: the cache-line round trip between the main lcore
// and the device lcore, measured before and after each run. Internal to
// vxlate::load.
//
// On a virtual machine the host decides where the two vCPUs sit, and moves
// them: on the 2-vCPU development guest a round trip took either about 55 ns
// (135 TSC cycles: the vCPUs share a cache) or about 300 ns (790 cycles),
// switching every few seconds to minutes, and every frame of a run moves
// several lines between the guest and the device lcore: tcp_rr ran 1.5 M
// transactions/s in the first placement and 0.5 M in the second, on the same
// build, with both lcores on their CPUs throughout. The probe tells the two
// apart (NetperfResult::lcore_rtt_ns_before and _after), so that runs are
// compared within one placement.
//
// Protocol: the main lcore writes an odd sequence number into one cache
// line, the device lcore answers with the next even one; kBatches batches of
// kBatch round trips, and the fastest batch is the figure (a batch the
// scheduler interrupted is slower, never faster).
//
// Paired runs (netperf.h) probe before every slice, with fewer batches.
//
// Thread-safety contract: probe_ask() on the main lcore and probe_answer()
// on the device lcore, the same number of times, with the same `round` and
// `batches`.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>

#include <rte_cycles.h>

#include "backoff.h"

namespace vxlate::load::detail {

struct alignas(64) ProbeLine {
  std::atomic<uint32_t> seq{0};
};

inline constexpr uint32_t kProbeBatches = 32;
inline constexpr uint32_t kProbeBatch = 64;

// Main lcore. Probe number `round` (0, 1, ...) of `batches` batches; returns
// TSC cycles per round trip.
inline double probe_ask(ProbeLine& line, uint32_t round, uint32_t batches = kProbeBatches) {
  uint32_t s = round * 2 * batches * kProbeBatch;
  uint64_t best = UINT64_MAX;
  Backoff backoff;
  for (uint32_t b = 0; b < batches; ++b) {
    const uint64_t t0 = rte_rdtsc();
    for (uint32_t i = 0; i < kProbeBatch; ++i, s += 2) {
      // release/acquire: the two halves of one round trip; they order nothing else.
      line.seq.store(s + 1, std::memory_order_release);
      while (line.seq.load(std::memory_order_acquire) != s + 2) backoff.idle();
      backoff.reset();
    }
    best = std::min(best, rte_rdtsc() - t0);
  }
  return double(best) / kProbeBatch;
}

// Device lcore. Answers every round trip of probe number `round` (the same
// `batches` as the probe_ask() it answers).
inline void probe_answer(ProbeLine& line, uint32_t round, uint32_t batches = kProbeBatches) {
  uint32_t s = round * 2 * batches * kProbeBatch;
  Backoff backoff;
  for (uint32_t i = 0; i < batches * kProbeBatch; ++i, s += 2) {
    // acquire/release: pair with probe_ask().
    while (line.seq.load(std::memory_order_acquire) != s + 1) backoff.idle();
    backoff.reset();
    line.seq.store(s + 2, std::memory_order_release);
  }
}

}  // namespace vxlate::load::detail
