// Virtqueue, the device side of a VIRTIO 1.x split virtqueue, driven by a raw
// (possibly hostile) driver that writes descriptors and rings straight into
// guest memory, in both address modes (GPAs; IOVAs through the IOMMU with
// ACCESS_PLATFORM): chain walking into exact host segments, the used ring and
// 16-bit index wrap, indirect tables (also straddling two memory regions),
// EVENT_IDX and flag-based notification suppression, unpop, every BadChain
// reason (the next good chain still pops), a broken avail index, ring faults
// and an UNMAP of a live ring.
#include "vxlate/dataplane/virtqueue.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "support/virtio_iommu.h"

namespace vxlate::dataplane {
namespace {

using engine::Segment;

// Requests as wire layouts (support/virtio_iommu.h).
using test::attach_req;
using test::map_req;
using test::unmap_req;

constexpr uint32_t kRW = engine::kMapFlagRead | engine::kMapFlagWrite;
// Guest memory: region A, then region B contiguous with it in GPA but not in
// HVA, a 2 GiB reservation C that translation never touches, and D.
constexpr uint64_t kGpa = 0x10000000;
constexpr uint64_t kASize = 4 << 20;
constexpr uint64_t kBGpa = kGpa + kASize;
constexpr uint64_t kBSize = 64 << 10;
constexpr uint64_t kBigGpa = 0x200000000;
constexpr uint64_t kBigSize = uint64_t{2} << 30;
constexpr uint64_t kSkewGpa = 0x30000000;  // region D: 64 KiB whose HVA is GPA + 8 mod 16
// ACCESS_PLATFORM: A+B at kIova (RW), C and D identity (RW), one read-only page.
constexpr uint64_t kIova = 0x40000000;
constexpr uint64_t kRoIova = 0x60000000;
constexpr uint64_t kRingIova = 0x70000000;  // a second window on the rings (UNMAP test)
// Layout inside A.
constexpr uint64_t kDesc = kGpa, kAvail = kGpa + 0x1000, kUsed = kGpa + 0x2000;
constexpr uint64_t kTable = kGpa + 0x4000;  // indirect tables
constexpr uint64_t kBuf = kGpa + 0x100000;  // buffers
constexpr uint64_t kRoGpa = kGpa + 0x200000;
constexpr uint64_t kGood = kGpa + 0x300000;  // the good chain after each hostile one
constexpr uint64_t kOutside = 0x1000;        // no guest memory, no mapping
constexpr uint16_t N = kDescFlagNext, W = kDescFlagWrite, I = kDescFlagIndirect;

size_t ix(BadChain b) { return static_cast<size_t>(b); }
VirtqDesc raw(uint64_t addr, uint32_t len, uint16_t flags = 0, uint16_t next = 0) {
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
    const engine::MemRegion regions[] = {{kGpa, kASize, reinterpret_cast<uint64_t>(a_)},
                                         {kBGpa, kBSize, reinterpret_cast<uint64_t>(b_)},
                                         {kBigGpa, kBigSize, reinterpret_cast<uint64_t>(big_)},
                                         {kSkewGpa, 0x10000, reinterpret_cast<uint64_t>(b_ + 0x20008)}};
    ASSERT_EQ(dev_->set_mem_table(regions), Status::kOk);
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
  // One request; its status byte, or -1 when the used length is wrong.
  template <typename Req>
  int send(const Req& req) {
    test::PostedRequest r = test::make_request(req);
    return dev_->handle(r.readable, r.writable) == engine::kTailSize ? r.status() : -1;
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

TEST_P(VirtqueueTest, SimpleChainsAndUsedRing) {
  Virtqueue q(*dev_, fresh(8));
  set_desc(0, d(kBuf, 100));                 // readable only
  set_desc(1, d(kBuf + 0x1000, 200, W));     // writable only
  set_desc(2, d(kBuf + 0x2000, 10, N, 5));   // readable, readable, writable, writable
  set_desc(5, d(kBuf + 0x3000, 20, N, 3));
  set_desc(3, d(kBuf + 0x4000, 30, W | N, 4));
  set_desc(4, d(kBuf + 0x5000, 40, W));
  std::memcpy(host(kBuf), "payload", 7);
  offer({2, 0, 1});  // ring order, not head order
  ASSERT_TRUE(q.begin(reader_));
  EXPECT_EQ(q.available(), 3);

  ASSERT_TRUE(q.pop(&c_));
  expect_chain(2, 2, {{kBuf + 0x2000, 10}, {kBuf + 0x3000, 20}, {kBuf + 0x4000, 30}, {kBuf + 0x5000, 40}});
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(0, 1, {{kBuf, 100}});
  EXPECT_EQ(std::memcmp(reinterpret_cast<const void*>(c_.segs[0].addr), "payload", 7), 0);
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(1, 0, {{kBuf + 0x1000, 200}});
  EXPECT_FALSE(q.pop(&c_));

  q.push(2, 70);
  q.push(0, 0);
  EXPECT_EQ(used_idx(), 0) << "push is invisible until publish";
  q.push(1, 123);
  EXPECT_TRUE(q.publish());  // avail.flags 0: the driver wants interrupts
  EXPECT_EQ(used_idx(), 3);
  expect_used(0, 2, 70);
  expect_used(1, 0, 0);
  expect_used(2, 1, 123);
  EXPECT_FALSE(q.publish()) << "nothing pending";
  EXPECT_EQ(q.stats().chains, 3u);
  EXPECT_EQ(q.stats().used, 3u);
  EXPECT_EQ(q.stats().interrupts, 1u);
  EXPECT_EQ(q.stats().bad_total(), 0u);
}

TEST_P(VirtqueueTest, BufferAcrossRegionsAndReadOnlyMapping) {
  Virtqueue q(*dev_, fresh(8));
  set_desc(0, d(kBGpa - 8, 16));  // one descriptor, two host segments
  offer(0);
  if (ap()) {
    set_desc(1, raw(kRoIova + 16, 32));  // read-only mapping, device reads: fine
    offer(1);
  }
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(0, 2, {{kBGpa - 8, 8}, {kBGpa, 8}});
  if (ap()) {
    ASSERT_TRUE(q.pop(&c_));
    expect_chain(1, 1, {{kRoGpa + 16, 32}});
  }
  EXPECT_FALSE(q.pop(&c_));
  EXPECT_EQ(q.stats().bad_total(), 0u);
}

TEST_P(VirtqueueTest, ZeroLengthDescriptorsAreSkipped) {
  Virtqueue q(*dev_, fresh(8));
  set_desc(0, raw(kOutside, 0, N, 1));  // the address of an empty buffer is never translated
  set_desc(1, d(kBuf, 16, N, 2));
  set_desc(2, raw(~uint64_t{0}, 0, W | N, 3));
  set_desc(3, d(kBuf + 0x40, 32, W));
  set_desc(4, raw(kOutside, 0));  // a chain of nothing
  offer({0, 4});
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(0, 1, {{kBuf, 16}, {kBuf + 0x40, 32}});
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(4, 0, {});
  EXPECT_EQ(q.stats().bad_total(), 0u);
}

// avail.idx and used.idx both wrap past 65535 and the 4 ring slots wrap ~16 Ki
// times; every chain pops in order with its head, buffer and used entry, and
// EVENT_IDX decisions stay right across the wrap.
TEST_P(VirtqueueTest, IndicesWrapPast16Bits) {
  constexpr uint32_t kSize = 4;
  constexpr uint32_t kTotal = 65536 + 1000;
  Virtqueue q(*dev_, fresh(kSize, false, true));
  uint32_t seq = 0;
  uint16_t base = 0;
  uint64_t want_irqs = 0;
  for (uint32_t iter = 0; seq < kTotal; ++iter) {
    const uint32_t batch = 1 + iter % kSize;
    uint16_t heads[kSize];
    for (uint32_t j = 0; j < batch; ++j) {
      heads[j] = static_cast<uint16_t>((base + j) % kSize);
      set_desc(heads[j], d(kBuf + ((seq + j) % 512) * 64, 1 + (seq + j) % 61));
      offer(heads[j]);
    }
    base = static_cast<uint16_t>(base + 3);
    ASSERT_TRUE(q.begin(reader_));
    ASSERT_EQ(q.available(), batch);
    for (uint32_t j = 0; j < batch; ++j) {
      ASSERT_TRUE(q.pop(&c_));
      ASSERT_EQ(c_.head, heads[j]) << "seq " << seq + j;
      ASSERT_EQ(c_.nsegs, 1u);
      ASSERT_EQ(c_.segs[0].addr, reinterpret_cast<uint64_t>(host(kBuf + ((seq + j) % 512) * 64)));
      ASSERT_EQ(c_.segs[0].len, 1 + (seq + j) % 61);
      q.push(c_.head, (seq + j) & 0xffff);
    }
    ASSERT_FALSE(q.pop(&c_));
    const uint16_t old = static_cast<uint16_t>(seq);
    // The driver asks for an interrupt at the next entry, or at one already past.
    const bool want = iter % 2 == 0;
    store16(avail().used_event(), static_cast<uint16_t>(want ? old : old - 1), std::memory_order_seq_cst);
    ASSERT_EQ(q.publish(), want) << "seq " << seq;
    want_irqs += want;
    for (uint32_t j = 0; j < batch; ++j) {
      const VirtqUsedElem e = used().ring((seq + j) % kSize);
      ASSERT_EQ(e.id, heads[j]);
      ASSERT_EQ(e.len, (seq + j) & 0xffff);
    }
    seq += batch;
    ASSERT_EQ(used_idx(), static_cast<uint16_t>(seq));
    dev_->iotlb().quiescent(reader_);
  }
  EXPECT_EQ(q.stats().chains, seq);
  EXPECT_EQ(q.stats().used, seq);
  EXPECT_EQ(q.stats().interrupts, want_irqs);
  EXPECT_EQ(q.stats().bad_total(), 0u);
}

TEST_P(VirtqueueTest, IndirectTable) {
  Virtqueue q(*dev_, fresh(8));
  // Links 0 -> 2 -> 1 -> 3; readable then writable. WRITE on the descriptor
  // pointing at the table must be ignored (virtio 2.7.5.3.2).
  set_table(kTable, {d(kBuf, 10, N, 2), d(kBuf + 0x80, 30, W | N, 3), d(kBuf + 0x40, 20, N, 1),
                     d(kBuf + 0xc0, 40, W)});
  set_desc(0, d(kTable, 64, I | W));
  offer(0);
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(0, 2, {{kBuf, 10}, {kBuf + 0x40, 20}, {kBuf + 0x80, 30}, {kBuf + 0xc0, 40}});
  EXPECT_EQ(q.stats().bad_total(), 0u);
}

TEST_P(VirtqueueTest, IndirectTableStraddlesRegions) {
  Virtqueue q(*dev_, fresh(8));
  // 64 bytes at B - 24: entry 1 is split 8/8 between two host segments.
  const uint64_t t = kBGpa - 24;
  set_table(t, {d(kBuf, 10, N, 1), d(kBGpa - 8, 16, N, 2), d(kBuf + 0x100, 30, W | N, 3),
                d(kBGpa + 0x100, 40, W)});
  set_desc(0, d(t, 64, I));
  offer(0);
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(0, 3, {{kBuf, 10}, {kBGpa - 8, 8}, {kBGpa, 8}, {kBuf + 0x100, 30}, {kBGpa + 0x100, 40}});
}

TEST_P(VirtqueueTest, DirectThenIndirect) {
  Virtqueue q(*dev_, fresh(8));
  set_desc(0, d(kBuf, 16, N, 3));
  set_desc(3, d(kTable, 32, I));
  set_table(kTable, {d(kBuf + 0x40, 8, N, 1), d(kBuf + 0x80, 8, W)});
  offer(0);
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(0, 2, {{kBuf, 16}, {kBuf + 0x40, 8}, {kBuf + 0x80, 8}});
}

// pop()'s lookahead translates the indirect table of the chain two ahead, and
// the walk of that chain uses the translation when the descriptor it reads
// names the same bytes. A driver that changes the descriptor after the
// lookahead read it (another table, or the same one grown past what was
// translated) gets its new table walked; one that rewrites the table itself
// gets the new entries read.
TEST_P(VirtqueueTest, LookaheadTablesFollowTheDescriptorsTheWalkReads) {
  Virtqueue q(*dev_, fresh(8));
  const uint64_t other = kTable + 0x800;
  auto table_of = [&](uint16_t h) { return h == 3 ? kBGpa - 32 : kTable + 0x100 * h; };
  for (uint16_t h = 0; h < 5; ++h) {
    const uint64_t t = table_of(h);
    set_table(t, {d(kBuf + 0x100 * h, 12, N, 1), d(kBuf + 0x100 * h + 12, 20 + h)});
    set_desc(h, d(t, 32, I));
  }
  offer({0, 1, 2, 3, 4});
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));  // chain 0; the lookahead has translated chain 2's table
  expect_chain(0, 2, {{kBuf, 12}, {kBuf + 12, 20}});
  // Chain 2 now names another table; chain 3's table (translated by the next
  // pop's lookahead) will get a third entry and a longer descriptor.
  set_table(other, {d(kBuf + 0x900, 7)});
  set_desc(2, d(other, 16, I));
  ASSERT_TRUE(q.pop(&c_));  // chain 1; the lookahead translates 32 bytes of chain 3's table
  expect_chain(1, 2, {{kBuf + 0x100, 12}, {kBuf + 0x100 + 12, 21}});
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(2, 1, {{kBuf + 0x900, 7}});
  set_table(table_of(3), {d(kBuf + 0x300, 12, N, 1), d(kBuf + 0x300 + 12, 23, N, 2), d(kBuf + 0xa00, 5)});
  set_desc(3, d(table_of(3), 48, I));
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(3, 3, {{kBuf + 0x300, 12}, {kBuf + 0x300 + 12, 23}, {kBuf + 0xa00, 5}});
  // Chain 4's table keeps its address and length but not its entries.
  set_table(kTable + 0x400, {d(kBuf + 0xb00, 9, N, 1), d(kBuf + 0xb40, 3, W)});
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(4, 1, {{kBuf + 0xb00, 9}, {kBuf + 0xb40, 3}});
  EXPECT_FALSE(q.pop(&c_));
  EXPECT_EQ(q.stats().bad_total(), 0u);
}

// The largest legal chains: one just under each hostile case's limit.
TEST_P(VirtqueueTest, LimitsAreInclusive) {
  {
    Virtqueue q(*dev_, fresh(8));
    for (uint16_t i = 0; i < 8; ++i) set_desc(i, d(kBuf + 0x40 * i, 1, i < 7 ? N : 0, i + 1));  // size descriptors
    std::vector<VirtqDesc> t;
    for (uint16_t i = 0; i < 8; ++i) t.push_back(d(kBuf + 0x40 * i, 1, i < 7 ? N : 0, i + 1));  // size entries
    set_table(kTable, t);
    offer(0);
    ASSERT_TRUE(q.begin(reader_));
    ASSERT_TRUE(q.pop(&c_));
    EXPECT_EQ(c_.nsegs, 8u);
    set_desc(0, d(kTable, 8 * 16, I));
    offer(0);
    ASSERT_TRUE(q.begin(reader_));  // avail.idx is read once per burst
    ASSERT_TRUE(q.pop(&c_));
    EXPECT_EQ(c_.nsegs, 8u);
    // Writable bytes exactly UINT32_MAX (2 GiB + 2 GiB - 1 over the untouched region C).
    set_desc(1, d(kBigGpa, 0x80000000u, W | N, 2));
    set_desc(2, d(kBigGpa, 0x7fffffffu, W));
    offer(1);
    ASSERT_TRUE(q.begin(reader_));
    ASSERT_TRUE(q.pop(&c_));
    expect_chain(1, 0, {{kBigGpa, 0x80000000u}, {kBigGpa, 0x7fffffffu}});
    EXPECT_EQ(c_.writable_bytes, 0xffffffffu);
    EXPECT_EQ(q.stats().bad_total(), 0u);
  }
  {
    Virtqueue q(*dev_, fresh(128));
    std::vector<VirtqDesc> t;
    for (uint32_t i = 0; i < kMaxChainSegs; ++i) t.push_back(d(kBuf + 2 * i, 1, i + 1 < kMaxChainSegs ? N : 0, i + 1));
    set_table(kTable, t);
    set_desc(0, d(kTable, 16 * kMaxChainSegs, I));
    offer(0);
    t.resize(kMaxChainSegs - 2);  // and a last buffer that splits in two
    t.push_back(d(kBGpa - 4, 8));
    set_table(kTable + 0x1000, t);
    set_desc(1, d(kTable + 0x1000, 16 * (kMaxChainSegs - 1), I));
    offer(1);
    ASSERT_TRUE(q.begin(reader_));
    ASSERT_TRUE(q.pop(&c_));
    EXPECT_EQ(c_.nsegs, kMaxChainSegs);
    expect_seg(c_.segs[kMaxChainSegs - 1], kBuf + 2 * (kMaxChainSegs - 1), 1);
    ASSERT_TRUE(q.pop(&c_));
    EXPECT_EQ(c_.nsegs, kMaxChainSegs);
    expect_seg(c_.segs[kMaxChainSegs - 1], kBGpa, 4);
    EXPECT_EQ(q.stats().bad_total(), 0u);
  }
}

TEST_P(VirtqueueTest, EventIdxDecidesInterrupts) {
  Virtqueue q(*dev_, fresh(8, true, true));
  for (uint16_t h = 0; h < 8; ++h) {
    set_desc(h, d(kBuf + 64 * h, 16));
    offer(h);
  }
  ASSERT_TRUE(q.begin(reader_));
  // Each step pushes n entries (used.idx old -> old + n) under used_event.
  struct Step {
    int n;
    uint16_t used_event;
    bool want;
  };
  // used.idx: 0->3 (0xffff not crossed), none, 3->4 (2 already past), 4->5 (4
  // crossed), 5->6 (4 past), 6->8 (6 crossed).
  const Step steps[] = {{3, 0xffff, false}, {0, 0, false}, {1, 2, false},
                        {1, 4, true},       {1, 4, false}, {2, 6, true}};
  uint16_t idx = 0, h = 0;
  uint64_t irqs = 0;
  for (const Step& s : steps) {
    SCOPED_TRACE(idx);
    for (int i = 0; i < s.n; ++i, ++h) {
      ASSERT_TRUE(q.pop(&c_));
      EXPECT_EQ(c_.head, h);
      q.push(c_.head, 1);
    }
    store16(avail().used_event(), s.used_event, std::memory_order_seq_cst);
    EXPECT_EQ(q.publish(), s.want);
    idx = static_cast<uint16_t>(idx + s.n);
    EXPECT_EQ(used_idx(), idx);
    irqs += s.want;
  }
  EXPECT_EQ(q.stats().interrupts, irqs);
  // With EVENT_IDX the NO_INTERRUPT flag does not decide: used_event 8, 8 -> 9.
  avail().flags() = kAvailFlagNoInterrupt;
  store16(avail().used_event(), 8, std::memory_order_seq_cst);
  offer(0);
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  q.push(0, 1);
  EXPECT_TRUE(q.publish());
  EXPECT_EQ(used_idx(), 9);
}

TEST_P(VirtqueueTest, NoInterruptFlagWithoutEventIdx) {
  Virtqueue q(*dev_, fresh(8));
  set_desc(0, d(kBuf, 16));
  offer({0, 0, 0});
  ASSERT_TRUE(q.begin(reader_));
  store16(avail().used_event(), 0, std::memory_order_relaxed);  // ignored without EVENT_IDX
  for (const uint16_t flags : {kAvailFlagNoInterrupt, uint16_t{0}, kAvailFlagNoInterrupt}) {
    avail().flags() = flags;
    ASSERT_TRUE(q.pop(&c_));
    q.push(0, 1);
    EXPECT_EQ(q.publish(), flags == 0);
  }
  EXPECT_EQ(used_idx(), 3);
  EXPECT_EQ(q.stats().interrupts, 1u);
}

// NO_NOTIFY in used.flags, or with EVENT_IDX avail_event = the next avail slot
// to pop (never written without EVENT_IDX); enable_kicks() re-checks avail.idx.
TEST_P(VirtqueueTest, KickSuppression) {
  for (const bool event_idx : {false, true}) {
    SCOPED_TRACE(event_idx);
    Virtqueue q(*dev_, fresh(8, true, event_idx));
    for (uint16_t h = 0; h < 3; ++h) set_desc(h, d(kBuf, 16));
    store16(used().avail_event(), 0x5555, std::memory_order_relaxed);
    offer({0, 1});
    ASSERT_TRUE(q.begin(reader_));
    q.disable_kicks();
    EXPECT_EQ(used().flags(), kUsedFlagNoNotify);
    ASSERT_TRUE(q.pop(&c_));
    ASSERT_TRUE(q.pop(&c_));
    EXPECT_FALSE(q.enable_kicks()) << "nothing beyond what was popped";
    if (!event_idx) { EXPECT_EQ(used().flags(), 0); }  // with EVENT_IDX the driver ignores flags
    EXPECT_EQ(used().avail_event(), event_idx ? 2 : 0x5555);
    q.disable_kicks();
    EXPECT_EQ(used().flags(), kUsedFlagNoNotify);
    offer(2);  // arrives while kicks are off
    EXPECT_TRUE(q.enable_kicks());
    EXPECT_EQ(used().avail_event(), event_idx ? 2 : 0x5555);
    EXPECT_FALSE(q.pop(&c_)) << "avail.idx is read once per burst";
    ASSERT_TRUE(q.begin(reader_));
    ASSERT_TRUE(q.pop(&c_));
    EXPECT_EQ(c_.head, 2);
    EXPECT_FALSE(q.enable_kicks());
    EXPECT_EQ(used().avail_event(), event_idx ? 3 : 0x5555);
  }
}

TEST_P(VirtqueueTest, UnpopRepopsTheSameChains) {
  Virtqueue q(*dev_, fresh(8));
  for (uint16_t h = 0; h < 3; ++h) {
    set_desc(h, d(kBuf + 64 * h, 8 + h, W));
    offer(h);
  }
  ASSERT_TRUE(q.begin(reader_));
  for (uint16_t h = 0; h < 3; ++h) ASSERT_TRUE(q.pop(&c_));
  q.unpop(2);
  EXPECT_EQ(q.available(), 2);
  for (uint16_t h = 1; h < 3; ++h) {
    ASSERT_TRUE(q.pop(&c_));
    EXPECT_EQ(c_.head, h);
    expect_seg(c_.segs[0], kBuf + 64 * h, 8 + h);
    q.push(h, h);
  }
  EXPECT_FALSE(q.pop(&c_));
  q.push(0, 0);
  q.publish();
  EXPECT_EQ(used_idx(), 3);
  expect_used(0, 1, 1);
  expect_used(1, 2, 2);
  expect_used(2, 0, 0);
}

// Each hostile chain (head 0 unless said) is counted under exactly its reason
// and completed with length 0 (a head out of range gets no used entry); the
// good chain after it pops with its exact segment.
TEST_P(VirtqueueTest, HostileChains) {
  struct Hostile {
    const char* name;
    BadChain why;
    std::function<void()> write;
    uint32_t size = 8;
    bool indirect = true;
    uint16_t head = 0;
  };
  using B = BadChain;
  auto table_of = [&](uint32_t n) {
    std::vector<VirtqDesc> t;
    for (uint32_t i = 0; i < n; ++i) t.push_back(d(kBuf + 2 * i, 1, i + 1 < n ? N : 0, static_cast<uint16_t>(i + 1)));
    return t;
  };
  std::vector<Hostile> cases = {
      {"head == size", B::kHeadRange, [] {}, 8, true, 8},
      {"head 0xffff", B::kHeadRange, [] {}, 8, true, 0xffff},
      {"next >= size", B::kIndexRange, [&] { set_desc(0, d(kBuf, 8, N, 8)); }},
      {"loop a->b->a", B::kLoop, [&] { set_desc(0, d(kBuf, 8, N, 1)), set_desc(1, d(kBuf + 64, 8, N, 0)); }},
      {"self loop", B::kLoop, [&] { set_desc(0, d(kBuf, 0, N, 0)); }},
      {"indirect without the feature", B::kIndirect,
       [&] { set_table(kTable, {d(kBuf, 8)}), set_desc(0, d(kTable, 16, I)); }, 8, false},
      {"indirect|next", B::kIndirect,
       [&] { set_table(kTable, {d(kBuf, 8)}), set_desc(0, d(kTable, 16, I | N, 1)), set_desc(1, d(kBuf, 8)); }},
      {"nested indirect", B::kIndirect,
       [&] { set_table(kTable, {d(kBuf, 8, N, 1), d(kTable, 16, I)}), set_desc(0, d(kTable, 32, I)); }},
      {"indirect len 0", B::kIndirect, [&] { set_desc(0, d(kTable, 0, I)); }},
      {"indirect len 24", B::kIndirect, [&] { set_table(kTable, table_of(2)), set_desc(0, d(kTable, 24, I)); }},
      {"indirect > size entries", B::kIndirect,
       [&] { set_table(kTable, table_of(9)), set_desc(0, d(kTable, 9 * 16, I)); }},
      {"indirect next >= count", B::kIndexRange,
       [&] { set_table(kTable, {d(kBuf, 8, N, 1), d(kBuf, 8, N, 2), d(kBuf, 8)}), set_desc(0, d(kTable, 32, I)); }},
      {"indirect loop", B::kLoop,
       [&] { set_table(kTable, {d(kBuf, 8, N, 1), d(kBuf + 64, 8, N, 0)}), set_desc(0, d(kTable, 32, I)); }},
      {"readable after writable", B::kOrder,
       [&] { set_desc(0, d(kBuf, 8, W | N, 1)), set_desc(1, d(kBuf + 64, 8)); }},
      {"readable after writable, indirect", B::kOrder,
       [&] { set_table(kTable, {d(kBuf, 8, W | N, 1), d(kBuf + 64, 8)}), set_desc(0, d(kTable, 32, I)); }},
      {"writable direct, readable indirect", B::kOrder,
       [&] { set_desc(0, d(kBuf, 8, W | N, 1)), set_table(kTable, {d(kBuf + 64, 8)}), set_desc(1, d(kTable, 16, I)); }},
      {"writable > 4 GiB - 1", B::kLength,
       [&] { set_desc(0, d(kBigGpa, 0x80000000u, W | N, 1)), set_desc(1, d(kBigGpa, 0x80000000u, W)); }},
      {"outside guest memory", B::kUnmapped, [&] { set_desc(0, raw(kOutside, 16)); }},
      {"runs off the end of memory", B::kUnmapped, [&] { set_desc(0, d(kBGpa + kBSize - 8, 16, W)); }},
      {"addr + len wraps", B::kUnmapped, [&] { set_desc(0, raw(0xfffffffffffffff0, 0x20)); }},
      {"good then unmapped", B::kUnmapped, [&] { set_desc(0, d(kBuf, 8, N, 1)), set_desc(1, raw(kOutside, 8, W)); }},
      {"indirect table unmapped", B::kUnmapped, [&] { set_desc(0, raw(kOutside, 32, I)); }},
      {"indirect table wraps", B::kUnmapped, [&] { set_desc(0, raw(0xfffffffffffffff0, 32, I)); }},
      {"too many segs, indirect", B::kTooManySegs,
       [&] { set_table(kTable, table_of(kMaxChainSegs + 1)), set_desc(0, d(kTable, 16 * (kMaxChainSegs + 1), I)); },
       128},
      {"too many segs, direct", B::kTooManySegs,
       [&] {
         for (uint16_t i = 0; i <= kMaxChainSegs; ++i) set_desc(i, d(kBuf + 2 * i, 1, i < kMaxChainSegs ? N : 0, i + 1));
       },
       128},
      {"too many segs, last buffer splits", B::kTooManySegs,
       [&] {
         auto t = table_of(kMaxChainSegs);  // 63 one-byte buffers, then one that needs 2 segments
         t.back() = d(kBGpa - 4, 8);
         set_table(kTable, t), set_desc(0, d(kTable, 16 * kMaxChainSegs, I));
       },
       128},
  };
  if (ap()) {
    cases.push_back({"write to a read-only mapping", B::kUnmapped, [&] { set_desc(0, raw(kRoIova, 16, W)); }});
    cases.push_back({"unmapped IOVA inside a gap", B::kUnmapped, [&] { set_desc(0, raw(kRoIova + 0x1000, 16)); }});
  }
  // Each case twice: first in the ring, and behind two good chains, so that
  // pop()'s lookahead (software prefetching) reads the hostile chain's
  // descriptor and table before the walk does. The hints must change
  // nothing: same chains, counts, used entries and fault events.
  for (const Hostile& h : cases) {
    SCOPED_TRACE(h.name);
    std::vector<engine::FaultEvent> events[2];
    for (uint16_t before : {0, 2}) {
      SCOPED_TRACE(before == 0 ? "hostile chain first" : "hostile chain looked ahead at");
      Virtqueue q(*dev_, fresh(h.size, h.indirect));
      h.write();
      const uint16_t good = static_cast<uint16_t>(h.size - 1);
      set_desc(good, d(kGood, 16));
      for (uint16_t i = 0; i < before; ++i) {
        set_desc(static_cast<uint16_t>(h.size - 3 + i), d(kGood + 64 * (i + 1), 16));
        offer(static_cast<uint16_t>(h.size - 3 + i));
      }
      offer(h.head);
      offer(good);
      ASSERT_TRUE(q.begin(reader_));
      for (uint16_t i = 0; i < before; ++i) {
        ASSERT_TRUE(q.pop(&c_));
        expect_chain(static_cast<uint16_t>(h.size - 3 + i), 1, {{kGood + 64 * (i + 1), 16}});
        q.push(c_.head, 5);
      }
      ASSERT_TRUE(q.pop(&c_));
      expect_chain(good, 1, {{kGood, 16}});
      EXPECT_FALSE(q.pop(&c_));
      for (size_t r = 0; r < ix(B::kCount); ++r)
        EXPECT_EQ(q.stats().bad[r], r == ix(h.why) ? 1u : 0u) << to_string(static_cast<B>(r));
      EXPECT_EQ(q.stats().chains, 1u + before);
      q.push(good, 5);
      q.publish();
      const bool completed = h.why != B::kHeadRange;
      EXPECT_EQ(used_idx(), before + (completed ? 2 : 1));
      for (uint16_t i = 0; i < before; ++i) expect_used(i, h.size - 3 + i, 5);
      if (completed) expect_used(before, h.head, 0);
      expect_used(before + (completed ? 1 : 0), good, 5);
      EXPECT_FALSE(q.broken());
      dev_->iotlb().quiescent(reader_);
      engine::FaultEvent ev[8];
      events[before / 2].assign(ev, ev + dev_->drain_events(ev));
    }
    ASSERT_EQ(events[0].size(), events[1].size());
    for (size_t i = 0; i < events[0].size(); ++i) {
      EXPECT_EQ(events[0][i].reason, events[1][i].reason);
      EXPECT_EQ(events[0][i].flags, events[1][i].flags);
      EXPECT_EQ(events[0][i].address, events[1][i].address);
    }
  }
}

TEST_P(VirtqueueTest, RefuseCompletesWithZero) {
  Virtqueue q(*dev_, fresh(8));
  set_desc(3, d(kBuf, 16));
  set_desc(4, d(kBuf + 64, 16, W));
  offer({3, 4});
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  q.refuse(c_, BadChain::kDirection);
  ASSERT_TRUE(q.pop(&c_));
  EXPECT_EQ(c_.head, 4);
  q.push(4, 16);
  q.publish();
  EXPECT_EQ(used_idx(), 2);
  expect_used(0, 3, 0);
  expect_used(1, 4, 16);
  EXPECT_EQ(q.stats().bad[ix(BadChain::kDirection)], 1u);
  EXPECT_EQ(q.stats().bad_total(), 1u);
  EXPECT_EQ(q.stats().chains, 1u);
  EXPECT_EQ(q.stats().used, 2u);
}

TEST_P(VirtqueueTest, AvailIndexJumpBreaksTheQueue) {
  for (const uint16_t jump : {uint16_t{9}, uint16_t{0xffff}}) {  // size + 1 ahead, or one back
    SCOPED_TRACE(jump);
    Virtqueue q(*dev_, fresh(8));
    for (uint16_t h = 0; h < 8; ++h) {
      set_desc(h, d(kBuf, 16));
      offer(h);
    }
    ASSERT_TRUE(q.begin(reader_));
    EXPECT_EQ(q.available(), 8) << "a full ring is not a jump";
    for (uint16_t h = 0; h < 8; ++h) ASSERT_TRUE(q.pop(&c_));
    store16(avail().idx(), static_cast<uint16_t>(aidx_ + jump), std::memory_order_release);
    EXPECT_FALSE(q.pop(&c_)) << "avail.idx is read once per burst";
    EXPECT_FALSE(q.broken());
    EXPECT_FALSE(q.begin(reader_));  // the next burst sees the jump
    EXPECT_TRUE(q.broken());
    EXPECT_FALSE(q.pop(&c_)) << "a broken queue pops nothing, however often asked";
    EXPECT_EQ(q.available(), 0);
    EXPECT_FALSE(q.begin(reader_));
    EXPECT_FALSE(q.pop(&c_));
    EXPECT_EQ(q.stats().broken, 1u);
    EXPECT_EQ(q.stats().ring_faults, 0u);
    EXPECT_EQ(q.stats().chains, 8u);
  }
}

TEST_P(VirtqueueTest, RingFaults) {
  struct Bad {
    const char* name;
    std::function<void(QueueConfig&)> edit;
  };
  std::vector<Bad> bads = {
      {"size 0", [](QueueConfig& c) { c.size = 0; }},
      {"size 6", [](QueueConfig& c) { c.size = 6; }},
      {"size 65536", [](QueueConfig& c) { c.size = 65536; }},
      {"desc misaligned", [](QueueConfig& c) { c.desc += 8; }},
      {"avail misaligned", [](QueueConfig& c) { c.avail += 1; }},
      {"used misaligned", [](QueueConfig& c) { c.used += 2; }},
      {"desc misaligned, its HVA aligned", [](QueueConfig& c) { c.desc = kSkewGpa + 8; }},
      {"desc aligned, its HVA misaligned", [](QueueConfig& c) { c.desc = kSkewGpa + 16; }},
      {"desc unmapped", [](QueueConfig& c) { c.desc = kOutside; }},
      {"avail unmapped", [](QueueConfig& c) { c.avail = kOutside; }},
      {"used unmapped", [](QueueConfig& c) { c.used = kOutside; }},
      {"desc wraps", [](QueueConfig& c) { c.desc = 0xffffffffffffff00; }},
      {"used spans two regions", [&](QueueConfig& c) { c.used = ga(kBGpa - 16); }},
  };
  if (ap()) bads.push_back({"used read-only", [](QueueConfig& c) { c.used = kRoIova; }});
  for (const Bad& b : bads) {
    SCOPED_TRACE(b.name);
    QueueConfig cfg = fresh(8);
    b.edit(cfg);
    Virtqueue q(*dev_, cfg);
    set_desc(0, d(kBuf, 16));
    offer(0);
    EXPECT_FALSE(q.begin(reader_));
    EXPECT_EQ(q.stats().ring_faults, 1u);
    EXPECT_EQ(q.available(), 0);
    EXPECT_FALSE(q.pop(&c_));
    EXPECT_FALSE(q.enable_kicks());
    EXPECT_FALSE(q.begin(reader_));
    EXPECT_EQ(q.stats().ring_faults, 2u);
    EXPECT_EQ(q.stats().bad_total(), 0u);
    EXPECT_FALSE(q.broken());
  }
  if (ap()) {  // the device only reads the descriptor table: a read-only mapping is enough
    QueueConfig cfg = fresh(8);
    cfg.desc = kRoIova;
    Virtqueue q(*dev_, cfg);
    EXPECT_TRUE(q.begin(reader_));
    EXPECT_EQ(q.stats().ring_faults, 0u);
  }
}

// An UNMAP of the rings' IOVAs completes only after this reader's quiescent
// report; the next begin() no longer reaches them (the IOTLB dropped them too).
// The ring translations are kept across bursts (Device::Burst's stamp) and
// made again only after something they depend on changed: an invalidation
// this reader applied (ACCESS_PLATFORM; any, even of an unrelated page) or a
// new memory table (both modes). stats().translations counts every translate
// call: three ring areas plus one per buffer.
TEST_P(VirtqueueTest, RingTranslationsKeptUntilAnInvalidation) {
  Virtqueue q(*dev_, fresh(8));
  set_desc(0, d(kBuf, 16));
  auto burst = [&] {
    offer(0);
    const uint64_t before = q.stats().translations;
    EXPECT_TRUE(q.begin(reader_));
    EXPECT_TRUE(q.pop(&c_));
    q.push(0, 0);
    q.publish();
    return q.stats().translations - before;
  };
  // A control call that waits for a grace period, while this reader reports.
  auto synced = [&](const std::function<int()>& call) {
    std::atomic<int> st{-2};
    std::thread control([&] { st.store(call()); });
    while (st.load() == -2) dev_->iotlb().quiescent(reader_);
    control.join();
    return st.load();
  };
  EXPECT_EQ(burst(), 4u) << "first burst: three rings and the buffer";
  EXPECT_EQ(burst(), 1u) << "rings kept";
  dev_->iotlb().quiescent(reader_);
  EXPECT_EQ(burst(), 1u) << "a quiescent report with nothing new keeps them";
  if (ap()) {
    EXPECT_EQ(synced([&] { return send(unmap_req(1, kRoIova, kRoIova + 0xfff)); }), 0);
    EXPECT_EQ(burst(), 4u) << "an UNMAP the reader applied drops them (any UNMAP: the check is coarse)";
    EXPECT_EQ(burst(), 1u);
  }
  const engine::MemRegion regions[] = {{kGpa, kASize, reinterpret_cast<uint64_t>(a_)},
                                       {kBGpa, kBSize, reinterpret_cast<uint64_t>(b_)}};
  EXPECT_EQ(synced([&] { return static_cast<int>(dev_->set_mem_table(regions)); }), 0);
  EXPECT_EQ(burst(), 4u) << "a new memory table drops them";
  EXPECT_EQ(used_idx(), ap() ? 6 : 4);
  EXPECT_EQ(q.stats().ring_faults, 0u);
}

// The endpoint moves to another domain that maps the ring IOVAs elsewhere,
// with no invalidation at all (its old domain lives on with another endpoint):
// the kept rings must not be used, since they belong to the old domain.
TEST_P(VirtqueueTest, KeptRingsFollowTheEndpointsDomain) {
  if (!ap()) GTEST_SKIP() << "rings are GPAs without ACCESS_PLATFORM";
  constexpr uint64_t kCopy = kGpa + 0x10000;  // domain 2's view of the ring IOVAs
  ASSERT_EQ(send(attach_req(1, 2)), 0);       // endpoint 2 keeps domain 1 alive
  Virtqueue q(*dev_, fresh(8));
  set_desc(0, d(kBuf, 16));
  offer(0);
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  q.push(0, 0);
  q.publish();
  EXPECT_EQ(used_idx(), 1);
  // Domain 2: the same IOVAs, rings at kCopy, with two chains posted there.
  std::memset(host(kCopy), 0, 0x3000);
  put(kCopy, d(kBuf + 0x1000, 32));
  AvailRing copy_avail{host(kCopy + 0x1000), 8};
  copy_avail.ring(1) = 0;
  copy_avail.ring(2) = 0;
  store16(copy_avail.idx(), 3, std::memory_order_release);  // last_avail is 1: chains 1 and 2 are new
  std::atomic<int> st{-2};
  std::thread control([&] {
    int r = send(attach_req(2, 1));
    if (r == 0) r = send(map_req(2, kIova, kIova + 0x3fff, kCopy, kRW));
    if (r == 0) r = send(map_req(2, kIova + 0x100000, kIova + 0x101fff, kBuf, kRW));
    st.store(r);
  });
  while (st.load() == -2) dev_->iotlb().quiescent(reader_);
  control.join();
  ASSERT_EQ(st.load(), 0);
  ASSERT_TRUE(q.begin(reader_));
  EXPECT_EQ(q.available(), 2) << "avail.idx read through domain 2";
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(0, 1, {{kBuf + 0x1000, 32}});
  q.push(0, 7);
  q.publish();
  UsedRing copy_used{host(kCopy + 0x2000), 8};
  EXPECT_EQ(load16(copy_used.idx(), std::memory_order_acquire), 2) << "used entry written through domain 2";
  EXPECT_EQ(used_idx(), 1) << "domain 1's used ring untouched";
}

TEST_P(VirtqueueTest, UnmapOfLiveRing) {
  if (!ap()) GTEST_SKIP() << "rings are GPAs without ACCESS_PLATFORM";
  dev_->iotlb().offline(reader_);
  ASSERT_EQ(send(map_req(1, kRingIova, kRingIova + 0x3fff, kGpa, kRW)), 0);
  dev_->iotlb().online(reader_);
  QueueConfig cfg = fresh(8);
  cfg.desc = kRingIova;
  cfg.avail = kRingIova + (kAvail - kGpa);
  cfg.used = kRingIova + (kUsed - kGpa);
  Virtqueue q(*dev_, cfg);
  set_desc(0, d(kBuf, 16));
  offer(0);
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  q.push(0, 0);
  q.publish();
  EXPECT_EQ(used_idx(), 1);
  offer(0);

  std::atomic<int> st{-2};
  std::thread control([&] { st.store(send(unmap_req(1, kRingIova, kRingIova + 0x3fff))); });
  while (st.load() == -2) dev_->iotlb().quiescent(reader_);
  control.join();
  ASSERT_EQ(st.load(), 0);
  EXPECT_FALSE(q.begin(reader_));
  EXPECT_EQ(q.stats().ring_faults, 1u);
  EXPECT_FALSE(q.pop(&c_));
  EXPECT_EQ(q.stats().chains, 1u);
  EXPECT_EQ(used_idx(), 1);
}

// hold_on_miss (a vhost-user device IOTLB): a chain whose buffer does not
// translate stays in its ring, with everything behind it, and take_miss()
// names the address; once it translates the same chain pops. Without
// hold_on_miss the same chain is bad (kUnmapped).
TEST_P(VirtqueueTest, HoldOnMissKeepsTheChainInItsRing) {
  if (!ap()) GTEST_SKIP() << "misses exist only with ACCESS_PLATFORM";
  constexpr uint64_t kMissIova = 0x50000000;  // not mapped until the test maps it
  for (const bool hold : {true, false}) {
    SCOPED_TRACE(hold ? "hold_on_miss" : "without hold_on_miss");
    QueueConfig cfg = fresh(8);
    cfg.hold_on_miss = hold;
    Virtqueue q(*dev_, cfg);
    set_desc(0, d(kBuf, 16));
    set_desc(1, d(kBuf + 0x1000, 16, N, 2));
    set_desc(2, raw(kMissIova + 0x10, 64, W));  // the second buffer of chain 1 misses
    set_desc(3, d(kBuf + 0x2000, 16));
    offer({0, 1, 3});
    ASSERT_TRUE(q.begin(reader_));
    ASSERT_TRUE(q.pop(&c_));
    EXPECT_EQ(c_.head, 0);
    q.push(0, 0);
    Miss m{};
    if (hold) {
      EXPECT_FALSE(q.pop(&c_)) << "chain 1 waits, and chain 3 behind it";
      EXPECT_EQ(q.stats().held, 1u);
      EXPECT_EQ(q.stats().bad_total(), 0u);
      ASSERT_TRUE(q.take_miss(&m));
      EXPECT_EQ(m.iova, kMissIova + 0x10);
      EXPECT_EQ(m.access, pagetable::kPermWrite);
      EXPECT_FALSE(q.take_miss(&m)) << "taken once";
      q.publish();
      EXPECT_EQ(used_idx(), 1);
      EXPECT_EQ(q.last_avail(), 1) << "the held chain's slot is not consumed";
      // The translation arrives; the same chains pop, in order.
      dev_->iotlb().offline(reader_);
      ASSERT_EQ(send(map_req(1, kMissIova, kMissIova + 0xfff, kBuf + 0x7000, kRW)), 0);
      dev_->iotlb().online(reader_);
      ASSERT_TRUE(q.begin(reader_));
      ASSERT_TRUE(q.pop(&c_));
      expect_chain(1, 1, {{kBuf + 0x1000, 16}, {kBuf + 0x7010, 64}});
      ASSERT_TRUE(q.pop(&c_));
      EXPECT_EQ(c_.head, 3);
      EXPECT_FALSE(q.take_miss(&m));
      dev_->iotlb().offline(reader_);
      ASSERT_EQ(send(unmap_req(1, kMissIova, kMissIova + 0xfff)), 0);
      dev_->iotlb().online(reader_);
    } else {
      ASSERT_TRUE(q.pop(&c_)) << "chain 1 is completed as bad; chain 3 pops";
      EXPECT_EQ(c_.head, 3);
      EXPECT_EQ(q.stats().bad[ix(BadChain::kUnmapped)], 1u);
      EXPECT_FALSE(q.take_miss(&m));
    }
  }
}

// A ring area that misses stops begin() and is named by take_miss(); a chain
// that is bad for another reason (a wrapping buffer) is still completed as
// bad, not held.
TEST_P(VirtqueueTest, HoldOnMissRingsAndGenuinelyBadChains) {
  if (!ap()) GTEST_SKIP() << "misses exist only with ACCESS_PLATFORM";
  QueueConfig cfg = fresh(8);
  cfg.hold_on_miss = true;
  cfg.avail = 0x58000000;
  {
    Virtqueue q(*dev_, cfg);
    EXPECT_FALSE(q.begin(reader_));
    Miss m{};
    ASSERT_TRUE(q.take_miss(&m));
    EXPECT_EQ(m.iova, 0x58000000u);
    EXPECT_EQ(m.access, pagetable::kPermRead);
  }
  cfg = fresh(8);
  cfg.hold_on_miss = true;
  Virtqueue q(*dev_, cfg);
  set_desc(0, raw(0xfffffffffffff000, 0x2000));  // wraps: bad, whatever the IOTLB holds
  set_desc(1, d(kBuf, 16));
  offer({0, 1});
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  EXPECT_EQ(c_.head, 1);
  EXPECT_EQ(q.stats().bad[ix(BadChain::kUnmapped)], 1u);
  EXPECT_EQ(q.stats().held, 0u);
}

// Rings given as host addresses (vhost-user without ACCESS_PLATFORM) and a
// queue that resumes at a base index (SET_VRING_BASE).
TEST_P(VirtqueueTest, HostRingsAndBase) {
  QueueConfig cfg = fresh(8);
  cfg.rings_host = true;
  cfg.desc = reinterpret_cast<uint64_t>(host(kDesc));
  cfg.avail = reinterpret_cast<uint64_t>(host(kAvail));
  cfg.used = reinterpret_cast<uint64_t>(host(kUsed));
  Virtqueue q(*dev_, cfg);
  q.set_base(0xfffe);
  aidx_ = 0xfffe;
  store16(used().idx(), 0xfffe, std::memory_order_relaxed);
  set_desc(4, d(kBuf, 16));
  set_desc(5, d(kBuf + 0x1000, 32, W));
  set_desc(6, d(kBuf + 0x2000, 8));
  offer({4, 5, 6});
  ASSERT_TRUE(q.begin(reader_));
  EXPECT_EQ(q.available(), 3);
  for (uint16_t head : {4, 5, 6}) {
    ASSERT_TRUE(q.pop(&c_));
    EXPECT_EQ(c_.head, head);
    q.push(head, 0);
  }
  q.publish();
  EXPECT_EQ(q.last_avail(), 1);
  EXPECT_EQ(used_idx(), 1);
  expect_used(0xfffe, 4, 0);
  expect_used(0, 6, 0);
  EXPECT_EQ(q.stats().translations, 3u) << "no ring translations";
}

// Miss-ahead: prefetch() names every buffer that misses in the chains posted
// beyond the popped ones, several per chain, without consuming anything, and
// does not look at the same chains twice.
TEST_P(VirtqueueTest, PrefetchNamesMissesAhead) {
  if (!ap()) GTEST_SKIP() << "misses exist only with ACCESS_PLATFORM";
  QueueConfig cfg = fresh(8);
  cfg.hold_on_miss = true;
  Virtqueue q(*dev_, cfg);
  set_desc(0, d(kBuf, 16));
  set_desc(1, raw(0x51000000, 64, W | N, 2));  // misses
  set_desc(2, raw(0x52000000, 64, W));         // misses too
  set_desc(3, raw(0x53000000, 16));            // misses
  offer({0, 1, 3});
  ASSERT_TRUE(q.begin(reader_, 0));
  Miss m[8];
  ASSERT_EQ(q.prefetch(32, m), 3u);
  EXPECT_EQ(m[0].iova, 0x51000000u);
  EXPECT_EQ(m[0].access, pagetable::kPermWrite);
  EXPECT_EQ(m[1].iova, 0x52000000u);
  EXPECT_EQ(m[2].iova, 0x53000000u);
  EXPECT_EQ(m[2].access, pagetable::kPermRead);
  EXPECT_EQ(q.prefetch(32, m), 0u) << "the same chains are not looked at twice";
  EXPECT_EQ(q.last_avail(), 0) << "nothing consumed";
  EXPECT_EQ(q.stats().chains, 0u);
  EXPECT_EQ(q.stats().bad_total(), 0u);
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  EXPECT_EQ(c_.head, 0);
  EXPECT_FALSE(q.pop(&c_)) << "chain 1 is held";
  offer(0);
  ASSERT_TRUE(q.begin(reader_, 0));
  EXPECT_EQ(q.prefetch(32, m), 0u) << "only the new chain, which translates";
  EXPECT_EQ(q.prefetch(1, std::span<Miss>(m, 1)), 0u);
}

INSTANTIATE_TEST_SUITE_P(Modes, VirtqueueTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) { return p.param ? "Iova" : "Gpa"; });

}  // namespace
}  // namespace vxlate::dataplane
