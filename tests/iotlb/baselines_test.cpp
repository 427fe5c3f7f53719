// Tests of the baseline IOTLBs in bench/iotlb/baselines: one typed suite runs every
// impl through hits, misses, permission faults, invalidation, capacity, a
// randomised comparison against a reference model, and a concurrent check.
//
// Invariants:
//   - a hit is exactly a translation the reference model holds (right host address
//     for the byte, the entry's perm, a perm that grants `need`);
//   - translate_burst() returns the number of results with perm != 0;
//   - invalidate() removes every translation overlapping the range: whole entries
//     for the range-granular impls, the overlapping pages for the page-granular ones;
//   - bounded impls never hold more than their capacity; unbounded ones drop nothing;
//   - with readers running, no hit comes from a translation that an invalidate()
//     had removed before the lookup started, and every hit decodes to an insert that
//     was made for that IOVA.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "baselines/array_index.h"
#include "baselines/baseline.h"
#include "baselines/shared_mutex_map.h"
#include "baselines/shared_versioned.h"
#include "baselines/sorted_list_rwlock.h"
#include "baselines/tbb_hash_map.h"

namespace vxlate::bench {
namespace {

constexpr uint64_t kPage = kBaselinePageSize;
// Lowest page every test inserts first, so it is array_index's window base.
constexpr uint64_t kBase = uint64_t{1} << 32;
constexpr size_t kCapacity = 4096;
// Host address = iova + kOffset in the deterministic tests.
constexpr uint64_t kOffset = uint64_t{1} << 44;
constexpr uint64_t kNoOut = ~uint64_t{0};

// Impls whose entries are ranges: invalidate() drops an overlapped entry whole.
template <class T>
constexpr bool kWholeEntries =
    std::is_same_v<T, SortedListRwlock> || std::is_same_v<T, SharedMutexMap>;
// Impls with a bounded number of entries (eviction or a fixed window).
template <class T>
constexpr bool kBounded = std::is_same_v<T, SortedListRwlock> ||
                          std::is_same_v<T, SharedVersioned> || std::is_same_v<T, ArrayIndex>;

// True where `T` (built with `capacity`, first insert at kBase) keeps every page the
// reference model holds: no eviction, no whole-entry removal.
template <class T>
bool keeps_everything(uint64_t page, size_t capacity) {
  if constexpr (std::is_same_v<T, TbbHashMap>) return true;
  if constexpr (std::is_same_v<T, ArrayIndex>) return page - kBase / kPage < capacity;
  return false;
}

template <class C>
BaselineTranslation translate_one(C& cache, uint64_t iova, uint8_t need) {
  const uint64_t iovas[1] = {iova};
  BaselineTranslation t{kNoOut, 0xff};
  const size_t n = cache.translate_burst(iovas, need, &t);
  EXPECT_EQ(n, t.perm != 0 ? 1u : 0u) << std::hex << "iova 0x" << iova;
  return t;
}

struct ImplNames {
  template <class T>
  static std::string GetName(int) {
    return T::kName;
  }
};

template <class T>
class BaselineTest : public ::testing::Test {
 protected:
  void expect_hit(uint64_t iova, uint8_t need, uint64_t out, uint8_t perm) {
    const BaselineTranslation t = translate_one(cache_, iova, need);
    EXPECT_EQ(t.perm, perm) << std::hex << "iova 0x" << iova << " need " << int{need};
    EXPECT_EQ(t.out, out) << std::hex << "iova 0x" << iova << " need " << int{need};
  }
  void expect_miss(uint64_t iova, uint8_t need = kPermRead) {
    EXPECT_EQ(translate_one(cache_, iova, need).perm, 0)
        << std::hex << "iova 0x" << iova << " need " << int{need};
  }
  // Every needed permission on three bytes of each page of [iova, iova + size).
  void expect_range(uint64_t iova, uint64_t size, uint8_t perm) {
    for (uint64_t off = 0; off < size; off += kPage) {
      for (uint64_t byte : {uint64_t{0}, uint64_t{123}, kPage - 1}) {
        const uint64_t a = iova + off + byte;
        for (uint8_t need : {kPermRead, kPermWrite, kPermReadWrite}) {
          if (perm_allows(perm, need)) {
            expect_hit(a, need, a + kOffset, perm);
          } else {
            expect_miss(a, need);
          }
        }
      }
    }
  }
  void expect_range_miss(uint64_t iova, uint64_t size) {
    for (uint64_t off = 0; off < size; off += kPage) {
      expect_miss(iova + off);
      expect_miss(iova + off + kPage - 1, kPermWrite);
    }
  }
  void insert(uint64_t iova, uint64_t size, uint8_t perm) {
    cache_.insert(iova, size, iova + kOffset, perm);
  }

