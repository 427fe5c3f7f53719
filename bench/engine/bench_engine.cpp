// bench_engine.cpp: cost of virtio-iommu MAP/UNMAP requests through the wire
// entry point (vxlate::engine::Device::handle_burst), as the guest's driver
// drives them, with a data-plane reader online so every grace period is real.
//
// BM_MapUnmapRequests/<batch>: each iteration encodes `batch` MAP requests for
// distinct, adjacent 4 KiB IOVAs of one attached domain (as the guest's IOVA
// allocator hands them out) and `batch` UNMAP requests for the same IOVAs, and
// passes them to the device as two bursts: the MAPs, then the UNMAPs. Why two
// bursts and not one: the driver never has a MAP and the UNMAP of the same
// IOVA in flight together (the DMA happens in between); it maps per buffer
// (map_pages: add_req + sync_req, no invalidation, hence no grace period in
// the device) and unmaps with one sync per batch: strict mode syncs after
// every unmap (batch 1), lazy mode (flush queue) after many (batch 8..256).
// So an iteration costs exactly one grace period, on the UNMAP burst. The MAP
// burst stands for the `batch` separate map syncs of the driver; separate MAP
// calls would add only call overhead, since a burst without invalidations
// waits for nothing.
//
// BM_MapUnmapTables/<batch>: the baseline, in this binary: the same page-table
// map/unmap and IOTLB invalidation with one sync per batch, called directly
// (no request decoding, validation, extent index or per-request tail). The
// gap between the two is what the wire layer costs per pair.
//
// The reader thread goes online and then only reports quiescent states
// (Iotlb::quiescent, which applies the invalidation log) in a tight loop, so a
// grace period lasts about one of its loop iterations plus the cache-line
// transfers: the floor a busy data-plane lcore would give, not a typical poll
// loop's burst length. Counters: items/s = MAP+UNMAP pairs per second of CPU
// time of the benchmark thread; ns_per_pair = steady_clock wall time per pair
// (the sync spins, then yields, waiting for the reader: CPU time alone would
// hide the grace period).
#include <benchmark/benchmark.h>

#include <random>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include "vxlate/common/ids.h"
#include "vxlate/common/le.h"
#include "vxlate/common/rcu.h"
#include "vxlate/common/status.h"
#include "vxlate/engine/device.h"
#include "vxlate/engine/wire.h"
#include "vxlate/iotlb/iotlb.h"
#include "vxlate/pagetable/io_pgtable.h"

namespace {

using vxlate::DomainId;
using vxlate::Rcu;
using vxlate::Status;
using vxlate::engine::Config;
using vxlate::engine::Device;
using vxlate::engine::Request;
using vxlate::engine::kMapSize;
using vxlate::engine::kTailSize;
using vxlate::engine::kUnmapSize;
using vxlate::pagetable::kLeaf4K;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kDomain = 1;
constexpr uint32_t kEndpoint = 0;
constexpr uint64_t kIovaBase = uint64_t{1} << 32;  // clear of the x86 MSI window
// Pages the batches rotate through (256 MiB of IOVA): leaf tables are emptied
// and refilled as the window moves, as under a real IOVA allocator.
constexpr uint64_t kWindowPages = uint64_t{1} << 16;
constexpr uint64_t kResidentBase = uint64_t{2} << 32;  // above the churned window
// Output is off a 2 MiB boundary by one page: 4 KiB leaves only.
constexpr uint64_t kPhysOffset = (uint64_t{1} << 40) + kLeaf4K;
constexpr uint32_t kFlagsRW = vxlate::engine::kMapFlagRead | vxlate::engine::kMapFlagWrite;

namespace wire = vxlate::engine::wire;

// Whether a request came back with its full tail and status OK.
bool completed_ok(uint32_t used, std::span<const uint8_t, kTailSize> tail) {
  return used == kTailSize && vxlate::decode<wire::ReqTail>(tail).status == static_cast<uint8_t>(Status::kOk);
}

// A request layout as its readable part.
template <typename T>
std::vector<uint8_t> encoded(const T& req) {
  std::vector<uint8_t> b(sizeof(T));
  vxlate::encode(std::span<uint8_t>(b), req);
  return b;
}

wire::ReqAttach attach_req() { return wire::attach_req(kDomain, kEndpoint); }

// A data-plane reader of `rcu` on its own thread, online from construction to
// destruction, reporting quiescent states through the Device's IOTLB.
class BackgroundReader {
 public:
  BackgroundReader(Rcu& rcu, vxlate::iotlb::Iotlb& tlb) : rcu_(rcu), tlb_(tlb), id_(rcu.register_reader()) {
    thread_ = std::thread([this] { run(); });
    // acquire: pairs with the release in run(); the reader is online after this.
    while (!started_.load(std::memory_order_acquire)) std::this_thread::yield();
  }
  ~BackgroundReader() {
    stop_.store(true, std::memory_order_relaxed);  // only a flag: nothing is published with it
    thread_.join();
    rcu_.unregister_reader(id_);
  }
  BackgroundReader(const BackgroundReader&) = delete;
  BackgroundReader& operator=(const BackgroundReader&) = delete;

