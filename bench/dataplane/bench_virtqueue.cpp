// bench_virtqueue.cpp: the device side of a virtio-net transmit queue on one
// thread, without the guest on another core: what one frame costs the device
// lcore in descriptor reads, translations and the copy out, with and without
// the IOMMU on its path, in the same binary.
//
// BM_VirtqueueTx/<mode>: a 256-entry split queue in guest memory (a memfd,
// load::GuestMemory) filled by the load library's driver model
// (load::DriverQueue) the way bench_netperf's udp_stream_64 guest fills it:
// each chain an indirect table of two descriptors, the 12-byte virtio-net
// header and a 64-byte frame right after it in the buffer's own 4 KiB page.
// Each iteration is one device burst, timed alone: a quiescent report, begin(),
// pop() of every chain with the frame's bytes copied out (what NetDevice's
// to_mbuf does, without the mbuf), push(), publish(); then, untimed, the guest
// reaps the used entries and posts the same buffers again.
//   gpa   no ACCESS_PLATFORM: descriptors carry GPAs, translated through the
//         memory table (bench_netperf's identity mode);
//   iova  ACCESS_PLATFORM: the rings and buffers are IOVAs of a domain with
//         long-lived 4 KiB mappings, every one cached in the IOTLB after the
//         first burst (bench_netperf's lazy mode between two recycles).
// Counters: ns_per_frame, the device's wall time per frame in the timed part;
// items/s, frames per CPU second of the whole loop (guest refill included).
//   *_no_lookahead  the same without pop()'s software prefetching
//         (QueueConfig::lookahead): what the lookahead costs where, as here,
//         the guest's lines are already in the device core's cache (it pays
//         off only when another core wrote them: bench_netperf).
// iova / gpa is what the IOMMU costs the device per frame when nothing is
// invalidated: the share of bench_netperf's lazy/identity gap that the
// translation fast path owns.
//   iova_recycle<n>  iova with a lazy guest's recycles between bursts: n
//         UNMAP+MAP pairs of spare IOVAs through the virtio-iommu request
//         queue and one sync per 256 frames (vxlate-netperf's lazy guest: 4),
//         untimed but for the device's polls (ns_per_request). Its
//         ns_per_frame against iova's is what the requests cost the frames
//         indirectly on one core (lines evicted, ring translations dropped
//         by each sync).
//
// BM_IommuQueuesIdlePoll (below): what an idle virtio-iommu device costs a
// poll loop; BM_IommuQueuesHeldPoll, a busy one while batching holds its
// requests. BM_IommuQueuesRemap (below): a guest's buffer recycles through
// the request queue, against bench_engine's BM_Remap.
#include <benchmark/benchmark.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "support/virtio_iommu.h"
#include "vxlate/common/ids.h"
#include "vxlate/common/rcu.h"
#include "vxlate/dataplane/iommu_queues.h"
#include "vxlate/dataplane/virtqueue.h"
#include "vxlate/engine/device.h"
#include "vxlate/load/guest.h"

namespace {

using vxlate::EndpointId;
using vxlate::Rcu;
using vxlate::Status;
using vxlate::dataplane::Chain;
using vxlate::dataplane::Virtqueue;
using vxlate::engine::Device;
using vxlate::load::DriverBuf;
using vxlate::load::DriverQueue;
using vxlate::load::GuestMemory;
using Clock = std::chrono::steady_clock;
namespace test = vxlate::test;

constexpr uint32_t kQueue = 256;
constexpr uint64_t kPage = 4096;
constexpr uint32_t kHdr = 12;     // virtio_net_hdr_mrg_rxbuf
constexpr uint32_t kFrame = 64;
constexpr uint64_t kGpaBase = uint64_t{1} << 32;
constexpr uint64_t kRingIova = uint64_t{1} << 40;
constexpr uint64_t kBufIova = uint64_t{2} << 32;
constexpr uint32_t kDomain = 1;
constexpr uint32_t kEndpoint = 1;

bool request_ok(Device& dev, const std::vector<uint8_t>& req) {
  std::array<uint8_t, vxlate::engine::kTailSize> tail{};
  return dev.handle(req, tail) == tail.size() && test::tail_of(tail).status == 0;
}

// A guest's virtio-iommu driver on request queue `reqq`, whose sync() waits
// by polling the device `iq` as an idle lcore would; each poll's time is
// added to *polled.
vxlate::load::IommuDriver timed_driver(GuestMemory& mem, DriverQueue& reqq, vxlate::dataplane::IommuQueues& iq,
                                       uint32_t reader, Clock::duration* polled) {
  return vxlate::load::IommuDriver(mem, reqq, [&iq, reader, polled] {
    const auto t0 = Clock::now();
    iq.poll(reader, nullptr, /*idle=*/true);
    *polled += Clock::now() - t0;
  });
}

// The device side of one transmit burst, as the BM_VirtqueueTx* benchmarks
// time it: a quiescent report, begin(), every chain popped with its frame's
// bytes copied out (what NetDevice's to_mbuf does, without the mbuf),
// pushed, and published. Returns the frames, or -1 when begin() failed.
struct TxDevice {
  Chain c;
  alignas(64) std::array<uint8_t, 2048> frame{};
  uint64_t copied = 0;

