// engine_fuzz: libFuzzer target for the virtio-iommu request side
// (vxlate::engine::Device::handle / handle_burst).
//
// Input format (every byte string is a valid input):
//   byte 0          config bits (see make_config())
//   then records    [u8 readable_len][u8 sel][readable_len bytes]; a record cut
//                   short by the end of input keeps the bytes that are there.
//   sel bits 0..2   writable size: 0 tail only (4), 1 none (0), 2 short (3),
//                   3 tail + 1 (5), 4 probe_size + 4, 5 probe_size + 3,
//                   6 probe_size + 20, 7 tail + 12 (16)
//   sel bit 7       the request joins a burst with the next record; a record
//                   with bit 7 clear ends the burst. A burst of one goes through
//                   handle(), longer ones (up to kBurstMax) through
//                   handle_burst().
//
// One Device per input ("primary"), fed the bursts as encoded, and a shadow
// Device with the same config fed every request one at a time through
// handle(). After every request or burst the harness checks what must hold
// whatever the guest sends, and traps on the first violation:
//   - used length is 0 or exactly the writable size, and 0 exactly when the
//     Decisions table says so (readable too short for its type or unknown
//     type, writable shorter than the tail);
//   - used 0: the writable buffer still holds the canary;
//   - used != 0: tail.status is a VIRTIO_IOMMU_S_* value (0..8), tail.reserved
//     is zero, nothing but the tail was written, except an OK PROBE, whose
//     probe_size bytes are well-formed RESV_MEM properties then zeros;
//   - domain_count() <= max_domains, mapping_count() <= max_mappings;
//   - a burst gives byte-for-byte the results of the same requests one at a
//     time (the shadow), and both Devices end with the same counts;
//   - shadow only (one request at a time, so the state is known): after an OK
//     MAP with READ or WRITE on a domain with an attached endpoint, that
//     endpoint translates virt_start and virt_end to phys with the MAP's
//     permission; after an OK UNMAP, neither end of its range translates.
//     The reader goes online (with an empty IOTLB) only around each lookup,
//     since handle() waits for online readers; so this checks the page tables
//     and the lookup path, and stale IOTLB entries are left to the
//     multi-threaded stress tests.
//
// Every buffer is its own exact-size heap allocation, so ASan reports any
// write past the readable or writable part.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "vxlate/common/le.h"
#include "vxlate/common/rcu.h"
#include "vxlate/common/status.h"
#include "vxlate/engine/device.h"
#include "vxlate/engine/wire.h"

