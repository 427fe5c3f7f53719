// bench_pagetable.cpp: walk latency, map/unmap cost and table footprint of
// vxlate::pagetable::IoPageTable.
//
// Read against the budgets in io_pgtable.h:
//   - a warm 4 KiB walk within 2x of four dependent L1 loads: BM_DependentLoads4 is
//     that baseline, measured in this binary so both numbers come from one machine;
//   - dense 4 KiB mappings within 1.01x of 8 bytes of table per page.
// Walks derive each IOVA from the previous result, so the figures are the latency
// of a chain of translations (one descriptor chain), not the throughput of
// independent ones, which the out-of-order core would overlap. A walker is an
// online RCU reader and reports a quiescent state once per burst of kBurst walks,
// like a data-plane lcore between polls. Tables are built outside the timed loop.
#include <benchmark/benchmark.h>

#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>

#include "vxlate/common/rcu.h"
#include "vxlate/common/status.h"
#include "vxlate/pagetable/io_pgtable.h"

namespace {

using vxlate::Rcu;
using vxlate::Status;
using vxlate::pagetable::IoPageTable;
using vxlate::pagetable::kLeaf2M;
using vxlate::pagetable::kPageSize;
using vxlate::pagetable::kPermReadWrite;
using vxlate::pagetable::Translation;
using Clock = std::chrono::steady_clock;

// Walks (or chases) per timed iteration: one data-plane burst, between two
// quiescent reports.
constexpr uint64_t kBurst = 32;
// 1 GiB-aligned and away from index 0 at the two upper levels, so walks do not
// only ever touch the first entry of each table.
constexpr uint64_t kIovaBase = (uint64_t{0x123} << 39) | (uint64_t{0x45} << 30);
constexpr uint64_t kOutBase = uint64_t{1} << 40;  // aligned to every leaf size
constexpr uint64_t kGiB = uint64_t{1} << 30;

// Real time per item, in ns, like the Time column but per walk rather than per
// iteration of kBurst walks.
void set_ns_per(benchmark::State& state, const char* name, Clock::time_point start,
                uint64_t items) {
  if (items == 0) return;
  const std::chrono::duration<double, std::nano> ns = Clock::now() - start;
  state.counters[name] = ns.count() / static_cast<double>(items);
}

// The benchmark thread as an online reader of `rcu`. Offline and unregistered
// on scope exit; declared after the table, so that happens before its teardown.
class OnlineReader {
 public:
  explicit OnlineReader(Rcu& rcu) : rcu_(rcu), id_(rcu.register_reader()) { rcu_.online(id_); }
  ~OnlineReader() {
    rcu_.offline(id_);
    rcu_.unregister_reader(id_);
  }
  OnlineReader(const OnlineReader&) = delete;
  OnlineReader& operator=(const OnlineReader&) = delete;

  void quiescent() noexcept { rcu_.quiescent(id_); }