  T cache_{kCapacity};
};

using Impls =
    ::testing::Types<SortedListRwlock, TbbHashMap, SharedMutexMap, ArrayIndex, SharedVersioned>;
TYPED_TEST_SUITE(BaselineTest, Impls, ImplNames);

// Three ranges, one per permission, with gaps between them.
constexpr uint64_t kA = kBase;               // 4 pages RW
constexpr uint64_t kB = kBase + 8 * kPage;   // 2 pages RO
constexpr uint64_t kC = kBase + 16 * kPage;  // 1 page WO

TYPED_TEST(BaselineTest, HitsMissesAndPermissionFaults) {
  this->expect_miss(kA);  // empty cache
  this->insert(kA, 4 * kPage, kPermReadWrite);
  this->insert(kB, 2 * kPage, kPermRead);
  this->insert(kC, 1 * kPage, kPermWrite);
  this->expect_range(kA, 4 * kPage, kPermReadWrite);
  this->expect_range(kB, 2 * kPage, kPermRead);
  this->expect_range(kC, 1 * kPage, kPermWrite);
  for (uint64_t iova : {uint64_t{0}, kA - 1, kA + 4 * kPage, kB - 1, kB + 2 * kPage, kC + kPage,
                        kBase + 100 * kPage, kBase + 100000 * kPage, ~uint64_t{0}}) {
    this->expect_miss(iova, kPermRead);
    this->expect_miss(iova, kPermWrite);
  }
}

TYPED_TEST(BaselineTest, BurstCountsAndFillsEverySlot) {
  this->insert(kA, 4 * kPage, kPermReadWrite);
  this->insert(kB, 2 * kPage, kPermRead);
  const std::vector<uint64_t> iovas = {
      kA + 5, kB + 7, kA + 5 * kPage, kB + kPage + 9, kA + 3 * kPage + 1, kC, kBase - 1};
  const bool hit_on_write[] = {true, false, false, false, true, false, false};
  std::vector<BaselineTranslation> out(iovas.size(), BaselineTranslation{kNoOut, 0xff});
  EXPECT_EQ(this->cache_.translate_burst(iovas, kPermWrite, out.data()), 2u);
  for (size_t i = 0; i < iovas.size(); ++i) {
    if (hit_on_write[i]) {
      EXPECT_EQ(out[i].perm, kPermReadWrite) << i;
      EXPECT_EQ(out[i].out, iovas[i] + kOffset) << i;
    } else {
      EXPECT_EQ(out[i].perm, 0) << i;
    }
  }
  EXPECT_EQ(this->cache_.translate_burst(iovas, kPermRead, out.data()), 4u);
  EXPECT_EQ(this->cache_.translate_burst(std::span<const uint64_t>(), kPermRead, out.data()), 0u);
}

TYPED_TEST(BaselineTest, InvalidateRemovesExactlyTheOverlappingTranslations) {
  this->insert(kA, 4 * kPage, kPermReadWrite);
  this->insert(kB, 2 * kPage, kPermRead);
  this->insert(kC, 1 * kPage, kPermWrite);
  // Unaligned: overlaps the last page of A and both pages of B, touches neither C
  // nor the gaps.
  this->cache_.invalidate(kA + 3 * kPage + 100, 6 * kPage);
  this->expect_range_miss(kA + 3 * kPage, kPage);
  this->expect_range_miss(kB, 2 * kPage);
  this->expect_range(kC, kPage, kPermWrite);
  if constexpr (kWholeEntries<TypeParam>) {
    this->expect_range_miss(kA, 3 * kPage);  // A overlapped, so dropped whole
  } else {
    this->expect_range(kA, 3 * kPage, kPermReadWrite);
  }
  // One byte is enough to overlap.
  this->cache_.invalidate(kC + kPage - 1, 1);
  this->expect_range_miss(kC, kPage);
  // Size 0 and a wrapping range remove nothing.
  this->insert(kC, kPage, kPermWrite);
  this->cache_.invalidate(kC, 0);
  this->cache_.invalidate(kC, ~uint64_t{0});
  this->expect_range(kC, kPage, kPermWrite);
  // Re-insert after invalidate takes the new translation.
  this->cache_.invalidate(kA, kPage);
  this->cache_.insert(kA, kPage, kA + 2 * kOffset, kPermRead);
  this->expect_hit(kA + 7, kPermRead, kA + 7 + 2 * kOffset, kPermRead);
}

TYPED_TEST(BaselineTest, InvalidateOfAHugeRange) {
  constexpr uint64_t kPages = 64;
  for (uint64_t p = 0; p < kPages; p += 2) this->insert(kBase + p * kPage, kPage, kPermRead);
  // Far more pages than the cache has entries: the scanning paths.
  this->cache_.invalidate(kBase + 32 * kPage, uint64_t{1} << 40);
  for (uint64_t p = 0; p < kPages; p += 2) {
    if (p < 32) {
      this->expect_range(kBase + p * kPage, kPage, kPermRead);
    } else {
      this->expect_range_miss(kBase + p * kPage, kPage);
    }
  }
  this->cache_.invalidate(0, ~uint64_t{0});  // [0, 2^64 - 1): everything
  for (uint64_t p = 0; p < kPages; ++p) this->expect_miss(kBase + p * kPage);
}

TYPED_TEST(BaselineTest, CapacityIsRespected) {
  constexpr size_t kSmall = 64;
  constexpr uint64_t kPages = 1024;
  TypeParam cache(kSmall);
  for (uint64_t p = 0; p < kPages; ++p) {
    const uint64_t iova = kBase + p * kPage;
    cache.insert(iova, kPage, iova + kOffset, kPermReadWrite);
    // The newest insert always lands, except outside array_index's window.
    if (!std::is_same_v<TypeParam, ArrayIndex> || p < kSmall) {
      EXPECT_EQ(translate_one(cache, iova, kPermWrite).out, iova + kOffset) << p;
    }
  }
  size_t hits = 0;
  for (uint64_t p = 0; p < kPages; ++p) {
    const uint64_t iova = kBase + p * kPage + 42;
    const BaselineTranslation t = translate_one(cache, iova, kPermRead);
    if (t.perm == 0) continue;
    ++hits;
    EXPECT_EQ(t.out, iova + kOffset);
  }
  if constexpr (kBounded<TypeParam>) {
    EXPECT_LE(hits, kSmall);
    EXPECT_GT(hits, 0u);
  } else {
    EXPECT_EQ(hits, kPages);  // capacity is only a hint
  }
  if constexpr (std::is_same_v<TypeParam, SortedListRwlock> ||
                std::is_same_v<TypeParam, ArrayIndex>) {
    EXPECT_EQ(hits, kSmall);  // a full pool; a full window
  }
}

// Random inserts and invalidations against a per-page reference model. Inserts go
// only where the reference holds nothing (vhost-user invalidates before it updates),
// so every impl's contents are a subset of the reference.
TYPED_TEST(BaselineTest, RandomOpsMatchReferenceModel) {
  constexpr size_t kSmall = 128;     // small, so eviction and set conflicts happen
  constexpr uint64_t kWindow = 512;  // pages
  constexpr int kOps = 20000;
  struct Ref {
    uint64_t uaddr_page;
    uint8_t perm;
  };
  TypeParam cache(kSmall);
  std::map<uint64_t, Ref> ref;  // page -> translation
  std::mt19937_64 rng(7);
  auto rand = [&rng](uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng); };
  cache.insert(kBase, kPage, 0, kPermRead);  // fixes array_index's base
  cache.invalidate(kBase, kPage);

