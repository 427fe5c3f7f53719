// bench_iotlb: vxlate's IOTLB against the caches users run today, in one binary.
//
// Every implementation answers the same translate_burst() over the same random
// resident 4 KiB translations, in bursts of kMaxBurst (32) like a data-plane
// poll, with one quiescent report per burst for vxlate (a baseline's burst_done
// is empty). vxlate's hit path is the real one: Iotlb::translate_burst with its
// domain generation, domain salt, permission check and probing of every leaf
// size the reader has cached, hits counted per burst. Its cache is sized to the
// next power of two >= 2x the resident set; the hit_ratio counter (warm-up
// fills included) shows what it held. items_per_second is per thread CPU
// second, so time the thread spent descheduled on a shared machine is not
// counted; compare implementations within one run.
//
// Baselines (bench/iotlb/baselines/, written from published descriptions):
//   sorted_list_rwlock  DPDK vhost's IOTLB (sorted list, rwlock held per burst)
//   tbb_hash_map        tbb::concurrent_hash_map keyed by page
//   shared_mutex_map    std::map of ranges under std::shared_mutex (QEMU/CH shape)
//   shared_versioned    one shared set-associative cache with per-entry versions
//                       (the design vxlate's private caches were chosen over)
//   array_index         flat array by page number: the physical limit, not an IOTLB
#include <benchmark/benchmark.h>

#include <atomic>
#include <bit>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "baselines/array_index.h"
#include "baselines/baseline.h"
#include "baselines/shared_mutex_map.h"
#include "baselines/shared_versioned.h"
#include "baselines/sorted_list_rwlock.h"
#include "baselines/tbb_hash_map.h"
#include "vxlate/iotlb/iotlb.h"

namespace {

using vxlate::DomainId;
using vxlate::Rcu;
using vxlate::Status;
using vxlate::bench::BaselineTranslation;
using vxlate::iotlb::Iotlb;
using vxlate::iotlb::kMaxBurst;
using vxlate::pagetable::IoPageTable;
using vxlate::pagetable::kLeaf4K;
using vxlate::pagetable::kPermRead;
using vxlate::pagetable::kPermReadWrite;
using vxlate::pagetable::Translation;

constexpr DomainId kDomain{7};
constexpr uint64_t kIovaBase = uint64_t{1} << 32;
constexpr uint64_t kWindowPages = uint64_t{1} << 20;  // resident pages drawn from 4 GiB
constexpr uint64_t kOutOffset = uint64_t{1} << 44;
constexpr size_t kProbes = size_t{1} << 16;  // random probe sequence, a multiple of kMaxBurst

// vxlate behind the baselines' interface. The page table is the backing store
// (insert = map); the IOTLB fills on first use. One reader: the calling thread.
class VxlateIotlb {
 public:
  static constexpr const char* kName = "vxlate";

  explicit VxlateIotlb(size_t capacity, size_t cache_entries = 0)
      : rcu_(4), pt_(rcu_), tlb_(rcu_, cache_entries ? cache_entries : std::bit_ceil(2 * capacity)) {}

  void insert(uint64_t iova, uint64_t size, uint64_t uaddr, uint8_t perm) {
    (void)pt_.map(iova, uaddr, size, perm);
  }
  void invalidate(uint64_t iova, uint64_t size) {
    (void)pt_.unmap(iova, size);
    tlb_.add_invalidate(kDomain, iova, size);
    tlb_.sync();
  }
  size_t translate_burst(uint32_t reader, std::span<const uint64_t> iovas, uint8_t need, Translation* out) {
    uint32_t faults = 0;
    const size_t n = tlb_.translate_burst(reader, kDomain, pt_, iovas, need, out, &faults);
    return n - static_cast<size_t>(std::popcount(faults));
  }

  Rcu& rcu() { return rcu_; }
  IoPageTable& pt() { return pt_; }
  Iotlb& tlb() { return tlb_; }

 private:
  Rcu rcu_;
  IoPageTable pt_;
  Iotlb tlb_;
};

// The calling thread as a data-plane reader of `Impl` for its lifetime.
template <typename Impl>
class ReaderScope {
 public:
  explicit ReaderScope(Impl&, uint32_t /*max_deferred: vxlate only*/ = 1) {}
  void burst_done() {}
  void idle_done() {}
  size_t translate(Impl& impl, std::span<const uint64_t> iovas, uint8_t need) {
    return impl.translate_burst(iovas, need, out_);
  }