 private:
  void run() {
    tlb_.online(id_);
    started_.store(true, std::memory_order_release);
    while (!stop_.load(std::memory_order_relaxed)) tlb_.quiescent(id_);
    tlb_.offline(id_);
  }

  Rcu& rcu_;
  vxlate::iotlb::Iotlb& tlb_;
  const uint32_t id_;
  // Own cache line: the reader polls stop_ in its loop, and a benchmark's
  // locals sharing that line would ping-pong it between the two cores.
  alignas(64) std::atomic<bool> started_{false};
  std::atomic<bool> stop_{false};
  char pad_[64 - 2 * sizeof(std::atomic<bool>)];
  std::thread thread_;
};

// One burst's wire buffers, allocated once; encode_map()/encode_unmap() rewrite
// them in place.
struct RequestBuffers {
  explicit RequestBuffers(size_t n, size_t readable_size)
      : readable(n * readable_size, 0), tails(n), reqs(n), size(readable_size) {
    for (size_t i = 0; i < n; ++i)
      reqs[i] = Request{std::span<const uint8_t>(&readable[i * size], size), std::span<uint8_t>(tails[i]), 0};
  }
  std::span<uint8_t> at(size_t i) { return std::span<uint8_t>(readable).subspan(i * size, size); }
  // True when every request came back with its full tail and status OK.
  bool all_ok() const {
    for (size_t i = 0; i < reqs.size(); ++i)
      if (!completed_ok(reqs[i].used, tails[i])) return false;
    return true;
  }