  auto check = [&](int op) {
    for (uint64_t page = kBase / kPage - 2; page < kBase / kPage + kWindow + 2; ++page) {
      const uint64_t iova = page * kPage + rand(kPage);
      const auto need = static_cast<uint8_t>(1 + rand(3));
      const BaselineTranslation t = translate_one(cache, iova, need);
      const auto it = ref.find(page);
      const bool allowed = it != ref.end() && perm_allows(it->second.perm, need);
      if (t.perm != 0) {
        ASSERT_TRUE(allowed) << "op " << op << std::hex << " iova 0x" << iova;
        EXPECT_EQ(t.perm, it->second.perm) << "op " << op;
        EXPECT_EQ(t.out, it->second.uaddr_page + iova % kPage) << "op " << op;
      } else if (allowed) {
        EXPECT_FALSE(keeps_everything<TypeParam>(page, kSmall))
            << "op " << op << std::hex << " iova 0x" << iova;
      }
    }
  };

  for (int op = 0; op < kOps; ++op) {
    const uint64_t first = kBase / kPage + rand(kWindow);
    const uint64_t r = rand(100);
    if (r < 55) {
      const uint64_t n = std::min<uint64_t>(1 + rand(8), kBase / kPage + kWindow - first);
      const auto lo = ref.lower_bound(first);
      if (lo != ref.end() && lo->first < first + n) {
        // Occupied: invalidate it first, as the VMM would.
        cache.invalidate(first * kPage, n * kPage);
        ref.erase(lo, ref.lower_bound(first + n));
      } else {
        const uint64_t uaddr = rand(uint64_t{1} << 40) * kPage;
        const auto perm = static_cast<uint8_t>(1 + rand(3));
        cache.insert(first * kPage, n * kPage, uaddr, perm);
        for (uint64_t i = 0; i < n; ++i) ref[first + i] = {uaddr + i * kPage, perm};
      }
    } else if (r < 98) {
      // Byte-granular: any overlapped page goes.
      const uint64_t iova = first * kPage + rand(kPage);
      const uint64_t size = 1 + rand(16 * kPage);
      cache.invalidate(iova, size);
      ref.erase(ref.lower_bound(iova / kPage), ref.upper_bound((iova + size - 1) / kPage));
    } else {
      // More pages than entries: the scanning paths.
      const uint64_t n = 200 + rand(400);
      cache.invalidate(first * kPage, n * kPage);
      ref.erase(ref.lower_bound(first), ref.lower_bound(first + n));
    }
    if (op % 97 == 0) {
      check(op);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
  check(kOps);
}

TEST(SortedListRwlock, EvictsARandomEntryWhenThePoolIsFull) {
  static_assert(SortedListRwlock::kDpdkCacheSize == 2048);
  constexpr size_t kPool = 8;
  constexpr uint64_t kInserts = 40;
  SortedListRwlock cache(kPool);
  std::vector<uint64_t> order(kInserts);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(3));
  for (uint64_t p : order) {
    const uint64_t iova = kBase + 3 * p * kPage;
    cache.insert(iova, 2 * kPage, iova + kOffset, kPermRead);
    EXPECT_LE(cache.size(), kPool);
    EXPECT_EQ(translate_one(cache, iova + kPage, kPermRead).out, iova + kPage + kOffset);
  }
  EXPECT_EQ(cache.size(), kPool);
  size_t hits = 0;
  std::vector<uint64_t> kept;
  for (uint64_t p = 0; p < kInserts; ++p) {
    const uint64_t iova = kBase + 3 * p * kPage + 5;
    const BaselineTranslation t = translate_one(cache, iova, kPermRead);
    if (t.perm == 0) continue;
    ++hits;
    kept.push_back(p);
    EXPECT_EQ(t.out, iova + kOffset);
  }
  EXPECT_EQ(hits, kPool);
  // Random, not FIFO or LRU: some survivor is not among the last kPool inserted.
  std::vector<uint64_t> newest(order.end() - kPool, order.end());
  std::sort(newest.begin(), newest.end());
  EXPECT_NE(kept, newest);
  // Invalidating everything gives every node back to the pool.
  cache.invalidate(0, ~uint64_t{0});
  EXPECT_EQ(cache.size(), 0u);
  for (uint64_t p = 0; p < kPool; ++p) cache.insert(kBase + p * kPage, kPage, kOffset, kPermRead);
  EXPECT_EQ(cache.size(), kPool);
}

TEST(SortedListRwlock, KeepsTheFirstEntryForAnIova) {
  // DPDK: an update for a cached iova is assumed identical and dropped.
  SortedListRwlock cache(16);
  cache.insert(kBase, kPage, kOffset, kPermRead);
  cache.insert(kBase, kPage, 2 * kOffset, kPermReadWrite);
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(translate_one(cache, kBase + 1, kPermRead).out, kOffset + 1);
  EXPECT_EQ(translate_one(cache, kBase + 1, kPermWrite).perm, 0);
}

// Concurrent: one writer inserts and invalidates page-aligned ranges in a window
// while two readers translate bursts. Every insert gets a fresh generation encoded
// in its host address (uaddr = iova + gen << kGenShift) and its perm (perm_of(gen)),
// so a reader can tell which insert a hit came from. After an invalidate returns,
// the writer raises dead_below of each page in the range above every generation
// issued so far (release); a reader loads it (acquire) before the burst, so a hit
// from an older generation is a translation used after its invalidate completed.
template <class T>
class ConcurrentCheck {
 public:
  static constexpr size_t kSmall = 128;      // eviction and set conflicts under load
  static constexpr uint64_t kWindow = 256;   // pages
  static constexpr unsigned kGenShift = 36;  // above every iova used here
  static constexpr int kReaders = 2;
  static constexpr size_t kBurst = 32;
  // The writer runs for kWriterTime and at least kMinWriterOps operations. Lock-based
  // impls can starve it (glibc's rwlock prefers readers) when threads outnumber
  // cores, so a fixed operation count would make the run time unbounded.
  static constexpr std::chrono::milliseconds kWriterTime{500};
  static constexpr uint64_t kMinWriterOps = 2000;
  static constexpr uint64_t kMinBursts = 200;

