// Device data path: an online reader translating through the device (iova_to_hva/gpa, Device::Burst and
// its peek hint), fault events and their rate limit, bypass, and memory-table validation.
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

// The data path: an online reader translating through the device.
class TranslateTest : public DeviceTest {
 protected:
  void SetUp() override {
    id_ = rcu_.register_reader();
    const MemRegion mem[] = {{0x100000000, 0x100000, 0x7f0000000000}, {0x100100000, 0x100000, 0x7f1000000000}};
    ASSERT_EQ(dev_->set_mem_table(mem), Status::kOk);
  }
  void TearDown() override { rcu_.unregister_reader(id_); }
  // Online only around the translation: handle() waits for online readers.
  Status tr(uint32_t ep, uint64_t iova, uint64_t len, uint8_t access, std::vector<Segment>* out,
            bool gpa = false) {
    Segment segs[8];
    size_t n = 0;
    dev_->iotlb().online(id_);
    const Status s = gpa ? dev_->iova_to_gpa(id_, EndpointId{ep}, iova, len, access, segs, &n)
                         : dev_->iova_to_hva(id_, EndpointId{ep}, iova, len, access, segs, &n);
    dev_->iotlb().offline(id_);
    out->assign(segs, segs + n);
    return s;
  }
  std::vector<FaultEvent> drain() {
    FaultEvent ev[64];
    const size_t n = dev_->drain_events(ev);
    return {ev, ev + n};
  }
  uint32_t id_ = 0;
};

TEST_F(TranslateTest, SplitsAtMappingAndRegionBoundariesAndMerges) {
  ASSERT_EQ(send(attach_req(1, 7)), kOk);
  // Two adjacent mappings to adjacent GPAs (merge), the second crossing into
  // the next memory region (split).
  ASSERT_EQ(send(map_req(1, 0x10000, 0x10fff, 0x1000ff000, kMapFlagRead)), kOk);
  ASSERT_EQ(send(map_req(1, 0x11000, 0x12fff, 0x100100000, kRW)), kOk);
  std::vector<Segment> s;
  ASSERT_EQ(tr(7, 0x10800, 0x2000, pagetable::kPermRead, &s), Status::kOk);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].addr, 0x7f0000000000u + 0xff800);
  EXPECT_EQ(s[0].len, 0x800u);
  EXPECT_EQ(s[1].addr, 0x7f1000000000u);
  EXPECT_EQ(s[1].len, 0x1800u);
  ASSERT_EQ(tr(7, 0x10800, 0x2000, pagetable::kPermRead, &s, /*gpa=*/true), Status::kOk);
  ASSERT_EQ(s.size(), 1u);  // contiguous in GPA: merged
  EXPECT_EQ(s[0].addr, 0x1000ff800u);
  EXPECT_EQ(s[0].len, 0x2000u);
  // A write needs WRITE on every byte: the first page is read-only.
  EXPECT_EQ(tr(7, 0x10800, 0x2000, pagetable::kPermWrite, &s), Status::kFault);
  // Past the mapped range, and into no guest memory.
  EXPECT_EQ(tr(7, 0x12f00, 0x200, pagetable::kPermRead, &s), Status::kFault);
  ASSERT_EQ(send(map_req(1, 0x20000, 0x20fff, 0x300000000, kRW)), kOk);
  EXPECT_EQ(tr(7, 0x20000, 16, pagetable::kPermRead, &s), Status::kFault);
  EXPECT_EQ(tr(7, 0x20000, 16, pagetable::kPermRead, &s, /*gpa=*/true), Status::kOk);
  const auto ev = drain();
  ASSERT_EQ(ev.size(), 3u);
  EXPECT_EQ(ev[0].reason, kFaultReasonMapping);
  EXPECT_EQ(ev[0].flags, kFaultFlagWrite | kFaultFlagAddress);
  EXPECT_EQ(ev[0].address, 0x10800u);
  EXPECT_EQ(ev[1].address, 0x13000u);  // the first faulting byte
  EXPECT_EQ(ev[2].address, 0x20000u);
  EXPECT_EQ(tr(7, 0, 0, pagetable::kPermRead, &s), Status::kInval);
  EXPECT_EQ(tr(7, ~uint64_t{0}, 2, pagetable::kPermRead, &s), Status::kInval);
}

