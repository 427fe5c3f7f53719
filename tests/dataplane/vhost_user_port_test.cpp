// vhost_user::Port driven through handle_message() alone (no sockets, no
// lcore unless a test says so): the negotiations QEMU 7.2 (device IOTLB) and
// DPDK 22.11's virtio-user (plain mode) do, and every hostile message of
// vhost-user-notes.md section 7, each refused (a failure ack when it asked
// for one, else kClose) with the port usable again after disconnect().
// Invariants checked by every test: replies have flags exactly 0x5 and size
// 8; every descriptor passed is either kept (kick, call, err, back-end
// channel) or closed by the time handle_message() returns; nothing is left
// open (/proc/self/fd) or mapped (/proc/self/maps) after disconnect().
#include "vxlate/dataplane/vhost_user.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace vxlate::dataplane::vhost_user {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr uint32_t kV1 = kFlagVersion;                    // 0x1: a request without NEED_REPLY
constexpr uint32_t kNeedReply = kFlagVersion | kFlagNeedReply;  // 0x9
constexpr uint64_t kProtocolBits = (uint64_t{1} << 17) - 1;     // what QEMU 7.2 may ack

// Guest memory of the tests: one memfd region of kMem bytes; the front end
// says it lives at kUaddr (its virtual address) and kGpa. Each vring r has
// its desc table, avail ring and used ring in three pages at kRingOff + r *
// kRingStride (front-end VA in plain mode, IOVA kIova + the same offset under
// the device IOTLB).
constexpr uint64_t kMem = 2 << 20;
constexpr uint64_t kUaddr = 0x7f1200000000;
constexpr uint64_t kGpa = 0x40000000;
constexpr uint64_t kIova = 0x10000000;
constexpr uint64_t kRingOff = 0x10000;
constexpr uint64_t kRingStride = 0x4000;
constexpr uint32_t kQueueSize = 256;
constexpr uint64_t kDescOff = 0, kAvailOff = 0x1000, kUsedOff = 0x2000;

uint16_t base_of(uint32_t ring) { return static_cast<uint16_t>(100 + 7 * ring); }

// --- process-level probes ----------------------------------------------------

