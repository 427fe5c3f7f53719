// vhost-user message checks: run by the back end's control thread on every
// message before it acts on it (vhost_user_wire.h).
#include "vxlate/dataplane/vhost_user_wire.h"

#include <algorithm>
#include <array>

#include "vxlate/dataplane/virtio_ring.h"

namespace vxlate::dataplane::vhost_user {

const char* to_string(Refusal r) noexcept {
  switch (r) {
    case Refusal::kNone: return "none";
    case Refusal::kVersion: return "version";
    case Refusal::kFlags: return "flags";
    case Refusal::kTooLarge: return "too_large";
    case Refusal::kSize: return "size";
    case Refusal::kFds: return "fds";
    case Refusal::kUnknown: return "unknown";
    case Refusal::kVringIndex: return "vring_index";
    case Refusal::kVringNum: return "vring_num";
    case Refusal::kVringAddr: return "vring_addr";
    case Refusal::kRegions: return "regions";
    case Refusal::kIotlb: return "iotlb";
  }
  return "?";
}

namespace {

// A region's three ranges must not wrap, and it must not be empty.
bool region_ok(const MemRegion& r) noexcept {
  uint64_t last = 0;
  const uint64_t size = r.memory_size.get();
  return range_last(r.guest_phys_addr.get(), size, &last) && range_last(r.userspace_addr.get(), size, &last) &&
         range_last(r.mmap_offset.get(), size, &last);
}

// No two regions overlap, in guest-physical or in front-end virtual space.
bool disjoint(std::span<const MemRegion> regions) noexcept {
  for (size_t i = 0; i < regions.size(); ++i) {
    for (size_t j = i + 1; j < regions.size(); ++j) {
      // Inclusive last bytes: region_ok() made sure they do not wrap.
      const uint64_t si = regions[i].memory_size.get() - 1, sj = regions[j].memory_size.get() - 1;
      auto overlap = [&](uint64_t a, uint64_t b) { return a <= b + sj && b <= a + si; };
      if (overlap(regions[i].guest_phys_addr.get(), regions[j].guest_phys_addr.get()) ||
          overlap(regions[i].userspace_addr.get(), regions[j].userspace_addr.get()))
        return false;
    }
  }
  return true;
}

Refusal check_mem_table(std::span<const uint8_t> payload, size_t nfds) noexcept {
  if (payload.size() < sizeof(MemoryHead)) return Refusal::kSize;
  const auto head = decode<MemoryHead>(payload);
  const uint32_t n = head.nregions.get();
  if (n == 0 || n > kMaxMemRegions || head.padding.get() != 0) return Refusal::kRegions;
  if (payload.size() != sizeof(MemoryHead) + uint64_t{n} * sizeof(MemRegion)) return Refusal::kSize;
  if (nfds != n) return Refusal::kFds;
  std::array<MemRegion, kMaxMemRegions> regions;
  for (uint32_t i = 0; i < n; ++i) {
    regions[i] = decode<MemRegion>(payload.subspan(sizeof(MemoryHead) + i * sizeof(MemRegion)));
    if (!region_ok(regions[i])) return Refusal::kRegions;
  }
  return disjoint(std::span<const MemRegion>(regions.data(), n)) ? Refusal::kNone : Refusal::kRegions;
}

}  // namespace

Refusal check_request(const Header& h, std::span<const uint8_t> payload, size_t nfds, uint32_t queues) noexcept {
  const uint32_t size = h.size.get();
  if (payload.size() != size) return Refusal::kSize;
  auto exact = [&](size_t want_size, size_t want_fds) {
    if (size != want_size) return Refusal::kSize;
    return nfds == want_fds ? Refusal::kNone : Refusal::kFds;
  };
  // The full 32-bit index, before any use (CVE-2020-10723: truncated to 16 bits).
  auto ring = [&](uint32_t index) { return index < queues ? Refusal::kNone : Refusal::kVringIndex; };
  Refusal r = Refusal::kNone;
  switch (h.request.get()) {
    case kGetFeatures:
    case kGetProtocolFeatures:
    case kGetQueueNum:
    case kGetMaxMemSlots:
    case kSetOwner:
    case kResetOwner:
      return exact(0, 0);
    case kSetFeatures:
    case kSetProtocolFeatures:
      return exact(sizeof(uint64_t), 0);
    case kSetBackendReqFd:
      return exact(0, 1);
    case kSetVringNum:
    case kSetVringBase:
    case kGetVringBase:
    case kSetVringEnable: {
      if ((r = exact(sizeof(VringState), 0)) != Refusal::kNone) return r;
      const auto s = decode<VringState>(payload);
      if ((r = ring(s.index.get())) != Refusal::kNone) return r;
      const uint32_t num = s.num.get();
      switch (h.request.get()) {
        case kSetVringNum: return valid_queue_size(num) ? Refusal::kNone : Refusal::kVringNum;
        case kSetVringBase: return num <= 0xffff ? Refusal::kNone : Refusal::kVringNum;  // a 16-bit ring index
        case kSetVringEnable: return num <= 1 ? Refusal::kNone : Refusal::kVringNum;
        default: return Refusal::kNone;
      }
    }
    case kSetVringAddr: {
      if ((r = exact(sizeof(VringAddr), 0)) != Refusal::kNone) return r;
      const auto a = decode<VringAddr>(payload);
      if ((r = ring(a.index.get())) != Refusal::kNone) return r;
      if ((a.flags.get() & ~kVringFlagLog) != 0 || a.desc_user_addr.get() % kDescAlign != 0 ||
          a.avail_user_addr.get() % kAvailAlign != 0 || a.used_user_addr.get() % kUsedAlign != 0)
        return Refusal::kVringAddr;
      return Refusal::kNone;
    }
    case kSetVringKick:
    case kSetVringCall:
    case kSetVringErr: {
      if (size != sizeof(uint64_t)) return Refusal::kSize;
      const uint64_t v = decode<Le64>(payload).get();
      if ((v & ~(kVringIndexMask | kVringNoFd)) != 0) return Refusal::kVringIndex;
      if ((r = ring(static_cast<uint32_t>(v & kVringIndexMask))) != Refusal::kNone) return r;
      return nfds == ((v & kVringNoFd) ? 0u : 1u) ? Refusal::kNone : Refusal::kFds;
    }
    case kSetMemTable:
      return check_mem_table(payload, nfds);
    case kAddMemReg:
    case kRemMemReg: {
      if (size != sizeof(MemRegMsg)) return Refusal::kSize;
      // REM_MEM_REG may carry the region's fd (the spec says accept and close it).
      if (h.request.get() == kAddMemReg ? nfds != 1 : nfds > 1) return Refusal::kFds;
      const auto m = decode<MemRegMsg>(payload);
      return m.padding.get() == 0 && region_ok(m.region) ? Refusal::kNone : Refusal::kRegions;
    }
    case kIotlbMsg:
      if ((r = exact(sizeof(IotlbMsg), 0)) != Refusal::kNone) return r;
      return check_iotlb(decode<IotlbMsg>(payload));
    default:
      return Refusal::kUnknown;
  }
}

}  // namespace vxlate::dataplane::vhost_user