// Device::Burst (an inline fast path for a cached single-page DMA in the
// last memory region, the rest out of line) gives exactly what one
// Device::iova_to_hva() call each gives: status, segments, fault event, and
// the same IOTLB hit count, whatever the access (page and region boundaries,
// memory holes, permissions, bad arguments, translated, bypassed and
// unattached endpoints).
TEST_F(TranslateTest, BurstGivesTheResultsOfOneCallEach) {
  std::mt19937_64 rng(11);
  constexpr uint64_t kMemFirst = 0x100000000, kMid = 0x1000ff800, kMemEnd = 0x100200000;
  // Two regions with split hvas, meeting in the middle of a page.
  const MemRegion mem[] = {{kMemFirst, kMid - kMemFirst, 0x7f0000000000}, {kMid, kMemEnd - kMid, 0x7f1000000000}};
  ASSERT_EQ(dev_->set_mem_table(mem), Status::kOk);
  ASSERT_EQ(send(attach_req(1, 7)), kOk);
  ASSERT_EQ(send(attach_req(3, 8, kAttachFlagBypass)), kOk);  // ep 9 stays unattached
  // Page 0 holds the regions' boundary, page 1 ends where memory ends.
  ASSERT_EQ(send(map_req(1, 0, kPage - 1, kMid & ~(kPage - 1), kRW)), kOk);
  ASSERT_EQ(send(map_req(1, kPage, 2 * kPage - 1, kMemEnd - kPage, kRW)), kOk);
  for (uint64_t page = 2; page < 256; ++page) {
    if (rng() % 4 == 0) continue;  // a hole
    const uint64_t gpa = kMemFirst - 4 * kPage + (rng() % ((kMemEnd - kMemFirst) / kPage + 8)) * kPage;
    const uint32_t flags = std::array<uint32_t, 3>{kMapFlagRead, kMapFlagWrite, kRW}[rng() % 3];
    ASSERT_EQ(send(map_req(1, page * kPage, page * kPage + kPage - 1, gpa, flags)), kOk);
  }
  struct Access {
    uint32_t ep;
    uint64_t iova, len;
    uint8_t access;
  };
  std::vector<Access> accesses;
  const uint64_t lens[] = {0, 1, 8, 64, 1500, 4096, 5000, 9000};
  const uint8_t perms[] = {pagetable::kPermRead, pagetable::kPermWrite, pagetable::kPermReadWrite,
                           pagetable::kPermRead, pagetable::kPermWrite, 0, 4};
  for (int burst = 0; burst < 200; ++burst) {
    const uint32_t ep = 7 + static_cast<uint32_t>(rng() % 3);
    for (int i = 0; i < 32; ++i) {
      const uint64_t iova = ep == 7 ? rng() % (260 * kPage)
                                    : kMemFirst - 3 * kPage + rng() % (kMemEnd - kMemFirst + 6 * kPage);
      uint64_t len = rng() % 4 == 0 ? rng() % 9000 : lens[rng() % std::size(lens)];
      if (i > 0 && rng() % 3 == 0) {
        // The page of the access before (a header and its frame) or of the one
        // before that (an indirect table's page between two buffer pages).
        const size_t back = 1 + (i > 1 ? rng() % 2 : 0);
        const uint64_t page = accesses[accesses.size() - back].iova & ~(kPage - 1);
        accesses.push_back(Access{ep, page + rng() % kPage, 1 + rng() % 256, perms[rng() % std::size(perms)]});
        continue;
      }
      if (rng() % 4 == 0) {  // a short access ending near a page or region end
        const uint64_t ends[] = {kPage, kMid & (kPage - 1), 2 * kPage, kMid, kMemEnd, kMemFirst + 5 * kPage};
        const uint64_t end = ends[ep == 7 ? rng() % 3 : 3 + rng() % 3];
        len = 1 + rng() % 64;
        accesses.push_back(Access{ep, end - len + rng() % 3, len, perms[rng() % 3]});
        continue;
      }
      accesses.push_back(Access{ep, iova, len, perms[rng() % std::size(perms)]});
    }
  }
  struct Result {
    Status st;
    std::vector<Segment> segs;
    FaultEvent fault;
  };
  // With `peek`, each translation of a burst is preceded by peeks at the next
  // two accesses, as the virtqueue's lookahead does: a peek (which may walk
  // and fill) must change no result.
  auto pass = [&](bool use_burst, std::vector<Result>* out, bool peek = false) {
    out->clear();
    Device::Burst b;
    for (size_t i = 0; i < accesses.size(); ++i) {
      const Access& a = accesses[i];
      if (i % 32 == 0) b.begin(*dev_, id_, EndpointId{a.ep});
      for (size_t j = i + 1; peek && j <= i + 2 && j / 32 == i / 32 && j < accesses.size(); ++j)
        b.peek(accesses[j].iova, std::min<uint64_t>(accesses[j].len, 128), accesses[j].access);
      Segment segs[4];
      size_t n = 0;
      FaultEvent fault{};
      const Status st = use_burst ? b.iova_to_hva(a.iova, a.len, a.access, segs, &n, &fault)
                                  : dev_->iova_to_hva(id_, EndpointId{a.ep}, a.iova, a.len, a.access, segs, &n, &fault);
      out->push_back(Result{st, {segs, segs + n}, st == Status::kFault ? fault : FaultEvent{}});
    }
    b.end();
  };
  dev_->iotlb().online(id_);
  std::vector<Result> calls, bursts;
  pass(false, &calls);  // fills the IOTLB
  const uint64_t hits0 = dev_->iotlb().reader_stats(id_).hits;
  pass(false, &calls);
  const uint64_t hits1 = dev_->iotlb().reader_stats(id_).hits;
  pass(true, &bursts);
  const uint64_t hits2 = dev_->iotlb().reader_stats(id_).hits;
  std::vector<Result> peeked;
  pass(true, &peeked, true);
  const uint64_t hits3 = dev_->iotlb().reader_stats(id_).hits;
  dev_->iotlb().offline(id_);
  ASSERT_EQ(calls.size(), bursts.size());
  ASSERT_EQ(calls.size(), peeked.size());
  auto expect_same = [](const Result& want, const Result& got) {
    ASSERT_EQ(want.st, got.st);
    ASSERT_EQ(want.segs.size(), got.segs.size());
    for (size_t s = 0; s < want.segs.size(); ++s) {
      EXPECT_EQ(want.segs[s].addr, got.segs[s].addr);
      EXPECT_EQ(want.segs[s].len, got.segs[s].len);
    }
    EXPECT_EQ(want.fault.reason, got.fault.reason);
    EXPECT_EQ(want.fault.flags, got.fault.flags);
    EXPECT_EQ(want.fault.endpoint, got.fault.endpoint);
    EXPECT_EQ(want.fault.address, got.fault.address);
  };
  int ok = 0, fault = 0, inval = 0;
  for (size_t i = 0; i < calls.size(); ++i) {
    const Access& a = accesses[i];
    SCOPED_TRACE(testing::Message() << "access " << i << ": ep " << a.ep << " iova 0x" << std::hex << a.iova
                                    << " len 0x" << a.len << " access " << int{a.access});
    expect_same(calls[i], bursts[i]);
    expect_same(calls[i], peeked[i]);
    ok += calls[i].st == Status::kOk;
    fault += calls[i].st == Status::kFault;
    inval += calls[i].st == Status::kInval;
  }
  // Every kind of outcome occurred, the fast path's included.
  EXPECT_GT(ok, 1000);
  EXPECT_GT(fault, 300);
  EXPECT_GT(inval, 100);
  EXPECT_GT(hits1 - hits0, 1000u);
  EXPECT_EQ(hits2 - hits1, hits1 - hits0) << "a Burst counts each hit once, as one call each does";
  EXPECT_EQ(hits3 - hits2, hits2 - hits1) << "a peek counts no hit";
  drain();
}

