// vhost_user::Port negotiations (QEMU 7.2 with the device IOTLB, virtio-user in plain mode), GET_VRING_BASE,
// and what disconnect(), RESET_OWNER and a second memory table (hot-plug) release.
#include "vxlate/dataplane/vhost_user.h"

#include <sys/socket.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <span>
#include <string>

#include "dataplane/vhost_user_port_test_support.h"

namespace vxlate::dataplane::vhost_user::port_test {
namespace {

TEST_F(PortTest, QemuNegotiationWithDeviceIotlbRuns) {
  qemu_setup();
  EXPECT_TRUE(port_->running());
  EXPECT_EQ(port_->stats().updates, 2u);
  EXPECT_EQ(port_->stats().refused, 0u);
  // The memory table is the only user of the region's fd: it was closed.
  EXPECT_EQ(mappings_of(mem_name_), 1u);
}

TEST_F(PortTest, VirtioUserNegotiationRunsInPlainMode) {
  virtio_user_setup();
  EXPECT_TRUE(port_->running());
  EXPECT_EQ(port_->stats().refused, 0u);
  // Descriptors translate through the memory table in plain mode; the rings
  // were checked against the regions' front-end addresses (they run).
  EXPECT_EQ(bursts(0), 0u);
}

TEST_F(PortTest, GetVringBaseReturnsTheBaseAndStopsThePair) {
  for (int mode = 0; mode < 2; ++mode) {
    SCOPED_TRACE(mode == 0 ? "qemu" : "virtio-user");
    if (mode == 0) qemu_setup();
    else virtio_user_setup();
    const uint64_t flushes = port_->stats().iotlb_flushes;
    for (uint32_t ring = 0; ring < 2; ++ring) {
      ASSERT_TRUE(ring == 1 || port_->running());
      const Result r = send(kGetVringBase, kV1, state(ring, 0));
      EXPECT_EQ(r.action, Port::Action::kContinue);
      ASSERT_EQ(r.reply.size(), sizeof(Header) + sizeof(VringState));
      const auto s = decode<VringState>(std::span<const uint8_t>(r.reply).subspan(sizeof(Header)));
      EXPECT_EQ(s.index.get(), ring);
      EXPECT_EQ(s.num.get(), base_of(ring));
    }
    EXPECT_FALSE(port_->running());
    // The device IOTLB is flushed on GET_VRING_BASE (notes 0.6).
    EXPECT_GE(port_->stats().iotlb_flushes, flushes + 2);
    // QEMU restarts the rings: kick, and the pair runs again from the base.
    for (uint32_t ring = 0; ring < 2; ++ring) {
      const int kick = make_eventfd();
      expect_ok(kSetVringKick, kV1, u64(ring), {kick}, {kick});
      kept_.push_back(kick);
    }
    EXPECT_TRUE(port_->running());
    const Result r = send(kGetVringBase, kV1, state(1, 0));
    ASSERT_EQ(r.reply.size(), sizeof(Header) + sizeof(VringState));
    EXPECT_EQ(decode<VringState>(std::span<const uint8_t>(r.reply).subspan(sizeof(Header))).num.get(), base_of(1));
    port_->disconnect();
    expect_kept_closed();
  }
}

TEST_F(PortTest, DisconnectUnmapsAndClosesEverything) {
  const size_t fds_before = open_fds();
  qemu_setup();
  EXPECT_EQ(mappings_of(mem_name_), 1u);
  EXPECT_TRUE(port_->running());
  // kick x2, call x2, err x4, the masked calls of pair 1 x2, the back-end channel
  EXPECT_EQ(kept_.size(), 11u);
  EXPECT_EQ(open_fds(), fds_before + kept_.size() + 1 /* the test's end of the channel */);
  const uint64_t disconnects = port_->stats().disconnects;
  port_->disconnect();
  EXPECT_FALSE(port_->running());
  EXPECT_EQ(mappings_of(mem_name_), 0u);
  expect_kept_closed();
  EXPECT_EQ(open_fds(), fds_before + 1);
  EXPECT_EQ(port_->stats().disconnects, disconnects + 1);
  // The back end's end of the channel is closed: the peer sees EOF.
  char c;
  EXPECT_EQ(::recv(backend_peer_, &c, 1, MSG_DONTWAIT), 0);
  // Forgotten: no features, no memory; IOTLB messages are refused again.
  expect_refused(kIotlbMsg, kNeedReply, iotlb(kIotlbInvalidate, 0, 0, 0, 0));
  // A second disconnect is harmless.
  port_->disconnect();
  EXPECT_EQ(open_fds(), fds_before + 1);
}

// RESET_OWNER: the same clean slate as a disconnect, on a connection that
// goes on.
TEST_F(PortTest, ResetOwnerReleasesEverything) {
  qemu_setup();
  expect_ok(kResetOwner, kV1, {});
  EXPECT_FALSE(port_->running());
  EXPECT_EQ(mappings_of(mem_name_), 0u);
  expect_kept_closed();
  expect_refused(kIotlbMsg, kNeedReply, iotlb(kIotlbInvalidate, 0, 0, 0, 0));
  qemu_setup();
  EXPECT_TRUE(port_->running());
}

TEST_F(PortTest, SecondMemTableReplacesTheFirst) {
  virtio_user_setup();
  const std::string a = mem_name_;
  // Region A again (a new file under the same name: /proc/self/maps then
  // shows one line for it only if the first table's mapping went away), plus
  // a new region B, as virtio-user resends its table on hot-plug.
  const std::string b = unique_name("plug");
  const int a_again = make_memfd(a, kMem);
  expect_ok(kSetMemTable, kNeedReply,
            mem_table({region(kUaddr, kMem, kUaddr), region(kUaddr + kMem, kMem, kUaddr + kMem)}),
            {a_again, make_memfd(b, kMem)});
  EXPECT_EQ(mappings_of(a), 1u) << "the first table's mapping must be gone";
  EXPECT_EQ(mappings_of(b), 1u);
  EXPECT_TRUE(port_->running()) << "the rings are still inside memory";
  EXPECT_GE(port_->stats().iotlb_flushes, 1u);
  // Unplug A: the rings are outside memory now.
  expect_ok(kSetMemTable, kNeedReply, mem_table({region(kUaddr + kMem, kMem, kUaddr + kMem)}), {make_memfd(b, kMem)});
  EXPECT_EQ(mappings_of(a), 0u);
  EXPECT_EQ(mappings_of(b), 1u);
  EXPECT_FALSE(port_->running());
  // QEMU-style too: the IOTLB entries into the old table are flushed.
  port_->disconnect();
  expect_kept_closed();
  EXPECT_EQ(mappings_of(b), 0u);
  qemu_setup();
  const std::string q = mem_name_;
  const uint64_t flushes = port_->stats().iotlb_flushes;
  const std::string q2 = unique_name("qplug");
  expect_ok(kSetMemTable, kNeedReply, mem_table({region(0, kMem, kUaddr)}), {make_memfd(q2, kMem)});
  EXPECT_EQ(mappings_of(q), 0u);
  EXPECT_EQ(mappings_of(q2), 1u);
  EXPECT_EQ(port_->stats().iotlb_flushes, flushes + 1);
  EXPECT_GT(bursts(0), 0u) << "no translation into the old table survives";
}

}  // namespace
}  // namespace vxlate::dataplane::vhost_user::port_test
