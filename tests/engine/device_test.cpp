// Device request-side conformance: wire layouts, used lengths, the spec's seven
// UNMAP examples, Decisions rows, domain lifetime, caps, and burst == one at a time.
#include "vxlate/engine/device.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <random>
#include <vector>

#include "engine/device_test_support.h"

namespace vxlate::engine::device_test {
namespace {

TEST_F(DeviceTest, ShortOrUnknownRequestsWriteNothing) {
  auto a = encoded(attach_req(1, 0));
  a.pop_back();
  EXPECT_EQ(send_bytes(a), -1);                               // readable too short
  EXPECT_EQ(send(attach_req(1, 0), 3), -1);                   // no room for the tail
  EXPECT_EQ(send_bytes(std::vector<uint8_t>(64, 0)), -1);     // type 0
  auto unknown = encoded(wire::ReqHead{6, {}});
  unknown.resize(64, 0);
  EXPECT_EQ(send_bytes(unknown), -1);
  EXPECT_EQ(send_bytes({}), -1);
  // Longer readable parts are fine; head.reserved is ignored.
  auto head_reserved = attach_req(1, 0);
  head_reserved.head.reserved[0] = 0xaa;
  auto longer = encoded(head_reserved);
  longer.resize(64, 0x55);
  EXPECT_EQ(send_bytes(longer), kOk);
}

// The spec's seven UNMAP examples, each from an empty domain.
TEST_F(DeviceTest, SpecUnmapExamples) {
  struct Step {
    bool map;
    uint64_t first, last;
    int want;
  };
  const std::vector<std::vector<Step>> examples = {
      {{false, 0, 4, kOk}},
      {{true, 0, 9, kOk}, {false, 0, 9, kOk}},
      {{true, 0, 4, kOk}, {true, 5, 9, kOk}, {false, 0, 9, kOk}},
      {{true, 0, 9, kOk}, {false, 0, 4, kRange}},
      {{true, 0, 4, kOk}, {true, 5, 9, kOk}, {false, 0, 4, kOk}},
      {{true, 0, 4, kOk}, {false, 0, 9, kOk}},
      {{true, 0, 4, kOk}, {true, 10, 14, kOk}, {false, 0, 14, kOk}},
  };
  // What is left mapped after each example, probed by re-mapping single pages.
  const std::vector<std::vector<uint64_t>> still_mapped = {{}, {}, {}, {0, 4, 5, 9}, {5, 9}, {}, {}};
  for (size_t i = 0; i < examples.size(); ++i) {
    SCOPED_TRACE(i);
    const uint32_t d = 10 + static_cast<uint32_t>(i);
    ASSERT_EQ(send(attach_req(d, static_cast<uint32_t>(i))), kOk);
    for (const Step& s : examples[i])
      EXPECT_EQ(s.map ? map_pages(d, s.first, s.last) : unmap_pages(d, s.first, s.last), s.want);
    for (uint64_t p = 0; p < 15; ++p) {
      const bool mapped = std::find(still_mapped[i].begin(), still_mapped[i].end(), p) != still_mapped[i].end();
      if (i == 3 && p < 10) continue;  // one 0-9 mapping: checked below
      if (i == 4 && p >= 5 && p <= 9) continue;
      EXPECT_EQ(map_pages(d, p, p), mapped ? kInval : kOk) << p;
    }
    if (i == 3 || i == 4) {
      EXPECT_EQ(map_pages(d, 7, 7), kInval);  // the 0-9 (example 3) or 5-9 (example 4) mapping survived
    }
  }
}

TEST_F(DeviceTest, AttachRules) {
  auto bad = attach_req(1, 0);
  bad.reserved[1] = 1;
  EXPECT_EQ(send(bad), kInval);                          // reserved != 0
  EXPECT_EQ(send(attach_req(1, 0, 2)), kInval);          // unknown flag
  EXPECT_EQ(send(attach_req(1, 0x10000)), kNoEnt);       // endpoint does not exist
  ASSERT_EQ(send(attach_req(1, 0)), kOk);
  ASSERT_EQ(map_pages(1, 0, 3), kOk);
  EXPECT_EQ(send(attach_req(1, 0)), kOk);                // same domain: nothing changes
  EXPECT_EQ(map_pages(1, 0, 0), kInval);                 // mapping kept
  ASSERT_EQ(send(attach_req(2, 1, kAttachFlagBypass)), kOk);
  EXPECT_EQ(send(attach_req(2, 0)), kInval);             // kind mismatch
  EXPECT_EQ(send(attach_req(1, 1, kAttachFlagBypass)), kInval);
  DomainId d{};
  ASSERT_TRUE(dev_->endpoint_domain(EndpointId{0}, &d));
  EXPECT_EQ(d.value, 1u);                                // old attachment unchanged
  EXPECT_EQ(map_pages(2, 0, 0), kInval);                 // MAP on a bypass domain
  EXPECT_EQ(unmap_pages(2, 0, 0), kInval);
}

TEST_F(DeviceTest, RangesAndCheckOrder) {
  cfg_.domain_start = 1;
  cfg_.domain_last = 8;
  cfg_.feature_mmio = false;
  dev_ = std::make_unique<Device>(cfg_, rcu_);
  EXPECT_EQ(send(attach_req(9, 0x10000)), kRange);       // range before endpoint
  EXPECT_EQ(send(detach_req(0, 0)), kRange);
  EXPECT_EQ(send(detach_req(1, 0x10000)), kNoEnt);
  EXPECT_EQ(send(detach_req(1, 0)), kInval);             // not attached there
  EXPECT_EQ(send(map_req(9, 0, kPage - 1, 0, 8)), kInval);     // flags first
  EXPECT_EQ(send(map_req(9, 0, kPage - 1, 0, kMapFlagMmio)), kInval);  // MMIO not negotiated
  EXPECT_EQ(send(map_req(9, 0, kPage - 1, 0, kRW)), kRange);
  EXPECT_EQ(send(map_req(2, 0, kPage - 1, 0, kRW)), kNoEnt);
  EXPECT_EQ(send(unmap_req(2, 0, kPage - 1)), kNoEnt);
  ASSERT_EQ(send(attach_req(2, 0)), kOk);
  EXPECT_EQ(send(map_req(2, kPage, 0, 0, kRW)), kInval);                 // end < start
  EXPECT_EQ(send(map_req(2, 0, uint64_t{1} << 48, 0, kRW)), kRange);     // past input range
  EXPECT_EQ(send(map_req(2, 1, kPage, 0, kRW)), kRange);                 // misaligned start
  EXPECT_EQ(send(map_req(2, 0, kPage - 1, 1, kRW)), kRange);             // misaligned phys
  EXPECT_EQ(send(map_req(2, 0, kPage, 0, kRW)), kRange);                 // end+1 misaligned
  EXPECT_EQ(send(map_req(2, 0xfee00000, 0xfee00fff, 0, kRW)), kInval);   // MSI RESV_MEM
  auto u = unmap_req(2, 0, kPage - 1);
  u.reserved[1] = 1;
  EXPECT_EQ(send(u), kInval);                                            // UNMAP reserved
}

TEST_F(DeviceTest, ProbeReportsResvMem) {
  constexpr size_t kW = 512 + kTailSize;
  auto p = probe_req(3);
  ASSERT_EQ(send(p, kW), kOk);
  const std::array<uint8_t, 24> want = {1, 0, 20, 0, 1, 0, 0, 0, 0, 0, 0xe0, 0xfe, 0, 0, 0, 0,
                                        0xff, 0xff, 0xef, 0xfe, 0, 0, 0, 0};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(last_[i], want[i]) << i;
  for (size_t i = want.size(); i < 512; ++i) ASSERT_EQ(last_[i], 0) << i;  // zero fill
  EXPECT_EQ(send(p, kW - 1), kInval);                    // writable shorter than probe_size + 4
  p.endpoint.set(0x10000);
  EXPECT_EQ(send(p, kW), kNoEnt);
  cfg_.probe_size = 16;                                  // the property does not fit
  dev_ = std::make_unique<Device>(cfg_, rcu_);
  p.endpoint.set(3);
  EXPECT_EQ(send(p, 16 + kTailSize), kInval);
}

TEST_F(DeviceTest, DomainDiesWithItsLastEndpoint) {
  ASSERT_EQ(send(attach_req(5, 1)), kOk);
  ASSERT_EQ(send(attach_req(5, 2)), kOk);
  ASSERT_EQ(map_pages(5, 0, 99), kOk);
  EXPECT_EQ(dev_->mapping_count(), 1u);
  ASSERT_EQ(send(attach_req(6, 1)), kOk);                // moving ATTACH: 5 keeps endpoint 2
  EXPECT_EQ(dev_->domain_count(), 2u);
  ASSERT_EQ(send(detach_req(5, 2)), kOk);                // last endpoint: 5 and its mapping go
  EXPECT_EQ(dev_->domain_count(), 1u);
  EXPECT_EQ(dev_->mapping_count(), 0u);
  ASSERT_EQ(send(attach_req(5, 2)), kOk);                // Linux replays every MAP here
  EXPECT_EQ(map_pages(5, 0, 99), kOk);
  ASSERT_EQ(send(attach_req(6, 2)), kOk);                // moving ATTACH kills 5 too
  EXPECT_EQ(dev_->domain_count(), 1u);
  EXPECT_EQ(send(detach_req(5, 2)), kInval);
}

TEST_F(DeviceTest, CapsGiveNoMem) {
  cfg_.max_domains = 2;
  cfg_.max_mappings = 3;
  dev_ = std::make_unique<Device>(cfg_, rcu_);
  ASSERT_EQ(send(attach_req(1, 1)), kOk);
  ASSERT_EQ(send(attach_req(2, 2)), kOk);
  EXPECT_EQ(send(attach_req(3, 3)), kNoMem);
  for (uint64_t i = 0; i < 3; ++i) ASSERT_EQ(map_pages(1, i, i), kOk);
  EXPECT_EQ(map_pages(2, 0, 0), kNoMem);
  ASSERT_EQ(unmap_pages(1, 0, 0), kOk);
  EXPECT_EQ(map_pages(2, 0, 0), kOk);
}

// A burst gives exactly the results of the same requests one at a time.
TEST(DeviceBurst, SameResultsAsOneAtATime) {
  std::mt19937_64 rng(5);
  std::vector<std::vector<uint8_t>> reqs;
  for (int i = 0; i < 3000; ++i) {
    const uint32_t d = static_cast<uint32_t>(rng() % 4);
    const uint32_t ep = static_cast<uint32_t>(rng() % 6);
    const uint64_t a = (rng() % 64) * kPage;
    const uint64_t b = a + (1 + rng() % 8) * kPage - 1;
    switch (rng() % 6) {
      case 0: reqs.push_back(encoded(attach_req(d, ep, rng() % 8 == 0 ? kAttachFlagBypass : 0))); break;
      case 1: reqs.push_back(encoded(detach_req(d, ep))); break;
      case 2:
      case 3: reqs.push_back(encoded(map_req(d, a, b, (rng() % 64) * kPage, static_cast<uint32_t>(rng() % 4)))); break;
      default: reqs.push_back(encoded(unmap_req(d, a, b))); break;
    }
  }
  Config cfg;
  Rcu rcu(1);
  Device one(cfg, rcu), burst(cfg, rcu);
  std::vector<std::array<uint8_t, kTailSize>> out_one(reqs.size()), out_burst(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) ASSERT_EQ(one.handle(reqs[i], out_one[i]), kTailSize);
  std::vector<Request> batch;
  for (size_t i = 0; i < reqs.size(); ++i) {
    batch.push_back(Request{reqs[i], out_burst[i], 0});
    if (batch.size() == 37 || i + 1 == reqs.size()) {
      ASSERT_EQ(burst.handle_burst(batch), batch.size());
      for (const Request& r : batch) ASSERT_EQ(r.used, kTailSize);
      batch.clear();
    }
  }
  int ok = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_EQ(out_one[i], out_burst[i]) << "request " << i;
    ok += test::tail_of(out_one[i]).status == 0;
  }
  EXPECT_GT(ok, 500);  // the sequence did real work, not only errors
  EXPECT_EQ(one.mapping_count(), burst.mapping_count());
  EXPECT_EQ(one.domain_count(), burst.domain_count());
}

// One valid MAP must not make the device allocate without bound: IOVA and phys
// offset by 4 KiB force 4 KiB leaves (2 MiB of tables per GiB).
TEST_F(DeviceTest, TableBytesCapBoundsOneMap) {
  cfg_.max_table_bytes = 8 << 20;
  dev_ = std::make_unique<Device>(cfg_, rcu_);
  ASSERT_EQ(send(attach_req(1, 0)), kOk);
  EXPECT_EQ(send(map_req(1, uint64_t{1} << 32, (uint64_t{1} << 46) - 1, 0x1000, kRW)), kNoMem);
  EXPECT_LE(dev_->table_bytes(), size_t{8} << 20);
  EXPECT_EQ(send(map_req(1, 0, (uint64_t{1} << 30) - 1, 0x1000, kRW)), kOk);  // 1 GiB: ~2 MiB of tables
  EXPECT_GT(dev_->table_bytes(), size_t{2} << 20);
  EXPECT_EQ(send(map_req(1, uint64_t{1} << 32, (uint64_t{1} << 32) + (uint64_t{4} << 30) - 1, 0x1000, kRW)), kNoMem);
  // 2 MiB-aligned phys: 2 MiB leaves, a few tables for 4 GiB.
  EXPECT_EQ(send(map_req(1, uint64_t{1} << 32, (uint64_t{1} << 32) + (uint64_t{4} << 30) - 1, 0x200000, kRW)), kOk);
  ASSERT_EQ(send(unmap_req(1, 0, (uint64_t{1} << 30) - 1)), kOk);
  ASSERT_EQ(send(detach_req(1, 0)), kOk);
  EXPECT_EQ(dev_->table_bytes(), 0u);
}

TEST_F(DeviceTest, FeaturesAndConfigSpace) {
  EXPECT_EQ(dev_->features(), kFeatureInputRange | kFeatureDomainRange | kFeatureMapUnmap | kFeatureProbe |
                                  kFeatureMmio | kFeatureBypassConfig);
  EXPECT_EQ(dev_->features() & (uint64_t{1} << 3), 0u);  // legacy BYPASS: never offered
  cfg_.domain_start = 2;
  cfg_.domain_last = 0x1234;
  cfg_.probe_size = 0x200;
  dev_ = std::make_unique<Device>(cfg_, rcu_);
  std::array<uint8_t, kConfigSize> c{};
  dev_->read_config(c);
  const std::array<uint8_t, kConfigSize> want = {
      0x00, 0xf0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,  // page_size_mask
      0, 0, 0, 0, 0, 0, 0, 0,                          // input_range.start
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,        // input_range.end (48 bits)
      2, 0, 0, 0, 0x34, 0x12, 0, 0,                    // domain_range
      0, 2, 0, 0,                                      // probe_size
      0, 0, 0, 0};                                     // bypass, reserved
  EXPECT_EQ(c, want);
  EXPECT_EQ(dev_->write_bypass(2), Status::kInval);
  EXPECT_EQ(dev_->write_bypass(1), Status::kOk);
  dev_->read_config(c);
  EXPECT_EQ(c[kConfigBypassOffset], 1);
  cfg_.feature_bypass_config = false;
  dev_ = std::make_unique<Device>(cfg_, rcu_);
  EXPECT_EQ(dev_->features() & kFeatureBypassConfig, 0u);
  EXPECT_EQ(dev_->write_bypass(1), Status::kInval);
}

}  // namespace
}  // namespace vxlate::engine::device_test
