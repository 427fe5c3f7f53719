// Bounded work per data-plane call, whatever the guest writes (DESIGN.md
// invariant 4; issue: "a guest that keeps avail.idx just ahead of the device
// holds one call forever, and every grace period waits with it").
//
// The bound (virtqueue.h): one burst that begin() gave a budget of B avail
// slots visits at most B x kMaxChainDescs descriptors and makes at most
// 3 + B x (kMaxChainSegs + 1) translations, good, bad and refused chains
// alike; avail.idx is read once, by begin(). Each test builds the worst chains
// a guest can, checks the counted work against that bound, and prints what
// one call cost on this machine (timings are reported, never asserted).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>

#include "vxlate/dataplane/iommu_queues.h"
#include "vxlate/dataplane/virtqueue.h"
#include "vxlate/engine/device.h"

namespace vxlate::dataplane {
namespace {

constexpr uint32_t kSize = kMaxQueueSize;  // the largest queue a guest can ask for
constexpr uint32_t kBudget = 32;           // a typical burst
constexpr uint64_t kDescOff = 0;
constexpr uint64_t kAvailOff = 0x80000;    // desc: 512 KiB
constexpr uint64_t kUsedOff = 0x100000;    // avail: 64 KiB + 6
constexpr uint64_t kTableOff = 0x200000;   // used: 256 KiB + 6; table: 512 KiB
constexpr uint64_t kBufOff = 0x300000;
constexpr uint64_t kMemBytes = 0x400000;

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};

// Guest memory at gpa == hva (no ACCESS_PLATFORM), one split queue in it.
class BoundedWork : public ::testing::Test {
 protected:
  void SetUp() override {
    mem_.reset(static_cast<uint8_t*>(std::aligned_alloc(4096, kMemBytes)));
    std::memset(mem_.get(), 0, kMemBytes);
    const engine::MemRegion r[] = {{base(), kMemBytes, base()}};
    ASSERT_EQ(dev_.set_mem_table(r), Status::kOk);
    id_ = rcu_.register_reader();
    dev_.iotlb().online(id_);
  }
  void TearDown() override { dev_.iotlb().offline(id_); }

  uint64_t base() const { return reinterpret_cast<uint64_t>(mem_.get()); }
  VirtqDesc* desc() { return reinterpret_cast<VirtqDesc*>(mem_.get() + kDescOff); }
  VirtqDesc* table() { return reinterpret_cast<VirtqDesc*>(mem_.get() + kTableOff); }
  AvailRing avail() { return AvailRing{mem_.get() + kAvailOff, kSize}; }
  QueueConfig config(bool indirect = false, uint32_t max_chain_bytes = 0) const {
    QueueConfig q;
    q.size = kSize;
    q.desc = base() + kDescOff;
    q.avail = base() + kAvailOff;
    q.used = base() + kUsedOff;
    q.indirect = indirect;
    q.max_chain_bytes = max_chain_bytes;
    return q;
  }
  // Every avail slot offers head i: the ring is as full as a guest can make it.
  void offer_all() {
    for (uint32_t i = 0; i < kSize; ++i) avail().ring(i) = static_cast<uint16_t>(i);
    store16(avail().idx(), static_cast<uint16_t>(kSize), std::memory_order_release);
  }

  // One burst as a consumer runs it: begin, pop until nothing, publish.
  // Returns the wall time of the call.
  std::chrono::nanoseconds burst(Virtqueue& q, uint32_t budget = kBudget) {
    const auto t0 = std::chrono::steady_clock::now();
    if (q.begin(id_, budget)) {
      Chain c;
      while (q.pop(&c)) q.push(c.head, 0);
      q.publish();
    }
    return std::chrono::steady_clock::now() - t0;
  }
  void expect_bounded(const VirtqueueStats& before, const VirtqueueStats& after, uint32_t budget = kBudget) {
    const uint64_t slots = (after.chains - before.chains) + (after.bad_total() - before.bad_total());
    EXPECT_LE(slots, budget);
    EXPECT_LE(after.descs - before.descs, uint64_t{budget} * kMaxChainDescs);
    EXPECT_LE(after.translations - before.translations, 3 + uint64_t{budget} * (kMaxChainSegs + 1));
  }