// What a Burst remembers of its last page (and of its last table's page)
// outlives the burst only while its stamp stands: a page unmapped between two
// bursts faults in the second, through iova_to_hva() and table_to_hva() alike.
TEST_F(TranslateTest, BurstForgetsItsPagesOnceAnInvalidationApplies) {
  ASSERT_EQ(send(attach_req(1, 7)), kOk);
  ASSERT_EQ(send(map_req(1, 0x10000, 0x10fff, 0x100000000, kRW)), kOk);
  ASSERT_EQ(send(map_req(1, 0x20000, 0x20fff, 0x100001000, kRW)), kOk);
  Device::Burst b;
  Segment seg;
  size_t n = 0;
  dev_->iotlb().online(id_);
  b.begin(*dev_, id_, EndpointId{7});
  ASSERT_EQ(b.iova_to_hva(0x10000, 12, pagetable::kPermRead, {&seg, 1}, &n), Status::kOk);
  ASSERT_EQ(b.iova_to_hva(0x1000c, 64, pagetable::kPermRead, {&seg, 1}, &n), Status::kOk);  // the same page
  EXPECT_EQ(seg.addr, 0x7f000000000cu);
  ASSERT_EQ(b.table_to_hva(0x10100, 32, {&seg, 1}, &n), Status::kOk);
  EXPECT_EQ(seg.addr, 0x7f0000000100u);
  b.end();
  const Device::Burst::Stamp before = b.stamp();
  b.begin(*dev_, id_, EndpointId{7});  // nothing changed: the stamp stands, the memos stay
  EXPECT_EQ(b.stamp(), before);
  ASSERT_EQ(b.table_to_hva(0x10200, 32, {&seg, 1}, &n), Status::kOk);
  EXPECT_EQ(seg.addr, 0x7f0000000200u);
  b.end();
  dev_->iotlb().offline(id_);
  ASSERT_EQ(send(unmap_req(1, 0x10000, 0x10fff)), kOk);
  dev_->iotlb().online(id_);
  b.begin(*dev_, id_, EndpointId{7});
  EXPECT_NE(b.stamp(), before);
  ASSERT_EQ(b.iova_to_hva(0x20000, 64, pagetable::kPermRead, {&seg, 1}, &n), Status::kOk);  // the same region
  EXPECT_EQ(b.iova_to_hva(0x1000c, 64, pagetable::kPermRead, {&seg, 1}, &n), Status::kFault);
  EXPECT_EQ(b.table_to_hva(0x10300, 32, {&seg, 1}, &n), Status::kFault);
  b.end();
  dev_->iotlb().offline(id_);
  drain();
}

