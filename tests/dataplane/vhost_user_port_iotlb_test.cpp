// vhost_user::Port device IOTLB messages: UPDATEs refused or counted, INVALIDATEs whatever their garbage
// (wrapping, size 0), and a ring miss sent on the back-end channel, and again only once the front end read it.
#include "vxlate/dataplane/vhost_user.h"

#include <sys/ioctl.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

#include "dataplane/vhost_user_port_test_support.h"

namespace vxlate::dataplane::vhost_user::port_test {
namespace {

TEST_F(PortTest, IotlbNeedsAccessPlatform) {
  // Nothing negotiated yet.
  expect_refused(kIotlbMsg, kNeedReply, iotlb(kIotlbInvalidate, 0, 0, 0, 0));
  expect_refused(kIotlbMsg, kNeedReply, iotlb(kIotlbUpdate, 0x1000, 0x1000, kUaddr, kPermRw));
  // virtio-user: plain mode, memory in place.
  virtio_user_setup();
  expect_refused(kIotlbMsg, kNeedReply, iotlb(kIotlbUpdate, 0x1000, 0x1000, kUaddr, kPermRw));
  expect_refused(kIotlbMsg, kNeedReply, iotlb(kIotlbInvalidate, 0x1000, 0x1000, 0, 0));
  expect_refused(kIotlbMsg, kV1, iotlb(kIotlbInvalidate, 0, 0, 0, 0));
  EXPECT_EQ(port_->stats().updates, 0u);
  EXPECT_EQ(port_->stats().invalidates, 0u);
  expect_usable_after_disconnect();
}

TEST_F(PortTest, BadIotlbUpdatesAreRefused) {
  qemu_setup();
  // Two regions adjacent in front-end VA space (and GPA), replacing the first.
  constexpr uint64_t M = 1 << 20;
  const std::string name = unique_name("two");
  expect_ok(kSetMemTable, kNeedReply, mem_table({region(0, M, kUaddr), region(M, M, kUaddr + M)}),
            {make_memfd(name, M), make_memfd(name, M)});
  const uint64_t top = ~uint64_t{0} - 0xfff;
  struct Case {
    const char* what;
    uint8_t type;
    uint64_t iova, size, uaddr;
    uint8_t perm;
  };
  const Case cases[] = {
      {"perm 0", kIotlbUpdate, 0x1000, 0x1000, kUaddr, 0},
      {"perm 4", kIotlbUpdate, 0x1000, 0x1000, kUaddr, 4},
      {"perm 0xff", kIotlbUpdate, 0x1000, 0x1000, kUaddr, 0xff},
      {"size 0", kIotlbUpdate, 0x1000, 0, kUaddr, kPermRw},
      {"iova + size wraps", kIotlbUpdate, top, 0x2000, kUaddr, kPermRo},
      {"uaddr + size wraps", kIotlbUpdate, 0x1000, 0x2000, top, kPermRo},
      {"uaddr below memory", kIotlbUpdate, 0x1000, 0x1000, kUaddr - 0x1000, kPermRw},
      {"uaddr above memory", kIotlbUpdate, 0x1000, 0x1000, kUaddr + 2 * M, kPermRw},
      {"uaddr runs off the end", kIotlbUpdate, 0x1000, 0x2000, kUaddr + 2 * M - 0x1000, kPermRw},
      {"uaddr spans two regions", kIotlbUpdate, 0x1000, 0x2000, kUaddr + M - 0x1000, kPermRw},
      {"uaddr nowhere", kIotlbUpdate, 0x1000, 0x1000, 0x1000, kPermRw},
      {"type 0", 0, 0x1000, 0x1000, kUaddr, kPermRw},
      {"type MISS", kIotlbMiss, 0x1000, 0x1000, kUaddr, kPermRw},
      {"type ACCESS_FAIL", kIotlbAccessFail, 0x1000, 0x1000, kUaddr, kPermRw},
      {"type BATCH_BEGIN", 5, 0x1000, 0x1000, kUaddr, kPermRw},
      {"type BATCH_END", 6, 0x1000, 0x1000, kUaddr, kPermRw},
      {"type 0xff", 0xff, 0x1000, 0x1000, kUaddr, kPermRw},
  };
  const uint64_t updates = port_->stats().updates;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    expect_refused(kIotlbMsg, kNeedReply, iotlb(c.type, c.iova, c.size, c.uaddr, c.perm));
  }
  expect_refused(kIotlbMsg, kV1, iotlb(kIotlbUpdate, 0x1000, 0x1000, kUaddr, 0));
  EXPECT_EQ(port_->stats().updates, updates);
  // The same pages, each inside one region, are fine.
  expect_ok(kIotlbMsg, kNeedReply, iotlb(kIotlbUpdate, 0x1000, 0x1000, kUaddr + M - 0x1000, kPermRw));
  expect_ok(kIotlbMsg, kNeedReply, iotlb(kIotlbUpdate, 0x2000, 0x1000, kUaddr + M, kPermRo));
  expect_ok(kIotlbMsg, kNeedReply, iotlb(kIotlbUpdate, 0x3000, 0x1000, kUaddr + 2 * M - 0x1000, kPermWo));
  EXPECT_EQ(port_->stats().updates, updates + 3);
  expect_usable_after_disconnect();
}

TEST_F(PortTest, InvalidatesAreAcceptedWhateverTheirGarbage) {
  qemu_setup();
  const uint64_t top = ~uint64_t{0} - 0xfff;
  struct Case {
    const char* what;
    uint64_t iova, size, uaddr;
    uint8_t perm;
  };
  const Case cases[] = {
      {"garbage uaddr and perm", 0x1000, 0x1000, 0xdeadbeefcafef00d, 0xa5},
      {"perm 0", 0x1000, 0x1000, 0, 0},
      {"perm 0xff, uaddr wraps", 0x1000, 0x1000, ~uint64_t{0}, 0xff},
      {"size 0 (everything)", 0x1000, 0, 0x1234, 7},
      {"size 0 at 0", 0, 0, 0, 0},
      {"iova + size wraps (QEMU's upper IOMMU section)", 0xfef00000, 0 - uint64_t{0xfef00000}, 0, 0},
      {"iova + size wraps past 0", 0xfef00000, 0 - uint64_t{0xfef00000} + 0x5000, 0, 0},
      {"last page", top, 0x1000, 0, 0},
      {"everything from 0, size 2^64 - 1", 0, ~uint64_t{0}, 0, 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const uint64_t n = port_->stats().invalidates;
    expect_ok(kIotlbMsg, kNeedReply, iotlb(kIotlbInvalidate, c.iova, c.size, c.uaddr, c.perm));
    EXPECT_EQ(port_->stats().invalidates, n + 1);
    // Without NEED_REPLY too (no reply, the connection goes on).
    expect_ok(kIotlbMsg, kV1, iotlb(kIotlbInvalidate, c.iova, c.size, c.uaddr, c.perm));
  }
  EXPECT_TRUE(port_->running());
  expect_usable_after_disconnect();
}

// An INVALIDATE removes every entry at or after iova when iova + size wraps,
// and everything when size is 0, observed through the rings' translation in
// zero-length bursts (the ring areas each have their own UPDATE).
TEST_F(PortTest, WrappingAndZeroSizeInvalidatesRemoveAtAndAfterIova) {
  qemu_setup();
  for (uint32_t ring = 0; ring < 2; ++ring)
    for (uint64_t part : {kDescOff, kAvailOff, kUsedOff})
      expect_ok(kIotlbMsg, kNeedReply, iotlb(kIotlbUpdate, ring_iova(ring, part), 0x1000, ring_uaddr(ring, part), kPermRw));
  // An unrelated entry far below the rings.
  expect_ok(kIotlbMsg, kNeedReply, iotlb(kIotlbUpdate, 0x1000, 0x1000, kUaddr, kPermRw));
  const uint64_t misses = bursts(0);
  EXPECT_EQ(misses, 0u) << "every ring area is cached";

  // Wraps: [ring 0's used page, 2^64) plus [0, 0x800) after the wrap.
  const uint64_t from = ring_iova(0, kUsedOff);
  expect_ok(kIotlbMsg, kNeedReply, iotlb(kIotlbInvalidate, from, (0 - from) + 0x800, 0, 0));
  EXPECT_GT(bursts(0), misses) << "ring 0's used page and ring 1 are gone";
  // Put back only ring 0's used page: its desc and avail pages (below iova)
  // survived, so the receive ring translates again; ring 1 (above) does not.
  expect_ok(kIotlbMsg, kNeedReply, iotlb(kIotlbUpdate, from, 0x1000, ring_uaddr(0, kUsedOff), kPermRw));
  uint64_t before = port_->stats().ring_misses;
  rcu_.online(reader_);
  (void)port_->enqueue_burst(reader_, 0, nullptr, 0);  // ring 0
  rcu_.quiescent(reader_);
  rcu_.offline(reader_);
  EXPECT_EQ(port_->stats().ring_misses, before) << "entries below iova must survive a wrapping INVALIDATE";
  rcu_.online(reader_);
  (void)port_->dequeue_burst(reader_, 0, nullptr, nullptr, 0);  // ring 1
  rcu_.quiescent(reader_);
  rcu_.offline(reader_);
  EXPECT_EQ(port_->stats().ring_misses, before + 1) << "entries above iova must be gone";

  // Size 0 at an iova above every entry: still everything.
  for (uint64_t part : {kDescOff, kAvailOff, kUsedOff})
    expect_ok(kIotlbMsg, kNeedReply, iotlb(kIotlbUpdate, ring_iova(1, part), 0x1000, ring_uaddr(1, part), kPermRw));
  before = bursts(0);
  EXPECT_EQ(bursts(0), before) << "both rings cached again";
  expect_ok(kIotlbMsg, kNeedReply, iotlb(kIotlbInvalidate, kIova + 0x100000000, 0, 0x42, 0x42));
  EXPECT_EQ(bursts(0), before + 2) << "size 0 removes everything";
  // And the far entry went too: an INVALIDATE of just it removes nothing more.
  expect_ok(kIotlbMsg, kNeedReply, iotlb(kIotlbInvalidate, 0x1000, 0x1000, 0, 0));
  expect_usable_after_disconnect();
}

// A ring area that misses is asked for once on the back-end channel: a MISS
// with flags exactly 0x1 (no NEED_REPLY), type MISS, the page's IOVA.
TEST_F(PortTest, RingMissGoesOutOnTheBackendChannel) {
  qemu_setup();
  EXPECT_GT(bursts(0), 0u);  // only the used rings were sent
  (void)port_->service(std::chrono::steady_clock::now());
  EXPECT_GE(port_->stats().misses_sent, 1u);
  uint8_t buf[sizeof(Header) + sizeof(IotlbMsg)];
  const ssize_t n = ::recv(backend_peer_, buf, sizeof buf, MSG_DONTWAIT);
  ASSERT_EQ(n, static_cast<ssize_t>(sizeof buf));
  const auto h = decode<Header>(std::span<const uint8_t>(buf));
  EXPECT_EQ(h.request.get(), kBackendIotlbMsg);
  EXPECT_EQ(h.flags.get(), kFlagVersion);
  EXPECT_EQ(h.size.get(), sizeof(IotlbMsg));
  const auto m = decode<IotlbMsg>(std::span<const uint8_t>(buf).subspan(sizeof(Header)));
  EXPECT_EQ(m.type, kIotlbMiss);
  EXPECT_EQ(m.iova.get() % 0x1000, 0u);
  EXPECT_TRUE(m.iova.get() == ring_iova(0, kDescOff) || m.iova.get() == ring_iova(0, kAvailOff) ||
              m.iova.get() == ring_iova(1, kDescOff) || m.iova.get() == ring_iova(1, kAvailOff))
      << std::hex << m.iova.get();
  expect_usable_after_disconnect();
}

// A ring that still misses after kMissRetry asks for its page again, and the
// MISS goes out again only once the front end has read the first: a retry
// queued behind an unread first could reach QEMU after the first was
// answered and the page unmapped and mapped again with other permissions
// (vhost_user.h, kMissRetry). The lcore's throttle runs on the real clock,
// hence the sleeps.
TEST_F(PortTest, AMissIsSentAgainOnlyOnceTheFrontEndReadTheFirst) {
  constexpr size_t kMsg = sizeof(Header) + sizeof(IotlbMsg);
  auto unread = [&] {
    int n = -1;
    EXPECT_EQ(::ioctl(backend_peer_, FIONREAD, &n), 0);
    return static_cast<size_t>(n);
  };
  qemu_setup();
  EXPECT_GT(bursts(0), 0u);
  (void)port_->service(std::chrono::steady_clock::now());
  const PortStats first = port_->stats();
  ASSERT_GE(first.misses_sent, 1u);
  EXPECT_EQ(first.misses_retried, 0u);
  EXPECT_EQ(unread(), first.misses_sent * kMsg);

  // Past kMissRetry, unanswered and still unread: the rings ask again, the
  // control side holds the retries.
  std::this_thread::sleep_for(kMissRetry + std::chrono::milliseconds(20));
  (void)bursts(0);
  (void)port_->service(std::chrono::steady_clock::now());
  const PortStats held = port_->stats();
  EXPECT_EQ(held.misses_sent, first.misses_sent);
  EXPECT_EQ(held.misses_retried, 0u);
  EXPECT_GE(held.misses_held, 1u);
  EXPECT_EQ(unread(), first.misses_sent * kMsg);

  // The front end reads them and answers none (as QEMU does for an IOVA the
  // guest has not mapped): the next ask goes out.
  uint8_t buf[kMsg];
  for (uint64_t i = 0; i < first.misses_sent; ++i)
    ASSERT_EQ(::recv(backend_peer_, buf, sizeof buf, MSG_DONTWAIT), static_cast<ssize_t>(kMsg));
  EXPECT_EQ(unread(), 0u);
  std::this_thread::sleep_for(kMissRetry + std::chrono::milliseconds(20));
  (void)bursts(0);
  (void)port_->service(std::chrono::steady_clock::now());
  const PortStats retried = port_->stats();
  EXPECT_GE(retried.misses_retried, 1u);
  EXPECT_EQ(retried.misses_held, held.misses_held);
  EXPECT_EQ(unread(), (retried.misses_sent - first.misses_sent) * kMsg);
  ASSERT_GT(unread(), 0u);
  ASSERT_EQ(::recv(backend_peer_, buf, sizeof buf, MSG_DONTWAIT), static_cast<ssize_t>(kMsg));
  const auto m = decode<IotlbMsg>(std::span<const uint8_t>(buf).subspan(sizeof(Header)));
  EXPECT_EQ(m.type, kIotlbMiss);
  EXPECT_TRUE(m.iova.get() == ring_iova(0, kDescOff) || m.iova.get() == ring_iova(0, kAvailOff) ||
              m.iova.get() == ring_iova(1, kDescOff) || m.iova.get() == ring_iova(1, kAvailOff))
      << std::hex << m.iova.get();
  expect_usable_after_disconnect();
}

TEST_F(PortTest, DeviceIotlbUpdateAndInvalidateAreCounted) {
  qemu_setup();
  const PortStats s0 = port_->stats();
  expect_ok(kIotlbMsg, kNeedReply, iotlb(kIotlbUpdate, 0x200000, 0x10000, kUaddr + 0x100000, kPermRw));
  PortStats s = port_->stats();
  EXPECT_EQ(s.updates, s0.updates + 1);
  EXPECT_EQ(s.updates_refused, s0.updates_refused);
  expect_ok(kIotlbMsg, kNeedReply, iotlb(kIotlbInvalidate, 0x200000, 0x10000, 0, 0));
  s = port_->stats();
  EXPECT_EQ(s.invalidates, s0.invalidates + 1);
  EXPECT_GT(s.ack_ns_max, 0u);
  EXPECT_GE(s.ack_ns_total, s.ack_ns_max);
  // A refused UPDATE is counted as such.
  expect_refused(kIotlbMsg, kNeedReply, iotlb(kIotlbUpdate, 0x200000, 0x1000, kUaddr + kMem, kPermRw));
  EXPECT_EQ(port_->stats().updates_refused, s0.updates_refused + 1);
  EXPECT_EQ(port_->stats().messages, s0.messages + 3);
}

}  // namespace
}  // namespace vxlate::dataplane::vhost_user::port_test