  static uint8_t perm_of(uint64_t gen) { return static_cast<uint8_t>(1 + gen % 3); }

  void run() {
    // Fixes array_index's base before any reader runs.
    cache_.insert(kBase, kPage, kBase, kPermRead);
    cache_.invalidate(kBase, kPage);
    std::barrier start(kReaders + 1);
    std::vector<std::thread> readers;
    std::vector<ReaderResult> results(kReaders);
    for (int r = 0; r < kReaders; ++r) {
      readers.emplace_back([this, &start, &results, r] {
        start.arrive_and_wait();
        results[r] = read(static_cast<uint64_t>(r) + 1);
      });
    }
    start.arrive_and_wait();
    const uint64_t ops = write();
    done_.store(true, std::memory_order_release);  // release: pairs with read()'s acquire
    for (auto& t : readers) t.join();
    ::testing::Test::RecordProperty("writer_ops", std::to_string(ops));
    for (int r = 0; r < kReaders; ++r) {
      EXPECT_EQ(results[r].bad, 0u) << "reader " << r << ": " << results[r].first_bad;
      EXPECT_GT(results[r].hits, 0u) << "reader " << r;
      EXPECT_GE(results[r].bursts, kMinBursts) << "reader " << r;
      ::testing::Test::RecordProperty(
          "reader" + std::to_string(r) + "_bursts_hits",
          std::to_string(results[r].bursts) + " " + std::to_string(results[r].hits));
    }
    cache_.invalidate(0, ~uint64_t{0});
    for (uint64_t p = 0; p < kWindow; ++p) {
      EXPECT_EQ(translate_one(cache_, kBase + p * kPage, kPermRead).perm, 0) << p;
    }
  }