// Likewise a peek: a page peeked in one burst and unmapped before the next
// faults there, and a page peeked for reading gives no write translation.
TEST_F(TranslateTest, BurstForgetsWhatItPeekedOnceAnInvalidationApplies) {
  ASSERT_EQ(send(attach_req(1, 7)), kOk);
  ASSERT_EQ(send(map_req(1, 0x10000, 0x10fff, 0x100000000, kRW)), kOk);
  ASSERT_EQ(send(map_req(1, 0x20000, 0x20fff, 0x100001000, kMapFlagRead)), kOk);
  Device::Burst b;
  Segment seg;
  size_t n = 0;
  dev_->iotlb().online(id_);
  b.begin(*dev_, id_, EndpointId{7});
  ASSERT_EQ(b.iova_to_hva(0x10000, 12, pagetable::kPermRead, {&seg, 1}, &n), Status::kOk);  // sets the region
  EXPECT_EQ(b.peek(0x20040, 64, pagetable::kPermRead), reinterpret_cast<const uint8_t*>(0x7f0000001040));
  EXPECT_EQ(b.iova_to_hva(0x20080, 64, pagetable::kPermWrite, {&seg, 1}, &n), Status::kFault);
  ASSERT_EQ(b.iova_to_hva(0x20040, 64, pagetable::kPermRead, {&seg, 1}, &n), Status::kOk);
  EXPECT_EQ(seg.addr, 0x7f0000001040u);
  EXPECT_EQ(b.peek(0x20100, 16, pagetable::kPermRead), reinterpret_cast<const uint8_t*>(0x7f0000001100));
  b.end();
  dev_->iotlb().offline(id_);
  ASSERT_EQ(send(unmap_req(1, 0x20000, 0x20fff)), kOk);
  dev_->iotlb().online(id_);
  b.begin(*dev_, id_, EndpointId{7});
  ASSERT_EQ(b.iova_to_hva(0x10000, 12, pagetable::kPermRead, {&seg, 1}, &n), Status::kOk);
  EXPECT_EQ(b.iova_to_hva(0x20100, 16, pagetable::kPermRead, {&seg, 1}, &n), Status::kFault);
  b.end();
  dev_->iotlb().offline(id_);
  EXPECT_EQ(drain().size(), 2u);  // the write to a read-only page, the unmapped page
}