 private:
  BaselineTranslation out_[kMaxBurst];
};

template <>
class ReaderScope<VxlateIotlb> {
 public:
  // max_deferred > 1: busy bursts report through quiescent_busy() (coalesced
  // acknowledgements); 1: through quiescent(), every burst.
  explicit ReaderScope(VxlateIotlb& v, uint32_t max_deferred = 1)
      : v_(v), id_(v.rcu().register_reader()), max_deferred_(max_deferred) {
    v_.tlb().online(id_);
  }
  ~ReaderScope() {
    v_.tlb().offline(id_);
    v_.rcu().unregister_reader(id_);
  }
  void burst_done() {
    if (max_deferred_ > 1)
      v_.tlb().quiescent_busy(id_, max_deferred_);
    else
      v_.tlb().quiescent(id_);
  }
  void idle_done() { v_.tlb().quiescent(id_); }
  size_t translate(VxlateIotlb& impl, std::span<const uint64_t> iovas, uint8_t need) {
    return impl.translate_burst(id_, iovas, need, out_);
  }
  uint32_t id() const { return id_; }

 private:
  VxlateIotlb& v_;
  uint32_t id_;
  uint32_t max_deferred_;
  Translation out_[kMaxBurst];
};

// `n` distinct pages and a random probe sequence over them. Dense: n adjacent
// pages, the one key space array_index can serve, used for every implementation
// in the hit benchmarks so all see the same workload. Sparse: random pages of a
// 4 GiB window, so misses walk a realistically sparse page table.
struct Workload {
  std::vector<uint64_t> pages;
  std::vector<uint64_t> probes;

  Workload(size_t n, uint64_t seed, bool dense) {
    std::mt19937_64 rng(seed);
    std::vector<bool> used(kWindowPages, false);
    for (uint64_t p = 0; dense && p < n; ++p) pages.push_back(kIovaBase + p * kLeaf4K);
    while (pages.size() < n) {
      const uint64_t p = rng() % kWindowPages;
      if (used[p]) continue;
      used[p] = true;
      pages.push_back(kIovaBase + p * kLeaf4K);
    }
    probes.resize(kProbes);
    for (uint64_t& pr : probes) pr = pages[rng() % n] + (rng() % kLeaf4K);
  }
};

template <typename Impl>
void insert_all(Impl& impl, const Workload& w) {
  // The output is off by one page from a 2 MiB boundary: 4 KiB leaves only.
  for (uint64_t p : w.pages) impl.insert(p, kLeaf4K, p + kOutOffset + kLeaf4K, kPermReadWrite);
}

// Set-associative caches get the same headroom as vxlate's (see the file note).
template <typename Impl>
std::unique_ptr<Impl> make_impl(size_t entries) {
  if constexpr (std::is_same_v<Impl, vxlate::bench::SharedVersioned>) return std::make_unique<Impl>(std::bit_ceil(2 * entries));
  return std::make_unique<Impl>(entries);
}

template <typename Impl>
void BM_IotlbHit(benchmark::State& state) {
  const size_t entries = static_cast<size_t>(state.range(0));
  const Workload w(entries, 1, true);
  auto impl = make_impl<Impl>(entries);
  insert_all(*impl, w);
  ReaderScope<Impl> reader(*impl);
  for (size_t i = 0; i < kProbes; i += kMaxBurst) {  // warm: every translation resident
    reader.translate(*impl, std::span(w.probes).subspan(i, kMaxBurst), kPermRead);
    reader.burst_done();
  }
  size_t pos = 0;
  uint64_t ok = 0;
  for (auto _ : state) {
    ok += reader.translate(*impl, std::span(w.probes).subspan(pos, kMaxBurst), kPermRead);
    reader.burst_done();
    pos = (pos + kMaxBurst) & (kProbes - 1);
  }
  benchmark::DoNotOptimize(ok);
  const uint64_t n = static_cast<uint64_t>(state.iterations()) * kMaxBurst;
  state.SetItemsProcessed(static_cast<int64_t>(n));
  state.counters["ok_ratio"] = static_cast<double>(ok) / static_cast<double>(n);
  if constexpr (std::is_same_v<Impl, VxlateIotlb>) {
    const auto s = impl->tlb().stats();
    state.counters["hit_ratio"] = static_cast<double>(s.hits) / static_cast<double>(s.hits + s.misses);
  }
}

// Miss path: the working set is 16x the cache, so nearly every lookup walks the
// page table and fills (evicting).
void BM_IotlbMissFill(benchmark::State& state) {
  const size_t entries = static_cast<size_t>(state.range(0));
  const Workload w(16 * entries, 2, false);
  VxlateIotlb impl(16 * entries, entries);
  insert_all(impl, w);
  ReaderScope<VxlateIotlb> reader(impl);
  size_t pos = 0;
  uint64_t ok = 0;
  for (auto _ : state) {
    ok += reader.translate(impl, std::span(w.probes).subspan(pos, kMaxBurst), kPermRead);
    reader.burst_done();
    pos = (pos + kMaxBurst) & (kProbes - 1);
  }
  benchmark::DoNotOptimize(ok);
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(kMaxBurst));
  const auto s = impl.tlb().stats();
  state.counters["miss_ratio"] = static_cast<double>(s.misses) / static_cast<double>(s.hits + s.misses);
}

