// Caps hold at every instant, dying domains included, measured by what the
// process really holds (peak RSS), not by the device's own counter.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "support/virtio_iommu.h"
#include "vxlate/engine/device.h"

namespace vxlate::engine {
namespace {

uint64_t status_kib(const char* field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(field, 0) == 0) return std::stoull(line.substr(std::strlen(field)));
  return 0;
}
// Linux: writing 5 to clear_refs resets the peak resident set (VmHWM).
void reset_peak_rss() { std::ofstream("/proc/self/clear_refs") << "5"; }

constexpr uint64_t kCap = uint64_t{4} << 20;
constexpr uint64_t kMapBytes = uint64_t{1} << 30;  // 4 KiB leaves (phys off by a page): 2 MiB of tables

// Peak RSS growth while one burst of `pairs` (ATTACH endpoint 0 to a fresh
// domain, so that the previous one dies; MAP 1 GiB in it) runs under kCap.
uint64_t burst_peak_growth(int pairs) {
  Config cfg;
  cfg.max_table_bytes = kCap;
  Rcu rcu(1);
  Device dev(cfg, rcu, 64);
  std::vector<std::vector<uint8_t>> in;
  for (int i = 0; i < pairs; ++i) {
    in.push_back(test::encoded(test::attach_req(100 + i, 0)));
    in.push_back(test::encoded(test::map_req(100 + i, 0, kMapBytes - 1, 0x1000, kMapFlagRead)));
  }
  std::vector<std::array<uint8_t, kTailSize>> tails(in.size());
  std::vector<Request> reqs;
  for (size_t i = 0; i < in.size(); ++i) reqs.push_back(Request{in[i], tails[i], 0});
  reset_peak_rss();
  const uint64_t before = status_kib("VmRSS:");
  EXPECT_EQ(dev.handle_burst(reqs), reqs.size());
  const uint64_t peak = status_kib("VmHWM:");
  for (const auto& t : tails) EXPECT_EQ(t[0], 0) << "a grace period frees the dying domains before a MAP is refused";
  EXPECT_LE(dev.table_bytes(), kCap);
  return (peak > before ? peak - before : 0) * 1024;
}

TEST(DeviceCaps, TableBytesHoldWithinOneBurstOfDyingDomains) {
  // One pair's tables are what the cap lets live at once, give or take one
  // more dying domain: twenty pairs in one burst must peak near one pair, not
  // at twenty (sanitizer shadow memory scales both alike).
  (void)burst_peak_growth(1);  // warm-up: first-touch costs of the allocator and sanitizer runtimes
  const uint64_t one = burst_peak_growth(1);
  const uint64_t twenty = burst_peak_growth(20);
  std::printf("peak RSS growth: one pair %.1f MiB, twenty pairs %.1f MiB, cap %.1f MiB of tables\n",
              one / 1048576.0, twenty / 1048576.0, kCap / 1048576.0);
  EXPECT_GT(one, 0u);
  EXPECT_LE(twenty, 3 * one + (uint64_t{2} << 20));
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