// The memory region a burst last used carries over to the next burst while the
// memory table is the same one (peek, which needs it, works before any
// translation), and not once the table was replaced: the next burst finds the
// GPA in the new table.
TEST_F(TranslateTest, BurstKeepsItsRegionOnlyForTheSameMemoryTable) {
  ASSERT_EQ(send(attach_req(1, 7)), kOk);
  ASSERT_EQ(send(map_req(1, 0x10000, 0x11fff, 0x100000000, kRW)), kOk);
  Device::Burst b;
  Segment seg;
  size_t n = 0;
  dev_->iotlb().online(id_);
  b.begin(*dev_, id_, EndpointId{7});
  ASSERT_EQ(b.iova_to_hva(0x10000, 8, pagetable::kPermRead, {&seg, 1}, &n), Status::kOk);
  b.end();
  b.begin(*dev_, id_, EndpointId{7});
  EXPECT_EQ(b.peek(0x11040, 16, pagetable::kPermRead), reinterpret_cast<const uint8_t*>(0x7f0000001040));
  b.end();
  dev_->iotlb().offline(id_);
  // The same GPAs at another host address.
  const MemRegion moved[] = {{0x100000000, 0x100000, 0x7f2000000000}};
  ASSERT_EQ(dev_->set_mem_table(moved), Status::kOk);
  dev_->iotlb().online(id_);
  b.begin(*dev_, id_, EndpointId{7});
  EXPECT_EQ(b.peek(0x11040, 16, pagetable::kPermRead), nullptr) << "the old table's region";
  ASSERT_EQ(b.iova_to_hva(0x10008, 8, pagetable::kPermRead, {&seg, 1}, &n), Status::kOk);
  EXPECT_EQ(seg.addr, 0x7f2000000008u);
  b.end();
  dev_->iotlb().offline(id_);
  EXPECT_TRUE(drain().empty());
}

// Burst::peek(), the prefetch hint: the address iova_to_hva() gives; a miss
// is walked and filled (the translation it prepares then hits), a fault is
// not reported, a hit is not counted, and a range it cannot take in one
// piece gives nullptr.
TEST_F(TranslateTest, BurstPeekIsAHintWithoutSideEffects) {
  ASSERT_EQ(send(attach_req(1, 7)), kOk);
  ASSERT_EQ(send(map_req(1, 0x10000, 0x11fff, 0x100000000, kMapFlagRead)), kOk);
  Device::Burst b;
  Segment seg;
  size_t n = 0;
  dev_->iotlb().online(id_);
  const uint64_t hits0 = dev_->iotlb().stats().hits, misses0 = dev_->iotlb().stats().misses;
  b.begin(*dev_, id_, EndpointId{7});
  EXPECT_EQ(b.peek(0x10040, 16, pagetable::kPermRead), nullptr);  // no region used yet
  // One translation (a miss, walked) sets the region; the page of 0x11000
  // is mapped but not cached: the hint walks it (one more miss).
  ASSERT_EQ(b.iova_to_hva(0x10000, 8, pagetable::kPermRead, {&seg, 1}, &n), Status::kOk);
  EXPECT_EQ(b.peek(0x11040, 16, pagetable::kPermRead), reinterpret_cast<const uint8_t*>(0x7f0000001040));
  EXPECT_EQ(b.peek(0x30000, 16, pagetable::kPermRead), nullptr);  // unmapped: no fault reported
  EXPECT_EQ(b.peek(0x11040, 16, pagetable::kPermWrite), nullptr);  // read-only: no fault reported
  b.end();
  EXPECT_EQ(dev_->iotlb().stats().misses - misses0, 3u);
  EXPECT_TRUE(drain().empty());
  // The page the hint walked is cached: the translation hits.
  b.begin(*dev_, id_, EndpointId{7});
  ASSERT_EQ(b.iova_to_hva(0x11000, 8, pagetable::kPermRead, {&seg, 1}, &n), Status::kOk);
  b.end();
  EXPECT_EQ(dev_->iotlb().stats().misses - misses0, 3u);
  const uint64_t hits1 = dev_->iotlb().stats().hits;
  b.begin(*dev_, id_, EndpointId{7});
  ASSERT_EQ(b.iova_to_hva(0x10000, 8, pagetable::kPermRead, {&seg, 1}, &n), Status::kOk);  // sets the region
  EXPECT_EQ(b.peek(0x11040, 64, pagetable::kPermRead), reinterpret_cast<const uint8_t*>(0x7f0000001040));
  EXPECT_EQ(b.peek(0x10ff8, 16, pagetable::kPermRead), nullptr);   // crosses a page
  EXPECT_EQ(b.peek(0x11040, 64, pagetable::kPermWrite), nullptr);  // no permission: no fault either
  EXPECT_EQ(b.peek(0x11040, 0, pagetable::kPermRead), nullptr);
  b.end();
  EXPECT_EQ(dev_->iotlb().stats().hits - hits1, 1u) << "only the translation counts";
  EXPECT_GE(hits1, hits0);
  EXPECT_TRUE(drain().empty());
  dev_->iotlb().offline(id_);
}