  int64_t burst(Device& dev, Virtqueue& vq, uint32_t reader, uint32_t budget) {
    dev.iotlb().quiescent(reader);
    if (!vq.begin(reader, budget)) return -1;
    int64_t n = 0;
    while (vq.pop(&c)) {
      uint64_t off = 0;
      for (uint32_t s = 0; s < c.nreadable; ++s) {
        std::memcpy(frame.data() + off, reinterpret_cast<const void*>(c.segs[s].addr), c.segs[s].len);
        off += c.segs[s].len;
      }
      copied += off;
      vq.push(c.head, 0);
      ++n;
    }
    vq.publish();
    benchmark::DoNotOptimize(frame.data());
    return n;
  }
};

// A lazy guest's buffer recycles between BM_VirtqueueTx's bursts: n UNMAPs
// and MAPs of spare IOVAs (the frames' buffers keep theirs, as
// vxlate-netperf --lazy-move 0) through the virtio-iommu request queue, then
// one sync; the device's polls in it are timed into `polled`. For a device
// whose domain kDomain is attached; ok is false when setup failed.
struct Recycler {
  DriverQueue reqq;
  DriverQueue evq;
  vxlate::dataplane::IommuQueues iq;
  Clock::duration polled{};
  vxlate::load::IommuDriver drv;
  uint64_t spare_gpa;
  uint64_t spare = 0;
  std::vector<uint64_t> free_iovas, stale;  // LIFO, as Linux's IOVA rcache
  bool ok;

  Recycler(GuestMemory& mem, Device& dev, uint32_t reader)
      : reqq(mem, kQueue, /*event_idx=*/true, /*indirect=*/false),
        evq(mem, 64, /*event_idx=*/true, /*indirect=*/false),
        iq(dev, reqq.device_config(false, EndpointId{0}), evq.device_config(false, EndpointId{0})),
        drv(timed_driver(mem, reqq, iq, reader, &polled)),
        spare_gpa(mem.alloc(kPage, kPage)) {
    // Above the frames' buffers (every other page from kBufIova).
    for (uint64_t i = 64; i-- > 0;) free_iovas.push_back(kBufIova + (2 * kQueue + i) * kPage);
    spare = take();
    drv.add_map(kDomain, spare, kPage, spare_gpa, kRW);
    ok = drv.sync() == Status::kOk;
    polled = {};
  }
  uint64_t take() {
    const uint64_t v = free_iovas.back();
    free_iovas.pop_back();
    return v;
  }
  bool recycle(uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) {
      drv.add_unmap(kDomain, spare, kPage);
      stale.push_back(spare);
      spare = take();
      drv.add_map(kDomain, spare, kPage, spare_gpa, kRW);
    }
    const bool synced = drv.sync() == Status::kOk;
    for (uint64_t v : stale) free_iovas.push_back(v);
    stale.clear();
    return synced;
  }
  static constexpr uint32_t kRW = vxlate::engine::kMapFlagRead | vxlate::engine::kMapFlagWrite;
};