 private:
  Rcu& rcu_;
  const uint32_t id_;
};

// --- baseline --------------------------------------------------------------------

// One cache line per node, as a walk touches one entry in each of four tables.
struct alignas(64) ChaseNode {
  const ChaseNode* next;
};

void BM_DependentLoads4(benchmark::State& state) {
  ChaseNode nodes[4];
  for (int i = 0; i < 4; ++i) nodes[i].next = &nodes[(i + 1) % 4];
  const ChaseNode* p = &nodes[0];
  const Clock::time_point start = Clock::now();
  for (auto _ : state) {
    for (uint64_t i = 0; i < kBurst; ++i) {
      p = p->next;
      p = p->next;
      p = p->next;
      p = p->next;
      benchmark::DoNotOptimize(p);
    }
  }
  const uint64_t chases = static_cast<uint64_t>(state.iterations()) * kBurst;
  set_ns_per(state, "ns_per_chase", start, chases);
  state.SetItemsProcessed(static_cast<int64_t>(chases));
}
BENCHMARK(BM_DependentLoads4);

// --- warm walks ----------------------------------------------------------------

// Four leaves of the argument's size: small enough that every entry the walks
// touch stays in L1, large enough that successive walks change leaf.
void BM_Walk(benchmark::State& state) {
  const uint64_t leaf = static_cast<uint64_t>(state.range(0));
  const uint64_t span = 4 * leaf;
  Rcu rcu(4);
  IoPageTable pt(rcu);
  // The span is below the next leaf size up, so map() must use `leaf` leaves.
  if (pt.map(kIovaBase, kOutBase, span, kPermReadWrite) != Status::kOk) {
    state.SkipWithError("map failed");
    return;
  }
  Translation t{};
  if (!pt.walk(kIovaBase, &t) || t.leaf_size != leaf || t.out != kOutBase) {
    state.SkipWithError("unexpected leaf");
    return;
  }
  OnlineReader reader(rcu);

  // Page-aligned offsets inside the span; an odd page stride visits every page.
  const uint64_t offset_mask = (span - 1) & ~(kPageSize - 1);
  constexpr uint64_t kStride = 483 * kPageSize;
  uint64_t iova = kIovaBase;
  bool missed = false;
  const Clock::time_point start = Clock::now();
  for (auto _ : state) {
    for (uint64_t i = 0; i < kBurst; ++i) {
      if (!pt.walk(iova, &t)) [[unlikely]] {
        missed = true;
        break;
      }
      // The next IOVA depends on this result: latency, as in the baseline.
      iova = kIovaBase + ((t.out + kStride) & offset_mask);
    }
    if (missed) [[unlikely]] {
      state.SkipWithError("walk missed");
      break;
    }
    reader.quiescent();
  }
  const uint64_t walks = static_cast<uint64_t>(state.iterations()) * kBurst;
  set_ns_per(state, "ns_per_walk", start, walks);
  state.SetItemsProcessed(static_cast<int64_t>(walks));
}
BENCHMARK(BM_Walk)->Arg(4096)->Arg(2097152)->Arg(1073741824);

// --- walks over a working set far beyond the LLC ---------------------------------

// `gib` GiB of 4 KiB mappings: the output is offset by one page, so no 2 MiB or
// 1 GiB leaf can be used. Kept across the runs the framework makes while it sizes
// the iteration count (building 64 GiB is the slow part); replaced when the size
// changes, freed at exit.
struct LargeSpace {
  explicit LargeSpace(uint64_t gib_in) : gib(gib_in) {
    for (uint64_t off = 0; off < gib * kGiB; off += kLeaf2M) {
      const uint64_t iova = kIovaBase + off;
      if (pt.map(iova, iova + kPageSize, kLeaf2M, kPermReadWrite) != Status::kOk) return;
    }
    built = true;
  }

