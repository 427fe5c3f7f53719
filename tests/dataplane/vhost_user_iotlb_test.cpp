// The vhost-user back end's device IOTLB end to end, in one process: a
// Backend serving one Port on a unix socket, an lcore thread that echoes the
// guest's frames back (dequeue_burst -> enqueue_burst, holding what a miss
// leaves, prefetch in idle rounds), and the QEMU side of the protocol
// (vxlate/load/vhost_user_frontend.h) with a guest driver thread sending and
// receiving checked frames.
//
// Strict-mode churn: round after round, while frames flow, the "vCPU" (main
// thread) parks the guest, INVALIDATEs the whole receive-buffer pool (blocking
// for the ack, as QEMU's vCPU does), poisons it, lets the guest run again
// (more frames are sent and must wait: their receive buffers now miss, and
// the front end answers nothing for an unmapped IOVA, as QEMU), checks after a
// while that no byte of the pool was written after the ack, then maps the pool
// again and serves the misses. Invariants: nothing written after an ack;
// every frame sent comes back (intact, or poisoned by the guest itself when it
// was delivered before the ack and read after); no frame dropped for a miss;
// misses deduplicated (far fewer MISS messages than held offers); acks never
// wait on a MISS (the front end's reply timeout would throw). A variant leaves
// every third MISS unanswered: the back end must ask again.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "support/eal_env.h"
#include "vxlate/dataplane/vhost_user.h"
#include "vxlate/load/vhost_user_frontend.h"

[[maybe_unused]] ::testing::Environment* const kEal = ::testing::AddGlobalTestEnvironment(new vxlate::test::EalEnv(1));

namespace vxlate::dataplane::vhost_user {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using load::VhostUserDmaArea;
using load::VhostUserFrontend;
using load::VhostUserFrontendOptions;

constexpr uint8_t kPoison = 0xde;

// A frame: a sequence number, then bytes derived from it.
std::vector<uint8_t> make_frame(uint64_t seq) {
  const size_t len = 60 + (seq * 37) % 1400;
  std::vector<uint8_t> f(len);
  std::memcpy(f.data(), &seq, sizeof seq);
  for (size_t i = sizeof seq; i < len; ++i) f[i] = static_cast<uint8_t>(seq * 131 + i);
  return f;
}

// The echo lcore: a registered reader of the Backend's Rcu.
class Lcore {
 public:
  Lcore(Rcu& rcu, Port& port) : rcu_(rcu), port_(port), thread_([this] { run(); }) {}
  ~Lcore() {
    stop_.store(true, std::memory_order_relaxed);
    thread_.join();
  }
  uint64_t offers() const { return offers_.load(std::memory_order_relaxed); }

