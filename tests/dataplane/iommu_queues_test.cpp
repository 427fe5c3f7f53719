// IommuQueues, the device side of the virtio-iommu requestq and eventq, driven
// by the guest driver model (IommuDriver) or by a hostile raw driver: ATTACH,
// MAP and UNMAP through the rings, a burst of requests handled in one
// handle_burst, failure statuses reaching the driver, refused request chains
// (no / short / oversized writable part, no readable part) with good requests
// after them, fault events written to eventq buffers (and held while none is
// posted), and the strict-mode invariant: once the driver sees an UNMAP
// completed, the translating reader's IOTLB no longer has it (same thread and
// another thread). Request batching: iommu_queues_batching_test.cpp.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "iommu_queues_test_support.h"

namespace vxlate::dataplane::iommu_queues_test {
namespace {

// `len` bytes of guest memory at host address p.
std::span<const uint8_t> bytes_at(const uint8_t* p, size_t len) { return {p, len}; }

TEST_F(IommuQueuesTest, AttachMapUnmapThroughRings) {
  drv->add_attach(1, 1);
  ASSERT_EQ(drv->sync(), Status::kOk);
  DomainId d{0};
  ASSERT_TRUE(dev.endpoint_domain(EndpointId{1}, &d));
  EXPECT_EQ(d.value, 1u);

  const uint64_t gpa = mem.alloc(0x4000, 0x1000);
  drv->add_map(1, 0x10000000, 0x4000, gpa, kRW);
  ASSERT_EQ(drv->sync(), Status::kOk);
  EXPECT_EQ(dev.mapping_count(), 1u);
  std::vector<Segment> segs;
  ASSERT_EQ(xlate_gpa(1, 0x10000000 + 0x123, 0x2000, pagetable::kPermWrite, &segs), Status::kOk);
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(segs[0].addr, gpa + 0x123);
  EXPECT_EQ(segs[0].len, 0x2000u);

  drv->add_unmap(1, 0x10000000, 0x4000);
  ASSERT_EQ(drv->sync(), Status::kOk);
  EXPECT_EQ(dev.mapping_count(), 0u);
  EXPECT_EQ(xlate_gpa(1, 0x10000000, 8, pagetable::kPermRead, &segs), Status::kFault);

  EXPECT_EQ(drv->failures(), 0u);
  EXPECT_EQ(iq->stats().requests, 3u);
  EXPECT_EQ(iq->stats().bursts, 3u);
  EXPECT_EQ(iq->requestq().stats().used, 3u);
  EXPECT_EQ(iq->requestq().stats().bad_total(), 0u);
}

TEST_F(IommuQueuesTest, FortyMapsAreOneBurst) {
  drv->add_attach(3, 1);
  ASSERT_EQ(drv->sync(), Status::kOk);
  const uint64_t bursts = iq->stats().bursts, requests = iq->stats().requests, syncs = drv->syncs();
  const uint64_t gpa = mem.alloc(40 * 0x1000, 0x1000);
  // Every other page in IOVA, in reverse GPA order, so each is its own mapping.
  auto iova_of = [](int i) { return 0x20000000 + uint64_t(i) * 0x2000; };
  auto gpa_of = [gpa](int i) { return gpa + uint64_t(39 - i) * 0x1000; };
  for (int i = 0; i < 40; ++i) drv->add_map(3, iova_of(i), 0x1000, gpa_of(i), kRW);
  EXPECT_EQ(iq->stats().bursts, bursts);  // published, but not polled before sync()
  ASSERT_EQ(drv->sync(), Status::kOk);
  EXPECT_EQ(iq->stats().bursts, bursts + 1);
  EXPECT_EQ(iq->stats().requests, requests + 40);
  EXPECT_EQ(drv->syncs(), syncs + 1);
  EXPECT_EQ(dev.mapping_count(), 40u);
  for (int i = 0; i < 40; ++i) {
    std::vector<Segment> segs;
    ASSERT_EQ(xlate_gpa(1, iova_of(i) + 0x10, 0x20, pagetable::kPermRead, &segs), Status::kOk) << i;
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(segs[0].addr, gpa_of(i) + 0x10) << i;
    // The page in between was never mapped.
    EXPECT_EQ(xlate_gpa(1, iova_of(i) + 0x1000, 1, pagetable::kPermRead, &segs), Status::kFault) << i;
  }
  // 40 UNMAPs in one burst: one sync. Tokens count grace periods plus page-table
  // retirements (a few); one sync per request would take at least 40.
  const uint64_t token = rcu.quiescent_token();
  for (int i = 0; i < 40; ++i) drv->add_unmap(3, iova_of(i), 0x1000);
  ASSERT_EQ(drv->sync(), Status::kOk);
  EXPECT_EQ(iq->stats().bursts, bursts + 2);
  EXPECT_LT(rcu.quiescent_token() - token, 40u);
  EXPECT_EQ(dev.mapping_count(), 0u);
}

// As Linux's virtqueue_add, each add publishes avail.idx at once: a polling
// device serves queued requests before the driver kicks; sync() then only
// reaps them, and the kick is decided once per sync, not per request.
TEST_F(IommuQueuesTest, RequestsVisibleBeforeTheKick) {
  drv->add_attach(4, 1);
  ASSERT_EQ(drv->sync(), Status::kOk);
  const uint64_t requests = iq->stats().requests, kicks = reqq.kicks();
  const uint64_t gpa = mem.alloc(2 * 0x1000, 0x1000);
  drv->add_map(4, 0x40000000, 0x1000, gpa, kRW);
  drv->add_map(4, 0x40001000, 0x1000, gpa + 0x1000, kRW);
  EXPECT_EQ(reqq.kicks(), kicks);
  EXPECT_EQ(iq->poll(), 2u);  // the device polls between the adds and the sync
  EXPECT_EQ(dev.mapping_count(), 2u);
  // Ask for a kick once entry 3 (the UNMAP's) is published, as an EVENT_IDX
  // device would: the add publishes it, the kick comes with the sync.
  dataplane::store16(reqq.used().avail_event(), 3, std::memory_order_seq_cst);
  drv->add_unmap(4, 0x40000000, 0x1000);
  EXPECT_EQ(reqq.kicks(), kicks);
  ASSERT_EQ(drv->sync(), Status::kOk);
  EXPECT_EQ(reqq.kicks(), kicks + 1);
  EXPECT_EQ(iq->stats().requests, requests + 3);
  EXPECT_EQ(dev.mapping_count(), 1u);
  EXPECT_EQ(drv->syncs(), 2u);
  EXPECT_EQ(drv->failures(), 0u);
}

// A clock that ticks once per reading, so that each round trip says how many
// readings (adds, kicks, reaps) came between its two ends.
uint64_t g_ticks = 0;
uint64_t tick() { return ++g_ticks; }

TEST_F(IommuQueuesTest, DriverRecordsRequestRoundTrips) {
  IommuDriver::RoundTrips rtts;
  rtts.from_add.reserve(4);
  rtts.from_kick.reserve(4);
  drv->add_attach(5, 1);
  ASSERT_EQ(drv->sync(), Status::kOk);  // before recording: not counted
  g_ticks = 0;
  drv->record_round_trips(&rtts, tick);
  const uint64_t gpa = mem.alloc(3 * 0x1000, 0x1000);
  for (int i = 0; i < 3; ++i) drv->add_map(5, 0x30000000 + uint64_t(i) * 0x1000, 0x1000, gpa + uint64_t(i) * 0x1000, kRW);
  ASSERT_EQ(drv->sync(), Status::kOk);
  // Adds at ticks 1-3, the kick at 4, the three reaps (in ring order) at 5-7.
  EXPECT_EQ(rtts.from_add, (std::vector<uint32_t>{4, 4, 4}));
  EXPECT_EQ(rtts.from_kick, (std::vector<uint32_t>{1, 2, 3}));
  // Full vectors drop later samples rather than grow.
  drv->add_unmap(5, 0x30000000, 0x1000);
  drv->add_unmap(5, 0x30001000, 0x1000);
  ASSERT_EQ(drv->sync(), Status::kOk);
  EXPECT_EQ(rtts.from_add.size(), 4u);
  EXPECT_EQ(rtts.from_add.capacity(), 4u);
  EXPECT_EQ(rtts.from_kick.size(), 4u);
  // nullptr stops recording (and reading the clock).
  drv->record_round_trips(nullptr, nullptr);
  drv->add_unmap(5, 0x30002000, 0x1000);
  ASSERT_EQ(drv->sync(), Status::kOk);
  EXPECT_EQ(dev.mapping_count(), 0u);
  EXPECT_EQ(drv->failures(), 0u);
}

TEST_F(IommuQueuesTest, FailureStatusesReachTheDriver) {
  const uint64_t gpa = mem.alloc(0x2000, 0x1000);
  drv->add_map(7, 0x1000, 0x1000, gpa, kRW);  // domain 7 does not exist
  EXPECT_EQ(drv->sync(), Status::kNoEnt);
  EXPECT_EQ(drv->failures(), 1u);

  // One burst, first failure reported, every request applied.
  drv->add_attach(1, 1);
  drv->add_map(1, 0x1000, 0x2000, gpa, 0x8);  // unknown flag
  drv->add_map(1, 0x1000, 0x2000, gpa, kRW);
  drv->add_unmap(1, 0x1000, 0x1000);  // would split the mapping
  drv->add_attach(1, 0x10000);        // endpoint outside [0, 0xffff]
  EXPECT_EQ(drv->sync(), Status::kInval);
  EXPECT_EQ(drv->failures(), 4u);
  EXPECT_EQ(dev.mapping_count(), 1u);
  // The same split UNMAP alone: RANGE.
  drv->add_unmap(1, 0x1000, 0x1000);
  EXPECT_EQ(drv->sync(), Status::kRange);
  EXPECT_EQ(dev.mapping_count(), 1u);
  EXPECT_EQ(drv->sync(), Status::kOk);  // nothing outstanding
}

// A hostile driver writes descriptors and the avail ring itself.
class RawRequestq : public IommuQueuesTest {
 protected:
  void SetUp() override {
    IommuQueuesTest::SetUp();
    buf = mem.alloc(0x4000, 0x1000);
    iq2 = std::make_unique<IommuQueues>(dev, raw.device_config(false, EndpointId{0}),
                                        evq.device_config(false, EndpointId{0}));
  }
  uint8_t* hva(uint64_t off) { return mem.hva(buf + off); }
  void desc(uint16_t i, uint64_t off, uint32_t len, uint16_t flags, uint16_t next = 0) {
    raw.desc()[i] = VirtqDesc{buf + off, len, flags, next};
  }
  void post(std::initializer_list<uint16_t> heads) {
    for (uint16_t h : heads) raw.avail().ring(avail_idx++ % raw.size()) = h;
    store16(raw.avail().idx(), avail_idx, std::memory_order_release);
  }
  // id -> used length of everything completed so far.
  std::map<uint32_t, uint32_t> used() {
    std::map<uint32_t, uint32_t> m;
    const uint16_t n = load16(raw.used().idx(), std::memory_order_acquire);
    for (uint16_t i = 0; i < n; ++i) m[raw.used().ring(i).id] = raw.used().ring(i).len;
    EXPECT_EQ(m.size(), n) << "an id completed twice";
    return m;
  }
  void put_attach(uint64_t off, uint32_t domain, uint32_t ep) {
    const engine::wire::ReqAttach r = test::attach_req(domain, ep);
    encode(std::span<uint8_t>(hva(off), sizeof r), r);
  }

