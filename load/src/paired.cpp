// run_netperf_paired(): two runs set up side by side and served in turns by
// the main lcore (guest queue pair 0 of the run whose turn it is) and one
// device lcore (device_lcore_paired), slice by slice (netperf.h, Paired
// runs); summarize(): the b slices against the a slices around them.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <vector>

#include <rte_cycles.h>
#include <rte_launch.h>
#include <rte_lcore.h>

#include "backoff.h"
#include "device_lcore.h"
#include "guest_qp.h"
#include "report.h"
#include "run_state.h"
#include "thread_clock.h"
#include "vxlate/load/netperf.h"

namespace vxlate::load {

using namespace detail;

namespace {

// The q-quantile of sorted v, interpolated.
double quantile(const std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const double pos = q * double(v.size() - 1);
  const size_t i = static_cast<size_t>(pos);
  if (i + 1 >= v.size()) return v.back();
  return v[i] + (v[i + 1] - v[i]) * (pos - double(i));
}

PairedRatio ratio_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {quantile(v, 0.5), quantile(v, 0.25), quantile(v, 0.75)};
}

void check_pair(const NetperfConfig& a, const NetperfConfig& b, double slice_seconds) {
  for (const NetperfConfig* c : {&a, &b})
    if (c->queue_pairs != 1 || c->packets != 0)
      throw std::runtime_error("netperf: paired runs need one queue pair and a run length in seconds");
  if (a.window_seconds != b.window_seconds || a.warmup_seconds != b.warmup_seconds || a.seconds != b.seconds ||
      a.clean_seconds != b.clean_seconds)
    throw std::runtime_error("netperf: paired runs need the same window, warm-up, seconds and clean seconds");
  if (!(slice_seconds >= 4 * a.window_seconds) || slice_seconds > a.seconds)
    throw std::runtime_error("netperf: a slice must be at least 4 windows and at most the run length");
}

// What one side of the pair has measured so far (main lcore).
struct Side {
  RunState& run;
  GuestQp& g;
  Windows windows;
  IommuBase iommu_base;
  uint64_t t_begin = 0;    // TSC of its first measured turn
  uint64_t warm = 0;       // TSC cycles of warm-up turns
  uint64_t measured = 0;   // TSC cycles of measured turns (settling included)
  bool measuring = false;
  double rtt_first = 0, rtt_last = 0;

  explicit Side(RunState& r) : run(r), g(*r.guests[0]), windows(r) {}

  void begin_measure(uint64_t now) {
    // relaxed: a request; the device lcore takes its base counts when it sees it.
    run.measuring.store(true, std::memory_order_relaxed);
    g.begin_measure();
    t_begin = now;
    std::lock_guard lock(run.iommu_lock);
    iommu_base = {run.iommu.maps(), run.iommu.unmaps(), run.iommu.syncs(), run.request_rtts.from_add.size()};
    measuring = true;
  }
};

}  // namespace

PairedSummary summarize(const std::vector<PairedSlice>& slices) {
  PairedSummary s;
  std::vector<double> pps, device, guest, rtt;
  for (size_t i = 1; i + 1 < slices.size(); ++i) {
    const PairedSlice& x = slices[i];
    const PairedSlice& a0 = slices[i - 1];
    const PairedSlice& a1 = slices[i + 1];
    if (x.run != 1 || a0.run != 0 || a1.run != 0) continue;
    ++s.triples;
    if (!x.clean || !a0.clean || !a1.clean) continue;
    const double lo = std::min({x.lcore_rtt_ns, a0.lcore_rtt_ns, a1.lcore_rtt_ns});
    const double hi = std::max({x.lcore_rtt_ns, a0.lcore_rtt_ns, a1.lcore_rtt_ns});
    if (!(lo > 0) || hi > kPairedPlacement * lo) continue;
    const double a_pps = (a0.pps + a1.pps) / 2;
    const double a_dev = (a0.device_cycles_per_frame + a1.device_cycles_per_frame) / 2;
    const double a_guest = (a0.guest_cycles_per_frame + a1.guest_cycles_per_frame) / 2;
    if (!(a_pps > 0) || !(x.pps > 0) || !(x.device_cycles_per_frame > 0) || !(x.guest_cycles_per_frame > 0)) continue;
    ++s.counted;
    pps.push_back(x.pps / a_pps);
    device.push_back(a_dev / x.device_cycles_per_frame);
    guest.push_back(a_guest / x.guest_cycles_per_frame);
    rtt.push_back(x.lcore_rtt_ns);
  }
  s.pps = ratio_of(pps);
  s.device_cycles = ratio_of(device);
  s.guest_cycles = ratio_of(guest);
  std::sort(rtt.begin(), rtt.end());
  s.rtt_ns_median = quantile(rtt, 0.5);
  return s;
}