 private:
  void run() {
    const uint32_t id = rcu_.register_reader();
    rcu_.online(id);
    rte_mbuf* held[kMaxNetBurst];
    uint16_t n = 0, off = 0;
    uint32_t idle = 0;
    while (!stop_.load(std::memory_order_relaxed)) {
      bool moved = false;
      if (n == 0) {
        n = port_.dequeue_burst(id, 0, test::EalEnv::pool(), held, kMaxNetBurst);
        off = 0;
        moved = n != 0;
      }
      if (n != 0) {
        const uint16_t k = port_.enqueue_burst(id, 0, held + off, static_cast<uint16_t>(n - off));
        rte_pktmbuf_free_bulk(held + off, k);
        off = static_cast<uint16_t>(off + k);
        moved |= k != 0;
        if (off == n) n = 0;
        else if (port_.rx_waiting_for_miss(0))
          offers_.store(offers_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      }
      if (!moved) port_.prefetch(id, 0);
      rcu_.quiescent(id);
      if (moved) {
        idle = 0;
      } else if (++idle > 256) {
        rcu_.offline(id);  // an idle lcore never holds up an ack
        std::this_thread::sleep_for(20us);
        rcu_.online(id);
      }
    }
    if (n > off) rte_pktmbuf_free_bulk(held + off, n - off);
    rcu_.offline(id);
    rcu_.unregister_reader(id);
  }

  Rcu& rcu_;
  Port& port_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> offers_{0};  // enqueue attempts that left frames for a miss
  std::thread thread_;
};

// The QEMU side with a vIOMMU, started: every area the driver hands out is
// mapped at its default IOVA; where the receive buffers are is remembered.
struct IommuFrontend {
  explicit IommuFrontend(VhostUserFrontendOptions o) {
    o.iommu = true;
    o.queue_size = 64;
    o.connect_timeout_ms = 2000;
    o.dma_map = [this](const VhostUserDmaArea& a) {
      const uint64_t iova = fe->default_iova(a.gpa);
      fe->map(iova, a.gpa, a.bytes, a.perm);
      if (a.use == VhostUserDmaArea::kRxBuffers) {
        rx_pool = a;
        rx_iova = iova;
      }
      return iova;
    };
    fe = std::make_unique<VhostUserFrontend>(std::move(o));
    fe->start();  // calls dma_map, fe is set
  }
  std::unique_ptr<VhostUserFrontend> fe;
  VhostUserDmaArea rx_pool{};
  uint64_t rx_iova = 0;
};

// One started Backend with one Port on a socket in a directory of its own,
// the test thread its only lcore (a registered reader of rcu).
struct OnePort {
  OnePort(const std::string& name, bool rx_out_of_order)
      : dir(std::filesystem::temp_directory_path() / (name + std::to_string(getpid()))) {
    std::filesystem::create_directories(dir);
    PortConfig pc;
    pc.path = dir + "/port.sock";
    pc.rx_out_of_order = rx_out_of_order;
    port = &backend.add_port(pc);
    backend.start();
  }
  ~OnePort() {
    backend.stop();
    std::filesystem::remove_all(dir);
  }
  std::string path() const { return dir + "/port.sock"; }
  const std::string dir;
  Rcu rcu{2};
  Backend backend{rcu};
  Port* port = nullptr;
};

// A 60-byte frame (nullptr when the pool is out of mbufs).
rte_mbuf* small_frame() {
  rte_mbuf* m = rte_pktmbuf_alloc(test::EalEnv::pool());
  if (m != nullptr && rte_pktmbuf_append(m, 60) == nullptr) {
    rte_pktmbuf_free(m);
    return nullptr;
  }
  if (m != nullptr) std::memset(rte_pktmbuf_mtod(m, uint8_t*), 0x5a, 60);
  return m;
}

// The test thread as the lcore: offers m to queue pair 0 until it is taken
// (true) or 10 s passed, serving the front end's misses in between (offline
// meanwhile: the front end may wait on an INVALIDATE's ack).
bool deliver_serving_misses(Rcu& rcu, uint32_t reader, Port& port, VhostUserFrontend& fe, rte_mbuf* m) {
  const auto end = Clock::now() + 10s;
  while (Clock::now() < end) {
    if (port.enqueue_burst(reader, 0, &m, 1) == 1) return true;
    rcu.offline(reader);
    fe.serve_misses(1);
    rcu.online(reader);
  }
  return false;
}

struct Params {
  uint32_t drop_every_nth_miss;
  bool rx_out_of_order;  // PortConfig::rx_out_of_order
};

class VhostUserIotlbTest : public ::testing::TestWithParam<Params> {};

TEST_P(VhostUserIotlbTest, StrictChurnNeverTouchesInvalidatedBuffersAndLosesNothing) {
  const std::string dir = std::filesystem::temp_directory_path() / ("vxlate-iotlb-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string sock = dir + "/port.sock";
  Rcu rcu(4);
  Backend backend(rcu);
  PortConfig pc;
  pc.path = sock;
  pc.rx_out_of_order = GetParam().rx_out_of_order;
  Port& port = backend.add_port(pc);
  backend.start();

  VhostUserFrontendOptions o;
  o.path = sock;
  o.mrg_rxbuf = false;  // a poisoned header must not read as a merge count
  o.drop_every_nth_miss = GetParam().drop_every_nth_miss;
  IommuFrontend guest_side(o);
  VhostUserFrontend& fe = *guest_side.fe;
  const VhostUserDmaArea rx_pool = guest_side.rx_pool;
  const uint64_t rx_iova = guest_side.rx_iova;
  ASSERT_NE(rx_pool.bytes, 0u);
  Lcore lcore(rcu, port);

  // The guest: sends numbered frames, reposts receive buffers, checks what comes back.
  std::mutex park;                  // held by the vCPU while the guest must not touch memory
  std::atomic<bool> done{false};
  std::atomic<uint64_t> sent{0}, intact{0}, collateral{0}, corrupt{0};
  // Frames the guest may have sent so far: the vCPU releases a share each
  // round while the pool is invalidated, so every round has frames to wait.
  std::atomic<uint64_t> allowed{0};
  std::vector<uint8_t> seen(1 << 20);
  std::atomic<uint64_t> duplicates{0};
  const uint64_t kFrames = 3000;
  const uint64_t kRounds = 40;
  std::thread guest([&] {
    uint64_t seq = 0;
    while (!done.load(std::memory_order_relaxed)) {
      std::lock_guard<std::mutex> g(park);
      fe.post_rx(0, 64);
      for (int i = 0; i < 8 && seq < allowed.load(std::memory_order_relaxed); ++i) {
        if (!fe.send(0, make_frame(seq))) break;
        ++seq;
        sent.store(seq, std::memory_order_relaxed);
      }
      fe.reap_tx(0);
      fe.poll_rx(0, [&](std::span<const uint8_t> f) {
        bool all_poison = true;
        for (uint8_t b : f) all_poison &= b == kPoison;
        if (all_poison) {
          collateral.fetch_add(1, std::memory_order_relaxed);  // delivered before an ack, poisoned by us
          return;
        }
        uint64_t s = 0;
        if (f.size() >= sizeof s) std::memcpy(&s, f.data(), sizeof s);
        const std::vector<uint8_t> want = s < kFrames ? make_frame(s) : std::vector<uint8_t>{};
        if (want.size() != f.size() || std::memcmp(want.data(), f.data(), f.size()) != 0) {
          corrupt.fetch_add(1, std::memory_order_relaxed);
          return;
        }
        if (seen[s]++ != 0) duplicates.fetch_add(1, std::memory_order_relaxed);
        intact.fetch_add(1, std::memory_order_relaxed);
      });
    }
  });

  // The vCPU and the VMM's vIOMMU: churn rounds, serving misses throughout.
  auto serve_for = [&](std::chrono::milliseconds d) {
    const auto end = Clock::now() + d;
    while (Clock::now() < end) fe.serve_misses(1);
  };
  uint8_t* pool = fe.memory().hva(rx_pool.gpa);
  uint64_t rounds = 0, touched_after_ack = 0;
  const auto deadline = Clock::now() + 90s;
  for (; rounds < kRounds && Clock::now() < deadline; ++rounds) {
    serve_for(10ms);
    {
      std::lock_guard<std::mutex> g(park);
      ASSERT_TRUE(fe.unmap(rx_iova, rx_pool.bytes)) << "INVALIDATE nacked";
      std::memset(pool, kPoison, rx_pool.bytes);  // the guest reuses the memory at once
    }
    // This round's frames: their receive buffers miss and nobody answers
    // (the front end has no mapping), so they wait with the lcore.
    // (The guest may not get all of them out: the lcore holds what it
    // cannot deliver and stops taking transmit chains. Some is enough.)
    const uint64_t before = sent.load();
    allowed.store((rounds + 1) * kFrames / kRounds);
    const auto some = Clock::now() + 1s;
    while (sent.load() == before && Clock::now() < some) fe.serve_misses(1);
    serve_for(10ms);
    {
      std::lock_guard<std::mutex> g(park);
      for (uint64_t i = 0; i < rx_pool.bytes; ++i) touched_after_ack += pool[i] != kPoison;
      fe.map(rx_iova, rx_pool.gpa, rx_pool.bytes, rx_pool.perm);
    }
  }
  // Then everything sent must come back.
  allowed.store(kFrames);
  while ((sent.load() < kFrames || intact.load() + collateral.load() + corrupt.load() < sent.load()) &&
         Clock::now() < deadline)
    fe.serve_misses(1);
  done.store(true);
  guest.join();

  const PortStats st = port.stats();
  std::printf("rounds %lu sent %lu intact %lu collateral %lu corrupt %lu | misses sent %lu deduped %lu "
              "retried %lu, front end misses %lu answered %lu unanswered %lu | held offers %lu, "
              "invalidates %lu ack max %lu us avg %lu us\n",
              rounds, sent.load(), intact.load(), collateral.load(), corrupt.load(), st.misses_sent, st.misses_deduped,
              st.misses_retried, fe.stats().misses, fe.stats().misses_answered, fe.stats().misses_unanswered(),
              lcore.offers(), st.invalidates, st.ack_ns_max / 1000,
              st.invalidates ? st.ack_ns_total / st.invalidates / 1000 : 0);
  EXPECT_EQ(touched_after_ack, 0u) << "the back end wrote receive buffers after their INVALIDATE was acked";
  EXPECT_EQ(sent.load(), kFrames);
  EXPECT_EQ(corrupt.load(), 0u);
  EXPECT_EQ(duplicates.load(), 0u);
  EXPECT_EQ(intact.load() + collateral.load(), sent.load()) << "frames lost";
  EXPECT_EQ(st.rx_dropped, 0u);
  EXPECT_EQ(st.bad_chains, 0u);
  EXPECT_GE(st.invalidates, rounds);
  EXPECT_EQ(rounds, kRounds);
  EXPECT_GT(st.misses_sent, 0u);
  EXPECT_GT(lcore.offers(), 0u) << "frames waited for a miss";
  EXPECT_GT(st.rx_held, 0u);
  EXPECT_LT(fe.stats().misses, lcore.offers() + st.ring_misses + 1000) << "misses are deduplicated";
  if (GetParam().drop_every_nth_miss != 0) {
    EXPECT_GT(fe.stats().misses_dropped, 0u);
  }
  fe.stop();
  fe.disconnect();
  backend.stop();
  std::filesystem::remove_all(dir);
}

// A page that is answered, used, INVALIDATEd and needed again (strict mode
// reuses a page within microseconds) is asked for at once: the lcore's
// per-page throttle (kMissRetry) does not outlive an INVALIDATE. Here the
// test thread is the lcore, so the post is seen synchronously in the
// port's counters. (Were the two misses more than kMissRetry apart, the
// throttle would have expired anyway and this could not tell.)
TEST(VhostUserIotlb, APageNeededAgainAfterItsInvalidateIsAskedForAtOnce) {
  OnePort rig("vxlate-iotlb2-", false);
  Rcu& rcu = rig.rcu;
  Port& port = *rig.port;
  VhostUserFrontendOptions o;
  o.path = rig.path();
  IommuFrontend guest_side(o);
  VhostUserFrontend& fe = *guest_side.fe;
  const VhostUserDmaArea rx_pool = guest_side.rx_pool;
  const uint64_t rx_iova = guest_side.rx_iova;
  ASSERT_EQ(fe.post_rx(0, 64), 64u);
  const uint32_t reader = rcu.register_reader();
  rcu.online(reader);
  rte_mbuf* m = small_frame();
  ASSERT_NE(m, nullptr);
  auto deliver = [&] { return deliver_serving_misses(rcu, reader, port, fe, m); };
  ASSERT_TRUE(deliver()) << "the first frame, its buffer page asked for and answered";
  size_t got = 0;
  fe.poll_rx(0, [&](std::span<const uint8_t>) { ++got; });
  EXPECT_EQ(got, 1u);
  rcu.offline(reader);
  ASSERT_TRUE(fe.unmap(rx_iova, rx_pool.bytes));  // INVALIDATE, acked after the grace period
  fe.map(rx_iova, rx_pool.gpa, rx_pool.bytes, rx_pool.perm);
  rcu.online(reader);
  const uint64_t posts = port.pair_stats(0).miss_posts;
  EXPECT_EQ(port.enqueue_burst(reader, 0, &m, 1), 0) << "the next buffer shares the invalidated page";
  EXPECT_EQ(port.pair_stats(0).miss_posts, posts + 1) << "asked for again at once, not after kMissRetry";
  ASSERT_TRUE(deliver());
  rte_pktmbuf_free(m);
  rcu.offline(reader);
  rcu.unregister_reader(reader);
  fe.stop();
  fe.disconnect();
}

// rx_out_of_order: receive buffers that miss are set aside and the frames go
// on into the ones behind them. The front end's receive buffers are posted
// from the top of their pool down and the upper half is never mapped in its
// IOMMU, so the first 32 buffers the back end sees never translate: the
// frames go past them (in order, no frame could be delivered at all), and
// the stop (GET_VRING_BASE) gives them back empty, so that every buffer the
// back end consumed (the base it reports) came back to the driver.
TEST(VhostUserIotlb, RxOutOfOrderGoesPastMissingBuffersAndReturnsThemEmptyAtStop) {
  OnePort rig("vxlate-iotlb3-", true);
  Rcu& rcu = rig.rcu;
  Port& port = *rig.port;
  VhostUserFrontendOptions o;
  o.path = rig.path();
  o.mrg_rxbuf = false;
  IommuFrontend guest_side(o);
  VhostUserFrontend& fe = *guest_side.fe;
  const VhostUserDmaArea rx_pool = guest_side.rx_pool;
  const uint64_t half = rx_pool.bytes / 2;
  ASSERT_EQ(half % VhostUserFrontend::kPageSize, 0u);
  ASSERT_TRUE(fe.unmap(guest_side.rx_iova + half, half));  // no lcore yet: acked at once
  ASSERT_EQ(fe.post_rx(0, 64), 64u);
  const uint32_t reader = rcu.register_reader();
  rcu.online(reader);
  rte_mbuf* m = small_frame();
  ASSERT_NE(m, nullptr);
  auto deliver = [&] { return deliver_serving_misses(rcu, reader, port, fe, m); };
  for (int i = 0; i < 32; ++i) ASSERT_TRUE(deliver()) << "frame " << i;
  EXPECT_GE(port.stats().rx_parked, 32u) << "the unmapped half, and the rest until their UPDATEs";
  EXPECT_EQ(port.enqueue_burst(reader, 0, &m, 1), 0) << "only buffers that never translate are left";
  rte_pktmbuf_free(m);
  rcu.offline(reader);
  rcu.unregister_reader(reader);

  const std::vector<uint32_t> bases = fe.stop();
  const PortStats st = port.stats();
  EXPECT_EQ(st.rx_parked_lost, 0u);
  EXPECT_GT(st.rx_parked_returned, 0u);
  EXPECT_LE(st.rx_parked_returned, 32u);
  for (int i = 0; i < 2; ++i) fe.poll_rx(0, [](std::span<const uint8_t>) {});
  const load::VhostUserPairStats& ps = fe.pair_stats(0);
  EXPECT_EQ(ps.rx_frames, 32u);
  EXPECT_EQ(ps.rx_errors, st.rx_parked_returned) << "the set-aside buffers came back empty";
  EXPECT_EQ(ps.rx_buffers, bases.at(0)) << "every buffer the back end consumed came back";
  EXPECT_EQ(st.rx_dropped, 0u);
  EXPECT_EQ(st.bad_chains, 0u);
  fe.disconnect();
}

INSTANTIATE_TEST_SUITE_P(Misses, VhostUserIotlbTest,
                         ::testing::Values(Params{0, false}, Params{3, false}, Params{3, true}),
                         [](const ::testing::TestParamInfo<Params>& p) {
                           return std::string(p.param.drop_every_nth_miss ? "SomeUnanswered" : "AllAnswered") +
                                  (p.param.rx_out_of_order ? "OutOfOrder" : "");
                         });

}  // namespace
}  // namespace vxlate::dataplane::vhost_user
