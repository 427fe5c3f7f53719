// load/src/run_state.h: the state one netperf run shares between its lcores.
// Internal to vxlate::load.
//
// RunState holds the guest (memory, the virtio-iommu driver and its lock, one
// GuestQp per queue pair) and the device (Rcu, engine::Device, the
// virtio-iommu queues, NetDevice, the mbuf pool), the start and stop flags,
// the device lcore's counters (with their values at the start of the
// measured interval, and the live ones the main lcore samples) and the
// round-trip probe line. The main lcore builds it (run.cpp), the guest lcores
// (guest_qp.cpp) and the device lcore (device_lcore.cpp) use it, the main
// lcore reads the figures out of it once they stopped (report.cpp).
//
// Thread-safety contract: members are set up on the main lcore before
// setup_done is released; after that the guest side touches only its own
// GuestQp and, under iommu_lock, the IommuDriver; the device lcore owns
// net, iq, the peers and the device counters until it releases device_done.
#pragma once

#include <time.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include <rte_mempool.h>
#include <rte_pause.h>

#include "backoff.h"
#include "guest_qp.h"
#include "lcore_probe.h"
#include "vxlate/common/rcu.h"
#include "vxlate/dataplane/iommu_queues.h"
#include "vxlate/dataplane/net.h"
#include "vxlate/engine/device.h"
#include "vxlate/load/guest.h"
#include "vxlate/load/netperf.h"

namespace vxlate::load::detail {

inline constexpr uint64_t kPage = 4096;
inline constexpr uint64_t kGpaBase = 0x40000000;
inline constexpr uint32_t kDomain = 1;
inline constexpr uint32_t kNetEndpoint = 1;

// What the device lcore measured (written by it, read after it stopped).
struct DeviceCounters {
  uint64_t iters = 0;
  uint64_t busy_iters = 0;
  uint64_t frames = 0;          // data frames (RR: requests) dequeued
  uint64_t cycles = 0;          // TSC cycles of this run's poll iterations (paired runs: its turns only)
  uint64_t request_cycles = 0;
  uint64_t offline = 0;         // offline-when-idle episodes
  uint64_t peer_corrupt = 0;    // frames the peers found wrong (whole run)
};

// The device side's counters when the device lcore saw the measured interval
// begin; the figures are the differences (written by it, read after it stopped).
struct DeviceBase {
  DeviceCounters c;
  uint64_t tsc = 0;
  uint64_t translations = 0;
  uint64_t request_bursts = 0;
  uint64_t iotlb_hits = 0;
  uint64_t iotlb_misses = 0;
};

// What the main lcore samples once per window while the run goes: written by
// the device lcore alone (relaxed stores of its running counts), read with
// relaxed loads. A line of its own, apart from the flags the lcores poll.
struct alignas(64) DeviceLive {
  std::atomic<uint64_t> frames{0};       // data frames (RR: requests) dequeued
  std::atomic<uint64_t> busy_cycles{0};  // TSC cycles in iterations that found work
  std::atomic<int> cpu{-1};              // the CPU it last ran on (sampled)
};

// The guest driver's request counts at the start of the measured interval.
struct IommuBase {
  uint64_t maps = 0, unmaps = 0, syncs = 0;
  size_t round_trips = 0;  // request_rtts' sizes at the base (the two grow together)
};

// A test-and-test-and-set spinlock (BasicLockable): acquire by an exchange,
// release by a store. A waiter backs off as the load's loops do (Backoff:
// it yields now and then where lcores may share a CPU, so that a holder
// that lost its CPU gets it back, as a paravirtualised guest's spinlock
// does).
class GuestSpinlock {
 public:
  void lock() noexcept {
    // acquire: pairs with unlock()'s release; the last holder's writes are visible.
    while (held_.exchange(true, std::memory_order_acquire)) {
      Backoff backoff;
      while (held_.load(std::memory_order_relaxed)) backoff.idle();
    }
  }
  void unlock() noexcept { held_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> held_{false};
};

struct RunState {
  const NetperfConfig& cfg;
  GuestMemory mem;
  Rcu rcu;
  engine::Device dev;
  DriverQueue reqq, evq;
  dataplane::IommuQueues iq;
  // The guest's viommu request_lock: a spinlock, as Linux's is
  // (spin_lock_irqsave), released by a plain store. std::mutex's unlock, a
  // locked instruction, drains the store buffer: 1.4% of the lazy guest's
  // samples in udp_stream_64 at ~400 ns, most likely waiting for its
  // request's stores to lines the device lcore had read (bench/RESULTS.md,
  // session 25).
  GuestSpinlock iommu_lock;
  IommuDriver iommu;
  // Each request's round trips (TSC cycles from the guest's add, and from the
  // kick, to its used entry), recorded by `iommu` once the run starts; under
  // iommu_lock.
  IommuDriver::RoundTrips request_rtts;
  std::vector<std::unique_ptr<GuestQp>> guests;
  std::unique_ptr<dataplane::NetDevice> net;
  rte_mempool* mp = nullptr;
  std::atomic<bool> guest_stop{false};
  std::atomic<bool> device_stop{false};
  // The clock started: guest lcores 1.. start sending. release by the main
  // lcore, acquire by each guest lcore.
  std::atomic<bool> go{false};
  // The measured interval began (warm-up over): each lcore takes its base
  // counts when it first sees it. relaxed: a request; the bases are read
  // after the joins. Without a warm-up no lcore waits for it: each takes its
  // base before any frame moves (the guests before go, the device at start).
  std::atomic<bool> measuring{false};
  std::atomic<unsigned> guests_running{0};
  // The lcore launch and join go through EAL's own synchronisation, which
  // ThreadSanitizer does not see (DPDK is not instrumented): these two flags
  // make the hand-over explicit. release by the main lcore after setup,
  // acquire by each worker before it starts; release by the device lcore when
  // it is done, acquire by the main lcore before it reads the results.
  std::atomic<bool> setup_done{false};
  std::atomic<bool> device_done{false};
  // release by the device lcore once device_clock is set, acquire by the
  // main lcore before the clock starts (the device lcore runs by then).
  std::atomic<bool> device_started{false};
  clockid_t device_clock = CLOCK_THREAD_CPUTIME_ID;
  uint32_t reader = 0;  // the device lcore's Rcu reader id
  bool has_reader = false;  // reader is registered (unregistered on destruction)
  DeviceCounters device;
  DeviceBase device_base;
  DeviceLive device_live;
  ProbeLine probe;  // the lcore round-trip probe (lcore_probe.h), before and after

