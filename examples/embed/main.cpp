// examples/embed/main.cpp: the vxlate core embedded in a program that is not a
// DPDK application (no EAL): one virtio-iommu Device, one endpoint attached to a
// domain, one MAP, a translation by a reader, an UNMAP, and the same
// translation faulting afterwards. Exits 0 only if every step held.
//
// Threads: one. The thread is the Device's control side (handle(),
// set_mem_table()) and, between online() and offline(), a reader of its Rcu.
// A reader must be offline while the same thread runs a request, since every
// request waits for a grace period over the online readers (or pass its id to
// handle_burst() as self_reader).
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <vector>

#include "vxlate/common/rcu.h"
#include "vxlate/common/status.h"
#include "vxlate/engine/device.h"
#include "vxlate/engine/wire.h"

namespace {

namespace engine = vxlate::engine;
using vxlate::Status;

constexpr uint32_t kDomain = 1;
constexpr uint32_t kEndpoint = 7;
constexpr uint64_t kGpaBase = 0x40000000;    // guest-physical base of the guest memory
constexpr uint64_t kIova = 0x100000;         // the DMA window the driver maps
constexpr uint64_t kMapSize = 0x4000;        // 16 KiB
constexpr uint64_t kMapGpa = kGpaBase + 0x2000;

// Control side: sends one request (its device-readable part) and returns the
// status the device wrote into the tail; kDevErr if it wrote nothing.
template <typename Req>
Status send(engine::Device& dev, const Req& req) {
  std::array<uint8_t, sizeof(Req)> readable{};
  vxlate::encode(readable, req);
  std::array<uint8_t, engine::kTailSize> tail{};
  if (dev.handle(readable, tail) != tail.size()) return Status::kDevErr;
  return static_cast<Status>(vxlate::decode<engine::wire::ReqTail>(tail).status);
}

// Reader side for the span of the call: online, one translation, offline.
Status translate(engine::Device& dev, uint32_t reader, uint64_t iova, uint64_t len, engine::Segment* seg,
                 size_t* nsegs) {
  dev.iotlb().online(reader);
  const Status s = dev.iova_to_hva(reader, vxlate::EndpointId{kEndpoint}, iova, len,
                                   vxlate::pagetable::kPermReadWrite,
                                   std::span(seg, 1), nsegs);
  dev.iotlb().offline(reader);
  return s;
}

bool expect(bool ok, const char* what) {
  if (!ok) std::fprintf(stderr, "embed: FAILED: %s\n", what);
  return ok;
}

}  // namespace

int main() {
  std::vector<uint8_t> guest(1 << 20);  // the guest's memory, in this process
  vxlate::Rcu rcu(1);
  engine::Device dev(engine::Config{}, rcu);
  const uint32_t reader = rcu.register_reader();

  const engine::MemRegion mem[] = {{kGpaBase, guest.size(), reinterpret_cast<uint64_t>(guest.data())}};
  bool ok = expect(dev.set_mem_table(mem) == Status::kOk, "set_mem_table");

  ok = expect(send(dev, engine::wire::attach_req(kDomain, kEndpoint)) == Status::kOk, "ATTACH") && ok;
  const auto map = engine::wire::map_req(kDomain, kIova, kIova + kMapSize - 1,  // inclusive
                                         kMapGpa, engine::kMapFlagRead | engine::kMapFlagWrite);
  ok = expect(send(dev, map) == Status::kOk, "MAP") && ok;

  // A 64-byte DMA 0x10 into the mapping lands in guest memory at the mapped GPA.
  engine::Segment seg{};
  size_t nsegs = 0;
  const Status before = translate(dev, reader, kIova + 0x10, 64, &seg, &nsegs);
  const uint64_t want = reinterpret_cast<uint64_t>(guest.data()) + (kMapGpa - kGpaBase) + 0x10;
  ok = expect(before == Status::kOk && nsegs == 1 && seg.addr == want && seg.len == 64,
              "iova_to_hva before UNMAP") && ok;
  if (before == Status::kOk && nsegs == 1) {
    std::memcpy(reinterpret_cast<void*>(seg.addr), "vxlate", 6);  // the DMA, as the back end does it
    ok = expect(std::memcmp(&guest[kMapGpa - kGpaBase + 0x10], "vxlate", 6) == 0, "write through hva") && ok;
  }

  ok = expect(send(dev, engine::wire::unmap_req(kDomain, kIova, kIova + kMapSize - 1)) == Status::kOk, "UNMAP") && ok;

  // The UNMAP completed (one grace period): no reader can translate the range.
  const Status after = translate(dev, reader, kIova + 0x10, 64, &seg, &nsegs);
  ok = expect(after == Status::kFault, "iova_to_hva after UNMAP must fault") && ok;
  engine::FaultEvent ev[4];
  const size_t nev = dev.drain_events(ev);
  ok = expect(nev == 1 && ev[0].endpoint == kEndpoint && ev[0].address == kIova + 0x10, "one fault event") && ok;

  rcu.unregister_reader(reader);
  std::printf("embed: iova 0x%llx -> hva 0x%llx: %s; after UNMAP: %s; %s\n",
              static_cast<unsigned long long>(kIova + 0x10), static_cast<unsigned long long>(want),
              vxlate::to_string(before), vxlate::to_string(after), ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
