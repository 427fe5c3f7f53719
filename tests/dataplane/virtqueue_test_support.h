// Fixture of the Virtqueue tests: guest memory regions A-D behind a Device, and a raw (possibly hostile)
// driver that writes descriptors and rings straight into them, with GPAs or, under ACCESS_PLATFORM, IOVAs.
#pragma once

#include "vxlate/dataplane/virtqueue.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "support/virtio_iommu.h"

namespace vxlate::dataplane::virtqueue_test {

using engine::Segment;

// Requests as wire layouts (support/virtio_iommu.h).
using test::attach_req;
using test::map_req;
using test::unmap_req;

inline constexpr uint32_t kRW = engine::kMapFlagRead | engine::kMapFlagWrite;
// Guest memory: region A, then region B contiguous with it in GPA but not in
// HVA, a 2 GiB reservation C that translation never touches, and D.
inline constexpr uint64_t kGpa = 0x10000000;
inline constexpr uint64_t kASize = 4 << 20;
inline constexpr uint64_t kBGpa = kGpa + kASize;
inline constexpr uint64_t kBSize = 64 << 10;
inline constexpr uint64_t kBigGpa = 0x200000000;
inline constexpr uint64_t kBigSize = uint64_t{2} << 30;
inline constexpr uint64_t kSkewGpa = 0x30000000;  // region D: 64 KiB whose HVA is GPA + 8 mod 16
// ACCESS_PLATFORM: A+B at kIova (RW), C and D identity (RW), one read-only page.
inline constexpr uint64_t kIova = 0x40000000;
inline constexpr uint64_t kRoIova = 0x60000000;
inline constexpr uint64_t kRingIova = 0x70000000;  // a second window on the rings (UNMAP test)
// Layout inside A.
inline constexpr uint64_t kDesc = kGpa, kAvail = kGpa + 0x1000, kUsed = kGpa + 0x2000;
inline constexpr uint64_t kTable = kGpa + 0x4000;  // indirect tables
inline constexpr uint64_t kBuf = kGpa + 0x100000;  // buffers
inline constexpr uint64_t kRoGpa = kGpa + 0x200000;
inline constexpr uint64_t kGood = kGpa + 0x300000;  // the good chain after each hostile one
inline constexpr uint64_t kOutside = 0x1000;        // no guest memory, no mapping
inline constexpr uint16_t N = kDescFlagNext, W = kDescFlagWrite, I = kDescFlagIndirect;

inline size_t ix(BadChain b) { return static_cast<size_t>(b); }
inline VirtqDesc raw(uint64_t addr, uint32_t len, uint16_t flags = 0, uint16_t next = 0) {
  return VirtqDesc{addr, len, flags, next};
}

class VirtqueueTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    void* m = mmap(nullptr, kASize + (2 << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(m, MAP_FAILED);
    a_ = static_cast<uint8_t*>(m);
    b_ = a_ + kASize + (1 << 20);  // a hole: A's end is not B's start in HVA
    void* big = mmap(nullptr, kBigSize, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    ASSERT_NE(big, MAP_FAILED);
    big_ = static_cast<uint8_t*>(big);
    ASSERT_EQ(dev_->set_mem_table(regions()), Status::kOk);
    if (ap()) {
      ASSERT_EQ(send(attach_req(1, 1)), 0);
      ASSERT_EQ(send(map_req(1, kIova, kIova + kASize + kBSize - 1, kGpa, kRW)), 0);
      ASSERT_EQ(send(map_req(1, kRoIova, kRoIova + 0xfff, kRoGpa, engine::kMapFlagRead)), 0);
      ASSERT_EQ(send(map_req(1, kBigGpa, kBigGpa + kBigSize - 1, kBigGpa, kRW)), 0);
      ASSERT_EQ(send(map_req(1, kSkewGpa, kSkewGpa + 0xffff, kSkewGpa, kRW)), 0);
    }
    dev_->iotlb().online(reader_);
    online_ = true;
  }
  void TearDown() override {
    if (online_) dev_->iotlb().offline(reader_);
    dev_.reset();
    if (a_ != nullptr) munmap(a_, kASize + (2 << 20));
    if (big_ != nullptr) munmap(big_, kBigSize);
  }

  bool ap() const { return GetParam(); }
  // Guest memory: A, B (after a hole in HVA), the big sparse region and the
  // skewed one (an HVA not page-aligned). Set again, a new table version.
  std::array<engine::MemRegion, 4> regions() const {
    return {{{kGpa, kASize, reinterpret_cast<uint64_t>(a_)},
             {kBGpa, kBSize, reinterpret_cast<uint64_t>(b_)},
             {kBigGpa, kBigSize, reinterpret_cast<uint64_t>(big_)},
             {kSkewGpa, 0x10000, reinterpret_cast<uint64_t>(b_ + 0x20008)}}};
  }
  // One request; its status byte, or -1 when the used length is wrong.
  template <typename Req>
  int send(const Req& req) {
    test::PostedRequest r = test::make_request(req);
    return dev_->handle(r.readable, r.writable) == engine::kTailSize ? r.status() : -1;
  }
  // A control call that waits for a grace period (an UNMAP, a domain
  // change), made on another thread while this reader reports quiescent
  // states; its result.
  int synced(const std::function<int()>& call) {
    std::atomic<int> st{-2};
    std::thread control([&] { st.store(call()); });
    while (st.load() == -2) dev_->iotlb().quiescent(reader_);
    control.join();
    return st.load();
  }
  // The guest address the driver writes for a GPA in guest memory.
  uint64_t ga(uint64_t gpa) const { return ap() && gpa >= kGpa && gpa < kBGpa + kBSize ? kIova + (gpa - kGpa) : gpa; }
  uint8_t* host(uint64_t gpa) const {
    if (gpa >= kGpa && gpa < kBGpa) return a_ + (gpa - kGpa);
    if (gpa >= kBGpa && gpa < kBGpa + kBSize) return b_ + (gpa - kBGpa);
    if (gpa >= kBigGpa && gpa < kBigGpa + kBigSize) return big_ + (gpa - kBigGpa);
    ADD_FAILURE() << "gpa " << std::hex << gpa << " is not guest memory";
    return nullptr;
  }
  VirtqDesc d(uint64_t gpa, uint32_t len, uint16_t flags = 0, uint16_t next = 0) const {
    return VirtqDesc{ga(gpa), len, flags, next};
  }
  // Writes byte by byte: a table may straddle regions A and B.
  void put(uint64_t gpa, const VirtqDesc& v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    for (uint64_t i = 0; i < sizeof v; ++i) *host(gpa + i) = p[i];
  }
  void set_desc(uint32_t i, const VirtqDesc& v) { put(kDesc + 16 * i, v); }
  void set_table(uint64_t gpa, const std::vector<VirtqDesc>& t) {
    for (size_t i = 0; i < t.size(); ++i) put(gpa + 16 * i, t[i]);
  }
  // Fresh, zeroed rings of `size` entries at kDesc/kAvail/kUsed.
  QueueConfig fresh(uint32_t size, bool indirect = true, bool event_idx = false) {
    std::memset(a_, 0, 0x4000);
    size_ = size;
    aidx_ = 0;
    return QueueConfig{size, ga(kDesc), ga(kAvail), ga(kUsed), ap(), event_idx, indirect, EndpointId{1}};
  }
  AvailRing avail() const { return AvailRing{host(kAvail), size_}; }
  UsedRing used() const { return UsedRing{host(kUsed), size_}; }
  void offer(std::initializer_list<uint16_t> heads) {
    for (uint16_t h : heads) avail().ring(aidx_++ & (size_ - 1)) = h;
    store16(avail().idx(), aidx_, std::memory_order_release);
  }
  void offer(uint16_t head) { offer({head}); }
  uint16_t used_idx() const { return load16(used().idx(), std::memory_order_acquire); }
  void expect_used(uint32_t i, uint32_t id, uint32_t len) const {
    const VirtqUsedElem e = used().ring(i & (size_ - 1));
    EXPECT_EQ(e.id, id) << "used slot " << i;
    EXPECT_EQ(e.len, len) << "used slot " << i;
  }
  void expect_seg(const Segment& s, uint64_t gpa, uint64_t len) const {
    EXPECT_EQ(s.addr, reinterpret_cast<uint64_t>(host(gpa)));
    EXPECT_EQ(s.len, len);
  }
  // The popped chain c_ is exactly `segs` ({gpa, len}), the first `nreadable` readable.
  void expect_chain(uint16_t head, uint32_t nreadable, std::initializer_list<std::pair<uint64_t, uint64_t>> segs) {
    EXPECT_EQ(c_.head, head);
    ASSERT_EQ(c_.nsegs, segs.size());
    EXPECT_EQ(c_.nreadable, nreadable);
    uint64_t bytes[2] = {0, 0};
    uint32_t i = 0;
    for (const auto& [gpa, len] : segs) {
      expect_seg(c_.segs[i], gpa, len);
      bytes[i++ >= nreadable] += len;
    }
    EXPECT_EQ(c_.readable_bytes, bytes[0]);
    EXPECT_EQ(c_.writable_bytes, bytes[1]);
  }

  Rcu rcu_{4};
  std::unique_ptr<engine::Device> dev_ = std::make_unique<engine::Device>(engine::Config{}, rcu_);
  const uint32_t reader_ = rcu_.register_reader();
  bool online_ = false;
  uint8_t* a_ = nullptr;
  uint8_t* b_ = nullptr;
  uint8_t* big_ = nullptr;
  uint32_t size_ = 8;
  uint16_t aidx_ = 0;  // the driver's avail.idx
  Chain c_;
};

}  // namespace vxlate::dataplane::virtqueue_test
