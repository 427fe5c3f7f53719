// Caps hold at every instant, dying domains included, measured by what the
// process really holds (peak RSS), not by the device's own counter.
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <vector>

#include "support/virtio_iommu.h"
#include "vxlate/engine/device.h"

namespace vxlate::engine {
namespace {

uint64_t rss_now_bytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * 4096;
}
uint64_t rss_peak_bytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<uint64_t>(ru.ru_maxrss) * 1024;
}

TEST(DeviceCaps, TableBytesHoldWithinOneBurstOfDyingDomains) {
  constexpr uint64_t kCap = uint64_t{4} << 20;
  constexpr uint64_t kMapBytes = uint64_t{1} << 30;  // 4 KiB leaves (phys off by a page): 2 MiB of tables
  constexpr int kPairs = 20;
  Config cfg;
  cfg.max_table_bytes = kCap;
  Rcu rcu(1);
  Device dev(cfg, rcu, 64);
  // One burst: ATTACH endpoint 0 to a fresh domain (the previous one dies),
  // then MAP 1 GiB in it; every pair passes the cap on its own.
  std::vector<std::vector<uint8_t>> in;
  for (int i = 0; i < kPairs; ++i) {
    in.push_back(test::encoded(test::attach_req(100 + i, 0)));
    in.push_back(test::encoded(test::map_req(100 + i, 0, kMapBytes - 1, 0x1000, kMapFlagRead)));
  }
  std::vector<std::array<uint8_t, kTailSize>> tails(in.size());
  std::vector<Request> reqs;
  for (size_t i = 0; i < in.size(); ++i) reqs.push_back(Request{in[i], tails[i], 0});
  const uint64_t before = rss_now_bytes();
  ASSERT_EQ(dev.handle_burst(reqs), reqs.size());
  const uint64_t growth = rss_peak_bytes() > before ? rss_peak_bytes() - before : 0;
  int ok = 0;
  for (const auto& t : tails) ok += t[0] == 0;
  std::printf("peak RSS growth %.1f MiB under a %.1f MiB cap, %d/%zu requests OK\n", growth / 1048576.0,
              kCap / 1048576.0, ok, tails.size());
  // The tables alive at once stay under the cap; the rest is allocator slack
  // (2 MiB table chunks, the extent index) and sanitizer shadow.
  EXPECT_LE(growth, kCap + (uint64_t{12} << 20));
  EXPECT_LE(dev.table_bytes(), kCap);
  EXPECT_EQ(ok, 2 * kPairs) << "a grace period frees the dying domains before a MAP is refused";
}

TEST(DeviceCaps, DomainCapCountsDyingDomains) {
  Config cfg;
  cfg.max_domains = 3;  // two endpoints, and room for a moving ATTACH's new domain
  Rcu rcu(1);
  Device dev(cfg, rcu, 64);
  // Endpoints 0 and 1 hop through fresh domains within one burst: the domains
  // that die on the way count until a grace period frees them, which the
  // device takes early rather than refuse an ATTACH.
  std::vector<std::vector<uint8_t>> in;
  for (int i = 0; i < 16; ++i) in.push_back(test::encoded(test::attach_req(10 + i, i % 2)));
  std::vector<std::array<uint8_t, kTailSize>> tails(in.size());
  std::vector<Request> reqs;
  for (size_t i = 0; i < in.size(); ++i) reqs.push_back(Request{in[i], tails[i], 0});
  ASSERT_EQ(dev.handle_burst(reqs), reqs.size());
  for (const auto& t : tails) EXPECT_EQ(t[0], 0);
  EXPECT_EQ(dev.domain_count(), 2u);
}

}  // namespace
}  // namespace vxlate::engine