PairedResult run_netperf_paired(const NetperfConfig& a, const NetperfConfig& b, double slice_seconds,
                                bool b_first) {
  const uint64_t t_call = rte_rdtsc();
  check_pair(a, b, slice_seconds);
  std::unique_ptr<RunState> states[2];
  states[b_first ? 1 : 0] = set_up_run(b_first ? b : a);
  states[b_first ? 0 : 1] = set_up_run(b_first ? a : b);
  Pairing pair;
  for (int k = 0; k < 2; ++k) {
    pair.runs[k] = states[k].get();
    // release: pairs with the device lcore's acquire in wait_setup(); setup is visible.
    states[k]->setup_done.store(true, std::memory_order_release);
  }
  const unsigned worker = rte_get_next_lcore(-1, 1, 0);
  if (worker >= RTE_MAX_LCORE || rte_eal_remote_launch(device_lcore_paired, &pair, worker) != 0)
    throw std::runtime_error("netperf: device lcore busy");
  // The device lcore uses `pair` and the runs until it returns: stopped and
  // joined on every way out of here (on the normal one, below, first).
  struct Join {
    Pairing& pair;
    unsigned worker;
    ~Join() {
      pair.stop.store(true, std::memory_order_relaxed);  // relaxed: a stop request
      rte_eal_wait_lcore(worker);
    }
  } join{pair, worker};
  // acquire: pairs with the device lcore's release; device_clock is published.
  while (!pair.started.load(std::memory_order_acquire)) pause_idle();
  for (auto& s : states) s->device_clock = pair.device_clock;
  Side sides[2] = {Side(*states[0]), Side(*states[1])};

  const uint64_t hz = rte_get_tsc_hz();
  const uint64_t t0 = rte_rdtsc();
  const uint64_t slice = static_cast<uint64_t>(slice_seconds * double(hz));
  const uint64_t settle = static_cast<uint64_t>(a.window_seconds * double(hz));
  const uint64_t warmup = static_cast<uint64_t>(a.warmup_seconds * double(hz));
  const uint64_t cap = static_cast<uint64_t>(a.seconds * double(hz));
  const uint64_t clean_goal = static_cast<uint64_t>(a.clean_seconds * double(hz));
  const double ns_per_cycle = 1e9 / double(hz);
  const clockid_t main_clock = own_cpu_clock();
  std::vector<PairedSlice> slices;
  slices.reserve(static_cast<size_t>(2 * (a.seconds + a.warmup_seconds) / slice_seconds) + 4);
  uint32_t probes = 0;
  Backoff backoff;

  // Guest steps of `side` until TSC `end`; returns the TSC it stopped at.
  auto steps_until = [&](Side& side, uint64_t end, bool windows) {
    uint64_t now = rte_rdtsc();
    while (now < end) {
      if (side.g.timed_step())
        backoff.reset();
      else
        backoff.idle();
      now = rte_rdtsc();
      if (windows) side.windows.poll(now);
    }
    return now;
  };
  // One turn of run k: switch, probe, and either warm up or settle and measure.
  auto turn = [&](uint32_t k, bool warming) {
    Side& side = sides[k];
    // relaxed: see Pairing::active.
    pair.active.store(k, std::memory_order_relaxed);
    pair.probe_request.store(++probes, std::memory_order_relaxed);  // relaxed: see Pairing
    const double rtt = probe_ask(pair.probe, probes - 1, kPairProbeBatches) * ns_per_cycle;
    const uint64_t t_switch = rte_rdtsc();
    if (warming) {
      steps_until(side, t_switch + slice, false);
      side.warm += rte_rdtsc() - t_switch;
      return;
    }
    if (!side.measuring) {
      side.begin_measure(t_switch);
      side.rtt_first = rtt;
    }
    side.rtt_last = rtt;
    const uint64_t t_start = steps_until(side, t_switch + settle, false);
    if (side.measured == 0)  // its first measured turn
      side.windows.start(t_start);
    else
      side.windows.resume(t_start);
    // relaxed: live counts, owner-written (DeviceLive, GuestQp::busy_cycles).
    const uint64_t frames0 = side.run.device_live.frames.load(std::memory_order_relaxed);
    const uint64_t dev0 = side.run.device_live.busy_cycles.load(std::memory_order_relaxed);
    const uint64_t guest0 = side.g.busy_cycles.load(std::memory_order_relaxed);
    const uint64_t main_cpu0 = cpu_ns(main_clock), dev_cpu0 = cpu_ns(pair.device_clock);
    const uint64_t t_end = steps_until(side, t_start + slice, true);
    side.windows.pause();
    const uint64_t frames = side.run.device_live.frames.load(std::memory_order_relaxed) - frames0;
    const uint64_t dev = side.run.device_live.busy_cycles.load(std::memory_order_relaxed) - dev0;
    const uint64_t guest = side.g.busy_cycles.load(std::memory_order_relaxed) - guest0;
    const double wall_ns = double(t_end - t_start) * ns_per_cycle;
    const bool clean = double(cpu_ns(main_clock) - main_cpu0) >= kCleanShare * wall_ns &&
                       double(cpu_ns(pair.device_clock) - dev_cpu0) >= kCleanShare * wall_ns;
    PairedSlice s;
    s.run = static_cast<uint8_t>(k);
    s.seconds = wall_ns * 1e-9;
    s.pps = double(frames) * 1e9 / wall_ns;
    s.device_cycles_per_frame = frames ? double(dev) / double(frames) : 0;
    s.guest_cycles_per_frame = frames ? double(guest) / double(frames) : 0;
    s.lcore_rtt_ns = rtt;
    s.clean = clean;
    slices.push_back(s);
    side.measured += t_end - t_switch;
  };
  auto done = [&](const Side& side) {
    return side.measuring && ((clean_goal > 0 && side.windows.clean_cycles() >= clean_goal) || side.measured >= cap);
  };
  // a, b, a, b, ..., a: every b slice has an a slice on each side. The
  // warm-up ends for both at once, before an a turn (each run's turns take
  // their own time: a strict run's sync can overrun its slice), so the
  // measured turns start with a as well.
  bool warming = warmup > 0;
  do {
    warming = warming && !(sides[0].warm >= warmup && sides[1].warm >= warmup);
    turn(0, warming);
    turn(1, warming);
  } while (warming || !(done(sides[0]) && done(sides[1])));
  turn(0, false);

  const uint64_t t1 = rte_rdtsc();
  for (Side& s : sides) s.windows.stop(t1);
  // relaxed: a stop request; the results are read after `done`.
  pair.stop.store(true, std::memory_order_relaxed);
  // acquire: pairs with the device lcore's release of done; its counters are final.
  while (!pair.done.load(std::memory_order_acquire)) pause_idle();
  rte_eal_wait_lcore(worker);

  PairedResult res;
  NetperfResult* out[2] = {&res.a, &res.b};
  for (int k = 0; k < 2; ++k) {
    Side& s = sides[k];
    s.g.total_cycles = s.measured;
    NetperfResult& r = *out[k];
    r = collect(s.run, s.t_begin, t1, s.iommu_base, s.windows);
    r.seconds = double(s.measured) / double(hz);
    r.setup_seconds = double(t0 - t_call) / double(hz);
    r.lcore_rtt_ns_before = s.rtt_first;
    r.lcore_rtt_ns_after = s.rtt_last;
  }
  res.slices = std::move(slices);
  res.summary = summarize(res.slices);
  return res;
}

}  // namespace vxlate::load