 private:
  struct ReaderResult {
    uint64_t hits = 0;
    uint64_t bursts = 0;
    uint64_t bad = 0;
    std::string first_bad;
  };

  // Returns the number of operations done.
  uint64_t write() {
    std::mt19937_64 rng(11);
    auto rand = [&rng](uint64_t n) {
      return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng);
    };
    std::vector<bool> present(kWindow, false);  // writer's view: may be cached
    uint64_t gen = 0;
    auto invalidate = [&](uint64_t first, uint64_t n) {  // pages, clamped to the window
      cache_.invalidate(kBase + first * kPage, n * kPage);
      for (uint64_t p = first; p < std::min(first + n, kWindow); ++p) {
        present[p] = false;
        // release: the invalidate above happens-before any lookup that acquires this.
        dead_below_[p].store(gen + 1, std::memory_order_release);
      }
    };
    const auto deadline = std::chrono::steady_clock::now() + kWriterTime;
    uint64_t op = 0;
    for (; op < kMinWriterOps || std::chrono::steady_clock::now() < deadline; ++op) {
      const uint64_t first = rand(kWindow);
      const uint64_t r = rand(1000);
      if (r < 5) {
        invalidate(0, uint64_t{1} << 20);  // more pages than entries: the scanning paths
      } else if (r < 550) {
        const uint64_t n = std::min<uint64_t>(1 + rand(8), kWindow - first);
        if (std::any_of(present.begin() + first, present.begin() + first + n,
                        [](bool b) { return b; })) {
          invalidate(first, n);  // occupied: invalidate first, as the VMM would
        } else {
          ++gen;
          const uint64_t iova = kBase + first * kPage;
          cache_.insert(iova, n * kPage, iova + (gen << kGenShift), perm_of(gen));
          for (uint64_t p = first; p < first + n; ++p) present[p] = true;
        }
      } else {
        invalidate(first, 1 + rand(16));
      }
    }
    return op;
  }

