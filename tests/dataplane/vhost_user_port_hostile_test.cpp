// vhost_user::Port against the hostile messages of vhost-user-notes.md section 7, each refused (a failure
// ack when it asked for one, else kClose) with the port usable again after disconnect().
#include "vxlate/dataplane/vhost_user.h"

#include <sys/socket.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dataplane/vhost_user_port_test_support.h"

namespace vxlate::dataplane::vhost_user::port_test {
namespace {

TEST_F(PortTest, WrongPayloadSizesAreRefused) {
  qemu_setup();
  for (uint32_t flags : {kV1, kNeedReply}) {
    expect_refused(kGetFeatures, flags, u64(0));
    expect_refused(kGetProtocolFeatures, flags, Bytes(4));
    expect_refused(kGetQueueNum, flags, Bytes(1));
    expect_refused(kSetOwner, flags, Bytes(8));
    expect_refused(kSetFeatures, flags, Bytes(4));
    expect_refused(kSetFeatures, flags, Bytes(16));
    expect_refused(kSetProtocolFeatures, flags, Bytes(7));
    expect_refused(kSetVringNum, flags, Bytes(12));
    expect_refused(kSetVringBase, flags, Bytes(4));
    expect_refused(kSetVringEnable, flags, Bytes(0));
    expect_refused(kGetVringBase, flags, Bytes(16));
    expect_refused(kSetVringAddr, flags, Bytes(32));
    expect_refused(kSetVringAddr, flags, Bytes(48));
    expect_refused(kSetVringKick, flags, Bytes(4), {make_eventfd()});
    expect_refused(kSetVringCall, flags, Bytes(16), {make_eventfd()});
    expect_refused(kSetVringErr, flags, Bytes(0), {make_eventfd()});
    expect_refused(kIotlbMsg, flags, Bytes(24));
    expect_refused(kIotlbMsg, flags, Bytes(40));
    expect_refused(kSetBackendReqFd, flags, Bytes(8), {make_eventfd()});
    // A memory table whose size does not match its region count.
    Bytes one = mem_table({region(0, kMem, kUaddr)});
    Bytes short_table(one.begin(), one.end() - 8);
    expect_refused(kSetMemTable, flags, short_table, {make_memfd(unique_name("sz"), kMem)});
    expect_refused(kSetMemTable, flags, mem_table({region(0, kMem, kUaddr)}, 0, 2),
                   {make_memfd(unique_name("sz"), kMem), make_memfd(unique_name("sz"), kMem)});
    expect_refused(kSetMemTable, flags, Bytes(4));
    // The running session was left alone by every refusal.
    EXPECT_TRUE(port_->running());
  }
  // Over the largest payload: refused at the header.
  expect_bad_header(kSetMemTable, kNeedReply, Bytes(kMaxPayload + 1));
  expect_bad_header(kIotlbMsg, kV1, Bytes(1 << 16));
  expect_usable_after_disconnect();
}

TEST_F(PortTest, WrongDescriptorCountsAreRefusedAndClosed) {
  virtio_user_setup();
  for (uint32_t flags : {kV1, kNeedReply}) {
    expect_refused(kGetFeatures, flags, {}, {make_eventfd()});
    expect_refused(kSetOwner, flags, {}, {make_eventfd(), make_eventfd()});
    expect_refused(kSetFeatures, flags, u64(acked_), {make_eventfd()});
    expect_refused(kSetProtocolFeatures, flags, u64(kProtocolReplyAck), {make_eventfd()});
    expect_refused(kSetVringNum, flags, state(0, kQueueSize), {make_eventfd()});
    expect_refused(kSetVringAddr, flags, vring_addr(0, ring_uaddr(0, 0), ring_uaddr(0, kAvailOff), ring_uaddr(0, kUsedOff)),
                   {make_eventfd()});
    expect_refused(kGetVringBase, flags, state(0, 0), {make_eventfd()});
    // Kick/call/err: one fd, or none with NOFD.
    expect_refused(kSetVringKick, flags, u64(0), {});
    expect_refused(kSetVringKick, flags, u64(0), {make_eventfd(), make_eventfd()});
    expect_refused(kSetVringCall, flags, u64(1 | kVringNoFd), {make_eventfd()});
    expect_refused(kSetVringErr, flags, u64(0), {make_eventfd(), make_eventfd(), make_eventfd()});
    // SET_BACKEND_REQ_FD: exactly one (virtio-user did not negotiate it either).
    expect_refused(kSetBackendReqFd, flags, {}, {});
    // SET_MEM_TABLE: one per region.
    const std::string a = unique_name("fds");
    expect_refused(kSetMemTable, flags, mem_table({region(kUaddr + kMem, kMem, kUaddr + kMem)}), {});
    expect_refused(kSetMemTable, flags, mem_table({region(kUaddr + kMem, kMem, kUaddr + kMem)}),
                   {make_memfd(a, kMem), make_memfd(a, kMem)});
    expect_refused(kSetMemTable, flags,
                   mem_table({region(0, kMem, 0x1000000), region(kMem, kMem, 0x1000000 + kMem)}),
                   {make_memfd(a, kMem)});
    EXPECT_EQ(mappings_of(a), 0u);
    expect_refused(kIotlbMsg, flags, iotlb(kIotlbInvalidate, 0, 0, 0, 0), {make_eventfd()});
    expect_refused(kAddMemReg, flags, mem_reg(region(kMem, kMem, kUaddr + kMem)),
                   {make_memfd(a, kMem), make_memfd(a, kMem)});
    // Still the old table, and the pair still runs.
    EXPECT_EQ(mappings_of(mem_name_), 1u);
    EXPECT_TRUE(port_->running());
  }
  expect_usable_after_disconnect();
}

TEST_F(PortTest, BadMemoryTablesAreRefusedAndMapNothing) {
  virtio_user_setup();
  const std::string old_name = mem_name_;
  constexpr uint64_t M = 1 << 20;
  const uint64_t U = 0x7f3400000000;
  struct Case {
    const char* what;
    std::vector<MemRegion> regions;
    uint32_t padding = 0;
    int64_t nregions = -1;
    uint64_t file_size = 2 * M;
  };
  const uint64_t top = ~uint64_t{0} - 0xfff;  // the last page of the 64-bit space
  std::vector<Case> cases = {
      {"gpa overlap", {region(0, M, U), region(M / 2, M, U + 4 * M)}},
      {"gpa overlap, same start", {region(0, M, U), region(0, M, U + 4 * M)}},
      {"uaddr overlap", {region(0, M, U), region(4 * M, M, U + M - 0x1000)}},
      {"uaddr overlap, nested", {region(0, 2 * M, U), region(4 * M, 0x1000, U + 0x1000)}},
      {"gpa wraps", {region(top, 0x2000, U)}},
      {"uaddr wraps", {region(0, 0x2000, top)}},
      {"mmap_offset wraps", {region(0, 0x2000, U, top)}},
      {"size 0", {region(0, 0, U)}},
      {"size 0 second", {region(0, M, U), region(4 * M, 0, U + 4 * M)}},
      {"past the file", {region(0, 2 * M, U, 0x1000)}},
      {"past the file, size", {region(0, 2 * M + 0x1000, U)}},
      {"past the file, second region", {region(0, M, U), region(4 * M, M, U + 4 * M, 2 * M)}},
      {"offset at the file's end", {region(0, 0x1000, U, 2 * M)}},
      {"no regions", {}},
      {"padding", {region(0, M, U)}, 1},
      {"padding high", {region(0, M, U)}, 0x80000000},
      {"nine regions counted, eight sent", {}, 0, 9},
  };
  // Eight well-formed regions (only the count is wrong).
  for (uint64_t i = 0; i < 8; ++i) cases.back().regions.push_back(region(i * 4 * M, M, U + i * 4 * M));
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const std::string name = unique_name("bad");
    std::vector<int> fds;
    for (size_t i = 0; i < c.regions.size(); ++i) fds.push_back(make_memfd(name, c.file_size));
    expect_refused(kSetMemTable, kNeedReply, mem_table(c.regions, c.padding, c.nregions), fds);
    EXPECT_EQ(mappings_of(name), 0u) << "a refused table left a mapping";
    // The old table stands, and the session on it.
    EXPECT_EQ(mappings_of(old_name), 1u);
    EXPECT_TRUE(port_->running());
  }
  // A descriptor that cannot be mapped (an eventfd: no size) is refused.
  expect_refused(kSetMemTable, kNeedReply, mem_table({region(0, 0x1000, U)}), {make_eventfd()});
  // Nine regions: over the largest payload, refused at the header.
  {
    std::vector<MemRegion> nine;
    std::vector<int> fds;
    const std::string name = unique_name("nine");
    for (uint64_t i = 0; i < 9; ++i) {
      nine.push_back(region(i * 4 * M, M, U + i * 4 * M));
      fds.push_back(make_memfd(name, M));
    }
    expect_bad_header(kSetMemTable, kNeedReply, mem_table(nine), fds);
    EXPECT_EQ(mappings_of(name), 0u);
  }
  // Without NEED_REPLY a refused table closes the connection.
  {
    const std::string name = unique_name("noack");
    expect_refused(kSetMemTable, kV1, mem_table({region(0, 0, U)}), {make_memfd(name, M)});
    EXPECT_EQ(mappings_of(name), 0u);
  }
  // Adjacent regions (not overlapping) are fine.
  {
    const std::string name = unique_name("adjacent");
    expect_ok(kSetMemTable, kNeedReply, mem_table({region(0, M, U), region(M, M, U + M)}),
              {make_memfd(name, M), make_memfd(name, M)});
    EXPECT_EQ(mappings_of(name), 2u);
    EXPECT_EQ(mappings_of(old_name), 0u);
    EXPECT_FALSE(port_->running());  // the rings are not in the new table
  }
  expect_usable_after_disconnect();
}

TEST_F(PortTest, PlainRingsOutsideMemoryDoNotRun) {
  virtio_user_setup();
  ASSERT_TRUE(port_->running());
  struct Case {
    const char* what;
    uint64_t desc, avail, used;
  };
  const Case cases[] = {
      {"desc below the region", kUaddr - 0x1000, ring_uaddr(0, kAvailOff), ring_uaddr(0, kUsedOff)},
      {"desc crosses the end", kUaddr + kMem - 0x800, ring_uaddr(0, kAvailOff), ring_uaddr(0, kUsedOff)},
      {"avail crosses the end", ring_uaddr(0, 0), kUaddr + kMem - 0x100, ring_uaddr(0, kUsedOff)},
      {"used crosses the end", ring_uaddr(0, 0), ring_uaddr(0, kAvailOff), kUaddr + kMem - 0x400},
      {"used past the end", ring_uaddr(0, 0), ring_uaddr(0, kAvailOff), kUaddr + kMem},
      {"at the top of the address space", ~uint64_t{0} - 0xf, ring_uaddr(0, kAvailOff), ring_uaddr(0, kUsedOff)},
      {"address 0", 0, 0, 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    expect_ok(kSetVringAddr, kV1, vring_addr(0, c.desc, c.avail, c.used));
    EXPECT_FALSE(port_->running());
    expect_ok(kSetVringAddr, kV1, vring_addr(0, ring_uaddr(0, 0), ring_uaddr(0, kAvailOff), ring_uaddr(0, kUsedOff)));
    EXPECT_TRUE(port_->running());
  }
  // A ring across two regions adjacent in front-end VA space (their host
  // mappings are not adjacent): does not run.
  {
    const std::string two = unique_name("split");
    const int fa = make_memfd(two, kMem / 2), fb = make_memfd(two, kMem / 2);
    init_rings(fa);
    expect_ok(kSetMemTable, kNeedReply,
              mem_table({region(kUaddr, kMem / 2, kUaddr), region(kUaddr + kMem / 2, kMem / 2, kUaddr + kMem / 2)}),
              {fa, fb});
    EXPECT_TRUE(port_->running());
    expect_ok(kSetVringAddr, kV1,
              vring_addr(0, kUaddr + kMem / 2 - 0x800, ring_uaddr(0, kAvailOff), ring_uaddr(0, kUsedOff)));
    EXPECT_FALSE(port_->running());
    expect_ok(kSetVringAddr, kV1, vring_addr(0, ring_uaddr(0, 0), ring_uaddr(0, kAvailOff), ring_uaddr(0, kUsedOff)));
    EXPECT_TRUE(port_->running());
  }
  // Plain-mode ring addresses are front-end virtual addresses, not GPAs: a
  // table whose GPAs differ from its VAs, rings given as GPAs, does not run.
  port_->disconnect();
  expect_kept_closed();
  virtio_user_setup();
  const std::string name = unique_name("gpa");
  expect_ok(kSetMemTable, kNeedReply, mem_table({region(kGpa, kMem, kUaddr)}), {make_memfd(name, kMem)});
  EXPECT_TRUE(port_->running());
  expect_ok(kSetVringAddr, kV1,
            vring_addr(0, kGpa + kRingOff, kGpa + kRingOff + kAvailOff, kGpa + kRingOff + kUsedOff));
  EXPECT_FALSE(port_->running());
  expect_usable_after_disconnect();
}

// Regression (found by this suite): in plain mode a ring's host address is
// the region's mapping + (ring VA - region VA). A region whose userspace_addr
// disagrees with its file offset mod the ring alignment puts rings whose
// front-end addresses are aligned (check_request) at misaligned host
// addresses, where the Virtqueue would access avail.idx / used.idx atomically
// (UB; UBSan "misaligned address" in the first burst). The pair must not run.
// fuzz/corpus/vhost_user/regress_odd_uaddr is the same case for the fuzzer.
TEST_F(PortTest, PlainRingsAtMisalignedHostAddressesDoNotRun) {
  virtio_user_setup();
  ASSERT_TRUE(port_->running());
  const std::string name = unique_name("odd");
  // The front end says its region starts at an odd VA; the mapping of the file
  // starts on a page. Ring VAs kUaddr + ... are aligned; their host addresses
  // are one byte off.
  expect_ok(kSetMemTable, kNeedReply, mem_table({region(kUaddr + 1, kMem - 1, kUaddr + 1, 0)}),
            {make_memfd(name, kMem)});
  EXPECT_FALSE(port_->running()) << "avail/used rings would be accessed atomically at odd host addresses";
  if (port_->running()) port_->disconnect();  // never burst on it
  expect_usable_after_disconnect();
}

TEST_F(PortTest, BadQueueSizesAreRefused) {
  virtio_user_setup();
  for (uint32_t num : {0u, 3u, 100u, 255u, 32769u, 49152u, 65536u, 65537u, 0x80000000u, 0xffffffffu}) {
    SCOPED_TRACE(num);
    expect_refused(kSetVringNum, kNeedReply, state(0, num));
    EXPECT_TRUE(port_->running());
  }
  expect_refused(kSetVringNum, kV1, state(1, 0));
  for (uint32_t num : {1u, 2u, 32768u, kQueueSize}) expect_ok(kSetVringNum, kNeedReply, state(0, num));
  // Past 16 bits, a base is no split-ring index; enable takes 0 or 1.
  expect_refused(kSetVringBase, kNeedReply, state(0, 0x10000));
  expect_refused(kSetVringEnable, kNeedReply, state(0, 2));
  // Misaligned ring addresses and unknown address flags.
  expect_refused(kSetVringAddr, kNeedReply, vring_addr(0, ring_uaddr(0, 8), ring_uaddr(0, kAvailOff), ring_uaddr(0, kUsedOff)));
  expect_refused(kSetVringAddr, kNeedReply, vring_addr(0, ring_uaddr(0, 0), ring_uaddr(0, kAvailOff + 1), ring_uaddr(0, kUsedOff)));
  expect_refused(kSetVringAddr, kNeedReply, vring_addr(0, ring_uaddr(0, 0), ring_uaddr(0, kAvailOff), ring_uaddr(0, kUsedOff + 2)));
  expect_refused(kSetVringAddr, kNeedReply,
                 vring_addr(0, ring_uaddr(0, 0), ring_uaddr(0, kAvailOff), ring_uaddr(0, kUsedOff), 2));
  EXPECT_TRUE(port_->running());
  expect_usable_after_disconnect();
}

TEST_F(PortTest, VringIndicesOutOfRangeAreRefused) {
  virtio_user_setup();
  // 2 queue pairs: vrings 0..3. 32-bit indices are checked whole: 0x10000 and
  // 0x10001 truncate to 0 and 1 in 16 bits.
  for (uint32_t index : {4u, 5u, 31u, 32u, 255u, 256u, 0x10000u, 0x10001u, 0x80000000u, 0xffffffffu}) {
    SCOPED_TRACE(index);
    expect_refused(kSetVringNum, kNeedReply, state(index, kQueueSize));
    expect_refused(kSetVringBase, kNeedReply, state(index, 1));
    expect_refused(kSetVringEnable, kNeedReply, state(index, 0));
    expect_refused(kSetVringAddr, kNeedReply,
                   vring_addr(index, ring_uaddr(0, 0), ring_uaddr(0, kAvailOff), ring_uaddr(0, kUsedOff)));
    expect_refused(kGetVringBase, kV1, state(index, 0));
  }
  // u64 payloads: index in bits 0..7, NOFD bit 8, nothing else.
  for (uint64_t v : {uint64_t{4}, uint64_t{0xff}, uint64_t{0x10000}, uint64_t{0x200}, uint64_t{1} << 32,
                     (uint64_t{1} << 63) | 1}) {
    SCOPED_TRACE(v);
    expect_refused(kSetVringKick, kNeedReply, u64(v), {make_eventfd()});
    expect_refused(kSetVringCall, kNeedReply, u64(v | kVringNoFd));
    expect_refused(kSetVringErr, kV1, u64(v), {make_eventfd()});
  }
  // Nothing reached rings 0 and 1 (0x10000 -> 0, 0x10001 -> 1): still
  // running, bases as set.
  EXPECT_TRUE(port_->running());
  for (uint32_t ring = 0; ring < 2; ++ring) {
    const Result r = send(kGetVringBase, kV1, state(ring, 0));
    ASSERT_EQ(r.reply.size(), sizeof(Header) + sizeof(VringState));
    EXPECT_EQ(decode<VringState>(std::span<const uint8_t>(r.reply).subspan(sizeof(Header))).num.get(), base_of(ring));
  }
  expect_usable_after_disconnect();
}

TEST_F(PortTest, BadHeadersCloseTheConnection) {
  virtio_user_setup();
  // REPLY on a request, unknown flag bits, version != 1; with and without
  // NEED_REPLY, with and without descriptors.
  for (uint32_t flags : {0x5u, 0xdu, 0x11u, 0x19u, 0x101u, 0x80000001u, 0x0u, 0x2u, 0x3u, 0x8u, 0xau, 0xbu}) {
    SCOPED_TRACE(flags);
    expect_bad_header(kGetFeatures, flags, {});
    expect_bad_header(kSetFeatures, flags, u64(acked_));
    expect_bad_header(kSetVringKick, flags, u64(0), {make_eventfd()});
    expect_bad_header(kSetMemTable, flags, mem_table({region(0, kMem, 0x1000000)}), {make_memfd(unique_name("h"), kMem)});
  }
  EXPECT_EQ(port_->stats().refused, 48u);
  EXPECT_TRUE(port_->running());
  expect_usable_after_disconnect();
}

TEST_F(PortTest, FeaturesNotOfferedAreRefused) {
  const uint64_t offered = port_->offered_features();
  for (uint64_t bad : {uint64_t{1} << 0, uint64_t{1} << 5, uint64_t{1} << 34, uint64_t{1} << 63,
                       uint64_t{1} << 26 /* LOG_ALL */, ~offered}) {
    SCOPED_TRACE(bad);
    expect_refused(kSetFeatures, kNeedReply, u64(kFeatureVersion1 | bad));
    expect_refused(kSetFeatures, kV1, u64(kFeatureVersion1 | bad));
  }
  const uint64_t protocol = port_->offered_protocol_features();
  for (uint64_t bad : {uint64_t{1} << 1 /* LOG_SHMFD */, uint64_t{1} << 9 /* CONFIG */,
                       uint64_t{1} << 14 /* INBAND_NOTIFICATIONS */, uint64_t{1} << 15 /* CONFIGURE_MEM_SLOTS */,
                       uint64_t{1} << 16 /* STATUS */, uint64_t{1} << 63, ~protocol}) {
    SCOPED_TRACE(bad);
    expect_refused(kSetProtocolFeatures, kNeedReply, u64(kProtocolReplyAck | bad));
    expect_refused(kSetProtocolFeatures, kV1, u64(bad));
  }
  // Exactly the offer is fine.
  expect_ok(kSetProtocolFeatures, kNeedReply, u64(protocol));
  expect_ok(kSetFeatures, kNeedReply, u64(offered));
  expect_usable_after_disconnect();
}

TEST_F(PortTest, BackendChannelNeedsBackendReqNegotiated) {
  // Before any SET_PROTOCOL_FEATURES.
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  owned_.push_back(sv[0]);
  expect_refused(kSetBackendReqFd, kNeedReply, {}, {sv[1]});
  // After a SET_PROTOCOL_FEATURES without BACKEND_REQ (virtio-user's).
  expect_ok(kSetProtocolFeatures, kV1, u64(kProtocolReplyAck | kProtocolMq));
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  owned_.push_back(sv[0]);
  expect_refused(kSetBackendReqFd, kNeedReply, {}, {sv[1]});
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  owned_.push_back(sv[0]);
  expect_refused(kSetBackendReqFd, kV1, {}, {sv[1]});
  // Once negotiated it is kept; a second one replaces (and closes) the first.
  expect_ok(kSetProtocolFeatures, kV1, u64(kProtocolReplyAck | kProtocolBackendReq));
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  owned_.push_back(sv[0]);
  const int first = sv[1];
  expect_ok(kSetBackendReqFd, kNeedReply, {}, {first}, {first});
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  owned_.push_back(sv[0]);
  expect_ok(kSetBackendReqFd, kNeedReply, {}, {sv[1]}, {sv[1]});
  EXPECT_TRUE(is_closed(first));
  port_->disconnect();
  EXPECT_TRUE(is_closed(sv[1]));
  expect_usable_after_disconnect();
}

TEST_F(PortTest, UnknownRequestsAreRefused) {
  virtio_user_setup();
  for (uint32_t request : {0u, 6u /* SET_LOG_BASE */, 7u, 19u, 20u, 23u, 24u, 25u, 26u, 27u, 28u, 29u, 30u, 31u, 32u,
                           33u, 34u, 35u, 39u, 40u, 41u, 100u, 0x10000u, 0xffffffffu}) {
    SCOPED_TRACE(request);
    expect_refused(request, kNeedReply, {});
    expect_refused(request, kNeedReply, u64(0));
    expect_refused(request, kV1, u64(0), {make_eventfd()});
  }
  EXPECT_TRUE(port_->running());
  expect_usable_after_disconnect();
}

TEST_F(PortTest, MemorySlotMessagesAreRefused) {
  virtio_user_setup();
  // CONFIGURE_MEM_SLOTS is not offered: GET_MAX_MEM_SLOTS has no value to
  // give (closes even with NEED_REPLY), ADD/REM_MEM_REG fail.
  expect_refused(kGetMaxMemSlots, kV1, {});
  expect_refused(kGetMaxMemSlots, kNeedReply, {});
  const std::string name = unique_name("slot");
  expect_refused(kAddMemReg, kNeedReply, mem_reg(region(kUaddr + kMem, kMem, kUaddr + kMem)), {make_memfd(name, kMem)});
  expect_refused(kAddMemReg, kV1, mem_reg(region(kUaddr + kMem, kMem, kUaddr + kMem)), {make_memfd(name, kMem)});
  expect_refused(kRemMemReg, kNeedReply, mem_reg(region(kUaddr, kMem, kUaddr)), {make_memfd(name, kMem)});
  expect_refused(kRemMemReg, kNeedReply, mem_reg(region(kUaddr, kMem, kUaddr)));
  EXPECT_EQ(mappings_of(name), 0u);
  EXPECT_EQ(mappings_of(mem_name_), 1u);
  EXPECT_TRUE(port_->running());
  expect_usable_after_disconnect();
}

}  // namespace
}  // namespace vxlate::dataplane::vhost_user::port_test