void BM_VirtqueueTx(benchmark::State& state, bool iommu, bool lookahead, uint32_t burst = kQueue,
                    uint32_t recycles = 0, bool hold = false) {
  GuestMemory mem(kGpaBase, 16 << 20);
  Rcu rcu(1);
  Device dev(vxlate::engine::Config{}, rcu, 4096);
  const vxlate::engine::MemRegion region = mem.region();
  DriverQueue q(mem, kQueue, /*event_idx=*/true, /*indirect=*/true);
  std::vector<uint64_t> addr(kQueue);
  bool ok = dev.set_mem_table({&region, 1}) == Status::kOk;
  if (iommu) {
    const uint64_t ring_bytes = (q.area_bytes() + kPage - 1) & ~(kPage - 1);
    ok = ok && request_ok(dev, test::encoded(test::attach_req(kDomain, kEndpoint))) &&
         request_ok(dev, test::encoded(test::map_req(kDomain, kRingIova, kRingIova + ring_bytes - 1, q.area_gpa(),
                                                      vxlate::engine::kMapFlagRead | vxlate::engine::kMapFlagWrite)));
    q.set_dma_base(kRingIova);
  }
  for (uint32_t i = 0; i < kQueue; ++i) {
    const uint64_t gpa = mem.alloc(kPage, kPage);
    std::memset(mem.hva(gpa), static_cast<int>(i), kHdr + kFrame);
    addr[i] = gpa;
    if (iommu) {
      // Every other page of IOVA space, as a guest allocator's holes leave them.
      addr[i] = kBufIova + 2 * i * kPage;
      ok = ok && request_ok(dev, test::encoded(test::map_req(kDomain, addr[i], addr[i] + kPage - 1, gpa,
                                                              vxlate::engine::kMapFlagRead)));
    }
  }
  if (!ok) {
    state.SkipWithError("setup failed");
    return;
  }
  auto post = [&](uint32_t i) {
    const DriverBuf bufs[2] = {{addr[i], kHdr, false}, {addr[i] + kHdr, kFrame, false}};
    return q.add(bufs, i, /*use_indirect=*/true);
  };
  for (uint32_t i = 0; i < kQueue; ++i) ok = ok && post(i);
  q.publish();
  vxlate::dataplane::QueueConfig cfg = q.device_config(iommu, EndpointId{kEndpoint});
  cfg.lookahead = lookahead;
  cfg.hold_on_miss = hold;  // the vhost-user back end's device-IOTLB queues
  Virtqueue vq(dev, cfg);
  const uint32_t reader = rcu.register_reader();
  dev.iotlb().online(reader);
  std::optional<Recycler> rec;
  if (recycles != 0) ok = rec.emplace(mem, dev, reader).ok && ok;
  TxDevice tx;
  uint64_t frames = 0;
  Clock::duration device{};
  for (auto _ : state) {
    const auto t0 = Clock::now();
    const int64_t n = tx.burst(dev, vq, reader, burst);
    device += Clock::now() - t0;
    if (n < 0) {
      state.SkipWithError("begin() failed");
      break;
    }
    frames += static_cast<uint64_t>(n);
    uint64_t token = 0;
    uint32_t len = 0;
    while (q.get_used(&token, &len)) ok = ok && post(static_cast<uint32_t>(token));
    q.publish();
    if (rec) ok = ok && rec->recycle(recycles);
  }
  dev.iotlb().offline(reader);
  rcu.unregister_reader(reader);
  if (!ok || vq.stats().bad_total() != 0 || tx.copied != frames * (kHdr + kFrame) ||
      (rec && rec->drv.failures() != 0)) {
    state.SkipWithError("a chain was refused, a frame lost or a request failed");
    return;
  }
  state.counters["ns_per_frame"] =
      std::chrono::duration<double, std::nano>(device).count() / static_cast<double>(frames);
  if (rec)
    state.counters["ns_per_request"] = std::chrono::duration<double, std::nano>(rec->polled).count() /
                                       (static_cast<double>(state.iterations()) * 2 * recycles);
  state.SetItemsProcessed(static_cast<int64_t>(frames));
}
BENCHMARK_CAPTURE(BM_VirtqueueTx, gpa, false, true);
BENCHMARK_CAPTURE(BM_VirtqueueTx, iova, true, true);
BENCHMARK_CAPTURE(BM_VirtqueueTx, gpa_no_lookahead, false, false);
BENCHMARK_CAPTURE(BM_VirtqueueTx, iova_no_lookahead, true, false);
BENCHMARK_CAPTURE(BM_VirtqueueTx, gpa_burst1, false, true, 1);
BENCHMARK_CAPTURE(BM_VirtqueueTx, iova_burst1, true, true, 1);
BENCHMARK_CAPTURE(BM_VirtqueueTx, iova_recycle4, true, true, kQueue, 4);
BENCHMARK_CAPTURE(BM_VirtqueueTx, iova_recycle16, true, true, kQueue, 16);
BENCHMARK_CAPTURE(BM_VirtqueueTx, iova_hold, true, true, kQueue, 0, true);

