// vxlate/dataplane/vhost_user_wire.h: the vhost-user message layouts as QEMU
// 7.2 and DPDK 22.11's virtio-user speak them (docs/interop/vhost-user.rst;
// shared/reference/vhost-user-notes.md, sections 1.1 and 7), defined once and
// pinned with static_assert(offsetof/sizeof), with the checks every message
// must pass before a back end acts on it.
//
// A message is a 12-byte header (request, flags, size; native endianness,
// which is little-endian on every host vxlate builds for) and `size` bytes of
// payload, plus file descriptors in SCM_RIGHTS. check_header() enforces the
// framing rules (version 1, no REPLY bit on a request, no unknown flag bits,
// size within the largest payload); check_request() the exact payload size
// and descriptor count each request takes, and the per-request field rules
// (vring index in 32 bits before any use, ring size, ring alignment, memory
// regions without overflow, overlap or padding, IOTLB messages). A message
// that fails gets no action: the caller closes every descriptor it carried
// and, with REPLY_ACK, answers failure. Replies are built by reply_header():
// flags exactly 0x5, the only value QEMU and virtio-user accept.
//
// Fields the front end leaves as garbage are never checked: an INVALIDATE's
// uaddr and perm (QEMU builds it in an uninitialised stack struct), and the
// IOTLB message's tail padding.
//
// Thread safety: layouts and pure functions; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "vxlate/common/le.h"
#include "vxlate/common/range.h"

