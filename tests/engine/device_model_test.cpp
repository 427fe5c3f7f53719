// Randomised differential test: request sequences through the wire entry point
// against a plain reference model of the reference's semantics and Decisions
// table, with translations probed against the model after every burst.
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "support/virtio_iommu.h"
#include "vxlate/engine/device.h"

namespace vxlate::engine {
namespace {

constexpr uint64_t kPage = 4096;
constexpr int kOk = 0, kInval = 4, kRange = 5, kNoEnt = 6;

// The reference model: nothing but maps and sets.
struct Model {
  struct Ext {
    uint64_t end, phys;
    uint32_t flags;
  };
  struct Dom {
    bool bypass;
    std::set<uint32_t> eps;
    std::map<uint64_t, Ext> ext;
  };
  uint32_t dom_lo = 0, dom_hi = 7, ep_hi = 5;
  std::map<uint32_t, Dom> doms;
  std::map<uint32_t, uint32_t> att;

  bool resv_hit(uint64_t s, uint64_t e) const { return s <= 0xfeefffff && e >= 0xfee00000; }

  void drop_ep(uint32_t ep) {
    const uint32_t d = att.at(ep);
    att.erase(ep);
    doms.at(d).eps.erase(ep);
    if (doms.at(d).eps.empty()) doms.erase(d);
  }
  int attach(uint32_t d, uint32_t ep, uint32_t flags) {
    if (flags & ~kAttachFlagBypass) return kInval;
    if (d < dom_lo || d > dom_hi) return kRange;
    if (ep > ep_hi) return kNoEnt;
    const bool bypass = flags & kAttachFlagBypass;
    auto it = doms.find(d);
    if (it != doms.end() && it->second.bypass != bypass) return kInval;
    if (att.count(ep) && att[ep] == d) return kOk;
    if (att.count(ep)) drop_ep(ep);
    doms[d].bypass = bypass;
    doms[d].eps.insert(ep);
    att[ep] = d;
    return kOk;
  }
  int detach(uint32_t d, uint32_t ep) {
    if (d < dom_lo || d > dom_hi) return kRange;
    if (ep > ep_hi) return kNoEnt;
    if (!att.count(ep) || att[ep] != d) return kInval;
    drop_ep(ep);
    return kOk;
  }
  int map(uint32_t d, uint64_t s, uint64_t e, uint64_t phys, uint32_t flags) {
    if (flags & ~7u) return kInval;
    if (d < dom_lo || d > dom_hi) return kRange;
    if (!doms.count(d)) return kNoEnt;
    Dom& dom = doms[d];
    if (dom.bypass) return kInval;
    if (e < s) return kInval;
    if (e > pagetable::kIovaLast) return kRange;
    if ((s | phys | (e + 1)) % kPage) return kRange;
    for (auto& [start, x] : dom.ext)
      if (start <= e && x.end >= s) return kInval;
    if (resv_hit(s, e)) return kInval;
    dom.ext[s] = Ext{e, phys, flags};
    return kOk;
  }
  int unmap(uint32_t d, uint64_t s, uint64_t e) {
    if (d < dom_lo || d > dom_hi) return kRange;
    if (!doms.count(d)) return kNoEnt;
    Dom& dom = doms[d];
    if (dom.bypass) return kInval;
    if (e < s) return kInval;
    for (auto& [start, x] : dom.ext)
      if (start <= e && x.end >= s && (start < s || x.end > e)) return kRange;
    for (auto it = dom.ext.begin(); it != dom.ext.end();)
      it = (it->first >= s && it->second.end <= e) ? dom.ext.erase(it) : std::next(it);
    return kOk;
  }
  // GPA of `iova` for `ep` with `need`, or false for a fault.
  bool lookup(uint32_t ep, uint64_t iova, uint8_t need, uint64_t* gpa) const {
    auto a = att.find(ep);
    if (a == att.end()) return false;
    const Dom& dom = doms.at(a->second);
    if (dom.bypass) {
      *gpa = iova;
      return true;
    }
    for (auto& [start, x] : dom.ext) {
      if (iova < start || iova > x.end) continue;
      const uint8_t perms = (x.flags & kMapFlagRead ? 1 : 0) | (x.flags & kMapFlagWrite ? 2 : 0);
      if ((perms & need) != need) return false;
      *gpa = x.phys + (iova - start);
      return true;
    }
    return false;
  }
};

TEST(DeviceModel, RandomRequestsMatchTheModel) {
  Config cfg;
  cfg.domain_start = 0;
  cfg.domain_last = 7;
  cfg.endpoint_last = 5;
  Rcu rcu(1);
  Device dev(cfg, rcu, 64);
  const uint32_t reader = rcu.register_reader();
  Model model;
  std::mt19937_64 rng(2024);
  int ok = 0, probes = 0;
  for (int burst = 0; burst < 1500; ++burst) {
    const size_t n = 1 + rng() % 12;
    std::vector<test::PostedRequest> reqs(n);
    std::vector<int> want(n);
    std::vector<Request> rs(n);
    for (size_t i = 0; i < n; ++i) {
      // Small id spaces (including out-of-range ids) so requests collide.
      const uint32_t d = static_cast<uint32_t>(rng() % 9);
      const uint32_t ep = static_cast<uint32_t>(rng() % 7);
      const uint64_t s = (rng() % 64) * kPage + (rng() % 50 == 0 ? 1 : 0);
      const uint64_t e = s + (rng() % 6) * kPage + kPage - 1 - (rng() % 50 == 0 ? 2 * kPage : 0);
      test::PostedRequest& r = reqs[i];
      switch (rng() % 10) {
        case 0:
        case 1: {
          const uint32_t flags = rng() % 10 == 0 ? kAttachFlagBypass : (rng() % 40 == 0 ? 4 : 0);
          r = test::make_request(test::attach_req(d, ep, flags));
          want[i] = model.attach(d, ep, flags);
          break;
        }
        case 2:
          r = test::make_request(test::detach_req(d, ep));
          want[i] = model.detach(d, ep);
          break;
        case 3:
        case 4:
        case 5: {
          const uint64_t phys = 0x100000000 + (rng() % 256) * kPage;
          const uint32_t flags = static_cast<uint32_t>(rng() % 4) | (rng() % 40 == 0 ? 8u : 0u);
          r = test::make_request(test::map_req(d, s, e, phys, flags));
          want[i] = model.map(d, s, e, phys, flags);
          break;
        }
        default:
          r = test::make_request(test::unmap_req(d, s, e));
          want[i] = model.unmap(d, s, e);
          break;
      }
      rs[i] = r.request();
    }
    ASSERT_EQ(dev.handle_burst(rs), n);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(rs[i].used, kTailSize);
      ASSERT_EQ(reqs[i].status(), want[i]) << "burst " << burst << " request " << i << " type " << int(reqs[i].type());
      ok += want[i] == kOk;
    }
    // Probe translations against the model.
    dev.iotlb().online(reader);
    for (int p = 0; p < 16; ++p) {
      const uint32_t ep = static_cast<uint32_t>(rng() % 6);
      const uint64_t iova = (rng() % 72) * kPage + rng() % kPage;
      const uint8_t need = static_cast<uint8_t>(1 + rng() % 3);
      uint64_t gpa = 0;
      const bool mapped = model.lookup(ep, iova, need, &gpa);
      Segment seg[4];
      size_t ns = 0;
      const Status st = dev.iova_to_gpa(reader, EndpointId{ep}, iova, 1, need, seg, &ns);
      ASSERT_EQ(st == Status::kOk, mapped) << "ep " << ep << " iova " << iova;
      if (mapped) {
        ASSERT_EQ(seg[0].addr, gpa);
      }
      ++probes;
    }
    dev.iotlb().quiescent(reader);
    dev.iotlb().offline(reader);
    FaultEvent ev[64];
    dev.drain_events(ev);
  }
  EXPECT_GT(ok, 3000);
  EXPECT_EQ(dev.domain_count(), model.doms.size());
  size_t mappings = 0;
  for (auto& [d, dom] : model.doms) mappings += dom.ext.size();
  EXPECT_EQ(dev.mapping_count(), mappings);
  rcu.unregister_reader(reader);
}

}  // namespace
}  // namespace vxlate::engine