// BM_IommuQueuesIdlePoll/<readers>: one IommuQueues::poll() of a device
// whose request and event queues are empty, in a Device whose Rcu has room
// for <readers> readers (one per data-plane lcore of a vSwitch): what each
// idle device costs a poll loop that serves many. The poll reads the request
// queue's avail.idx and tops up its pending fault events from the engine's
// per-reader rings (FaultEvents::drain). Counter: ns_per_poll.
// A virtio-iommu device and its request and event queues in guest memory,
// with one reader registered and online: what the benchmarks below poll.
// ok is false when setup failed.
struct IommuBench {
  GuestMemory mem;
  Rcu rcu;
  Device dev;
  DriverQueue reqq;
  DriverQueue evq;
  bool ok;
  vxlate::dataplane::IommuQueues iq;
  uint32_t reader;

  IommuBench(uint64_t mem_bytes, uint32_t readers, size_t iotlb_entries, uint16_t reqq_size)
      : mem(kGpaBase, mem_bytes),
        rcu(readers),
        dev(vxlate::engine::Config{}, rcu, iotlb_entries),
        reqq(mem, reqq_size, /*event_idx=*/true, /*indirect=*/false),
        evq(mem, 64, /*event_idx=*/true, /*indirect=*/false),
        ok(set_mem(dev, mem)),
        iq(dev, reqq.device_config(false, EndpointId{0}), evq.device_config(false, EndpointId{0})),
        reader(rcu.register_reader()) {
    dev.iotlb().online(reader);
  }
  ~IommuBench() {
    dev.iotlb().offline(reader);
    rcu.unregister_reader(reader);
  }
  IommuBench(const IommuBench&) = delete;
  IommuBench& operator=(const IommuBench&) = delete;
  vxlate::load::IommuDriver driver(Clock::duration* polled) { return timed_driver(mem, reqq, iq, reader, polled); }
  static bool set_mem(Device& d, const GuestMemory& m) {
    const vxlate::engine::MemRegion region = m.region();
    return d.set_mem_table({&region, 1}) == Status::kOk;
  }
};