  ReaderResult read(uint64_t seed) {
    ReaderResult res;
    std::mt19937_64 rng(seed);
    uint64_t iovas[kBurst];
    uint64_t dead[kBurst];
    BaselineTranslation out[kBurst];
    // acquire: pairs with the release store after write() returns.
    while (!done_.load(std::memory_order_acquire) || res.bursts < kMinBursts) {
      // One burst, one need: draw pages in [-4, kWindow + 4) around the window.
      const auto need = static_cast<uint8_t>(1 + rng() % 3);
      for (size_t i = 0; i < kBurst; ++i) {
        const uint64_t p = rng() % (kWindow + 8);
        iovas[i] = kBase - 4 * kPage + p * kPage + rng() % kPage;
        const uint64_t wp = p - 4;  // window page; wraps for pages below the window
        // acquire: pairs with the release store after invalidate() in write().
        dead[i] = wp < kWindow ? dead_below_[wp].load(std::memory_order_acquire) : 0;
      }
      const size_t n = cache_.translate_burst(iovas, need, out);
      size_t hits = 0;
      for (size_t i = 0; i < kBurst; ++i) {
        if (out[i].perm == 0) continue;
        ++hits;
        const uint64_t wp = (iovas[i] - kBase) / kPage;
        const uint64_t delta = out[i].out - iovas[i];
        const uint64_t g = delta >> kGenShift;
        const bool ok = iovas[i] >= kBase && wp < kWindow &&
                        (delta & ((uint64_t{1} << kGenShift) - 1)) == 0 && g != 0 && g >= dead[i] &&
                        out[i].perm == perm_of(g) && perm_allows(out[i].perm, need);
        if (!ok && res.bad++ == 0) {
          res.first_bad = "iova " + std::to_string(iovas[i]) + " out " +
                          std::to_string(out[i].out) + " perm " + std::to_string(out[i].perm) +
                          " gen " + std::to_string(g) + " dead_below " + std::to_string(dead[i]);
        }
      }
      if (n != hits && res.bad++ == 0) res.first_bad = "burst count " + std::to_string(n);
      res.hits += hits;
      ++res.bursts;
    }
    return res;
  }

  T cache_{kSmall};
  std::atomic<bool> done_{false};
  std::unique_ptr<std::atomic<uint64_t>[]> dead_below_ =
      std::make_unique<std::atomic<uint64_t>[]>(kWindow);
};

TYPED_TEST(BaselineTest, ConcurrentReadersSeeOnlyValidTranslations) {
  ConcurrentCheck<TypeParam>().run();
}

}  // namespace
}  // namespace vxlate::bench
