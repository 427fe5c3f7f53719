// load/src/run_state.h: the state one netperf run shares between its lcores.
// Internal to vxlate::load.
//
// RunState holds the guest (memory, the virtio-iommu driver and its lock, one
// GuestQp per queue pair) and the device (Rcu, engine::Device, the
// virtio-iommu queues, NetDevice, the mbuf pool), the stop flags and the
// device lcore's counters. The main lcore builds it (run.cpp), the guest
// lcores (guest_qp.cpp) and the device lcore (device_lcore.cpp) use it, the
// main lcore reads the figures out of it once they stopped (report.cpp).
//
// Thread-safety contract: members are set up on the main lcore before
// setup_done is released; after that the guest side touches only its own
// GuestQp and, under iommu_lock, the IommuDriver; the device lcore owns
// net, iq, the peers and the device counters until it releases device_done.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include <rte_mempool.h>
#include <rte_pause.h>

#include "guest_qp.h"
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
  uint64_t cycles = 0;
  uint64_t request_cycles = 0;
  uint64_t peer_corrupt = 0;  // frames the peers found wrong
};

struct RunState {
  const NetperfConfig& cfg;
  GuestMemory mem;
  Rcu rcu;
  engine::Device dev;
  DriverQueue reqq, evq;
  dataplane::IommuQueues iq;
  std::mutex iommu_lock;  // the guest's viommu request_lock
  IommuDriver iommu;
  std::vector<std::unique_ptr<GuestQp>> guests;
  std::unique_ptr<dataplane::NetDevice> net;
  rte_mempool* mp = nullptr;
  std::atomic<bool> guest_stop{false};
  std::atomic<bool> device_stop{false};
  std::atomic<unsigned> guests_running{0};
  // The lcore launch and join go through EAL's own synchronisation, which
  // ThreadSanitizer does not see (DPDK is not instrumented): these two flags
  // make the hand-over explicit. release by the main lcore after setup,
  // acquire by each worker before it starts; release by the device lcore when
  // it is done, acquire by the main lcore before it reads the results.
  std::atomic<bool> setup_done{false};
  std::atomic<bool> device_done{false};
  uint32_t reader = 0;  // the device lcore's Rcu reader id
  DeviceCounters device;

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
        iommu(mem, reqq, [this] { iq.poll(); }) {}

  bool iommu_on() const { return cfg.mode != Mode::kIdentity; }
  // Worker lcores: wait until the main lcore has set everything up.
  void wait_setup() const {
    // acquire: pairs with the main lcore's release of setup_done.
    while (!setup_done.load(std::memory_order_acquire)) rte_pause();
  }
};

}  // namespace vxlate::load::detail