  // Setup only: guest memory of mem_bytes, the device, and the virtio-iommu
  // queues (serviced by the guest's own sync() until the device lcore runs).
  RunState(const NetperfConfig& c, uint64_t mem_bytes)
      : cfg(c),
        mem(kGpaBase, mem_bytes),
        rcu(8),
        dev(engine::Config{}, rcu),
        reqq(mem, 256, true, false),
        evq(mem, 64, true, false),
        iq(dev, reqq.device_config(false, EndpointId{0}), evq.device_config(false, EndpointId{0})),
        iommu(mem, reqq, [this] { iq.poll(); }) {
    iq.set_batching({c.request_batch, std::chrono::microseconds(c.request_wait_us)});
    iommu.set_notify([this] { iq.notify(); });  // the sync's kick, when the device asks for kicks
  }

  ~RunState() {
    if (has_reader) rcu.unregister_reader(reader);
    net.reset();
    if (mp != nullptr) rte_mempool_free(mp);
  }
  RunState(const RunState&) = delete;
  RunState& operator=(const RunState&) = delete;

  bool iommu_on() const { return cfg.mode != Mode::kIdentity; }
  // Worker lcores: wait until the main lcore has set everything up.
  void wait_setup() const {
    // acquire: pairs with the main lcore's release of setup_done.
    while (!setup_done.load(std::memory_order_acquire)) rte_pause();
  }
};

// Setup only, on the main lcore (run.cpp): a run of cfg set up (guest
// memory, mbuf pool, ATTACH and the setup MAPs served, the device's
// NetDevice and reader), its lcores not started yet. cfg must outlive it.
// Throws std::runtime_error for a config that cannot run.
std::unique_ptr<RunState> set_up_run(const NetperfConfig& cfg);

}  // namespace vxlate::load::detail