// A data-plane reader on its own thread: translates resident pages in bursts,
// one quiescent report per burst, until told to stop.
class BackgroundReader {
 public:
  BackgroundReader(VxlateIotlb& v, const Workload& w) : v_(v), w_(w) {
    thread_ = std::thread([this] { run(); });
    while (!started_.load(std::memory_order_acquire)) std::this_thread::yield();
  }
  ~BackgroundReader() {
    stop_.store(true, std::memory_order_release);
    thread_.join();
  }
  uint64_t translated() const { return translated_.load(std::memory_order_relaxed); }

 private:
  void run() {
    ReaderScope<VxlateIotlb> reader(v_);
    started_.store(true, std::memory_order_release);
    size_t pos = 0;
    uint64_t n = 0;
    while (!stop_.load(std::memory_order_acquire)) {
      n += reader.translate(v_, std::span(w_.probes).subspan(pos, kMaxBurst), kPermRead);
      reader.burst_done();
      pos = (pos + kMaxBurst) & (kProbes - 1);
    }
    translated_.store(n, std::memory_order_relaxed);
  }

  VxlateIotlb& v_;
  const Workload& w_;
  // Own cache line: the reader polls stop_ in its loop, and a benchmark's
  // locals sharing that line would ping-pong it between the two cores.
  alignas(64) std::atomic<bool> started_{false};
  std::atomic<bool> stop_{false};
  char pad_[64 - 2 * sizeof(std::atomic<bool>)];
  std::atomic<uint64_t> translated_{0};
  std::thread thread_;
};

// Per-UNMAP cost of unmap + invalidate, with one sync (one grace period) per
// batch, while a reader translates. The remap between iterations is not timed.
void BM_UnmapSync(benchmark::State& state) {
  const size_t batch = static_cast<size_t>(state.range(0));
  const Workload hot(512, 3, false);
  // The unmapped pages are adjacent, as a guest's IOVA allocator hands them out,
  // and disjoint from the reader's.
  Workload churn(256, 4, true);
  for (uint64_t& p : churn.pages) p += kWindowPages * kLeaf4K;
  VxlateIotlb impl(512);
  insert_all(impl, hot);
  BackgroundReader reader(impl, hot);
  auto& pt = impl.pt();
  auto& tlb = impl.tlb();
  size_t next = 0;
  std::vector<uint64_t> cur(batch);
  auto remap = [&] {
    for (size_t i = 0; i < batch; ++i) {
      cur[i] = churn.pages[(next + i) % churn.pages.size()];
      (void)pt.map(cur[i], cur[i] + kOutOffset, kLeaf4K, kPermReadWrite);
    }
    next += batch;
  };
  remap();
  std::chrono::steady_clock::duration timed{};
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t i = 0; i < batch; ++i) {
      if (pt.unmap(cur[i], kLeaf4K) != Status::kOk) state.SkipWithError("unmap failed");
      tlb.add_invalidate(kDomain, cur[i], kLeaf4K);
    }
    tlb.sync();
    timed += std::chrono::steady_clock::now() - t0;
    state.PauseTiming();
    remap();
    state.ResumeTiming();
  }
  const double unmaps = static_cast<double>(state.iterations()) * static_cast<double>(batch);
  state.SetItemsProcessed(static_cast<int64_t>(unmaps));
  // Wall time: sync() mostly waits (spins, then yields) for the reader's
  // quiescent report, so CPU time alone would hide the grace period.
  state.counters["ns_per_unmap"] = std::chrono::duration<double, std::nano>(timed).count() / unmaps;
}

