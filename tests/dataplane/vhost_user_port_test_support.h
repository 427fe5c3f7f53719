// Fixture of the vhost_user::Port tests: payloads built from the wire layouts, descriptor and mapping
// probes, and the negotiations of QEMU 7.2 (device IOTLB) and DPDK 22.11's virtio-user (plain mode).
#pragma once

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
#include <cstdint>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace vxlate::dataplane::vhost_user::port_test {

using Bytes = std::vector<uint8_t>;

inline constexpr uint32_t kV1 = kFlagVersion;                    // 0x1: a request without NEED_REPLY
inline constexpr uint32_t kNeedReply = kFlagVersion | kFlagNeedReply;  // 0x9
inline constexpr uint64_t kProtocolBits = (uint64_t{1} << 17) - 1;     // what QEMU 7.2 may ack

// Guest memory of the tests: one memfd region of kMem bytes; the front end
// says it lives at kUaddr (its virtual address) and kGpa. Each vring r has
// its desc table, avail ring and used ring in three pages at kRingOff + r *
// kRingStride (front-end VA in plain mode, IOVA kIova + the same offset under
// the device IOTLB).
inline constexpr uint64_t kMem = 2 << 20;
inline constexpr uint64_t kUaddr = 0x7f1200000000;
inline constexpr uint64_t kGpa = 0x40000000;
inline constexpr uint64_t kIova = 0x10000000;
inline constexpr uint64_t kRingOff = 0x10000;
inline constexpr uint64_t kRingStride = 0x4000;
inline constexpr uint32_t kQueueSize = 256;
inline constexpr uint64_t kDescOff = 0, kAvailOff = 0x1000, kUsedOff = 0x2000;

inline uint16_t base_of(uint32_t ring) { return static_cast<uint16_t>(100 + 7 * ring); }

// --- process-level probes ----------------------------------------------------

inline size_t open_fds() {
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return 0;
  size_t n = 0;
  while (const dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n - 1;  // the directory's own descriptor
}

inline bool is_closed(int fd) {
  errno = 0;
  return ::fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}

// Mappings of the memfd named `name` in this process.
inline size_t mappings_of(const std::string& name) {
  std::ifstream maps("/proc/self/maps");
  const std::string tag = "/memfd:" + name + " (deleted)";
  size_t n = 0;
  for (std::string line; std::getline(maps, line);)
    if (line.size() >= tag.size() && line.compare(line.size() - tag.size(), tag.size(), tag) == 0) ++n;
  return n;
}

inline std::string unique_name(const char* what) {
  static int counter = 0;
  return std::string("vu-") + what + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

inline int make_memfd(const std::string& name, uint64_t size) {
  const int fd = ::memfd_create(name.c_str(), MFD_CLOEXEC);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
  return fd;
}

// The guest side of the test rings: each avail ring's idx at its ring's base,
// so that the rings are empty (all zero otherwise: an avail idx 0 with a base
// of 100 would claim more chains than the ring holds and break it).
inline void init_rings(int memfd) {
  for (uint32_t ring = 0; ring < 4; ++ring) {
    VirtqRingHeader avail{0, base_of(ring)};
    const off_t at = static_cast<off_t>(kRingOff + ring * kRingStride + kAvailOff);
    EXPECT_EQ(::pwrite(memfd, &avail, sizeof avail, at), static_cast<ssize_t>(sizeof avail));
  }
}

inline int make_eventfd() {
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

inline Bytes u64(uint64_t v) {
  Le64 le;
  le.set(v);
  return bytes(le);
}

inline Bytes state(uint32_t index, uint32_t num) {
  VringState s{};
  s.index.set(index);
  s.num.set(num);
  return bytes(s);
}

inline Bytes vring_addr(uint32_t index, uint64_t desc, uint64_t avail, uint64_t used, uint32_t flags = 0) {
  VringAddr a{};
  a.index.set(index);
  a.flags.set(flags);
  a.desc_user_addr.set(desc);
  a.avail_user_addr.set(avail);
  a.used_user_addr.set(used);
  return bytes(a);
}

inline MemRegion region(uint64_t gpa, uint64_t size, uint64_t uaddr, uint64_t offset = 0) {
  MemRegion r{};
  r.guest_phys_addr.set(gpa);
  r.memory_size.set(size);
  r.userspace_addr.set(uaddr);
  r.mmap_offset.set(offset);
  return r;
}

// A SET_MEM_TABLE payload: `nregions` (default: the regions given), padding,
// then the regions.
inline Bytes mem_table(const std::vector<MemRegion>& regions, uint32_t padding = 0, int64_t nregions = -1) {
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

inline Bytes iotlb(uint8_t type, uint64_t iova, uint64_t size, uint64_t uaddr, uint8_t perm) {
  IotlbMsg m{};
  m.iova.set(iova);
  m.size.set(size);
  m.uaddr.set(uaddr);
  m.perm = perm;
  m.type = type;
  return bytes(m);
}

inline Bytes mem_reg(const MemRegion& r) {
  MemRegMsg m{};
  m.region = r;
  return bytes(m);
}

struct Result {
  Port::Action action = Port::Action::kContinue;
  Bytes reply;
};

// The port driven through handle_message() alone (no sockets, no lcore unless
// a test says so). Invariants checked by every test: replies have flags
// exactly 0x5 and size 8; every descriptor passed is either kept (kick, call,
// err, back-end channel) or closed by the time handle_message() returns;
// nothing is left open (/proc/self/fd) or mapped (/proc/self/maps) after
// disconnect().
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

}  // namespace vxlate::dataplane::vhost_user::port_test
