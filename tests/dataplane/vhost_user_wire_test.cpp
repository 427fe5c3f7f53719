// vhost-user message checks: framing, exact sizes and descriptor counts,
// ring indices, sizes and addresses, memory tables and IOTLB messages, each
// hostile case against the refusal it must get (vhost-user-notes.md, section 7).
#include "vxlate/dataplane/vhost_user_wire.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace vxlate::dataplane::vhost_user {
namespace {

template <typename T>
std::vector<uint8_t> bytes(const T& v) {
  std::vector<uint8_t> b(sizeof v);
  std::memcpy(b.data(), &v, sizeof v);
  return b;
}

Header header(uint32_t request, size_t size, uint32_t flags = kFlagVersion) {
  Header h{};
  h.request.set(request);
  h.flags.set(flags);
  h.size.set(static_cast<uint32_t>(size));
  return h;
}

Refusal check(uint32_t request, const std::vector<uint8_t>& payload, size_t nfds, uint32_t queues = 4) {
  return check_request(header(request, payload.size()), payload, nfds, queues);
}

VringState state(uint32_t index, uint32_t num) {
  VringState s{};
  s.index.set(index);
  s.num.set(num);
  return s;
}

MemRegion region(uint64_t gpa, uint64_t size, uint64_t uaddr, uint64_t off = 0) {
  MemRegion r{};
  r.guest_phys_addr.set(gpa);
  r.memory_size.set(size);
  r.userspace_addr.set(uaddr);
  r.mmap_offset.set(off);
  return r;
}

std::vector<uint8_t> mem_table(const std::vector<MemRegion>& regions, uint32_t padding = 0) {
  MemoryHead head{};
  head.nregions.set(static_cast<uint32_t>(regions.size()));
  head.padding.set(padding);
  std::vector<uint8_t> b = bytes(head);
  for (const MemRegion& r : regions) {
    const auto rb = bytes(r);
    b.insert(b.end(), rb.begin(), rb.end());
  }
  return b;
}

IotlbMsg iotlb(uint8_t type, uint64_t iova, uint64_t size, uint64_t uaddr, uint8_t perm) {
  IotlbMsg m{};
  m.type = type;
  m.iova.set(iova);
  m.size.set(size);
  m.uaddr.set(uaddr);
  m.perm = perm;
  return m;
}

TEST(VhostUserWire, Framing) {
  EXPECT_EQ(check_header(header(kGetFeatures, 0)), Refusal::kNone);
  EXPECT_EQ(check_header(header(kGetFeatures, 0, kFlagVersion | kFlagNeedReply)), Refusal::kNone);
  EXPECT_EQ(check_header(header(kGetFeatures, 0, 0)), Refusal::kVersion);
  EXPECT_EQ(check_header(header(kGetFeatures, 0, 2)), Refusal::kVersion);
  EXPECT_EQ(check_header(header(kGetFeatures, 0, kReplyFlags)), Refusal::kFlags) << "REPLY on a request";
  EXPECT_EQ(check_header(header(kGetFeatures, 0, kFlagVersion | 0x10)), Refusal::kFlags);
  EXPECT_EQ(check_header(header(kSetMemTable, kMaxPayload)), Refusal::kNone);
  EXPECT_EQ(check_header(header(kSetMemTable, kMaxPayload + 1)), Refusal::kTooLarge);
  EXPECT_EQ(check_header(header(kBackendIotlbMsg, 8, kReplyFlags), /*reply=*/true), Refusal::kNone);
  EXPECT_EQ(check_header(header(kBackendIotlbMsg, 8, kFlagVersion), /*reply=*/true), Refusal::kFlags);
  const Header r = reply_header(kGetFeatures, 8);
  EXPECT_EQ(r.flags.get(), 0x5u);
  EXPECT_EQ(r.request.get(), uint32_t{kGetFeatures});
  EXPECT_EQ(r.size.get(), 8u);
}

TEST(VhostUserWire, ExactSizesAndDescriptorCounts) {
  EXPECT_EQ(check(kGetFeatures, {}, 0), Refusal::kNone);
  EXPECT_EQ(check(kGetFeatures, std::vector<uint8_t>(8), 0), Refusal::kSize);
  EXPECT_EQ(check(kGetFeatures, {}, 1), Refusal::kFds);
  EXPECT_EQ(check(kSetFeatures, std::vector<uint8_t>(8), 0), Refusal::kNone);
  EXPECT_EQ(check(kSetFeatures, std::vector<uint8_t>(4), 0), Refusal::kSize);
  EXPECT_EQ(check(kSetBackendReqFd, {}, 1), Refusal::kNone);
  EXPECT_EQ(check(kSetBackendReqFd, {}, 0), Refusal::kFds);
  EXPECT_EQ(check(kSetBackendReqFd, {}, 2), Refusal::kFds);
  // The header's size must be the payload actually received.
  const std::vector<uint8_t> eight(8);
  EXPECT_EQ(check_request(header(kSetFeatures, 16), eight, 0, 4), Refusal::kSize);
  // Messages this back end does not serve.
  EXPECT_EQ(check(kSetLogBase, std::vector<uint8_t>(16), 1), Refusal::kUnknown);
  EXPECT_EQ(check(99, {}, 0), Refusal::kUnknown);
}

TEST(VhostUserWire, VringState) {
  EXPECT_EQ(check(kSetVringNum, bytes(state(3, 256)), 0), Refusal::kNone);
  EXPECT_EQ(check(kSetVringNum, bytes(state(4, 256)), 0), Refusal::kVringIndex);
  EXPECT_EQ(check(kSetVringNum, bytes(state(0x10000, 256)), 0), Refusal::kVringIndex) << "no 16-bit truncation";
  EXPECT_EQ(check(kSetVringNum, bytes(state(0, 0)), 0), Refusal::kVringNum);
  EXPECT_EQ(check(kSetVringNum, bytes(state(0, 100)), 0), Refusal::kVringNum);
  EXPECT_EQ(check(kSetVringNum, bytes(state(0, 32768)), 0), Refusal::kNone);
  EXPECT_EQ(check(kSetVringNum, bytes(state(0, 65536)), 0), Refusal::kVringNum);
  EXPECT_EQ(check(kSetVringBase, bytes(state(0, 0xffff)), 0), Refusal::kNone);
  EXPECT_EQ(check(kSetVringBase, bytes(state(0, 0x10000)), 0), Refusal::kVringNum);
  EXPECT_EQ(check(kSetVringEnable, bytes(state(1, 1)), 0), Refusal::kNone);
  EXPECT_EQ(check(kSetVringEnable, bytes(state(1, 2)), 0), Refusal::kVringNum);
  EXPECT_EQ(check(kGetVringBase, bytes(state(7, 0)), 0), Refusal::kVringIndex);
}

TEST(VhostUserWire, VringAddrAndFiles) {
  VringAddr a{};
  a.index.set(1);
  a.desc_user_addr.set(0x10000);
  a.avail_user_addr.set(0x11002);
  a.used_user_addr.set(0x12004);
  EXPECT_EQ(check(kSetVringAddr, bytes(a), 0), Refusal::kNone);
  a.flags.set(kVringFlagLog);
  EXPECT_EQ(check(kSetVringAddr, bytes(a), 0), Refusal::kNone);
  a.flags.set(2);
  EXPECT_EQ(check(kSetVringAddr, bytes(a), 0), Refusal::kVringAddr);
  a.flags.set(0);
  a.desc_user_addr.set(0x10008);
  EXPECT_EQ(check(kSetVringAddr, bytes(a), 0), Refusal::kVringAddr);
  a.desc_user_addr.set(0x10000);
  a.used_user_addr.set(0x12002);
  EXPECT_EQ(check(kSetVringAddr, bytes(a), 0), Refusal::kVringAddr);

  auto file = [](uint64_t v) {
    Le64 x;
    x.set(v);
    return bytes(x);
  };
  EXPECT_EQ(check(kSetVringCall, file(2), 1), Refusal::kNone);
  EXPECT_EQ(check(kSetVringCall, file(2 | kVringNoFd), 0), Refusal::kNone);
  EXPECT_EQ(check(kSetVringCall, file(2 | kVringNoFd), 1), Refusal::kFds);
  EXPECT_EQ(check(kSetVringKick, file(2), 0), Refusal::kFds);
  EXPECT_EQ(check(kSetVringErr, file(9), 1), Refusal::kVringIndex);
  EXPECT_EQ(check(kSetVringErr, file(2 | 1u << 9), 1), Refusal::kVringIndex) << "stray bits";
}

TEST(VhostUserWire, MemoryTables) {
  const MemRegion low = region(0, 0x80000000, 0x7f0000000000), high = region(0x100000000, 0x40000000, 0x7f8000000000);
  EXPECT_EQ(check(kSetMemTable, mem_table({low, high}), 2), Refusal::kNone);
  EXPECT_EQ(check(kSetMemTable, mem_table({low, high}), 1), Refusal::kFds);
  EXPECT_EQ(check(kSetMemTable, mem_table({}), 0), Refusal::kRegions);
  EXPECT_EQ(check(kSetMemTable, mem_table({low}, /*padding=*/1), 1), Refusal::kRegions);
  std::vector<uint8_t> short_table = mem_table({low, high});
  short_table.resize(short_table.size() - 8);
  EXPECT_EQ(check(kSetMemTable, short_table, 2), Refusal::kSize);
  std::vector<MemRegion> nine(9, low);
  EXPECT_EQ(check(kSetMemTable, mem_table(nine), 9), Refusal::kRegions);
  EXPECT_EQ(check(kSetMemTable, mem_table({region(0, 0, 0x1000)}), 1), Refusal::kRegions) << "empty";
  EXPECT_EQ(check(kSetMemTable, mem_table({region(~0ull - 0xfff, 0x2000, 0x1000)}), 1), Refusal::kRegions)
      << "gpa wraps";
  EXPECT_EQ(check(kSetMemTable, mem_table({region(0, 0x2000, ~0ull - 0xfff)}), 1), Refusal::kRegions)
      << "uaddr wraps";
  EXPECT_EQ(check(kSetMemTable, mem_table({region(0, 0x2000, 0x1000, ~0ull - 0xfff)}), 1), Refusal::kRegions)
      << "mmap_offset wraps";
  EXPECT_EQ(check(kSetMemTable, mem_table({low, region(0x7ffff000, 0x2000, 0x7e0000000000)}), 2), Refusal::kRegions)
      << "guest-physical overlap";
  EXPECT_EQ(check(kSetMemTable, mem_table({low, region(0x100000000, 0x1000, 0x7f0000001000)}), 2),
            Refusal::kRegions)
      << "front-end virtual overlap";
  // A region ending at the very top of the space is not an overlap with one below it.
  EXPECT_EQ(check(kSetMemTable, mem_table({region(~0ull - 0xfff, 0x1000, 0x1000), region(0, 0x1000, 0x2000)}), 2),
            Refusal::kNone);

  MemRegMsg add{};
  add.region = high;
  EXPECT_EQ(check(kAddMemReg, bytes(add), 1), Refusal::kNone);
  EXPECT_EQ(check(kAddMemReg, bytes(add), 0), Refusal::kFds);
  EXPECT_EQ(check(kRemMemReg, bytes(add), 0), Refusal::kNone);
  EXPECT_EQ(check(kRemMemReg, bytes(add), 1), Refusal::kNone) << "accepted; the caller closes it";
  add.padding.set(1);
  EXPECT_EQ(check(kAddMemReg, bytes(add), 1), Refusal::kRegions);
}

TEST(VhostUserWire, IotlbMessages) {
  EXPECT_EQ(check(kIotlbMsg, bytes(iotlb(kIotlbUpdate, 0x1000, 0x1000, 0x7f0000000000, kPermRw)), 0), Refusal::kNone);
  EXPECT_EQ(check(kIotlbMsg, bytes(iotlb(kIotlbUpdate, 0x1000, 0x1000, 0x7f0000000000, 0)), 0), Refusal::kIotlb);
  EXPECT_EQ(check(kIotlbMsg, bytes(iotlb(kIotlbUpdate, 0x1000, 0x1000, 0x7f0000000000, 4)), 0), Refusal::kIotlb);
  EXPECT_EQ(check(kIotlbMsg, bytes(iotlb(kIotlbUpdate, 0x1000, 0, 0x7f0000000000, kPermRo)), 0), Refusal::kIotlb);
  EXPECT_EQ(check(kIotlbMsg, bytes(iotlb(kIotlbUpdate, ~0ull, 2, 0x1000, kPermRo)), 0), Refusal::kIotlb);
  EXPECT_EQ(check(kIotlbMsg, bytes(iotlb(kIotlbUpdate, 0x1000, 2, ~0ull, kPermRo)), 0), Refusal::kIotlb);
  // INVALIDATE: uaddr and perm are garbage in QEMU's messages; size 0 means everything.
  EXPECT_EQ(check(kIotlbMsg, bytes(iotlb(kIotlbInvalidate, 0x1000, 0x1000, 0xdeadbeef, 0xcc)), 0), Refusal::kNone);
  EXPECT_EQ(check(kIotlbMsg, bytes(iotlb(kIotlbInvalidate, ~0ull, 0, 0, 0)), 0), Refusal::kNone);
  // MISS and ACCESS_FAIL travel the other way; anything else is no type at all.
  EXPECT_EQ(check(kIotlbMsg, bytes(iotlb(kIotlbMiss, 0x1000, 0, 0, kPermRo)), 0), Refusal::kIotlb);
  EXPECT_EQ(check(kIotlbMsg, bytes(iotlb(kIotlbAccessFail, 0x1000, 0, 0, kPermRo)), 0), Refusal::kIotlb);
  EXPECT_EQ(check(kIotlbMsg, bytes(iotlb(9, 0x1000, 0x1000, 0, kPermRo)), 0), Refusal::kIotlb);
  std::vector<uint8_t> short_msg = bytes(iotlb(kIotlbUpdate, 0x1000, 0x1000, 0x1000, kPermRo));
  short_msg.resize(26);
  EXPECT_EQ(check(kIotlbMsg, short_msg, 0), Refusal::kSize);
  EXPECT_EQ(check(kIotlbMsg, bytes(iotlb(kIotlbUpdate, 0x1000, 0x1000, 0x1000, kPermRo)), 1), Refusal::kFds);
}

}  // namespace
}  // namespace vxlate::dataplane::vhost_user