  std::vector<uint8_t> readable;
  std::vector<std::array<uint8_t, kTailSize>> tails;
  std::vector<Request> reqs;
  size_t size;
};

wire::ReqMap map_req(uint64_t iova, uint64_t size, uint64_t phys) {
  return wire::map_req(kDomain, iova, iova + size - 1, phys, kFlagsRW);
}

void encode_map(std::span<uint8_t> b, uint64_t iova) { vxlate::encode(b, map_req(iova, kLeaf4K, iova + kPhysOffset)); }

void encode_unmap(std::span<uint8_t> b, uint64_t iova) {
  vxlate::encode(b, wire::unmap_req(kDomain, iova, iova + kLeaf4K - 1));
}

void report(benchmark::State& state, size_t batch, Clock::duration timed) {
  const double pairs = static_cast<double>(state.iterations()) * static_cast<double>(batch);
  state.SetItemsProcessed(static_cast<int64_t>(pairs));
  state.counters["ns_per_pair"] = std::chrono::duration<double, std::nano>(timed).count() / pairs;
}

void map_unmap_requests(benchmark::State& state, size_t batch, uint64_t resident) {
  Rcu rcu(2);
  Device dev(Config{}, rcu);
  {
    std::array<uint8_t, kTailSize> tail{};
    if (!completed_ok(dev.handle(encoded(attach_req()), tail), tail)) {
      state.SkipWithError("ATTACH failed");
      return;
    }
  }
  // Mappings that stay, every other page of a range of their own, as a
  // guest's long-lived buffers (the netperf lazy guest keeps ~1100).
  for (uint64_t i = 0; i < resident; ++i) {
    std::array<uint8_t, kTailSize> tail{};
    const uint64_t iova = kResidentBase + 2 * i * kLeaf4K;
    if (!completed_ok(dev.handle(encoded(map_req(iova, kLeaf4K, iova + kPhysOffset)), tail), tail)) {
      state.SkipWithError("resident MAP failed");
      return;
    }
  }
  BackgroundReader reader(rcu, dev.iotlb());
  RequestBuffers maps(batch, kMapSize), unmaps(batch, kUnmapSize);
  uint64_t next = 0;
  Clock::duration timed{};
  for (auto _ : state) {
    const auto t0 = Clock::now();
    const uint64_t base = kIovaBase + (next % kWindowPages) * kLeaf4K;
    next += batch;
    for (size_t i = 0; i < batch; ++i) encode_map(maps.at(i), base + i * kLeaf4K);
    for (size_t i = 0; i < batch; ++i) encode_unmap(unmaps.at(i), base + i * kLeaf4K);
    const size_t mapped = dev.handle_burst(maps.reqs);
    const size_t unmapped = dev.handle_burst(unmaps.reqs);
    timed += Clock::now() - t0;
    if (mapped != batch || unmapped != batch || !maps.all_ok() || !unmaps.all_ok()) {
      state.SkipWithError("a MAP or UNMAP request did not complete with status OK");
      break;
    }
  }
  if (dev.mapping_count() != resident) state.SkipWithError("mappings left after the run");
  report(state, batch, timed);
}

void BM_MapUnmapRequests(benchmark::State& state) { map_unmap_requests(state, static_cast<size_t>(state.range(0)), 0); }

// The same with <resident> other mappings in the domain, which every MAP and
// UNMAP looks up its neighbours among (virtio-iommu: no overlap, no split).
void BM_MapUnmapRequestsResident(benchmark::State& state) {
  map_unmap_requests(state, static_cast<size_t>(state.range(0)), static_cast<uint64_t>(state.range(1)));
}

// Baseline: what the device does per pair below the wire, called directly.
void BM_MapUnmapTables(benchmark::State& state) {
  const size_t batch = static_cast<size_t>(state.range(0));
  Rcu rcu(2);
  vxlate::pagetable::IoPageTable pt(rcu);
  vxlate::iotlb::Iotlb tlb(rcu, 4096);  // Device's default per-reader size
  BackgroundReader reader(rcu, tlb);
  uint64_t next = 0;
  Clock::duration timed{};
  for (auto _ : state) {
    const auto t0 = Clock::now();
    const uint64_t base = kIovaBase + (next % kWindowPages) * kLeaf4K;
    next += batch;
    bool ok = true;
    for (size_t i = 0; i < batch; ++i) {
      const uint64_t iova = base + i * kLeaf4K;
      ok &= pt.map(iova, iova + kPhysOffset, kLeaf4K, vxlate::pagetable::kPermReadWrite) == Status::kOk;
    }
    for (size_t i = 0; i < batch; ++i) {
      const uint64_t iova = base + i * kLeaf4K;
      ok &= pt.unmap(iova, kLeaf4K) == Status::kOk;
      tlb.add_invalidate(DomainId{kDomain}, iova, kLeaf4K);
    }
    tlb.sync();
    timed += Clock::now() - t0;
    if (!ok) {
      state.SkipWithError("map or unmap failed");
      break;
    }
  }
  report(state, batch, timed);
}

// iova_to_hva(): an endpoint's 64-byte DMA read through IOTLB, page table and
// memory table, 32 calls per burst between two quiescent reports. hit: 512
// resident pages in a 4096-entry IOTLB; miss: 16384 pages over a 64-entry IOTLB,
// so nearly every call walks the page table and fills. call: Device::iova_to_hva()
// per DMA; burst: one Device::Burst per 32 DMAs (the endpoint's domain, IOTLB
// generation and memory table loaded once, hits counted once), what a
// virtqueue's pop loop uses. The two run the same probes in the same binary.
void BM_Translate(benchmark::State& state, bool hit, bool burst) {
  constexpr size_t kBurst = 32;
  const uint64_t pages = hit ? 512 : 16384;
  Rcu rcu(1);
  Device dev(Config{}, rcu, hit ? 4096 : 64);
  std::array<uint8_t, kTailSize> tail{};
  const vxlate::engine::MemRegion mem[] = {{kPhysOffset, pages * kLeaf4K, uint64_t{1} << 45}};
  if (!completed_ok(dev.handle(encoded(attach_req()), tail), tail) ||
      !completed_ok(dev.handle(encoded(map_req(kIovaBase, pages * kLeaf4K, kPhysOffset)), tail), tail) ||
      dev.set_mem_table(mem) != Status::kOk) {
    state.SkipWithError("setup failed");
    return;
  }
  std::mt19937_64 rng(1);
  std::vector<uint64_t> probes(1 << 16);
  for (uint64_t& p : probes) p = kIovaBase + (rng() % pages) * kLeaf4K + (rng() % (kLeaf4K - 64));
  const uint32_t id = rcu.register_reader();
  dev.iotlb().online(id);
  vxlate::engine::Segment segs[2];
  Device::Burst b;
  const vxlate::EndpointId ep{kEndpoint};
  size_t pos = 0;
  uint64_t ok = 0;
  const auto t0 = Clock::now();
  for (auto _ : state) {
    if (burst) {
      b.begin(dev, id, ep);
      for (size_t i = 0; i < kBurst; ++i) {
        size_t n = 0;
        ok += b.iova_to_hva(probes[pos + i], 64, vxlate::pagetable::kPermRead, segs, &n) == Status::kOk;
      }
      b.end();
    } else {
      for (size_t i = 0; i < kBurst; ++i) {
        size_t n = 0;
        ok += dev.iova_to_hva(id, ep, probes[pos + i], 64, vxlate::pagetable::kPermRead, segs, &n) == Status::kOk;
      }
    }
    dev.iotlb().quiescent(id);
    pos = (pos + kBurst) & (probes.size() - 1);
  }
  const double calls = static_cast<double>(state.iterations()) * kBurst;
  state.counters["ns_per_call"] = std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / calls;
  state.SetItemsProcessed(static_cast<int64_t>(calls));
  const auto st = dev.iotlb().stats();
  state.counters["iotlb_hit_ratio"] = static_cast<double>(st.hits) / static_cast<double>(st.hits + st.misses);
  if (ok != static_cast<uint64_t>(calls)) state.SkipWithError("a translation faulted");
  dev.iotlb().offline(id);
  rcu.unregister_reader(id);
}
// BM_Remap/<moved>/<evict_kib>: the netperf lazy guest's recycle
// (load/src/guest_qp.cpp) through handle_burst(), on a device lcore that is
// its own only reader. 1024 buffers stay mapped at LIFO IOVAs, every one of
// them cached in the device's IOTLB; each iteration sends 16 recycles as one
// burst of 32 requests: moved=1: a random buffer's UNMAP and its MAP at a
// fresh IOVA, which the data path then translates (a miss and a fill, not
// timed); moved=0: the same two requests for a spare IOVA the data path never
// uses. Freed IOVAs return to the allocator after the burst (the driver's
// flush). Between bursts the data path's own work is modelled by touching
// <evict_kib> KiB of other memory (not timed), which is what evicts the
// control side's metadata in vxlate-netperf: 0 leaves everything hot.
// Counter ns_per_request: wall time of the bursts alone.
void BM_Remap(benchmark::State& state) {
  const bool moved = state.range(0) != 0;
  const size_t evict = static_cast<size_t>(state.range(1)) * 1024;
  constexpr size_t kBuffers = 1024;
  constexpr size_t kRecycles = 16;
  constexpr uint64_t kPages = 4 * kBuffers;
  Rcu rcu(1);
  Device dev(Config{}, rcu);
  const vxlate::engine::MemRegion mem[] = {{kPhysOffset, kBuffers * kLeaf4K, uint64_t{1} << 45}};
  std::array<uint8_t, kTailSize> tail{};
  if (!completed_ok(dev.handle(encoded(attach_req()), tail), tail) || dev.set_mem_table(mem) != Status::kOk) {
    state.SkipWithError("setup failed");
    return;
  }
  std::vector<uint64_t> free_iovas;  // LIFO, as Linux's IOVA rcache
  for (uint64_t i = kPages; i-- > 0;) free_iovas.push_back(kIovaBase + i * kLeaf4K);
  auto get = [&] {
    const uint64_t v = free_iovas.back();
    free_iovas.pop_back();
    return v;
  };
  std::vector<uint64_t> buf_iova(kBuffers);
  for (size_t b = 0; b < kBuffers; ++b) {
    buf_iova[b] = get();
    if (!completed_ok(dev.handle(encoded(map_req(buf_iova[b], kLeaf4K, kPhysOffset + b * kLeaf4K)), tail), tail)) {
      state.SkipWithError("buffer MAP failed");
      return;
    }
  }
  uint64_t spare = get();
  if (!completed_ok(dev.handle(encoded(map_req(spare, kLeaf4K, kPhysOffset)), tail), tail)) {
    state.SkipWithError("spare MAP failed");
    return;
  }
  const uint32_t id = rcu.register_reader();
  dev.iotlb().online(id);
  const vxlate::EndpointId ep{kEndpoint};
  vxlate::engine::Segment segs[2];
  Device::Burst burst;
  uint64_t faults = 0;
  auto touch = [&](uint64_t iova) {
    size_t n = 0;
    faults += burst.iova_to_hva(iova, 64, vxlate::pagetable::kPermRead, segs, &n) != Status::kOk;
  };
  burst.begin(dev, id, ep);
  for (uint64_t v : buf_iova) touch(v);
  burst.end();
  std::vector<uint8_t> other(evict, 1);
  RequestBuffers reqs(2 * kRecycles, std::max(kMapSize, kUnmapSize));
  std::vector<uint64_t> stale;
  std::vector<size_t> moved_bufs;
  std::mt19937_64 rng(1);
  Clock::duration timed{};
  uint64_t sink = 0;
  for (auto _ : state) {
    moved_bufs.clear();
    for (size_t i = 0; i < kRecycles; ++i) {
      uint64_t& iova = moved ? buf_iova[moved_bufs.emplace_back(rng() % kBuffers)] : spare;
      const uint64_t phys = moved ? kPhysOffset + moved_bufs.back() * kLeaf4K : kPhysOffset;
      vxlate::encode(reqs.at(2 * i), wire::unmap_req(kDomain, iova, iova + kLeaf4K - 1));
      stale.push_back(iova);
      iova = get();
      vxlate::encode(reqs.at(2 * i + 1), map_req(iova, kLeaf4K, phys));
    }
    // Requests of a shorter layout are read at their own size.
    for (size_t i = 0; i < reqs.reqs.size(); ++i)
      reqs.reqs[i].readable = reqs.reqs[i].readable.first(i % 2 == 0 ? kUnmapSize : kMapSize);
    const auto t0 = Clock::now();
    const size_t done = dev.handle_burst(reqs.reqs, id);
    timed += Clock::now() - t0;
    for (Request& r : reqs.reqs) r.readable = {r.readable.data(), std::max(kMapSize, kUnmapSize)};
    // A buffer moved twice in one burst unmapped its own fresh IOVA: fine.
    if (done != reqs.reqs.size() || !reqs.all_ok()) {
      state.SkipWithError("a recycle request did not complete with status OK");
      break;
    }
    for (uint64_t v : stale) free_iovas.push_back(v);
    stale.clear();
    dev.iotlb().quiescent(id);
    burst.begin(dev, id, ep);
    for (size_t b : moved_bufs) touch(buf_iova[b]);
    burst.end();
    for (size_t off = 0; off < other.size(); off += 64) sink += other[off]++;
  }
  benchmark::DoNotOptimize(sink);
  if (faults != 0) state.SkipWithError("a buffer's translation faulted");
  const double requests = static_cast<double>(state.iterations()) * 2 * kRecycles;
  state.counters["ns_per_request"] = std::chrono::duration<double, std::nano>(timed).count() / requests;
  state.SetItemsProcessed(static_cast<int64_t>(requests));
  dev.iotlb().offline(id);
  rcu.unregister_reader(id);
}
BENCHMARK(BM_Remap)->ArgsProduct({{0, 1}, {0, 4096}});

BENCHMARK_CAPTURE(BM_Translate, hit, true, false);
BENCHMARK_CAPTURE(BM_Translate, hit_burst, true, true);
BENCHMARK_CAPTURE(BM_Translate, miss, false, false);
BENCHMARK_CAPTURE(BM_Translate, miss_burst, false, true);

BENCHMARK(BM_MapUnmapRequests)->Arg(1)->Arg(8)->Arg(32)->Arg(256);
BENCHMARK(BM_MapUnmapRequestsResident)->Args({16, 0})->Args({16, 1024})->Args({16, 16384});
BENCHMARK(BM_MapUnmapTables)->Arg(1)->Arg(8)->Arg(32)->Arg(256);

}  // namespace

BENCHMARK_MAIN();