  DriverQueue raw{mem, 16, false, false};
  std::unique_ptr<IommuQueues> iq2;
  uint64_t buf = 0;
  uint16_t avail_idx = 0;
};

TEST_F(RawRequestq, BadChainsCompletedEmptyGoodOnesServed) {
  const uint32_t max_w = dev.config().probe_size + engine::kTailSize;
  put_attach(0x000, 1, 1);   // a valid ATTACH struct shared by the bad chains
  put_attach(0x100, 2, 2);   // good request A
  put_attach(0x200, 2, 3);   // good request B
  std::memset(hva(0x1000), 0xee, 0x1000);  // writable areas
  // head 0: readable only.
  desc(0, 0x000, engine::kAttachSize, 0);
  // head 1: writable part of 3 bytes.
  desc(1, 0x000, engine::kAttachSize, kDescFlagNext, 2);
  desc(2, 0x1000, 3, kDescFlagWrite);
  // head 3: writable part one byte over probe_size + tail.
  desc(3, 0x000, engine::kAttachSize, kDescFlagNext, 4);
  desc(4, 0x1100, max_w + 1, kDescFlagWrite);
  // head 5: writable only.
  desc(5, 0x1400, engine::kTailSize, kDescFlagWrite);
  // head 6: good, tail split over two writable descriptors (2 + 2 bytes).
  desc(6, 0x100, engine::kAttachSize, kDescFlagNext, 7);
  desc(7, 0x1800, 2, kDescFlagWrite | kDescFlagNext, 8);
  desc(8, 0x1810, 2, kDescFlagWrite);
  // head 9: good, writable part exactly probe_size + tail.
  desc(9, 0x200, engine::kAttachSize, kDescFlagNext, 10);
  desc(10, 0x1900, max_w, kDescFlagWrite);
  post({0, 1, 3, 5, 6, 9});

  EXPECT_EQ(iq2->poll(), 2u);
  const auto u = used();
  const std::map<uint32_t, uint32_t> want = {{0, 0}, {1, 0}, {3, 0}, {5, 0}, {6, 4}, {9, max_w}};
  EXPECT_EQ(u, want);
  const auto& st = iq2->requestq().stats();
  EXPECT_EQ(st.bad[static_cast<size_t>(BadChain::kDirection)], 4u);
  EXPECT_EQ(st.bad_total(), 4u);
  EXPECT_EQ(st.chains, 2u);
  EXPECT_EQ(iq2->stats().requests, 2u);
  EXPECT_EQ(iq2->stats().bursts, 1u);
  // Refused chains: nothing written.
  EXPECT_EQ(hva(0x1000)[0], 0xee);
  EXPECT_EQ(hva(0x1100)[max_w - engine::kTailSize], 0xee);
  // The split tail, gathered from its two descriptors: status OK, reserved
  // bytes zeroed, nothing written past the second descriptor.
  const std::vector<uint8_t> split = {hva(0x1800)[0], hva(0x1800)[1], hva(0x1810)[0], hva(0x1810)[1]};
  const engine::wire::ReqTail split_tail = test::tail_of(split);
  EXPECT_EQ(split_tail.status, 0);
  EXPECT_EQ(split_tail.reserved[0], 0);
  EXPECT_EQ(split_tail.reserved[1], 0);
  EXPECT_EQ(split_tail.reserved[2], 0);
  EXPECT_EQ(hva(0x1810)[2], 0xee);
  // The large writable part: the tail ends it.
  const engine::wire::ReqTail tail = test::tail_of(bytes_at(hva(0x1900), max_w));
  EXPECT_EQ(tail.status, 0);
  EXPECT_TRUE(test::reserved_zero(tail));
  EXPECT_EQ(hva(0x1900 + max_w)[0], 0xee);
  DomainId d{0};
  ASSERT_TRUE(dev.endpoint_domain(EndpointId{2}, &d));
  EXPECT_EQ(d.value, 2u);
  ASSERT_TRUE(dev.endpoint_domain(EndpointId{3}, &d));
  EXPECT_EQ(d.value, 2u);
  EXPECT_FALSE(dev.endpoint_domain(EndpointId{1}, &d));  // the refused ATTACH never ran

  // The queue goes on: one more good request.
  desc(11, 0x000, engine::kAttachSize, kDescFlagNext, 12);
  desc(12, 0x1c00, engine::kTailSize, kDescFlagWrite);
  post({11});
  EXPECT_EQ(iq2->poll(), 1u);
  EXPECT_EQ(used().at(11), engine::kTailSize);
  EXPECT_EQ(hva(0x1c00)[0], 0);
  ASSERT_TRUE(dev.endpoint_domain(EndpointId{1}, &d));
  EXPECT_EQ(d.value, 1u);
}

// Regression: the writable part of every request starts zeroed, so a reply
// never carries bytes of an earlier request (a PROBE's properties were leaking
// into the next request's padding).
TEST_F(RawRequestq, RepliesCarryNoEarlierRequestBytes) {
  const uint32_t probe_w = dev.config().probe_size + engine::kTailSize;
  put_attach(0x000, 1, 1);
  const engine::wire::ReqProbe probe = test::probe_req(1);
  encode(std::span<uint8_t>(hva(0x100), sizeof probe), probe);
  desc(0, 0x100, engine::kProbeSize, kDescFlagNext, 1);
  desc(1, 0x1000, probe_w, kDescFlagWrite);
  post({0});
  EXPECT_EQ(iq2->poll(), 1u);
  ASSERT_EQ(used().at(0), probe_w);
  const auto props = test::probe_props(bytes_at(hva(0x1000), probe_w - engine::kTailSize));
  ASSERT_FALSE(props.empty());
  EXPECT_EQ(props[0].type, engine::kProbeTypeResvMem);  // the MSI window property
  std::memset(hva(0x2000), 0xee, 64);
  desc(2, 0x000, engine::kAttachSize, kDescFlagNext, 3);
  desc(3, 0x2000, 64, kDescFlagWrite);
  post({2});
  EXPECT_EQ(iq2->poll(), 1u);
  ASSERT_EQ(used().at(2), 64u);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(hva(0x2000)[i], 0) << "byte " << i;
}

TEST_F(IommuQueuesTest, FaultEventsWaitForBuffers) {
  drv->add_attach(1, 1);
  ASSERT_EQ(drv->sync(), Status::kOk);
  std::vector<Segment> segs;
  engine::FaultEvent fe{};
  ASSERT_EQ(xlate_gpa(1, 0x50001234, 64, pagetable::kPermRead, &segs, &fe), Status::kFault);
  EXPECT_EQ(fe.reason, engine::kFaultReasonMapping);
  EXPECT_EQ(fe.flags, engine::kFaultFlagRead | engine::kFaultFlagAddress);
  EXPECT_EQ(fe.endpoint, 1u);
  EXPECT_EQ(fe.address, 0x50001234u);

  // No event buffer: the event waits.
  iq->poll();
  iq->poll();
  EXPECT_EQ(iq->stats().events, 0u);

  const uint64_t ev = mem.alloc(4 * 32, 64);
  std::memset(mem.hva(ev), 0xaa, 4 * 32);
  // A buffer too small for an event is refused; the event takes the next one.
  ASSERT_TRUE(evq.add(std::vector<DriverBuf>{{ev, 16, true}}, 100));
  ASSERT_TRUE(evq.add(std::vector<DriverBuf>{{ev + 32, kFaultEventSize, true}}, 101));
  ASSERT_TRUE(evq.add(std::vector<DriverBuf>{{ev + 64, kFaultEventSize, true}}, 102));
  evq.publish();
  iq->poll();
  EXPECT_EQ(iq->stats().events, 1u);
  EXPECT_EQ(iq->eventq().stats().bad[static_cast<size_t>(BadChain::kDirection)], 1u);
  uint64_t token = 0;
  uint32_t len = 0;
  ASSERT_TRUE(evq.get_used(&token, &len));
  EXPECT_EQ(token, 100u);
  EXPECT_EQ(len, 0u);
  EXPECT_EQ(mem.hva(ev)[0], 0xaa);
  ASSERT_TRUE(evq.get_used(&token, &len));
  EXPECT_EQ(token, 101u);
  EXPECT_EQ(len, kFaultEventSize);
  auto f = test::read_wire<engine::wire::Fault>(bytes_at(mem.hva(ev + 32), kFaultEventSize));
  EXPECT_EQ(f.reason, engine::kFaultReasonMapping);
  EXPECT_EQ(f.reserved[0] | f.reserved[1] | f.reserved[2], 0);
  EXPECT_EQ(f.flags.get(), engine::kFaultFlagRead | engine::kFaultFlagAddress);
  EXPECT_EQ(f.endpoint.get(), 1u);
  EXPECT_EQ(f.reserved2[0] | f.reserved2[1] | f.reserved2[2] | f.reserved2[3], 0);
  EXPECT_EQ(f.address.get(), 0x50001234u);
  EXPECT_EQ(mem.hva(ev + 32)[kFaultEventSize], 0xaa);  // nothing past the event
  EXPECT_FALSE(evq.get_used(&token, &len));  // buffer 102 still posted

  // A write fault by an unattached endpoint: DOMAIN, into buffer 102.
  ASSERT_EQ(xlate_gpa(5, 0x7000, 4, pagetable::kPermWrite, &segs), Status::kFault);
  iq->poll();
  ASSERT_TRUE(evq.get_used(&token, &len));
  EXPECT_EQ(token, 102u);
  EXPECT_EQ(len, kFaultEventSize);
  f = test::read_wire<engine::wire::Fault>(bytes_at(mem.hva(ev + 64), kFaultEventSize));
  EXPECT_EQ(f.reason, engine::kFaultReasonDomain);
  EXPECT_EQ(f.flags.get(), engine::kFaultFlagWrite | engine::kFaultFlagAddress);
  EXPECT_EQ(f.endpoint.get(), 5u);
  EXPECT_EQ(f.address.get(), 0x7000u);
  EXPECT_EQ(iq->stats().events, 2u);
}

// Invariant 1 on one thread: the lcore that services the requestq between its
// bursts sees the UNMAP in its own IOTLB as soon as the driver does.
TEST_F(IommuQueuesTest, UnmapInvalidatesSelfReaderIotlb) {
  drv->add_attach(1, 1);
  const uint64_t gpa = mem.alloc(0x1000, 0x1000);
  drv->add_map(1, 0x30000000, 0x1000, gpa, kRW);
  ASSERT_EQ(drv->sync(), Status::kOk);
  go_online();
  std::vector<Segment> segs;
  ASSERT_EQ(xlate_gpa(1, 0x30000000, 64, pagetable::kPermRead, &segs), Status::kOk);
  ASSERT_EQ(xlate_gpa(1, 0x30000800, 64, pagetable::kPermRead, &segs), Status::kOk);
  EXPECT_GE(dev.iotlb().reader_stats(reader).hits, 1u);  // the entry is cached
  EXPECT_EQ(segs[0].addr, gpa + 0x800);
  dev.iotlb().quiescent(reader);
  drv->add_unmap(1, 0x30000000, 0x1000);
  ASSERT_EQ(drv->sync(), Status::kOk);  // idle polls with self_reader = reader
  EXPECT_EQ(xlate_gpa(1, 0x30000000, 64, pagetable::kPermRead, &segs), Status::kFault);
  go_offline();
}

// Invariant 1 across threads: a data-plane thread that starts a burst after the
// driver saw the UNMAP complete never translates the IOVA.
TEST_F(IommuQueuesTest, UnmapCompletedMeansNoLaterTranslation) {
  drv->add_attach(1, 1);
  const uint64_t gpa = mem.alloc(0x1000, 0x1000);
  drv->add_map(1, 0x30000000, 0x1000, gpa, kRW);
  ASSERT_EQ(drv->sync(), Status::kOk);
  const uint32_t r2 = rcu.register_reader();
  std::atomic<bool> done{false}, stop{false};
  std::atomic<uint64_t> before_ok{0}, after_ok{0}, after_fault{0};
  std::thread lcore([&] {
    dev.iotlb().online(r2);
    while (!stop.load(std::memory_order_acquire)) {
      const bool unmapped = done.load(std::memory_order_acquire);  // read at the start of the burst
      Segment s[2];
      size_t n = 0;
      const Status st = dev.iova_to_hva(r2, EndpointId{1}, 0x30000000, 64, pagetable::kPermRead, s, &n);
      if (st == Status::kOk) {
        volatile uint8_t x = *reinterpret_cast<const uint8_t*>(s[0].addr);
        (void)x;
        (unmapped ? after_ok : before_ok).fetch_add(1, std::memory_order_relaxed);
      } else if (unmapped) {
        after_fault.fetch_add(1, std::memory_order_relaxed);
      }
      dev.iotlb().quiescent(r2);
    }
    dev.iotlb().offline(r2);
  });
  while (before_ok.load(std::memory_order_relaxed) < 100) std::this_thread::yield();
  drv->add_unmap(1, 0x30000000, 0x1000);
  EXPECT_EQ(drv->sync(), Status::kOk);
  done.store(true, std::memory_order_release);
  while (after_fault.load(std::memory_order_relaxed) < 100) std::this_thread::yield();
  stop.store(true, std::memory_order_release);
  lcore.join();
  rcu.unregister_reader(r2);
  EXPECT_EQ(after_ok.load(), 0u);
}

}  // namespace
}  // namespace vxlate::dataplane::iommu_queues_test
