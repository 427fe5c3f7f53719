#include "vxlate/common/rcu.h"

#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <stdexcept>
#include <thread>
#include <vector>

namespace vxlate {
namespace {

TEST(Rcu, RegistersDenseIds) {
  Rcu rcu(3);
  EXPECT_EQ(rcu.register_reader(), 0u);
  EXPECT_EQ(rcu.register_reader(), 1u);
  EXPECT_EQ(rcu.register_reader(), 2u);
  EXPECT_THROW(rcu.register_reader(), std::length_error);
  rcu.unregister_reader(1);
  EXPECT_EQ(rcu.register_reader(), 1u);
  EXPECT_THROW(Rcu(0), std::invalid_argument);
}

TEST(Rcu, CheckWaitsForOnlineReaderOnly) {
  Rcu rcu(2);
  const uint32_t id = rcu.register_reader();
  // Offline readers never hold a grace period.
  EXPECT_TRUE(rcu.check(rcu.start()));
  rcu.online(id);
  const uint64_t t = rcu.start();
  EXPECT_FALSE(rcu.check(t));
  rcu.quiescent(id);
  EXPECT_TRUE(rcu.check(t));
  const uint64_t t2 = rcu.start();
  EXPECT_FALSE(rcu.check(t2));
  rcu.offline(id);
  EXPECT_TRUE(rcu.check(t2));
  rcu.unregister_reader(id);
}

TEST(Rcu, SynchronizeAsReaderDoesNotWaitOnItself) {
  Rcu rcu(1);
  const uint32_t id = rcu.register_reader();
  rcu.online(id);
  rcu.synchronize(id);  // would never return if it waited on `id`
  rcu.offline(id);
  rcu.unregister_reader(id);
}

struct Counted {
  std::atomic<int>* freed;
};

void free_counted(void* ctx, void* ptr, uintptr_t tag) noexcept {
  auto* c = static_cast<Counted*>(ptr);
  c->freed->fetch_add(static_cast<int>(tag), std::memory_order_relaxed);
  delete c;
  (void)ctx;
}

TEST(RcuDeferQueue, FreesOnlyAfterGracePeriod) {
  Rcu rcu(1);
  std::atomic<int> freed{0};
  RcuDeferQueue dq(rcu, &free_counted, nullptr);
  const uint32_t id = rcu.register_reader();
  rcu.online(id);
  dq.retire(new Counted{&freed}, 1);
  dq.retire(new Counted{&freed}, 10);
  EXPECT_EQ(dq.reclaim(), 0u);
  EXPECT_EQ(freed.load(), 0);
  rcu.quiescent(id);
  EXPECT_EQ(dq.reclaim(), 2u);
  EXPECT_EQ(freed.load(), 11);
  dq.retire(new Counted{&freed}, 100);
  rcu.offline(id);
  dq.drain();
  EXPECT_EQ(freed.load(), 111);
  dq.retire(new Counted{&freed}, 1000);  // freed by the destructor (teardown)
  rcu.unregister_reader(id);
}

// A reader holds an object between two quiescent reports; the writer swaps the
// pointer, synchronizes, and poisons the old object. The reader must never see
// the poison while it holds the pointer. Coalesced: the readers report busy
// bursts through quiescent_busy() (k = 4 and 64), or paced through
// quiescent_paced() (a gap of 4 and 64 on a clock that counts bursts), and
// every 100th through quiescent(), as an idle iteration would.
enum class Busy { kEvery, kCoalesced, kPaced };

void synchronize_covers_every_read_section(Busy busy) {
  struct Obj {
    std::atomic<uint64_t> value;
  };
  constexpr int kReaders = 2;
  constexpr int kSwaps = 300;
  constexpr uint64_t kPoison = ~uint64_t{0};
  Rcu rcu(kReaders);
  std::atomic<Obj*> current{new Obj{{1}}};
  std::atomic<bool> stop{false};
  std::atomic<long> violations{0};
  std::barrier start(kReaders + 1);
  std::vector<std::thread> readers;
  for (int r = 0; r < kReaders; ++r) {
    readers.emplace_back([&, r] {
      const uint32_t id = rcu.register_reader();
      const uint32_t k = r == 0 ? 4 : 64;
      rcu.online(id);
      start.arrive_and_wait();
      for (uint64_t burst = 0; !stop.load(std::memory_order_relaxed); ++burst) {
        Obj* o = current.load(std::memory_order_acquire);  // pairs with the writer's release
        for (int i = 0; i < 16; ++i)
          if (o->value.load(std::memory_order_relaxed) == kPoison) violations.fetch_add(1);
        if (busy == Busy::kEvery || burst % 100 == 99)
          rcu.quiescent(id);
        else if (busy == Busy::kCoalesced)
          rcu.quiescent_busy(id, k);
        else  // paced on the burst count as the clock: k bursts between acknowledgements
          rcu.quiescent_paced(id, k, [burst] { return burst; });
      }
      rcu.offline(id);
      rcu.unregister_reader(id);
    });
  }
  start.arrive_and_wait();
  for (int i = 0; i < kSwaps; ++i) {
    Obj* fresh = new Obj{{static_cast<uint64_t>(i + 2)}};
    Obj* old = current.exchange(fresh, std::memory_order_acq_rel);
    rcu.synchronize();
    old->value.store(kPoison, std::memory_order_relaxed);
    delete old;
  }
  stop.store(true);
  for (auto& t : readers) t.join();
  delete current.load();
  EXPECT_EQ(violations.load(), 0);
}

TEST(Rcu, SynchronizeCoversEveryReadSection) { synchronize_covers_every_read_section(Busy::kEvery); }

TEST(Rcu, SynchronizeCoversEveryReadSectionWithCoalescedReports) {
  synchronize_covers_every_read_section(Busy::kCoalesced);
}

TEST(Rcu, SynchronizeCoversEveryReadSectionWithPacedReports) { synchronize_covers_every_read_section(Busy::kPaced); }

TEST(Rcu, SynchronizeLeavesAnOfflineSelfOffline) {
  Rcu rcu(2);
  const uint32_t self = rcu.register_reader();
  rcu.synchronize(self);  // the caller names itself but is offline
  EXPECT_FALSE(rcu.is_online(self)) << "a quiescent report brought an offline reader online";
  // ... so another writer's grace period does not wait for it.
  EXPECT_TRUE(rcu.check(rcu.start()));
}

// Runs f on a thread; fails the test (and ends the process, since the thread
// cannot be cancelled) when it has not returned after 10 s.
template <typename F>
void returns_in_time(F&& f) {
  auto done = std::async(std::launch::async, std::forward<F>(f));
  if (done.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    std::fprintf(stderr, "deadlock: a blocking writer call by an online reader waited on itself\n");
    std::_Exit(1);
  }
  done.get();
}

TEST(Rcu, BlockingWriterCallsFromAnOnlineReaderDoNotWaitOnIt) {
  Rcu rcu(2);
  returns_in_time([&] {
    const uint32_t id = rcu.register_reader();
    rcu.online(id);
    rcu.synchronize();           // no self id given: the thread is recognised
    rcu.wait(rcu.start());
    EXPECT_TRUE(rcu.is_online(id));
    rcu.offline(id);
  });
}

// Clients run on every report that acknowledges a token new to the reader,
// and on every online(); a report that finds the token it acknowledged last
// has nothing to apply and runs none.
TEST(Rcu, ClientsRunOnEveryNewTokenAndOnline) {
  struct Counting : RcuClient {
    std::atomic<int> online{0}, quiescent{0};
    void rcu_online(uint32_t) noexcept override { online.fetch_add(1, std::memory_order_relaxed); }
    void rcu_quiescent(uint32_t) noexcept override { quiescent.fetch_add(1, std::memory_order_relaxed); }
  };
  Rcu rcu(2);
  Counting a, b;
  rcu.attach(a);
  rcu.attach(b);
  const uint32_t id = rcu.register_reader();
  rcu.online(id);
  rcu.quiescent(id);
  EXPECT_EQ(a.quiescent.load(), 0) << "no token since online(): nothing to apply";
  rcu.synchronize(id);
  EXPECT_EQ(a.online.load(), 1);
  EXPECT_EQ(b.online.load(), 1);
  EXPECT_EQ(a.quiescent.load(), 1) << "one new token, one run";
  EXPECT_EQ(a.quiescent.load(), b.quiescent.load());
  rcu.quiescent(id);
  EXPECT_EQ(a.quiescent.load(), 1);
  (void)rcu.start();
  rcu.quiescent(id);
  EXPECT_EQ(a.quiescent.load(), 2);
  EXPECT_EQ(b.quiescent.load(), 2);
  rcu.offline(id);
  rcu.detach(a);
  rcu.online(id);
  EXPECT_EQ(a.online.load(), 1) << "a detached client is not run";
  EXPECT_EQ(b.online.load(), 2);
  rcu.offline(id);
  rcu.detach(b);
}

// A client that counts the quiescent reports it is run in (one reader thread).
struct CountingClient : RcuClient {
  int quiescent = 0;
  void rcu_online(uint32_t) noexcept override {}
  void rcu_quiescent(uint32_t) noexcept override { ++quiescent; }
};

TEST(Rcu, BusyReportsAcknowledgeOnTheKthPendingReport) {
  Rcu rcu(1);
  CountingClient c;
  rcu.attach(c);
  const uint32_t id = rcu.register_reader();
  rcu.online(id);
  // No token pending: busy reports count nothing.
  for (int i = 0; i < 5; ++i) rcu.quiescent_busy(id, 3);
  const uint64_t t1 = rcu.start();
  rcu.quiescent_busy(id, 3);
  rcu.quiescent_busy(id, 3);
  EXPECT_FALSE(rcu.check(t1)) << "two busy reports of three";
  EXPECT_EQ(c.quiescent, 0) << "nothing applied before the acknowledgement";
  const uint64_t t2 = rcu.start();  // a newer token while one is pending
  rcu.quiescent_busy(id, 3);
  EXPECT_TRUE(rcu.check(t2)) << "the third acknowledges the newest token";
  EXPECT_EQ(c.quiescent, 1);
  // The count starts over after an acknowledgement.
  const uint64_t t3 = rcu.start();
  rcu.quiescent_busy(id, 3);
  rcu.quiescent_busy(id, 3);
  EXPECT_FALSE(rcu.check(t3));
  // An idle report acknowledges at once, and resets the count.
  rcu.quiescent(id);
  EXPECT_TRUE(rcu.check(t3));
  EXPECT_EQ(c.quiescent, 2);
  const uint64_t t4 = rcu.start();
  rcu.quiescent_busy(id, 3);
  rcu.quiescent_busy(id, 3);
  EXPECT_FALSE(rcu.check(t4)) << "the idle report reset the count";
  // Going offline releases the writer; online starts the count over.
  rcu.offline(id);
  EXPECT_TRUE(rcu.check(t4));
  rcu.online(id);
  const uint64_t t5 = rcu.start();
  rcu.quiescent_busy(id, 3);
  rcu.quiescent_busy(id, 3);
  EXPECT_FALSE(rcu.check(t5));
  rcu.quiescent_busy(id, 3);
  EXPECT_TRUE(rcu.check(t5));
  // max_deferred 0 or 1: every busy report acknowledges.
  for (uint32_t k : {0u, 1u}) {
    const uint64_t t = rcu.start();
    rcu.quiescent_busy(id, k);
    EXPECT_TRUE(rcu.check(t)) << "max_deferred " << k;
  }
  EXPECT_EQ(c.quiescent, 5);
  rcu.offline(id);
  rcu.unregister_reader(id);
  rcu.detach(c);
}

TEST(Rcu, PacedReportsAcknowledgeAfterAQuietSpellAndThenOncePerGap) {
  Rcu rcu(1);
  CountingClient c;
  rcu.attach(c);
  const uint32_t id = rcu.register_reader();
  rcu.online(id);
  uint64_t now = 1000;
  int reads = 0;
  auto clock = [&] {
    ++reads;
    return now;
  };
  constexpr uint64_t kGap = 100;
  // No token pending: no clock read, nothing applied.
  for (int i = 0; i < 5; ++i) rcu.quiescent_paced(id, kGap, clock);
  EXPECT_EQ(reads, 0);
  // A grace period after a quiet spell: acknowledged on the first report.
  const uint64_t t1 = rcu.start();
  rcu.quiescent_paced(id, kGap, clock);
  EXPECT_TRUE(rcu.check(t1));
  EXPECT_EQ(c.quiescent, 1);
  EXPECT_EQ(reads, 1);
  // The next one comes within the gap: deferred, the clock read on pending
  // reports 1, 2, 4 and 8 only.
  const uint64_t t2 = rcu.start();
  reads = 0;
  for (int i = 0; i < 10; ++i) {
    now += 5;
    rcu.quiescent_paced(id, kGap, clock);
  }
  EXPECT_FALSE(rcu.check(t2)) << "50 of a gap of 100";
  EXPECT_EQ(c.quiescent, 1) << "nothing applied before the acknowledgement";
  EXPECT_EQ(reads, 4);
  // Past the gap: acknowledged on the next report that reads the clock
  // (the 16th), and a newer token is taken with it.
  now += 60;
  const uint64_t t3 = rcu.start();
  for (int i = 0; i < 5; ++i) rcu.quiescent_paced(id, kGap, clock);
  EXPECT_FALSE(rcu.check(t3)) << "reports 11-15 do not read the clock";
  rcu.quiescent_paced(id, kGap, clock);
  EXPECT_TRUE(rcu.check(t3));
  EXPECT_EQ(c.quiescent, 2);
  EXPECT_EQ(reads, 5);
  // An idle report acknowledges at once, whatever the gap.
  const uint64_t t4 = rcu.start();
  rcu.quiescent_paced(id, kGap, clock);
  EXPECT_FALSE(rcu.check(t4)) << "just acknowledged";
  rcu.quiescent(id);
  EXPECT_TRUE(rcu.check(t4));
  // So does going offline; a gap of 0 acknowledges on every report.
  const uint64_t t5 = rcu.start();
  rcu.quiescent_paced(id, kGap, clock);
  EXPECT_FALSE(rcu.check(t5));
  rcu.offline(id);
  EXPECT_TRUE(rcu.check(t5));
  rcu.online(id);
  const uint64_t t6 = rcu.start();
  rcu.quiescent_paced(id, 0, clock);
  EXPECT_TRUE(rcu.check(t6));
  // A clock that moved backwards (or wrapped) reads as a long gap: it
  // acknowledges rather than defers without bound.
  now -= 10;
  const uint64_t t7 = rcu.start();
  rcu.quiescent_paced(id, kGap, clock);
  EXPECT_TRUE(rcu.check(t7));
  rcu.offline(id);
  rcu.unregister_reader(id);
  rcu.detach(c);
}

}  // namespace
}  // namespace vxlate