namespace vxlate::dataplane::vhost_user {

// Requests on the main channel (QEMU 7.2's VhostUserRequest).
enum Request : uint32_t {
  kGetFeatures = 1,
  kSetFeatures = 2,
  kSetOwner = 3,
  kResetOwner = 4,
  kSetMemTable = 5,
  kSetLogBase = 6,
  kSetLogFd = 7,
  kSetVringNum = 8,
  kSetVringAddr = 9,
  kSetVringBase = 10,
  kGetVringBase = 11,
  kSetVringKick = 12,
  kSetVringCall = 13,
  kSetVringErr = 14,
  kGetProtocolFeatures = 15,
  kSetProtocolFeatures = 16,
  kGetQueueNum = 17,
  kSetVringEnable = 18,
  kSendRarp = 19,
  kNetSetMtu = 20,
  kSetBackendReqFd = 21,
  kIotlbMsg = 22,
  kGetMaxMemSlots = 36,
  kAddMemReg = 37,
  kRemMemReg = 38,
};
// Requests on the back-end channel.
inline constexpr uint32_t kBackendIotlbMsg = 1;

inline constexpr uint32_t kFlagVersion = 1;          // bits 0-1: always 1
inline constexpr uint32_t kFlagVersionMask = 3;
inline constexpr uint32_t kFlagReply = 1u << 2;
inline constexpr uint32_t kFlagNeedReply = 1u << 3;
inline constexpr uint32_t kReplyFlags = kFlagVersion | kFlagReply;  // 0x5, exactly

// Per-ring u64 payloads (SET_VRING_KICK/CALL/ERR): index in bits 0-7, NOFD bit 8.
inline constexpr uint64_t kVringIndexMask = 0xff;
inline constexpr uint64_t kVringNoFd = 1u << 8;
inline constexpr uint32_t kVringFlagLog = 1u << 0;

// vhost_iotlb_msg.type and .perm.
inline constexpr uint8_t kIotlbMiss = 1;
inline constexpr uint8_t kIotlbUpdate = 2;
inline constexpr uint8_t kIotlbInvalidate = 3;
inline constexpr uint8_t kIotlbAccessFail = 4;
inline constexpr uint8_t kPermRo = 1;
inline constexpr uint8_t kPermWo = 2;
inline constexpr uint8_t kPermRw = 3;

// Regions one SET_MEM_TABLE carries (VHOST_MEMORY_BASELINE_NREGIONS), and the
// largest payload a message may have: QEMU sizes its VhostUserPayload union by
// its largest member (the crypto session, 5 KiB and more); nothing vxlate
// accepts is larger than a full memory table, so it refuses anything above.
inline constexpr uint32_t kMaxMemRegions = 8;

struct Header {
  Le32 request;
  Le32 flags;
  Le32 size;
};

struct VringState {  // vhost_vring_state
  Le32 index;
  Le32 num;
};

struct VringAddr {  // vhost_vring_addr
  Le32 index;
  Le32 flags;
  Le64 desc_user_addr;
  Le64 used_user_addr;
  Le64 avail_user_addr;
  Le64 log_guest_addr;
};

struct MemRegion {  // VhostUserMemoryRegion
  Le64 guest_phys_addr;
  Le64 memory_size;
  Le64 userspace_addr;
  Le64 mmap_offset;
};

struct MemoryHead {  // VhostUserMemory, followed by nregions MemRegion
  Le32 nregions;
  Le32 padding;
};

struct MemRegMsg {  // VhostUserMemRegMsg (ADD/REM_MEM_REG)
  Le64 padding;
  MemRegion region;
};

struct IotlbMsg {  // struct vhost_iotlb_msg, 6 bytes of tail padding
  Le64 iova;
  Le64 size;
  Le64 uaddr;
  uint8_t perm;
  uint8_t type;
  uint8_t padding[6];
};

static_assert(offsetof(Header, flags) == 4 && offsetof(Header, size) == 8 && sizeof(Header) == 12);
static_assert(offsetof(VringState, num) == 4 && sizeof(VringState) == 8);
static_assert(offsetof(VringAddr, flags) == 4 && offsetof(VringAddr, desc_user_addr) == 8 &&
              offsetof(VringAddr, used_user_addr) == 16 && offsetof(VringAddr, avail_user_addr) == 24 &&
              offsetof(VringAddr, log_guest_addr) == 32 && sizeof(VringAddr) == 40);
static_assert(offsetof(MemRegion, memory_size) == 8 && offsetof(MemRegion, userspace_addr) == 16 &&
              offsetof(MemRegion, mmap_offset) == 24 && sizeof(MemRegion) == 32);
static_assert(sizeof(MemoryHead) == 8 && sizeof(MemRegMsg) == 40);
static_assert(offsetof(IotlbMsg, uaddr) == 16 && offsetof(IotlbMsg, perm) == 24 && offsetof(IotlbMsg, type) == 25 &&
              sizeof(IotlbMsg) == 32);

inline constexpr uint32_t kMaxPayload = sizeof(MemoryHead) + kMaxMemRegions * sizeof(MemRegion);

// Why a message is refused.
enum class Refusal : uint8_t {
  kNone,
  kVersion,      // flags bits 0-1 are not 1
  kFlags,        // REPLY on a request, or an unknown flag bit
  kTooLarge,     // size over kMaxPayload
  kSize,         // not the exact size the request takes
  kFds,          // not the exact number of descriptors the request takes
  kUnknown,      // a request this back end does not serve
  kVringIndex,   // a ring index at or past the queues served, or stray bits
  kVringNum,     // ring size zero, over 32768 or not a power of two
  kVringAddr,    // unknown flag, or a ring address misaligned
  kRegions,      // region count out of range, padding set, empty, wrapping or overlapping
  kIotlb,        // a bad IOTLB type, permission, size or range
};
const char* to_string(Refusal r) noexcept;

// Framing: version, flags, size bound. `reply` says whether the message is a
// reply (the back-end channel's answers) rather than a request.
inline Refusal check_header(const Header& h, bool reply = false) noexcept {
  const uint32_t flags = h.flags.get();
  if ((flags & kFlagVersionMask) != kFlagVersion) return Refusal::kVersion;
  if ((flags & ~(kFlagVersionMask | kFlagReply | kFlagNeedReply)) != 0) return Refusal::kFlags;
  if (((flags & kFlagReply) != 0) != reply) return Refusal::kFlags;
  if (h.size.get() > kMaxPayload) return Refusal::kTooLarge;
  return Refusal::kNone;
}

// The reply header to a request: same id, flags exactly 0x5 (never NEED_REPLY
// or any other bit), and the payload size (8 for a u64 or a REPLY_ACK).
inline Header reply_header(uint32_t request, uint32_t size) noexcept {
  Header h{};
  h.request.set(request);
  h.flags.set(kReplyFlags);
  h.size.set(size);
  return h;
}

// Checks a main-channel request against its payload (exactly `h.size` bytes)
// and the number of descriptors that came with it, for a device serving
// `queues` vrings. The caller has checked the header. Returns kNone when the
// back end may act on it.
Refusal check_request(const Header& h, std::span<const uint8_t> payload, size_t nfds, uint32_t queues) noexcept;

// The IOTLB message rules alone (also for the back-end channel's replies).
// UPDATE: permission RO/WO/RW, size > 0, neither iova + size nor uaddr + size
// wraps. INVALIDATE: uaddr and perm are ignored; any size (0: everything).
// MISS and ACCESS_FAIL are back end to front end only.
inline Refusal check_iotlb(const IotlbMsg& m) noexcept {
  uint64_t last = 0;
  switch (m.type) {
    case kIotlbUpdate:
      if (m.perm < kPermRo || m.perm > kPermRw) return Refusal::kIotlb;
      if (!range_last(m.iova.get(), m.size.get(), &last) || !range_last(m.uaddr.get(), m.size.get(), &last))
        return Refusal::kIotlb;
      return Refusal::kNone;
    case kIotlbInvalidate:
      return Refusal::kNone;
    default:
      return Refusal::kIotlb;
  }
}

}  // namespace vxlate::dataplane::vhost_user