// The reader (this thread, timed) translates resident pages while a writer
// thread changes other translations without pause. items_per_second is the
// reader's rate per CPU second of its own thread (compare with BM_IotlbHit's
// 2048 case for the churn-free rate); reader_items_per_second is per wall
// second, which on a machine with fewer free cores than threads also counts the
// time the writer or anything else held the reader's core. For vxlate,
// syncs_seen_per_burst is how many invalidation records the reader applied per
// burst (each sync here publishes one): each costs the reader the lines the
// writer wrote or read for it (RCU token, the record's log slot, and the
// re-acquired line of its own acknowledgement). BM_HitUnderChurn/vxlate_coalesced/k: the
// reader reports through quiescent_busy(k), acknowledging a grace period on
// every k-th busy burst that finds one pending; writer_ns_per_sync (the
// writer's time per map + unmap + invalidate + sync, wall clock) shows what
// that costs the writer. The plain vxlate case is k = 1 through quiescent().
template <typename Impl>
void BM_HitUnderChurn(benchmark::State& state, uint32_t max_deferred) {
  constexpr size_t kEntries = 2048;
  const Workload hot(kEntries, 1, true);
  // Churn pages lie past the dense hot pages, in the same domain.
  Workload churn(256, 5, false);
  for (uint64_t& p : churn.pages) p += kWindowPages * kLeaf4K;
  auto impl = make_impl<Impl>(kEntries);
  insert_all(*impl, hot);
  // Own cache line (the writer polls it; the timed reader's locals must not share it).
  alignas(64) std::atomic<bool> stop{false};
  alignas(64) std::atomic<bool> writer_done{false};
  std::atomic<uint64_t> writer_ops{0};
  // vxlate's writer must not run until the reader is registered: sync() would
  // not wait for it otherwise, which is allowed but not what is measured.
  ReaderScope<Impl> reader(*impl, max_deferred);
  std::thread writer([&] {
    uint64_t ops = 0;
    for (size_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      const uint64_t p = churn.pages[i % churn.pages.size()];
      impl->insert(p, kLeaf4K, p + kOutOffset, kPermReadWrite);
      impl->invalidate(p, kLeaf4K);  // vxlate: unmap + add_invalidate + sync
      ops += 2;
    }
    writer_ops.store(ops, std::memory_order_relaxed);
    writer_done.store(true, std::memory_order_release);
  });
  size_t pos = 0;
  uint64_t ok = 0;
  uint64_t seq0 = 0;
  if constexpr (std::is_same_v<Impl, VxlateIotlb>) seq0 = impl->tlb().epoch(reader.id(), kDomain).seq;
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    ok += reader.translate(*impl, std::span(hot.probes).subspan(pos, kMaxBurst), kPermRead);
    reader.burst_done();
    pos = (pos + kMaxBurst) & (kProbes - 1);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if constexpr (std::is_same_v<Impl, VxlateIotlb>) {
    const uint64_t seen = impl->tlb().epoch(reader.id(), kDomain).seq - seq0;
    state.counters["syncs_seen_per_burst"] = static_cast<double>(seen) / static_cast<double>(state.iterations());
  }
  stop.store(true, std::memory_order_relaxed);
  // The writer may be waiting in sync() for this reader: keep reporting.
  while (!writer_done.load(std::memory_order_acquire)) {
    reader.idle_done();
    std::this_thread::yield();
  }
  writer.join();
  benchmark::DoNotOptimize(ok);
  const double items = static_cast<double>(state.iterations()) * kMaxBurst;
  state.SetItemsProcessed(static_cast<int64_t>(items));
  state.counters["reader_items_per_second"] = items / secs;
  state.counters["writer_ops_per_second"] = static_cast<double>(writer_ops.load()) / secs;
  // Two ops (insert, invalidate) per sync.
  if (writer_ops.load() != 0) state.counters["writer_ns_per_sync"] = secs * 2e9 / static_cast<double>(writer_ops.load());
}

template <typename Impl>
void register_impl() {
  const std::string name = Impl::kName;
  auto* hit = benchmark::RegisterBenchmark(("BM_IotlbHit/" + name).c_str(), BM_IotlbHit<Impl>);
  hit->Arg(64)->Arg(512)->Arg(2048);
  if constexpr (!std::is_same_v<Impl, vxlate::bench::ArrayIndex>) {
    benchmark::RegisterBenchmark(("BM_HitUnderChurn/" + name).c_str(), BM_HitUnderChurn<Impl>, 1);
  }
  if constexpr (std::is_same_v<Impl, VxlateIotlb>) {
    for (uint32_t k : {4, 16, 64})
      benchmark::RegisterBenchmark(("BM_HitUnderChurn/" + name + "_coalesced/" + std::to_string(k)).c_str(),
                                   BM_HitUnderChurn<Impl>, k);
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_impl<VxlateIotlb>();
  register_impl<vxlate::bench::SortedListRwlock>();
  register_impl<vxlate::bench::TbbHashMap>();
  register_impl<vxlate::bench::SharedMutexMap>();
  register_impl<vxlate::bench::SharedVersioned>();
  register_impl<vxlate::bench::ArrayIndex>();
  benchmark::RegisterBenchmark("BM_IotlbMissFill/vxlate", BM_IotlbMissFill)->Arg(64)->Arg(512)->Arg(2048);
  benchmark::RegisterBenchmark("BM_UnmapSync", BM_UnmapSync)->Arg(1)->Arg(8)->Arg(32)->Arg(256);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
