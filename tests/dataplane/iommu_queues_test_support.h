// Fixture of the IommuQueues tests: a Device over guest memory, its
// virtio-iommu request and event queues (IommuQueues) and the guest driver
// model (IommuDriver) whose sync() polls them; the test thread is the
// device's control thread and, online, a translating reader.
#pragma once

#include "vxlate/dataplane/iommu_queues.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "support/virtio_iommu.h"
#include "vxlate/common/le.h"
#include "vxlate/engine/wire.h"
#include "vxlate/load/guest.h"

namespace vxlate::dataplane::iommu_queues_test {

using engine::Segment;
using load::DriverBuf;
using load::DriverQueue;
using load::GuestMemory;
using load::IommuDriver;
constexpr uint32_t kRW = engine::kMapFlagRead | engine::kMapFlagWrite;
constexpr uint64_t kGpaBase = 0x40000000;

class IommuQueuesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const engine::MemRegion r = mem.region();
    ASSERT_EQ(dev.set_mem_table(std::span(&r, 1)), Status::kOk);
    reader = rcu.register_reader();
    iq = std::make_unique<IommuQueues>(dev, reqq.device_config(false, EndpointId{0}),
                                       evq.device_config(false, EndpointId{0}));
    drv = std::make_unique<IommuDriver>(mem, reqq, [this] { iq->poll(online ? reader : Rcu::kNoReader); });
  }
  void TearDown() override {
    if (online) dev.iotlb().offline(reader);
    rcu.unregister_reader(reader);
  }
  void go_online() {
    dev.iotlb().online(reader);
    online = true;
  }
  void go_offline() {
    dev.iotlb().offline(reader);
    online = false;
  }
  // One translation by endpoint `ep` (to GPAs), online just around it unless
  // the test is online already.
  Status xlate_gpa(uint32_t ep, uint64_t iova, uint64_t len, uint8_t access, std::vector<Segment>* out,
                   engine::FaultEvent* fe = nullptr) {
    const bool was = online;
    if (!was) go_online();
    Segment segs[8];
    size_t n = 0;
    const Status st = dev.iova_to_gpa(reader, EndpointId{ep}, iova, len, access, segs, &n, fe);
    out->assign(segs, segs + n);
    if (!was) go_offline();
    return st;
  }

  GuestMemory mem{kGpaBase, 16 << 20};
  Rcu rcu{4};
  engine::Device dev{engine::Config{}, rcu};
  // 128 entries: 64 two-descriptor requests fit before the driver must sync.
  DriverQueue reqq{mem, 128, true, false};
  DriverQueue evq{mem, 16, true, false};
  std::unique_ptr<IommuQueues> iq;
  std::unique_ptr<IommuDriver> drv;
  uint32_t reader = 0;
  bool online = false;
};

}  // namespace vxlate::dataplane::iommu_queues_test