  const uint64_t gib;
  bool built = false;
  Rcu rcu{4};
  IoPageTable pt{rcu};
};

LargeSpace& large_space(uint64_t gib) {
  static std::unique_ptr<LargeSpace> space;
  if (!space || space->gib != gib) {
    space.reset();  // free the old tables before building the new ones
    space = std::make_unique<LargeSpace>(gib);
  }
  return *space;
}

uint64_t xorshift64(uint64_t x) {
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return x;
}

void BM_WalkLarge(benchmark::State& state) {
  const uint64_t gib = static_cast<uint64_t>(state.range(0));
  const uint64_t pages = gib * (kGiB / kPageSize);
  if ((pages & (pages - 1)) != 0) {
    state.SkipWithError("GiB count must be a power of two");
    return;
  }
  LargeSpace& space = large_space(gib);
  if (!space.built) {
    state.SkipWithError("map failed");
    return;
  }
  IoPageTable& pt = space.pt;
  OnlineReader reader(space.rcu);

  const uint64_t page_mask = pages - 1;
  uint64_t x = 0x9e3779b97f4a7c15;
  Translation t{};
  bool missed = false;
  const Clock::time_point start = Clock::now();
  for (auto _ : state) {
    for (uint64_t i = 0; i < kBurst; ++i) {
      const uint64_t iova = kIovaBase + ((x & page_mask) * kPageSize);
      if (!pt.walk(iova, &t)) [[unlikely]] {
        missed = true;
        break;
      }
      // t.out >> 63 is 0 for these mappings, but the compiler cannot know it:
      // the next walk waits for this one without disturbing the PRNG sequence.
      x = xorshift64(x) + (t.out >> 63);
    }
    if (missed) [[unlikely]] {
      state.SkipWithError("walk missed");
      break;
    }
    reader.quiescent();
  }
  const uint64_t walks = static_cast<uint64_t>(state.iterations()) * kBurst;
  set_ns_per(state, "ns_per_walk", start, walks);
  state.SetItemsProcessed(static_cast<int64_t>(walks));
  const double table_bytes = static_cast<double>(pt.table_bytes());
  state.counters["table_bytes"] = benchmark::Counter(table_bytes, benchmark::Counter::kDefaults,
                                                     benchmark::Counter::OneK::kIs1024);
  state.counters["bytes_per_4k_page"] = table_bytes / static_cast<double>(pages);
}
BENCHMARK(BM_WalkLarge)->Arg(1)->Arg(64);

// --- writer: map + unmap of one leaf ---------------------------------------------

// Every slot starts mapped and the loop unmaps then remaps one slot at a time, so
// no table empties or needs allocating: this is the cost of the calls and entry
// updates alone. No reader is registered; nothing is retired either.
void BM_MapUnmap(benchmark::State& state) {
  const uint64_t leaf = static_cast<uint64_t>(state.range(0));
  constexpr uint64_t kSlots = 1024;
  Rcu rcu(4);
  IoPageTable pt(rcu);
  // One map() per slot: a slot-sized range cannot take a larger leaf.
  for (uint64_t i = 0; i < kSlots; ++i) {
    if (pt.map(kIovaBase + i * leaf, kOutBase + i * leaf, leaf, kPermReadWrite) != Status::kOk) {
      state.SkipWithError("initial map failed");
      return;
    }
  }
  uint64_t slot = 0;
  for (auto _ : state) {
    const uint64_t iova = kIovaBase + slot * leaf;
    const Status unmapped = pt.unmap(iova, leaf);
    const Status mapped = pt.map(iova, kOutBase + slot * leaf, leaf, kPermReadWrite);
    if (unmapped != Status::kOk || mapped != Status::kOk) [[unlikely]] {
      state.SkipWithError("map or unmap failed");
      break;
    }
    slot = (slot + 1) % kSlots;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MapUnmap)->Arg(4096)->Arg(2097152);

// --- footprint of dense 4 KiB mappings ------------------------------------------

// Resident set size in bytes (Linux), or 0 if it cannot be read.
uint64_t rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long size = 0;
  unsigned long resident = 0;
  const int fields = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  return fields == 2 ? resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) : 0;
}

// Times one map() of the whole range (4 KiB leaves forced by the output offset);
// the unmap and grace period between iterations are untimed. Counters are read
// with everything mapped. table_bytes() counts 4 KiB per table; the resident
// growth of the first map also shows what the allocator adds around each table.
void BM_TableBytesDense(benchmark::State& state) {
  const uint64_t pages = static_cast<uint64_t>(state.range(0));
  const uint64_t bytes = pages * kPageSize;
  Rcu rcu(4);
  IoPageTable pt(rcu);
  size_t table_bytes = 0;
  // Free heap pages returned first, so reusing them shows up as growth too.
  malloc_trim(0);
  const uint64_t rss_before = rss_bytes();
  uint64_t rss_mapped = 0;
  for (auto _ : state) {
    if (pt.map(kIovaBase, kIovaBase + kPageSize, bytes, kPermReadWrite) != Status::kOk) {
      state.SkipWithError("map failed");
      break;
    }
    state.PauseTiming();
    table_bytes = pt.table_bytes();
    if (rss_mapped == 0) rss_mapped = rss_bytes();
    const Status unmapped = pt.unmap(kIovaBase, bytes);
    pt.drain();
    state.ResumeTiming();
    if (unmapped != Status::kOk) {
      state.SkipWithError("unmap failed");
      break;
    }
  }
  // Teardown invariant: a full unmap and a grace period leave only the root.
  if (pt.table_bytes() != vxlate::pagetable::kTableBytes) {
    state.SkipWithError("tables left after unmap + drain");
    return;
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(pages));
  const double per_page = static_cast<double>(table_bytes) / static_cast<double>(pages);
  state.counters["bytes_per_4k_page"] = per_page;
  state.counters["overhead_vs_8B"] = per_page / 8.0;
  if (rss_before != 0 && rss_mapped > rss_before) {
    state.counters["rss_bytes_per_4k_page"] =
        static_cast<double>(rss_mapped - rss_before) / static_cast<double>(pages);
  }
}
BENCHMARK(BM_TableBytesDense)
    ->Arg(512 * 512)
    ->Arg(512 * 512 * 4)
    ->Iterations(5)
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