  Rcu rcu_{2};
  engine::Device dev_{engine::Config{}, rcu_, 64};
  std::unique_ptr<uint8_t, FreeDeleter> mem_;
  uint32_t id_ = 0;
};

TEST_F(BoundedWork, ZeroLengthLoopsOverTheWholeTable) {
  // Every descriptor: zero bytes, NEXT to the following one, the last back to
  // the first: each chain is one 32768-descriptor loop.
  for (uint32_t i = 0; i < kSize; ++i) desc()[i] = VirtqDesc{base() + kBufOff, 0, kDescFlagNext, uint16_t((i + 1) % kSize)};
  offer_all();
  Virtqueue q(dev_, config());
  const VirtqueueStats before = q.stats();
  const auto t = burst(q);
  expect_bounded(before, q.stats());
  EXPECT_EQ(q.stats().bad[static_cast<size_t>(BadChain::kLoop)], kBudget);
  std::printf("zero-length loops: %u chains, %lu descriptors, %.1f us\n", kBudget,
              static_cast<unsigned long>(q.stats().descs), t.count() / 1e3);
}

TEST_F(BoundedWork, MaximalIndirectTables) {
  // Every head: an indirect table of kSize zero-length descriptors chained in order.
  for (uint32_t i = 0; i < kSize; ++i)
    table()[i] = VirtqDesc{base() + kBufOff, 0, uint16_t(i + 1 < kSize ? kDescFlagNext : 0), uint16_t(i + 1)};
  for (uint32_t i = 0; i < kSize; ++i)
    desc()[i] = VirtqDesc{base() + kTableOff, kSize * uint32_t{sizeof(VirtqDesc)}, kDescFlagIndirect, 0};
  offer_all();
  Virtqueue q(dev_, config(true));
  const VirtqueueStats before = q.stats();
  const auto t = burst(q);
  expect_bounded(before, q.stats());
  EXPECT_EQ(q.stats().bad[static_cast<size_t>(BadChain::kLoop)], kBudget);
  std::printf("maximal indirect tables: %lu descriptors, %lu translations, %.1f us\n",
              static_cast<unsigned long>(q.stats().descs), static_cast<unsigned long>(q.stats().translations),
              t.count() / 1e3);
}

TEST_F(BoundedWork, GiantLengthsAreNotTranslated) {
  // 4 GiB - 1 readable at the start of guest memory: the consumer takes at
  // most 64 KiB, so the chain is refused before any byte is translated (the
  // memory table does not even cover it). Writable buffers are cut to the limit.
  constexpr uint32_t kLimit = 0x10000;
  for (uint32_t i = 0; i < kSize; i += 2) {
    desc()[i] = VirtqDesc{base(), 0xffffffffu, 0, 0};
    desc()[i + 1] = VirtqDesc{base() + kBufOff, 0xffffffffu, kDescFlagWrite, 0};
  }
  offer_all();
  Virtqueue q(dev_, config(false, kLimit));
  const VirtqueueStats before = q.stats();
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(q.begin(id_, kBudget));
  Chain c;
  uint32_t good = 0;
  while (q.pop(&c)) {
    EXPECT_EQ(c.writable_bytes, kLimit);
    q.push(c.head, 0);
    ++good;
  }
  q.publish();
  const auto t = std::chrono::steady_clock::now() - t0;
  expect_bounded(before, q.stats());
  EXPECT_EQ(good, kBudget / 2);
  EXPECT_EQ(q.stats().bad[static_cast<size_t>(BadChain::kLength)], kBudget / 2);
  EXPECT_EQ(q.stats().translations - before.translations, 3 + kBudget / 2);  // rings, then one per writable
  std::printf("giant lengths: %.1f us\n", std::chrono::duration<double, std::micro>(t).count());
}

TEST_F(BoundedWork, AvailIndexRacingAheadDoesNotHoldTheCall) {
  // A guest thread keeps the avail index just ahead of the device with bad
  // chains (zero-length loops) for up to two seconds; one burst must return
  // after its budget, and a grace period must complete meanwhile.
  for (uint32_t i = 0; i < kSize; ++i) desc()[i] = VirtqDesc{base() + kBufOff, 0, kDescFlagNext, uint16_t((i + 1) % kSize)};
  Virtqueue q(dev_, config());
  std::atomic<bool> stop{false};
  std::thread guest([&] {
    const auto t0 = std::chrono::steady_clock::now();
    uint16_t idx = 0;
    while (!stop.load(std::memory_order_acquire) && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2)) {
      // Keep at most half the ring outstanding so the index never jumps.
      const uint16_t used = load16(UsedRing{mem_.get() + kUsedOff, kSize}.idx(), std::memory_order_acquire);
      if (static_cast<uint16_t>(idx - used) >= kSize / 2) {
        std::this_thread::yield();
        continue;
      }
      avail().ring(idx % kSize) = static_cast<uint16_t>(idx % kSize);
      store16(avail().idx(), ++idx, std::memory_order_release);
    }
  });
  std::atomic<uint64_t> graces{0};
  std::atomic<bool> writer_done{false};
  std::thread writer([&] {
    while (!stop.load(std::memory_order_acquire)) {
      rcu_.synchronize();
      graces.fetch_add(1, std::memory_order_relaxed);
    }
    writer_done.store(true, std::memory_order_release);
  });
  std::chrono::nanoseconds worst{0};
  uint64_t calls = 0;
  const auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(300)) {
    const VirtqueueStats before = q.stats();
    worst = std::max(worst, burst(q));
    expect_bounded(before, q.stats());
    dev_.iotlb().quiescent(id_);
    ++calls;
    if (HasFailure()) break;
  }
  stop.store(true, std::memory_order_release);
  guest.join();
  // The writer may be inside synchronize(), waiting for this online reader:
  // keep reporting until it has seen `stop`.
  while (!writer_done.load(std::memory_order_acquire)) dev_.iotlb().quiescent(id_);
  writer.join();
  EXPECT_GT(calls, 1u);
  EXPECT_GT(graces.load(), 0u);
  std::printf("racing avail index: %lu calls, worst %.1f us, %lu grace periods\n", static_cast<unsigned long>(calls),
              worst.count() / 1e3, static_cast<unsigned long>(graces.load()));
}

TEST_F(BoundedWork, IommuRequestQueueFullOfLoops) {
  // The request queue: at most kMaxRequestBurst slots per poll().
  for (uint32_t i = 0; i < kSize; ++i) desc()[i] = VirtqDesc{base() + kBufOff, 0, kDescFlagNext, uint16_t((i + 1) % kSize)};
  offer_all();
  QueueConfig evq = config();
  evq.desc = evq.avail = evq.used = base() + kBufOff;  // never begun: no events pending
  evq.size = 8;
  IommuQueues iq(dev_, config(), evq);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(iq.poll(id_), 0u);
  const auto t = std::chrono::steady_clock::now() - t0;
  const VirtqueueStats& st = iq.requestq().stats();
  EXPECT_EQ(st.bad_total(), engine::kMaxRequestBurst);
  EXPECT_LE(st.descs, uint64_t{engine::kMaxRequestBurst} * 16);  // kMaxRequestDescs
  std::printf("request queue of loops: %lu descriptors, %.1f us\n", static_cast<unsigned long>(st.descs),
              std::chrono::duration<double, std::micro>(t).count());
}

}  // namespace
}  // namespace vxlate::dataplane