void BM_IommuQueuesIdlePoll(benchmark::State& state) {
  IommuBench b(1 << 20, static_cast<uint32_t>(state.range(0)), 64, 64);
  if (!b.ok) {
    state.SkipWithError("setup failed");
    return;
  }
  size_t served = 0;
  for (auto _ : state) served += b.iq.poll(b.reader, nullptr, /*idle=*/true);
  if (served != 0) {
    state.SkipWithError("an empty queue served requests");
    return;
  }
  state.counters["ns_per_poll"] = benchmark::Counter(static_cast<double>(state.iterations()),
                                                     benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_IommuQueuesIdlePoll)->Arg(1)->Arg(8)->Arg(64);

// BM_IommuQueuesHeldPoll: one IommuQueues::poll() of a busy caller
// (idle=false) while request batching holds 4 waiting requests (of 16 it
// waits for; the oldest never overdue within the run) and nothing new
// arrives: what a data-plane lcore pays per round while a lazy guest's
// requests wait. Counter: ns_per_poll.
void BM_IommuQueuesHeldPoll(benchmark::State& state) {
  IommuBench b(1 << 20, 1, 64, 64);
  if (!b.ok) {
    state.SkipWithError("setup failed");
    return;
  }
  b.iq.set_batching({.min_requests = 16, .max_wait = std::chrono::hours(1)});
  vxlate::load::IommuDriver drv(b.mem, b.reqq, [] {});
  b.iq.poll(b.reader, nullptr, /*idle=*/false);  // arms kicks
  drv.add_attach(kDomain, kEndpoint);
  for (uint32_t i = 0; i < 3; ++i) drv.add_unmap(kDomain, kBufIova + i * kPage, kPage);
  const uint64_t held0 = b.iq.stats().held;
  size_t served = 0;
  for (auto _ : state) served += b.iq.poll(b.reader, nullptr, /*idle=*/false);
  if (served != 0 || b.iq.stats().held - held0 != static_cast<uint64_t>(state.iterations())) {
    state.SkipWithError("a held request was served, or a poll did not hold");
    return;
  }
  state.counters["ns_per_poll"] = benchmark::Counter(static_cast<double>(state.iterations()),
                                                     benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_IommuQueuesHeldPoll);

// BM_IommuQueuesRemap/<moved>: bench_engine's BM_Remap through the request
// virtqueue. The load library's virtio-iommu driver (load::IommuDriver)
// queues each iteration's 16 recycles (UNMAP, then MAP at a fresh IOVA) and
// syncs; its idle callback is the device's IommuQueues::poll(), timed
// alone. 1024 buffers stay mapped at LIFO IOVAs, each cached in the IOTLB;
// moved=1 recycles random buffers (translated again afterwards, untimed),
// moved=0 a spare IOVA. One thread: every line of the queue is in this
// core's cache, so ns_per_request less BM_Remap's is what the queue itself
// (descriptors, copies, used ring) costs the device per request in
// instructions, without the cross-core transfers netperf adds.
void BM_IommuQueuesRemap(benchmark::State& state) {
  const bool moved = state.range(0) != 0;
  constexpr uint32_t kBuffers = 1024;
  constexpr uint32_t kRecycles = 16;
  IommuBench setup(8 << 20, 1, 4096, kQueue);
  if (!setup.ok) {
    state.SkipWithError("setup failed");
    return;
  }
  GuestMemory& mem = setup.mem;
  Device& dev = setup.dev;
  const uint32_t reader = setup.reader;
  Clock::duration device{};
  vxlate::load::IommuDriver drv = setup.driver(&device);
  constexpr uint32_t kRW = vxlate::engine::kMapFlagRead | vxlate::engine::kMapFlagWrite;
  std::vector<uint64_t> free_iovas;  // LIFO, as Linux's IOVA rcache
  for (uint64_t i = 4 * kBuffers; i-- > 0;) free_iovas.push_back(kBufIova + i * kPage);
  auto get = [&] {
    const uint64_t v = free_iovas.back();
    free_iovas.pop_back();
    return v;
  };
  std::vector<uint64_t> gpa(kBuffers), iova(kBuffers);
  drv.add_attach(kDomain, kEndpoint);
  for (uint32_t b = 0; b < kBuffers; ++b) {
    gpa[b] = mem.alloc(kPage, kPage);
    iova[b] = get();
    drv.add_map(kDomain, iova[b], kPage, gpa[b], kRW);
  }
  uint64_t spare = get();
  drv.add_map(kDomain, spare, kPage, gpa[0], kRW);
  bool ok = drv.sync() == Status::kOk;
  Device::Burst burst;
  vxlate::engine::Segment segs[2];
  auto touch = [&](uint64_t v) {
    size_t n = 0;
    ok &= burst.iova_to_hva(v, 64, vxlate::pagetable::kPermRead, segs, &n) == Status::kOk;
  };
  burst.begin(dev, reader, EndpointId{kEndpoint});
  for (uint64_t v : iova) touch(v);
  burst.end();
  std::vector<uint64_t> stale;
  std::vector<uint32_t> moved_bufs;
  uint64_t rng = 88172645463325252ull;
  device = {};
  for (auto _ : state) {
    moved_bufs.clear();
    for (uint32_t i = 0; i < kRecycles; ++i) {
      rng ^= rng << 13;
      rng ^= rng >> 7;
      rng ^= rng << 17;
      const uint32_t b = static_cast<uint32_t>(rng % kBuffers);
      uint64_t& v = moved ? iova[b] : spare;
      drv.add_unmap(kDomain, v, kPage);
      stale.push_back(v);
      v = get();
      drv.add_map(kDomain, v, kPage, gpa[moved ? b : 0], kRW);
      if (moved) moved_bufs.push_back(b);
    }
    ok &= drv.sync() == Status::kOk;
    for (uint64_t v : stale) free_iovas.push_back(v);
    stale.clear();
    dev.iotlb().quiescent(reader);
    burst.begin(dev, reader, EndpointId{kEndpoint});
    for (uint32_t b : moved_bufs) touch(iova[b]);
    burst.end();
  }
  if (!ok || drv.failures() != 0) {
    state.SkipWithError("a request failed or a buffer's translation faulted");
    return;
  }
  const double requests = static_cast<double>(state.iterations()) * 2 * kRecycles;
  state.counters["ns_per_request"] = std::chrono::duration<double, std::nano>(device).count() / requests;
  state.SetItemsProcessed(static_cast<int64_t>(requests));
}
BENCHMARK(BM_IommuQueuesRemap)->Arg(0)->Arg(1);

}  // namespace

BENCHMARK_MAIN();