namespace {

using vxlate::EndpointId;
using vxlate::Rcu;
using vxlate::Status;
using namespace vxlate::engine;

constexpr uint8_t kCanary = 0xa5;
constexpr size_t kBurstMax = 64;
constexpr uint32_t kEndpointLast = 15;
// Small caps so NOMEM paths are reached within a few requests.
constexpr size_t kMaxDomains = 8;
constexpr size_t kMaxMappings = 64;
constexpr size_t kTightDomains = 2;
constexpr size_t kTightMappings = 4;
constexpr size_t kMaxTableBytes = size_t{64} << 20;
constexpr size_t kTightTableBytes = size_t{1} << 20;
constexpr size_t kIotlbEntries = 64;

#define FUZZ_CHECK(cond) \
  do {                   \
    if (!(cond)) __builtin_trap(); \
  } while (0)

// The head's type byte of a readable part, which may be shorter than the head
// (0: no request type).
uint8_t type_of(std::span<const uint8_t> r) {
  constexpr size_t kTypeOffset = offsetof(wire::ReqHead, type);
  return r.size() > kTypeOffset ? r[kTypeOffset] : 0;
}

// Config bits of input byte 0:
//   0..1 probe_size {0, 24, 48, 512}   2 domain_range [1, 8] (else all ids)
//   3    F_MMIO negotiated             4 granule 64 KiB (else 4 KiB)
//   5    input_range [1 MiB, 4 GiB)    6 a RESERVED region for endpoint 1
//   7    tight caps (2 domains, 4 mappings; else 8 and 64)
Config make_config(uint8_t bits) {
  static constexpr uint32_t kProbeSizes[4] = {0, 24, 48, 512};
  Config c;
  c.probe_size = kProbeSizes[bits & 3];
  if (bits & 4) {
    c.domain_start = 1;
    c.domain_last = 8;
  }
  c.feature_mmio = (bits & 8) != 0;
  if (bits & 16) c.page_size_mask = ~uint64_t{0xffff};
  if (bits & 32) {
    c.input_start = uint64_t{1} << 20;
    c.input_last = 0xffffffff;
  }
  if (bits & 64) c.resv.push_back({false, 1, 0x8000000, 0x80fffff, kResvMemReserved});
  c.endpoint_first = 0;
  c.endpoint_last = kEndpointLast;
  c.max_domains = (bits & 128) ? kTightDomains : kMaxDomains;
  c.max_mappings = (bits & 128) ? kTightMappings : kMaxMappings;
  // Two devices per input (primary and shadow) must stay far below libFuzzer's
  // 2 GiB RSS limit whatever one MAP asks for.
  c.max_table_bytes = (bits & 128) ? kTightTableBytes : kMaxTableBytes;
  return c;
}

size_t writable_size(uint8_t sel, uint32_t probe_size) {
  switch (sel & 7) {
    case 0: return kTailSize;
    case 1: return 0;
    case 2: return kTailSize - 1;
    case 3: return kTailSize + 1;
    case 4: return probe_size + kTailSize;
    case 5: return probe_size + kTailSize - 1;
    case 6: return probe_size + kTailSize + 16;
    default: return kTailSize + 12;
  }
}

// The Decisions row "too short for its struct and tail, or unknown type".
bool expect_used(std::span<const uint8_t> r, size_t wsize) {
  if (r.empty() || wsize < kTailSize) return false;
  switch (type_of(r)) {
    case kReqAttach: return r.size() >= kAttachSize;
    case kReqDetach: return r.size() >= kDetachSize;
    case kReqMap: return r.size() >= kMapSize;
    case kReqUnmap: return r.size() >= kUnmapSize;
    case kReqProbe: return r.size() >= kProbeSize;
    default: return false;
  }
}

bool all_canary(std::span<const uint8_t> b) {
  for (uint8_t x : b)
    if (x != kCanary) return false;
  return true;
}

// An OK PROBE's property area: RESV_MEM properties back to back, then zeros.
void check_probe_props(std::span<const uint8_t> props) {
  size_t off = 0;
  while (off + sizeof(wire::ProbeProp) <= props.size()) {
    const auto head = vxlate::decode<wire::ProbeProp>(props.subspan(off));
    const uint16_t type = head.type.get() & 0xfff;  // bits 0-11; 12-15 reserved
    if (type == kProbeTypeNone) break;
    FUZZ_CHECK(type == kProbeTypeResvMem);
    FUZZ_CHECK(head.length.get() == kResvMemPropSize - sizeof(wire::ProbeProp));
    FUZZ_CHECK(off + kResvMemPropSize <= props.size());
    const auto resv = vxlate::decode<wire::ProbeResvMem>(props.subspan(off));
    FUZZ_CHECK(resv.subtype == kResvMemReserved || resv.subtype == kResvMemMsi);
    FUZZ_CHECK(resv.reserved[0] == 0 && resv.reserved[1] == 0 && resv.reserved[2] == 0);
    FUZZ_CHECK(resv.start.get() <= resv.end.get());
    off += kResvMemPropSize;
  }
  for (; off < props.size(); ++off) FUZZ_CHECK(props[off] == 0);
}

// The per-request invariants.
void check_request(const Device& dev, std::span<const uint8_t> r, std::span<const uint8_t> w, uint32_t used) {
  FUZZ_CHECK(used == 0 || used == w.size());
  FUZZ_CHECK((used != 0) == expect_used(r, w.size()));
  if (used == 0) {
    FUZZ_CHECK(all_canary(w));
    return;
  }
  const auto tail = vxlate::decode<wire::ReqTail>(w.last(kTailSize));
  FUZZ_CHECK(tail.status <= static_cast<uint8_t>(Status::kNoMem));
  FUZZ_CHECK(tail.reserved[0] == 0 && tail.reserved[1] == 0 && tail.reserved[2] == 0);
  const std::span<const uint8_t> body = w.first(w.size() - kTailSize);
  if (type_of(r) == kReqProbe && tail.status == static_cast<uint8_t>(Status::kOk)) {
    const size_t ps = dev.config().probe_size;
    FUZZ_CHECK(body.size() >= ps);
    check_probe_props(body.first(ps));
    FUZZ_CHECK(all_canary(body.subspan(ps)));
  } else {
    FUZZ_CHECK(all_canary(body));
  }
}

void check_counts(const Device& dev) {
  FUZZ_CHECK(dev.domain_count() <= dev.config().max_domains);
  FUZZ_CHECK(dev.mapping_count() <= dev.config().max_mappings);
  FUZZ_CHECK(dev.table_bytes() <= dev.config().max_table_bytes);
}

// An endpoint attached to `domain`, or false.
bool endpoint_of(const Device& dev, uint32_t domain, uint32_t* ep) {
  for (uint32_t e = 0; e <= kEndpointLast; ++e) {
    vxlate::DomainId d{};
    if (dev.endpoint_domain(EndpointId{e}, &d) && d.value == domain) {
      *ep = e;
      return true;
    }
  }
  return false;
}

struct Harness {
  Rcu rcu{1};
  uint32_t reader = rcu.register_reader();  // offline except around iova_to_gpa()

  // One byte at `iova` through `ep`; the reader is online only for the call,
  // since handle() waits for online readers.
  Status translate(Device& dev, uint32_t ep, uint64_t iova, uint8_t access, uint64_t* out) {
    vxlate::engine::Segment seg[1];
    size_t n = 0;
    dev.iotlb().online(reader);
    const Status s = dev.iova_to_gpa(reader, EndpointId{ep}, iova, 1, access, seg, &n);
    dev.iotlb().offline(reader);
    if (s == Status::kOk) {
      FUZZ_CHECK(n == 1 && seg[0].len == 1);
      *out = seg[0].addr;
    }
    return s;
  }