size_t open_fds() {
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return 0;
  size_t n = 0;
  while (const dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n - 1;  // the directory's own descriptor
}

bool is_closed(int fd) {
  errno = 0;
  return ::fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}

// Mappings of the memfd named `name` in this process.
size_t mappings_of(const std::string& name) {
  std::ifstream maps("/proc/self/maps");
  const std::string tag = "/memfd:" + name + " (deleted)";
  size_t n = 0;
  for (std::string line; std::getline(maps, line);)
    if (line.size() >= tag.size() && line.compare(line.size() - tag.size(), tag.size(), tag) == 0) ++n;
  return n;
}

std::string unique_name(const char* what) {
  static int counter = 0;
  return std::string("vu-") + what + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

int make_memfd(const std::string& name, uint64_t size) {
  const int fd = ::memfd_create(name.c_str(), MFD_CLOEXEC);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
  return fd;
}

// The guest side of the test rings: each avail ring's idx at its ring's base,
// so that the rings are empty (all zero otherwise: an avail idx 0 with a base
// of 100 would claim more chains than the ring holds and break it).
void init_rings(int memfd) {
  for (uint32_t ring = 0; ring < 4; ++ring) {
    VirtqRingHeader avail{0, base_of(ring)};
    const off_t at = static_cast<off_t>(kRingOff + ring * kRingStride + kAvailOff);
    EXPECT_EQ(::pwrite(memfd, &avail, sizeof avail, at), static_cast<ssize_t>(sizeof avail));
  }
}

int make_eventfd() {
  const int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  EXPECT_GE(fd, 0);
  return fd;
}

// --- payloads, built from the wire layouts -----------------------------------

template <typename T>
Bytes bytes(const T& v) {
  Bytes b(sizeof v);
  encode(std::span<uint8_t>(b), v);
  return b;
}

Bytes u64(uint64_t v) {
  Le64 le;
  le.set(v);
  return bytes(le);
}

Bytes state(uint32_t index, uint32_t num) {
  VringState s{};
  s.index.set(index);
  s.num.set(num);
  return bytes(s);
}

Bytes vring_addr(uint32_t index, uint64_t desc, uint64_t avail, uint64_t used, uint32_t flags = 0) {
  VringAddr a{};
  a.index.set(index);
  a.flags.set(flags);
  a.desc_user_addr.set(desc);
  a.avail_user_addr.set(avail);
  a.used_user_addr.set(used);
  return bytes(a);
}

MemRegion region(uint64_t gpa, uint64_t size, uint64_t uaddr, uint64_t offset = 0) {
  MemRegion r{};
  r.guest_phys_addr.set(gpa);
  r.memory_size.set(size);
  r.userspace_addr.set(uaddr);
  r.mmap_offset.set(offset);
  return r;
}

// A SET_MEM_TABLE payload: `nregions` (default: the regions given), padding,
// then the regions.
Bytes mem_table(const std::vector<MemRegion>& regions, uint32_t padding = 0, int64_t nregions = -1) {
  MemoryHead head{};
  head.nregions.set(nregions < 0 ? static_cast<uint32_t>(regions.size()) : static_cast<uint32_t>(nregions));
  head.padding.set(padding);
  Bytes b = bytes(head);
  for (const MemRegion& r : regions) {
    const Bytes rb = bytes(r);
    b.insert(b.end(), rb.begin(), rb.end());
  }
  return b;
}

Bytes iotlb(uint8_t type, uint64_t iova, uint64_t size, uint64_t uaddr, uint8_t perm) {
  IotlbMsg m{};
  m.iova.set(iova);
  m.size.set(size);
  m.uaddr.set(uaddr);
  m.perm = perm;
  m.type = type;
  return bytes(m);
}

Bytes mem_reg(const MemRegion& r) {
  MemRegMsg m{};
  m.region = r;
  return bytes(m);
}

struct Result {
  Port::Action action = Port::Action::kContinue;
  Bytes reply;
};

class PortTest : public ::testing::Test {
 protected:
  void SetUp() override { fds_at_start_ = open_fds(); }

  void TearDown() override {
    port_->disconnect();
    EXPECT_FALSE(port_->running());
    for (int fd : owned_) ::close(fd);
    owned_.clear();
    EXPECT_EQ(open_fds(), fds_at_start_) << "descriptor leak";
  }

  // One message. Every fd passed must, on return, be either closed or listed
  // in `kept` (then it must still be open).
  Result send(uint32_t request, uint32_t flags, const Bytes& payload, std::vector<int> fds = {},
              std::vector<int> kept = {}) {
    Header h{};
    h.request.set(request);
    h.flags.set(flags);
    h.size.set(static_cast<uint32_t>(payload.size()));
    Result r;
    r.action = port_->handle_message(h, payload, fds, &r.reply);
    for (int fd : fds) {
      const bool keep = std::find(kept.begin(), kept.end(), fd) != kept.end();
      if (keep) {
        EXPECT_FALSE(is_closed(fd)) << "request " << request << ": fd " << fd << " should be kept";
      } else {
        EXPECT_TRUE(is_closed(fd)) << "request " << request << ": fd " << fd << " leaked";
      }
    }
    if (!r.reply.empty()) {
      // Every reply: the request's id, flags exactly 0x5, and its size.
      EXPECT_GE(r.reply.size(), sizeof(Header));
      const auto rh = decode<Header>(r.reply);
      EXPECT_EQ(rh.request.get(), request);
      EXPECT_EQ(rh.flags.get(), 0x5u);
      EXPECT_EQ(rh.size.get(), r.reply.size() - sizeof(Header));
    }
    return r;
  }

  static uint64_t reply_u64(const Result& r) {
    EXPECT_EQ(r.reply.size(), sizeof(Header) + 8);
    if (r.reply.size() != sizeof(Header) + 8) return ~uint64_t{0};
    return decode<Le64>(std::span<const uint8_t>(r.reply).subspan(sizeof(Header))).get();
  }

  // A GET_*: a u64 reply of size 8.
  uint64_t get_u64(uint32_t request) {
    const Result r = send(request, kV1, {});
    EXPECT_EQ(r.action, Port::Action::kContinue);
    return reply_u64(r);
  }

  // A message the port must accept: with NEED_REPLY an ack of 0, else no reply.
  void expect_ok(uint32_t request, uint32_t flags, const Bytes& payload, std::vector<int> fds = {},
                 std::vector<int> kept = {}) {
    const Result r = send(request, flags, payload, fds, kept);
    EXPECT_EQ(r.action, Port::Action::kContinue) << "request " << request;
    if (flags & kFlagNeedReply) {
      EXPECT_EQ(reply_u64(r), 0u) << "request " << request;
    } else {
      EXPECT_TRUE(r.reply.empty()) << "request " << request;
    }
  }

  // A message the port must refuse: with NEED_REPLY (on a request whose reply
  // is not a value) a failure ack and the connection goes on; otherwise
  // kClose and no reply. Every fd passed is closed.
  void expect_refused(uint32_t request, uint32_t flags, const Bytes& payload, std::vector<int> fds = {}) {
    const uint64_t refused = port_->stats().refused;
    const Result r = send(request, flags, payload, fds);
    const bool is_get = request == kGetFeatures || request == kGetProtocolFeatures || request == kGetQueueNum ||
                        request == kGetVringBase || request == kGetMaxMemSlots;
    if ((flags & kFlagNeedReply) && !is_get) {
      EXPECT_EQ(r.action, Port::Action::kContinue) << "request " << request;
      EXPECT_NE(reply_u64(r), 0u) << "request " << request << " should get a failure ack";
    } else {
      EXPECT_EQ(r.action, Port::Action::kClose) << "request " << request;
      EXPECT_TRUE(r.reply.empty()) << "request " << request;
    }
    EXPECT_EQ(port_->stats().refused, refused + 1) << "request " << request;
  }

  // A refused header (version, REPLY, unknown flag bits, size over the
  // largest payload): framing cannot be trusted, so kClose whatever
  // NEED_REPLY says, and every fd is closed.
  void expect_bad_header(uint32_t request, uint32_t flags, const Bytes& payload, std::vector<int> fds = {}) {
    const Result r = send(request, flags, payload, fds);
    EXPECT_EQ(r.action, Port::Action::kClose) << "flags " << std::hex << flags;
    EXPECT_TRUE(r.reply.empty());
  }

  uint64_t ring_uaddr(uint32_t ring, uint64_t part) const { return kUaddr + kRingOff + ring * kRingStride + part; }
  uint64_t ring_iova(uint32_t ring, uint64_t part) const { return kIova + kRingOff + ring * kRingStride + part; }

  // QEMU 7.2 with intel-iommu,device-iotlb=on: connect-time messages for both
  // queue pairs (notes 1.2), the guest's features (1.3), then vhost_dev_start
  // of pair 0 with its rings at IOVAs, and the used-ring UPDATEs QEMU sends on
  // its own. Leaves pair 1 disabled.
  void qemu_setup() {
    mem_name_ = unique_name("qemu");
    const uint64_t offered = get_u64(kGetFeatures);
    EXPECT_NE(offered & kFeatureProtocolFeatures, 0u);
    EXPECT_NE(offered & kFeatureAccessPlatform, 0u);
    EXPECT_NE(offered & kFeatureVersion1, 0u);
    const uint64_t protocol = get_u64(kGetProtocolFeatures);
    EXPECT_EQ(protocol & (kProtocolReplyAck | kProtocolBackendReq), kProtocolReplyAck | kProtocolBackendReq);
    expect_ok(kSetProtocolFeatures, kV1, u64(protocol & kProtocolBits));
    EXPECT_EQ(get_u64(kGetQueueNum), 2u);
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    backend_peer_ = sv[0];
    owned_.push_back(sv[0]);
    expect_ok(kSetBackendReqFd, kNeedReply, {}, {sv[1]}, {sv[1]});
    kept_.push_back(sv[1]);
    expect_ok(kSetOwner, kV1, {});
    EXPECT_EQ(get_u64(kGetFeatures), offered);
    for (uint32_t qp = 0; qp < 2; ++qp) {
      if (qp == 1) {  // pairs past 0 repeat the feature handshake
        EXPECT_EQ(get_u64(kGetFeatures), offered);
        EXPECT_EQ(get_u64(kGetProtocolFeatures), protocol);
        expect_ok(kSetProtocolFeatures, kV1, u64(protocol & kProtocolBits));
        EXPECT_EQ(get_u64(kGetFeatures), offered);
      }
      for (uint32_t ring = 2 * qp; ring < 2 * qp + 2; ++ring) {
        const int call = make_eventfd(), err = make_eventfd();
        masked_call_[ring] = call;
        expect_ok(kSetVringCall, kV1, u64(ring), {call}, {call});
        expect_ok(kSetVringErr, kV1, u64(ring), {err}, {err});
        kept_.push_back(err);
      }
    }
    for (uint32_t ring = 0; ring < 4; ++ring) expect_ok(kSetVringEnable, kV1, state(ring, ring < 2 ? 1 : 0));
    acked_ = kFeatureVersion1 | kFeatureAccessPlatform | kFeatureProtocolFeatures | kNetFeatureMrgRxbuf |
             kFeatureEventIdx | kNetFeatureMq;
    ASSERT_EQ(acked_ & ~offered, 0u);
    expect_ok(kSetFeatures, kV1, u64(acked_));
    const int mem = make_memfd(mem_name_, kMem);
    init_rings(mem);
    expect_ok(kSetMemTable, kNeedReply, mem_table({region(0, kMem, kUaddr)}), {mem});
    EXPECT_EQ(mappings_of(mem_name_), 1u);
    for (uint32_t ring = 0; ring < 2; ++ring) {
      expect_ok(kSetVringNum, kV1, state(ring, kQueueSize));
      expect_ok(kSetVringBase, kV1, state(ring, base_of(ring)));
      expect_ok(kSetVringAddr, kV1,
                vring_addr(ring, ring_iova(ring, kDescOff), ring_iova(ring, kAvailOff), ring_iova(ring, kUsedOff)));
      const int kick = make_eventfd(), call = make_eventfd();
      expect_ok(kSetVringKick, kV1, u64(ring), {kick}, {kick});
      expect_ok(kSetVringCall, kV1, u64(ring), {call}, {call});
      // The masked notifier it replaces is closed.
      EXPECT_TRUE(is_closed(masked_call_[ring])) << "ring " << ring;
      kept_.push_back(kick);
      kept_.push_back(call);
    }
    kept_.push_back(masked_call_[2]);
    kept_.push_back(masked_call_[3]);
    EXPECT_TRUE(port_->running());
    // vhost_dev_start's own UPDATE of each used ring, NEED_REPLY.
    for (uint32_t ring = 0; ring < 2; ++ring)
      expect_ok(kIotlbMsg, kNeedReply,
                iotlb(kIotlbUpdate, ring_iova(ring, kUsedOff), 0x1000, ring_uaddr(ring, kUsedOff), kPermRw));
  }

  // DPDK 22.11 virtio-user (queues=1): no ACCESS_PLATFORM, protocol features
  // MQ | REPLY_ACK (| STATUS, not offered), no back-end channel; memory "GPA"
  // = its virtual address; rings at its virtual addresses.
  void virtio_user_setup() {
    mem_name_ = unique_name("vuser");
    expect_ok(kSetOwner, kV1, {});
    const uint64_t offered = get_u64(kGetFeatures);
    const uint64_t protocol = get_u64(kGetProtocolFeatures);
    const uint64_t wanted = kProtocolMq | kProtocolReplyAck | (uint64_t{1} << 16);
    expect_ok(kSetProtocolFeatures, kV1, u64(protocol & wanted));
    EXPECT_EQ(get_u64(kGetQueueNum), 2u);
    acked_ = kFeatureVersion1 | kFeatureProtocolFeatures | kNetFeatureMrgRxbuf | kFeatureIndirectDesc;
    ASSERT_EQ(acked_ & ~offered, 0u);
    expect_ok(kSetFeatures, kV1, u64(acked_));
    const int mem = make_memfd(mem_name_, kMem);
    init_rings(mem);
    expect_ok(kSetMemTable, kNeedReply, mem_table({region(kUaddr, kMem, kUaddr)}), {mem});
    EXPECT_EQ(mappings_of(mem_name_), 1u);
    for (uint32_t ring = 0; ring < 2; ++ring) {
      const int call = make_eventfd();
      expect_ok(kSetVringCall, kV1, u64(ring), {call}, {call});
      kept_.push_back(call);
    }
    for (uint32_t ring = 0; ring < 2; ++ring) {
      expect_ok(kSetVringNum, kV1, state(ring, kQueueSize));
      expect_ok(kSetVringBase, kV1, state(ring, base_of(ring)));
      expect_ok(kSetVringAddr, kV1,
                vring_addr(ring, ring_uaddr(ring, kDescOff), ring_uaddr(ring, kAvailOff), ring_uaddr(ring, kUsedOff)));
      const int kick = make_eventfd();
      expect_ok(kSetVringKick, kV1, u64(ring), {kick}, {kick});
      kept_.push_back(kick);
    }
    expect_ok(kSetVringEnable, kV1, state(0, 1));
    expect_ok(kSetVringEnable, kV1, state(1, 1));
    EXPECT_TRUE(port_->running());
  }

  // The port serves a fresh front end after disconnect(): both negotiations
  // run, and disconnect() leaves nothing open or mapped each time.
  void expect_usable_after_disconnect() {
    SCOPED_TRACE("fresh sequences after disconnect()");
    port_->disconnect();
    EXPECT_FALSE(port_->running());
    expect_kept_closed();
    virtio_user_setup();
    port_->disconnect();
    expect_kept_closed();
    EXPECT_EQ(mappings_of(mem_name_), 0u);
    qemu_setup();
    port_->disconnect();
    expect_kept_closed();
    EXPECT_EQ(mappings_of(mem_name_), 0u);
  }

  void expect_kept_closed() {
    for (int fd : kept_) EXPECT_TRUE(is_closed(fd)) << "fd " << fd << " survived disconnect()";
    kept_.clear();
  }

  // One zero-length burst each way on queue pair qp, as an lcore would run it
  // (online, burst, quiescent, offline): translates the rings and nothing
  // else (no mbuf is needed). Returns the port's ring-miss count after.
  uint64_t bursts(uint16_t qp) {
    rcu_.online(reader_);
    (void)port_->dequeue_burst(reader_, qp, nullptr, nullptr, 0);
    (void)port_->enqueue_burst(reader_, qp, nullptr, 0);
    rcu_.quiescent(reader_);
    rcu_.offline(reader_);
    return port_->stats().ring_misses;
  }

  Rcu rcu_{4};
  const uint32_t reader_ = rcu_.register_reader();
  std::unique_ptr<Port> port_ =
      std::make_unique<Port>(rcu_, PortConfig{.path = "unused", .queue_pairs = 2, .iommu = true});
  size_t fds_at_start_ = 0;
  std::vector<int> owned_;  // the test's own descriptors, closed in TearDown
  std::vector<int> kept_;   // descriptors the port keeps until disconnect()
  std::array<int, 4> masked_call_{};
  int backend_peer_ = -1;  // the test's end of the back-end channel
  uint64_t acked_ = 0;
  std::string mem_name_;
};

// --- negotiations ------------------------------------------------------------

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

// --- hostile messages ----------------------------------------------------------

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

// --- device IOTLB, disconnect, hot-plug ----------------------------------------

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
}  // namespace vxlate::dataplane::vhost_user
