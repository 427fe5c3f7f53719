// Domain and endpoint lifetime: every transition that removes access completes
// only after a grace period, and a new domain never shares an IOTLB tag with a
// domain that is still alive.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <vector>

#include "support/virtio_iommu.h"
#include "vxlate/engine/device.h"

namespace vxlate::engine {
namespace {

using test::attach_req;
using test::detach_req;

// A read-write MAP of `size` bytes at `iova`.
wire::ReqMap map_rw(uint32_t domain, uint64_t iova, uint64_t size, uint64_t phys) {
  return test::map_req(domain, iova, iova + size - 1, phys, kMapFlagRead | kMapFlagWrite);
}

// Sends one request as the data-plane lcore `self` would (between bursts) and
// returns its status.
template <typename Req>
uint8_t send(Device& dev, const Req& r, uint32_t self = Rcu::kNoReader) {
  test::PostedRequest posted = test::make_request(r);
  Request req = posted.request();
  EXPECT_EQ(dev.handle_burst(std::span(&req, 1), self), 1u);
  EXPECT_EQ(req.used, kTailSize);
  return posted.status();
}

uint64_t gpa_of(Device& dev, uint32_t reader, uint32_t ep, uint64_t iova) {
  Segment seg[1];
  size_t n = 0;
  if (dev.iova_to_gpa(reader, EndpointId{ep}, iova, 8, pagetable::kPermRead, seg, &n) != Status::kOk) return ~0ull;
  return seg[0].addr;
}

TEST(DeviceLifetime, NewDomainNeverSharesATagWithALiveOne) {
  Rcu rcu(1);
  const uint32_t id = rcu.register_reader();
  Device dev(Config{}, rcu, 64);
  dev.iotlb().online(id);
  constexpr uint64_t kIova = 0x100000;
  ASSERT_EQ(send(dev, attach_req(1, 0), id), 0);
  ASSERT_EQ(send(dev, map_rw(1, kIova, 0x1000, 0xa000), id), 0);
  EXPECT_EQ(gpa_of(dev, id, 0, kIova), 0xa000u);
  // The tag counter wraps: the next domain must skip the tag domain 1 holds.
  dev.set_next_tag_for_test(UINT32_MAX);
  ASSERT_EQ(send(dev, attach_req(2, 1), id), 0);
  ASSERT_EQ(send(dev, map_rw(2, kIova, 0x1000, 0xb000), id), 0);
  EXPECT_EQ(gpa_of(dev, id, 0, kIova), 0xa000u);  // cached again under domain 1's tag
  EXPECT_EQ(gpa_of(dev, id, 1, kIova), 0xb000u);  // never domain 1's entry
  EXPECT_EQ(gpa_of(dev, id, 0, kIova), 0xa000u);
  dev.iotlb().offline(id);
}

TEST(DeviceLifetime, TagsOfDeadDomainsAreReused) {
  Rcu rcu(1);
  Device dev(Config{}, rcu, 64);
  dev.set_next_tag_for_test(UINT32_MAX);
  // Many domains die and are born across the wrap; each new one finds a tag.
  for (uint32_t i = 0; i < 64; ++i) {
    ASSERT_EQ(send(dev, attach_req(10 + i % 4, 0)), 0);
    ASSERT_EQ(send(dev, attach_req(100, 1)), 0);
    ASSERT_EQ(send(dev, detach_req(100, 1)), 0);
  }
  EXPECT_EQ(dev.domain_count(), 1u);
}

// Grace periods a request took: the token advances once per grace period.
template <typename F>
uint64_t grace_periods(Rcu& rcu, F&& f) {
  const uint64_t before = rcu.quiescent_token();
  f();
  return rcu.quiescent_token() - before;
}

TEST(DeviceLifetime, EveryTransitionThatRemovesAccessTakesAGracePeriod) {
  Rcu rcu(1);
  Config cfg;
  cfg.bypass = 1;  // unattached endpoints bypass (identity DMA)
  Device dev(cfg, rcu, 64);
  // ATTACH out of global bypass: identity access ends.
  EXPECT_GE(grace_periods(rcu, [&] { EXPECT_EQ(send(dev, attach_req(1, 0)), 0); }), 1u);
  // Moving ATTACH.
  EXPECT_GE(grace_periods(rcu, [&] { EXPECT_EQ(send(dev, attach_req(2, 0)), 0); }), 1u);
  // DETACH (the endpoint goes back to bypass, but the domain's mappings end).
  EXPECT_GE(grace_periods(rcu, [&] { EXPECT_EQ(send(dev, detach_req(2, 0)), 0); }), 1u);
  // The bypass byte 1 -> 0.
  EXPECT_GE(grace_periods(rcu, [&] { EXPECT_EQ(dev.write_bypass(0), Status::kOk); }), 1u);
  // A memory table that shrinks.
  static uint8_t mem[2 * 4096];
  const MemRegion two[] = {{0, 4096, reinterpret_cast<uint64_t>(mem)}, {4096, 4096, reinterpret_cast<uint64_t>(mem + 4096)}};
  ASSERT_EQ(dev.set_mem_table(two), Status::kOk);
  EXPECT_GE(grace_periods(rcu, [&] { EXPECT_EQ(dev.set_mem_table(std::span(two, 1)), Status::kOk); }), 1u);
  // Adding access needs none: ATTACH of an endpoint with bypass off.
  EXPECT_EQ(grace_periods(rcu, [&] { EXPECT_EQ(send(dev, attach_req(3, 1)), 0); }), 0u);
}

TEST(DeviceLifetime, ControlCallsFromAnOnlineLcoreDoNotWaitOnIt) {
  // A data-plane lcore that also runs the device's control calls between its
  // bursts: each call that waits for a grace period must not wait for it.
  Rcu rcu(2);
  Device dev(Config{}, rcu, 64);
  static uint8_t mem[4096];
  const MemRegion region[] = {{0, sizeof mem, reinterpret_cast<uint64_t>(mem)}};
  auto done = std::async(std::launch::async, [&] {
    const uint32_t id = rcu.register_reader();
    dev.iotlb().online(id);
    EXPECT_EQ(dev.set_mem_table(region), Status::kOk);
    EXPECT_EQ(dev.write_bypass(1), Status::kOk);
    EXPECT_EQ(send(dev, attach_req(1, 0)), 0);  // no self id passed
    EXPECT_EQ(send(dev, detach_req(1, 0)), 0);
    dev.iotlb().offline(id);
  });
  if (done.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    std::fprintf(stderr, "deadlock: a control call by an online lcore waited on itself\n");
    std::_Exit(1);
  }
  done.get();
}

}  // namespace
}  // namespace vxlate::engine