  // The shadow's oracle: what an OK MAP or UNMAP did to translations.
  void check_effect(Device& dev, std::span<const uint8_t> r, uint8_t status) {
    if (status != static_cast<uint8_t>(Status::kOk) || r.empty()) return;
    uint32_t ep = 0;
    uint64_t out = 0;
    if (type_of(r) == kReqMap && r.size() >= kMapSize) {
      const auto m = vxlate::decode<wire::ReqMap>(r);
      const uint8_t perms = static_cast<uint8_t>(m.flags.get() & (kMapFlagRead | kMapFlagWrite));
      if (perms == 0 || !endpoint_of(dev, m.domain.get(), &ep)) return;
      const uint64_t start = m.virt_start.get(), end = m.virt_end.get(), phys = m.phys_start.get();
      FUZZ_CHECK(translate(dev, ep, start, perms, &out) == Status::kOk && out == phys);
      FUZZ_CHECK(translate(dev, ep, end, perms, &out) == Status::kOk && out == phys + (end - start));
    } else if (type_of(r) == kReqUnmap && r.size() >= kUnmapSize) {
      const auto u = vxlate::decode<wire::ReqUnmap>(r);
      if (!endpoint_of(dev, u.domain.get(), &ep)) return;
      FUZZ_CHECK(translate(dev, ep, u.virt_start.get(), vxlate::pagetable::kPermRead, &out) == Status::kFault);
      FUZZ_CHECK(translate(dev, ep, u.virt_end.get(), vxlate::pagetable::kPermRead, &out) == Status::kFault);
    }
  }
};

Harness& harness() {
  static Harness* h = new Harness;  // lives for the process
  return *h;
}

struct Pending {
  std::vector<uint8_t> readable;
  std::vector<uint8_t> writable;
};

void run_burst(Harness& h, Device& dev, Device& shadow, std::vector<Pending>& burst) {
  // Exact-size heap copies for both devices, canary-filled.
  std::vector<std::unique_ptr<uint8_t[]>> rd, wd, ws;
  std::vector<Request> reqs;
  std::vector<uint32_t> shadow_used;
  for (Pending& p : burst) {
    const size_t rn = p.readable.size(), wn = p.writable.size();
    rd.emplace_back(new uint8_t[rn]);
    std::copy(p.readable.begin(), p.readable.end(), rd.back().get());
    wd.emplace_back(new uint8_t[wn]);
    std::fill_n(wd.back().get(), wn, kCanary);
    ws.emplace_back(new uint8_t[wn]);
    std::fill_n(ws.back().get(), wn, kCanary);
    reqs.push_back(Request{std::span<const uint8_t>(rd.back().get(), rn), std::span<uint8_t>(wd.back().get(), wn), 0});
  }
  // Shadow: one request at a time, each checked in the state it ran in.
  for (size_t i = 0; i < reqs.size(); ++i) {
    const std::span<uint8_t> w(ws[i].get(), reqs[i].writable.size());
    const uint32_t used = shadow.handle(reqs[i].readable, w);
    check_request(shadow, reqs[i].readable, w, used);
    check_counts(shadow);
    if (used != 0) h.check_effect(shadow, reqs[i].readable, vxlate::decode<wire::ReqTail>(w.last(kTailSize)).status);
    shadow_used.push_back(used);
  }
  // Primary: as encoded.
  if (reqs.size() == 1) {
    reqs[0].used = dev.handle(reqs[0].readable, reqs[0].writable);
  } else {
    FUZZ_CHECK(dev.handle_burst(reqs) == reqs.size());
  }
  for (size_t i = 0; i < reqs.size(); ++i) {
    check_request(dev, reqs[i].readable, reqs[i].writable, reqs[i].used);
    FUZZ_CHECK(reqs[i].used == shadow_used[i]);
    FUZZ_CHECK(std::equal(wd[i].get(), wd[i].get() + reqs[i].writable.size(), ws[i].get()));
  }
  check_counts(dev);
  FUZZ_CHECK(dev.domain_count() == shadow.domain_count());
  FUZZ_CHECK(dev.mapping_count() == shadow.mapping_count());
  burst.clear();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Harness& h = harness();
  const Config cfg = make_config(data[0]);
  Device dev(cfg, h.rcu, kIotlbEntries);
  Device shadow(cfg, h.rcu, kIotlbEntries);

  std::vector<Pending> burst;
  size_t pos = 1;
  while (pos + 2 <= size) {
    const size_t rlen = data[pos];
    const uint8_t sel = data[pos + 1];
    pos += 2;
    const size_t take = rlen < size - pos ? rlen : size - pos;
    Pending p;
    p.readable.assign(data + pos, data + pos + take);
    p.writable.resize(writable_size(sel, cfg.probe_size));
    pos += take;
    burst.push_back(std::move(p));
    if (!(sel & 0x80) || burst.size() == kBurstMax) run_burst(h, dev, shadow, burst);
  }
  if (!burst.empty()) run_burst(h, dev, shadow, burst);
  return 0;
}