TEST_F(TranslateTest, UnmapTakesEffectWhenTheRequestCompletes) {
  ASSERT_EQ(send(attach_req(1, 7)), kOk);
  ASSERT_EQ(send(map_req(1, 0x10000, 0x10fff, 0x100000000, kRW)), kOk);
  std::vector<Segment> s;
  ASSERT_EQ(tr(7, 0x10000, 8, pagetable::kPermRead, &s), Status::kOk);  // cached now
  ASSERT_EQ(send(unmap_req(1, 0x10000, 0x10fff)), kOk);
  EXPECT_EQ(tr(7, 0x10000, 8, pagetable::kPermRead, &s), Status::kFault);
}

TEST_F(TranslateTest, BypassRulesAndDomainFaults) {
  std::vector<Segment> s;
  EXPECT_EQ(tr(9, 0x100000000, 8, pagetable::kPermRead, &s), Status::kFault);  // unattached
  auto ev = drain();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].reason, kFaultReasonDomain);
  EXPECT_EQ(ev[0].endpoint, 9u);
  ASSERT_EQ(send(attach_req(3, 9, kAttachFlagBypass)), kOk);  // bypass domain: identity
  ASSERT_EQ(tr(9, 0x100000010, 8, pagetable::kPermWrite, &s), Status::kOk);
  EXPECT_EQ(s[0].addr, 0x7f0000000010u);
  cfg_.bypass = 1;  // BYPASS_CONFIG + bypass = 1: unattached endpoints bypass
  dev_ = std::make_unique<Device>(cfg_, rcu_);
  const MemRegion mem[] = {{0x100000000, 0x100000, 0x7f0000000000}};
  ASSERT_EQ(dev_->set_mem_table(mem), Status::kOk);
  ASSERT_EQ(tr(9, 0x100000010, 8, pagetable::kPermRead, &s), Status::kOk);
  EXPECT_EQ(s[0].addr, 0x7f0000000010u);
  ASSERT_EQ(send(attach_req(1, 9)), kOk);  // attached to a normal domain: translated
  EXPECT_EQ(tr(9, 0x100000010, 8, pagetable::kPermRead, &s), Status::kFault);
}

TEST_F(TranslateTest, FaultEventsAreRateLimitedPerEndpoint) {
  std::vector<Segment> s;
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(tr(20, 0x1000 * i, 8, pagetable::kPermRead, &s), Status::kFault);
    ASSERT_EQ(tr(21, 0x1000 * i, 8, pagetable::kPermRead, &s), Status::kFault);
  }
  auto ev = drain();
  EXPECT_EQ(ev.size(), 2 * kMaxFaultsPerEndpoint);
  EXPECT_EQ(dev_->events_dropped(), 200 - 2 * kMaxFaultsPerEndpoint);
  ASSERT_EQ(tr(20, 0, 8, pagetable::kPermRead, &s), Status::kFault);  // a new window after drain
  EXPECT_EQ(drain().size(), 1u);
}

TEST_F(TranslateTest, MemTableValidation) {
  const MemRegion overlap[] = {{0, 0x2000, 0x1000}, {0x1000, 0x1000, 0x9000}};
  EXPECT_EQ(dev_->set_mem_table(overlap), Status::kInval);
  const MemRegion wrap[] = {{~uint64_t{0} - 0xfff, 0x2000, 0}};
  EXPECT_EQ(dev_->set_mem_table(wrap), Status::kInval);
  const MemRegion empty[] = {{0, 0, 0}};
  EXPECT_EQ(dev_->set_mem_table(empty), Status::kInval);
  std::vector<Segment> s;
  ASSERT_EQ(send(attach_req(1, 7, kAttachFlagBypass)), kOk);
  ASSERT_EQ(tr(7, 0x100000000, 8, pagetable::kPermRead, &s), Status::kOk);  // old table kept
}

TEST_F(TranslateTest, DriverBypassWriteTakesEffect) {
  std::vector<Segment> s;
  EXPECT_EQ(tr(9, 0x100000010, 8, pagetable::kPermRead, &s), Status::kFault);
  ASSERT_EQ(dev_->write_bypass(1), Status::kOk);
  ASSERT_EQ(tr(9, 0x100000010, 8, pagetable::kPermRead, &s), Status::kOk);
  EXPECT_EQ(s[0].addr, 0x7f0000000010u);
  ASSERT_EQ(dev_->write_bypass(0), Status::kOk);
  EXPECT_EQ(tr(9, 0x100000010, 8, pagetable::kPermRead, &s), Status::kFault);
}

}  // namespace
}  // namespace vxlate::engine::device_test
