// The vhost-user front end of vhost_user_frontend.h: QEMU 7.2's side of the
// protocol (control thread) and the guest's virtio-net driver (data side).
#include "vxlate/load/vhost_user_frontend.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include "vxlate/common/le.h"
#include "vxlate/common/range.h"
#include "vxlate/dataplane/net.h"
#include "vxlate/dataplane/vhost_user_wire.h"
#include "vxlate/dataplane/virtio_ring.h"

namespace vxlate::load {

namespace vu = dataplane::vhost_user;
using dataplane::kNetHdrSize;
using dataplane::VirtioNetHdr;

namespace {

// Feature bits the wire header does not name (vhost-user spec; virtio-net 5.1.3).
constexpr uint64_t kFeatureProtocolFeatures = uint64_t{1} << 30;  // VHOST_USER_F_PROTOCOL_FEATURES
constexpr uint64_t kNetFeatureMq = uint64_t{1} << 22;            // VIRTIO_NET_F_MQ
constexpr uint64_t kProtoMq = uint64_t{1} << 0;
constexpr uint64_t kProtoReplyAck = uint64_t{1} << 3;
constexpr uint64_t kProtoBackendReq = uint64_t{1} << 5;
// The protocol features this front end acks when offered: no STATUS, CONFIG,
// mem slots or inband notifications (notes 0.9), so QEMU's order is the
// whole protocol.
constexpr uint64_t kProtoWanted = kProtoMq | kProtoReplyAck | kProtoBackendReq;
// Descriptors one message carries at most: SET_MEM_TABLE's regions.
constexpr size_t kMaxFds = vu::kMaxMemRegions;

using Clock = std::chrono::steady_clock;

const char* request_name(uint32_t r) noexcept {
  switch (r) {
    case vu::kGetFeatures: return "GET_FEATURES";
    case vu::kSetFeatures: return "SET_FEATURES";
    case vu::kSetOwner: return "SET_OWNER";
    case vu::kSetMemTable: return "SET_MEM_TABLE";
    case vu::kSetVringNum: return "SET_VRING_NUM";
    case vu::kSetVringAddr: return "SET_VRING_ADDR";
    case vu::kSetVringBase: return "SET_VRING_BASE";
    case vu::kGetVringBase: return "GET_VRING_BASE";
    case vu::kSetVringKick: return "SET_VRING_KICK";
    case vu::kSetVringCall: return "SET_VRING_CALL";
    case vu::kSetVringErr: return "SET_VRING_ERR";
    case vu::kGetProtocolFeatures: return "GET_PROTOCOL_FEATURES";
    case vu::kSetProtocolFeatures: return "SET_PROTOCOL_FEATURES";
    case vu::kGetQueueNum: return "GET_QUEUE_NUM";
    case vu::kSetVringEnable: return "SET_VRING_ENABLE";
    case vu::kSetBackendReqFd: return "SET_BACKEND_REQ_FD";
    case vu::kIotlbMsg: return "IOTLB_MSG";
    default: return "request";
  }
}

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error("vhost-user front end: " + what); }
[[noreturn]] void fail_errno(const std::string& what) { fail(what + ": " + std::strerror(errno)); }

std::string hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

int make_eventfd() {
  const int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  return fd;
}

void close_fd(int* fd) noexcept {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

// Closes every descriptor an SCM_RIGHTS control message brought: nothing the
// back end sends to a front end carries one.
void close_received_fds(msghdr* mh) noexcept {
  for (cmsghdr* c = CMSG_FIRSTHDR(mh); c != nullptr; c = CMSG_NXTHDR(mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      close(fd);
    }
  }
}

// recvmsg() once; returns bytes (0: peer closed), or -1 with errno.
ssize_t recv_some(int fd, uint8_t* p, size_t n, int flags) noexcept {
  iovec iov{p, n};
  alignas(cmsghdr) char ctl[CMSG_SPACE(kMaxFds * sizeof(int))];
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl;
  mh.msg_controllen = sizeof ctl;
  ssize_t r;
  do {
    r = recvmsg(fd, &mh, flags | MSG_CMSG_CLOEXEC);
  } while (r < 0 && errno == EINTR);
  if (r >= 0) close_received_fds(&mh);
  return r;
}

// Reads exactly n bytes by `deadline`; throws naming `what` on EOF or timeout.
void recv_exact(int fd, uint8_t* p, size_t n, Clock::time_point deadline, const char* what) {
  size_t got = 0;
  while (got < n) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) fail(std::string("no reply to ") + what + " in time");
    pollfd pfd{fd, POLLIN, 0};
    const int pr = poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (pr < 0 && errno != EINTR) fail_errno(std::string("poll for ") + what);
    if (pr <= 0) continue;
    const ssize_t r = recv_some(fd, p + got, n - got, 0);
    if (r == 0) fail(std::string("back end closed the connection before replying to ") + what);
    if (r < 0) {
      if (errno == EAGAIN) continue;
      fail_errno(std::string("recv reply to ") + what);
    }
    got += static_cast<size_t>(r);
  }
}

// One message, header and payload, in one sendmsg() with `fds` in SCM_RIGHTS.
void send_message(int fd, const vu::Header& h, std::span<const uint8_t> payload, std::span<const int> fds,
                  const char* what) {
  uint8_t buf[sizeof(vu::Header) + vu::kMaxPayload];
  encode(std::span<uint8_t>(buf, sizeof(vu::Header)), h);
  if (!payload.empty()) std::memcpy(buf + sizeof(vu::Header), payload.data(), payload.size());
  const size_t len = sizeof(vu::Header) + payload.size();
  iovec iov{buf, len};
  alignas(cmsghdr) char ctl[CMSG_SPACE(kMaxFds * sizeof(int))] = {};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (!fds.empty()) {
    mh.msg_control = ctl;
    mh.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds.data(), fds.size() * sizeof(int));
  }
  ssize_t r;
  do {
    r = sendmsg(fd, &mh, MSG_NOSIGNAL);
  } while (r < 0 && errno == EINTR);
  if (r < 0) fail_errno(std::string("send ") + what);
  // A unix stream socket takes a message this small whole or blocks; a short
  // write would split the message, which no vhost-user peer reassembles.
  if (static_cast<size_t>(r) != len) fail(std::string("short send of ") + what);
}

}  // namespace

// --- state -------------------------------------------------------------------

struct VhostUserFrontend::Pool {
  uint64_t gpa = 0;     // buffer 0
  uint64_t addr = 0;    // its device address: IOVA with iommu, else GPA
  uint32_t stride = 0;  // bytes between buffers
  uint32_t len = 0;     // bytes of each buffer
  std::vector<uint32_t> free;  // buffer indices not in the ring
  uint64_t gpa_of(uint64_t i) const noexcept { return gpa + i * stride; }
  uint64_t addr_of(uint64_t i) const noexcept { return addr + i * stride; }
};

struct VhostUserFrontend::Pair {
  std::unique_ptr<DriverQueue> q[2];  // [0] receiveq, [1] transmitq
  Pool pool[2];
  int call_fd[2] = {-1, -1};  // QEMU's masked notifier (vhost_dev_init)
  int err_fd[2] = {-1, -1};
  int irq_fd[2] = {-1, -1};   // the guest notifier (vhost_dev_start)
  int kick_fd[2] = {-1, -1};
  VhostUserPairStats stats;
  uint32_t merge_need = 0;  // buffers of the frame being gathered (0: none)
  uint32_t merge_have = 0;
  std::vector<uint8_t> frame;  // gathered frame
  void close_fds() noexcept {
    for (int r = 0; r < 2; ++r) {
      close_fd(&call_fd[r]);
      close_fd(&err_fd[r]);
      close_fd(&irq_fd[r]);
      close_fd(&kick_fd[r]);
    }
  }
  ~Pair() { close_fds(); }
};

VhostUserFrontend::VhostUserFrontend(VhostUserFrontendOptions o) : opts_(std::move(o)) {
  if (opts_.path.empty()) throw std::invalid_argument("VhostUserFrontend: empty socket path");
  if (opts_.queue_pairs == 0 || opts_.queue_pairs > 128)
    throw std::invalid_argument("VhostUserFrontend: queue_pairs must be 1..128 (ring index is 8 bits)");
  if (!dataplane::valid_queue_size(opts_.queue_size))
    throw std::invalid_argument("VhostUserFrontend: queue_size must be a power of two <= 32768");
  if (opts_.rx_buf_len <= kNetHdrSize || opts_.tx_buf_len <= kNetHdrSize)
    throw std::invalid_argument("VhostUserFrontend: buffers must hold more than the 12-byte header");
  if (!opts_.mrg_rxbuf && opts_.rx_buf_len < kNetHdrSize + 1514)
    throw std::invalid_argument("VhostUserFrontend: without MRG_RXBUF a receive buffer must hold a 1514-byte frame");
  mem_ = std::make_unique<GuestMemory>(opts_.gpa_base, opts_.mem_bytes);
}

VhostUserFrontend::~VhostUserFrontend() { disconnect(); }

void VhostUserFrontend::disconnect() {
  close_fd(&sock_);
  close_backend_channel();
  for (auto& p : pairs_) p->close_fds();
  if (state_ == State::kStarted) state_ = State::kStopped;
}

void VhostUserFrontend::close_backend_channel() {
  close_fd(&backend_fd_);
  backend_buf_.clear();
}

// --- messages ----------------------------------------------------------------

void VhostUserFrontend::send_request(uint32_t request, std::span<const uint8_t> payload, std::span<const int> fds,
                                     bool need_reply) {
  if (sock_ < 0) fail(std::string("not connected (") + request_name(request) + ")");
  vu::Header h{};
  h.request.set(request);
  h.flags.set(vu::kFlagVersion | (need_reply ? vu::kFlagNeedReply : 0));
  h.size.set(static_cast<uint32_t>(payload.size()));
  // The back end's own rules, applied to what this front end sends: a refusal
  // here is a bug in this file.
  vu::Refusal r = vu::check_header(h);
  if (r == vu::Refusal::kNone) r = vu::check_request(h, payload, fds.size(), 2u * opts_.queue_pairs);
  if (r != vu::Refusal::kNone)
    throw std::logic_error(std::string("VhostUserFrontend: built a malformed ") + request_name(request) + " (" +
                           vu::to_string(r) + ")");
  send_message(sock_, h, payload, fds, request_name(request));
}

std::vector<uint8_t> VhostUserFrontend::read_reply(uint32_t request, uint32_t size) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(opts_.reply_timeout_ms);
  const char* what = request_name(request);
  uint8_t hb[sizeof(vu::Header)];
  recv_exact(sock_, hb, sizeof hb, deadline, what);
  const auto h = decode<vu::Header>(hb);
  if (h.flags.get() != vu::kReplyFlags)
    fail(std::string("reply to ") + what + " has flags " + hex(h.flags.get()) + ", want exactly 0x5");
  if (h.request.get() != request)
    fail(std::string("reply to ") + what + " carries request " + std::to_string(h.request.get()));
  if (h.size.get() != size)
    fail(std::string("reply to ") + what + " has size " + std::to_string(h.size.get()) + ", want " +
         std::to_string(size));
  std::vector<uint8_t> payload(size);
  recv_exact(sock_, payload.data(), size, deadline, what);
  return payload;
}

uint64_t VhostUserFrontend::get_u64(uint32_t request) {
  send_request(request, {});
  return decode<Le64>(read_reply(request, sizeof(uint64_t))).get();
}

uint64_t VhostUserFrontend::read_ack(uint32_t request) {
  return decode<Le64>(read_reply(request, sizeof(uint64_t))).get();
}

void VhostUserFrontend::send_u64(uint32_t request, uint64_t v, std::span<const int> fds) {
  Le64 p;
  p.set(v);
  uint8_t b[sizeof p];
  encode(std::span<uint8_t>(b), p);
  send_request(request, b, fds);
}

void VhostUserFrontend::send_state(uint32_t request, uint32_t index, uint32_t num) {
  vu::VringState s{};
  s.index.set(index);
  s.num.set(num);
  uint8_t b[sizeof s];
  encode(std::span<uint8_t>(b), s);
  send_request(request, b);
}

// --- start / stop --------------------------------------------------------------

void VhostUserFrontend::connect_main() {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (opts_.path.size() >= sizeof sa.sun_path) fail("socket path too long: " + opts_.path);
  std::memcpy(sa.sun_path, opts_.path.c_str(), opts_.path.size() + 1);
  const auto deadline = Clock::now() + std::chrono::milliseconds(opts_.connect_timeout_ms);
  for (;;) {
    sock_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock_ < 0) fail_errno("socket");
    if (connect(sock_, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) == 0) return;
    const int e = errno;
    close_fd(&sock_);
    // The listener may not be there yet (bound but not listening, or no file).
    if ((e == ECONNREFUSED || e == ENOENT) && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    errno = e;
    fail_errno("connect " + opts_.path);
  }
}

// vhost_user_backend_init + vhost_dev_init for one queue pair (notes 1.2).
void VhostUserFrontend::init_pair(uint16_t qp) {
  const uint64_t offered = get_u64(vu::kGetFeatures);
  if (qp == 0) offered_features_ = offered;
  if (offered & kFeatureProtocolFeatures) {
    const uint64_t proto = get_u64(vu::kGetProtocolFeatures);
    if (qp == 0) {
      offered_protocol_ = proto;
      protocol_features_ = proto & kProtoWanted;
      reply_ack_ = (protocol_features_ & kProtoReplyAck) != 0;
    }
    send_u64(vu::kSetProtocolFeatures, protocol_features_);
  }
  if (qp == 0) {
    if (opts_.queue_pairs > 1) {
      if (!(protocol_features_ & kProtoMq)) fail("queue_pairs > 1 but the back end does not offer protocol MQ");
      const uint64_t n = get_u64(vu::kGetQueueNum);
      if (n < opts_.queue_pairs)
        fail("back end serves " + std::to_string(n) + " queue pairs, " + std::to_string(opts_.queue_pairs) + " asked");
    } else if (protocol_features_ & kProtoMq) {
      get_u64(vu::kGetQueueNum);  // QEMU asks whenever MQ is negotiated
    }
    // vhost_user_backend_init (notes 0.1): a back end that offers bit 33 must
    // offer REPLY_ACK and BACKEND_REQ, whether or not the guest will use it.
    if ((offered & dataplane::kFeatureAccessPlatform) &&
        (protocol_features_ & (kProtoReplyAck | kProtoBackendReq)) != (kProtoReplyAck | kProtoBackendReq))
      fail("IOMMU support requires reply-ack and backend-req protocol features");
    if (protocol_features_ & kProtoBackendReq) {
      int sv[2];
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) fail_errno("socketpair");
      backend_fd_ = sv[0];
      const int theirs[1] = {sv[1]};
      try {
        send_request(vu::kSetBackendReqFd, {}, theirs, reply_ack_);
      } catch (...) {
        close(sv[1]);
        throw;
      }
      close(sv[1]);
      if (reply_ack_ && read_ack(vu::kSetBackendReqFd) != 0) fail("SET_BACKEND_REQ_FD refused (ack != 0)");
    }
    send_request(vu::kSetOwner, {});
  }
  get_u64(vu::kGetFeatures);
  auto p = std::make_unique<Pair>();
  for (int r = 0; r < 2; ++r) {
    const uint32_t ring = 2u * qp + r;
    p->call_fd[r] = make_eventfd();
    p->err_fd[r] = make_eventfd();
    p->irq_fd[r] = make_eventfd();
    p->kick_fd[r] = make_eventfd();
    const int call[1] = {p->call_fd[r]};
    send_u64(vu::kSetVringCall, ring, call);
    const int err[1] = {p->err_fd[r]};
    send_u64(vu::kSetVringErr, ring, err);
  }
  pairs_.push_back(std::move(p));
}

uint64_t VhostUserFrontend::dma(const VhostUserDmaArea& area) {
  if (!opts_.iommu) return area.gpa;
  if (opts_.dma_map) return opts_.dma_map(area);
  const uint64_t iova = default_iova(area.gpa);
  map(iova, area.gpa, area.bytes, area.perm);
  return iova;
}

// vhost_dev_start for one queue pair (notes 1.3, step 3).
void VhostUserFrontend::start_pair(uint16_t qp) {
  Pair& p = *pairs_[qp];
  send_u64(vu::kSetFeatures, features_);
  if (qp == 0) {
    vu::MemoryHead head{};
    head.nregions.set(1);
    vu::MemRegion reg{};
    reg.guest_phys_addr.set(opts_.gpa_base);
    reg.memory_size.set(opts_.mem_bytes);
    reg.userspace_addr.set(reinterpret_cast<uint64_t>(mem_->hva(opts_.gpa_base)));
    reg.mmap_offset.set(0);
    uint8_t b[sizeof head + sizeof reg];
    encode(std::span<uint8_t>(b, sizeof head), head);
    encode(std::span<uint8_t>(b + sizeof head, sizeof reg), reg);
    const int fds[1] = {mem_->fd()};
    send_request(vu::kSetMemTable, b, fds, reply_ack_);
    if (reply_ack_ && read_ack(vu::kSetMemTable) != 0) fail("SET_MEM_TABLE refused (ack != 0)");
  }
  for (int r = 0; r < 2; ++r) {
    const uint32_t ring = 2u * qp + r;
    const dataplane::QueueConfig c = p.q[r]->device_config(opts_.iommu, EndpointId{0});
    send_state(vu::kSetVringNum, ring, opts_.queue_size);
    send_state(vu::kSetVringBase, ring, 0);
    // QEMU: ring addresses are IOVAs under an IOMMU, else QEMU's own VAs
    // (vhost_memory_map); log_guest_addr is the used ring's guest address.
    auto ring_addr = [&](uint64_t a) { return opts_.iommu ? a : reinterpret_cast<uint64_t>(mem_->hva(a)); };
    vu::VringAddr a{};
    a.index.set(ring);
    a.flags.set(0);
    a.desc_user_addr.set(ring_addr(c.desc));
    a.used_user_addr.set(ring_addr(c.used));
    a.avail_user_addr.set(ring_addr(c.avail));
    a.log_guest_addr.set(c.used);
    uint8_t b[sizeof a];
    encode(std::span<uint8_t>(b), a);
    send_request(vu::kSetVringAddr, b);
    const int kick[1] = {p.kick_fd[r]};
    send_u64(vu::kSetVringKick, ring, kick);
    const int irq[1] = {p.irq_fd[r]};
    send_u64(vu::kSetVringCall, ring, irq);
  }
  if (opts_.iommu && opts_.prefetch_used_on_start) {
    for (int r = 0; r < 2; ++r) send_update(p.q[r]->device_config(true, EndpointId{0}).used, true);
  }
}

void VhostUserFrontend::start() {
  if (state_ != State::kIdle || sock_ >= 0) throw std::logic_error("VhostUserFrontend::start: once per object");
  connect_main();
  for (uint16_t qp = 0; qp < opts_.queue_pairs; ++qp) init_pair(qp);

  // What the guest driver may ack.
  if (!(offered_features_ & dataplane::kFeatureVersion1)) fail("back end does not offer VIRTIO_F_VERSION_1");
  if (opts_.iommu && !(offered_features_ & dataplane::kFeatureAccessPlatform))
    fail("iommu_platform=true is not supported by the device (no VIRTIO_F_ACCESS_PLATFORM)");
  if (opts_.queue_pairs > 1 && !(offered_features_ & kNetFeatureMq)) fail("back end does not offer VIRTIO_NET_F_MQ");
  uint64_t want = dataplane::kFeatureVersion1;
  if (opts_.iommu) want |= dataplane::kFeatureAccessPlatform;
  if (opts_.mrg_rxbuf) want |= dataplane::kNetFeatureMrgRxbuf;
  if (opts_.event_idx) want |= dataplane::kFeatureEventIdx;
  if (opts_.indirect) want |= dataplane::kFeatureIndirectDesc;
  if (opts_.queue_pairs > 1) want |= kNetFeatureMq;
  features_ = (offered_features_ & want) | (offered_features_ & kFeatureProtocolFeatures);

  // SET_VRING_ENABLE exists only with VHOST_USER_F_PROTOCOL_FEATURES
  // (vhost_user_set_vring_enable returns -EINVAL without it).
  const bool enables = offered_features_ & kFeatureProtocolFeatures;
  auto enable = [&](uint16_t qp, uint32_t on) {
    if (enables)
      for (uint32_t r = 0; r < 2; ++r) send_state(vu::kSetVringEnable, 2u * qp + r, on);
  };
  // The guest's feature write: virtio_net_set_queue_pairs (notes 1.3).
  for (uint16_t qp = 0; qp < opts_.queue_pairs; ++qp) enable(qp, qp == 0 ? 1 : 0);

  // The guest driver's rings and buffers.
  const bool event_idx = features_ & dataplane::kFeatureEventIdx;
  const bool indirect = features_ & dataplane::kFeatureIndirectDesc;
  for (uint16_t qp = 0; qp < opts_.queue_pairs; ++qp) {
    Pair& p = *pairs_[qp];
    for (int r = 0; r < 2; ++r) {
      const uint32_t ring = 2u * qp + r;
      p.q[r] = std::make_unique<DriverQueue>(*mem_, opts_.queue_size, event_idx, indirect);
      p.q[r]->disable_interrupts();
      p.q[r]->set_dma_base(
          dma({VhostUserDmaArea::kRing, ring, p.q[r]->area_gpa(), p.q[r]->area_bytes(), vu::kPermRw}));
      Pool& pool = p.pool[r];
      pool.len = r == 0 ? opts_.rx_buf_len : opts_.tx_buf_len;
      pool.stride = static_cast<uint32_t>((uint64_t{pool.len} + 63) & ~uint64_t{63});
      const uint64_t bytes = (uint64_t{pool.stride} * opts_.queue_size + kPageSize - 1) & ~(kPageSize - 1);
      pool.gpa = mem_->alloc(bytes, kPageSize);
      // The device writes receive buffers (and DPDK asks RW for them) and
      // reads transmit buffers.
      pool.addr = r == 0 ? dma({VhostUserDmaArea::kRxBuffers, ring, pool.gpa, bytes, vu::kPermRw})
                         : dma({VhostUserDmaArea::kTxBuffers, ring, pool.gpa, bytes, vu::kPermRo});
      pool.free.reserve(opts_.queue_size);
      for (uint32_t i = opts_.queue_size; i-- > 0;) pool.free.push_back(i);
    }
    p.frame.reserve(dataplane::kMaxFrame);
  }

  // DRIVER_OK: vhost_net_start.
  for (uint16_t qp = 0; qp < opts_.queue_pairs; ++qp) {
    if (qp == 0) enable(0, 1);  // peer->vring_enable restored before the pair starts
    start_pair(qp);
  }
  // The guest's VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET.
  for (uint16_t qp = 1; qp < opts_.queue_pairs; ++qp) enable(qp, 1);
  state_ = State::kStarted;
}

std::vector<uint32_t> VhostUserFrontend::stop() {
  if (state_ != State::kStarted) throw std::logic_error("VhostUserFrontend::stop: not started");
  std::vector<uint32_t> bases;
  for (uint32_t ring = 0; ring < 2u * opts_.queue_pairs; ++ring) {
    send_state(vu::kGetVringBase, ring, 0);
    const auto s = decode<vu::VringState>(read_reply(vu::kGetVringBase, sizeof(vu::VringState)));
    if (s.index.get() != ring)
      fail("GET_VRING_BASE for ring " + std::to_string(ring) + " answered for ring " + std::to_string(s.index.get()));
    bases.push_back(s.num.get());
  }
  // vhost_dev_stop unregisters the IOMMU listener: no INVALIDATE, no UPDATE from here.
  state_ = State::kStopped;
  return bases;
}

// --- vIOMMU --------------------------------------------------------------------

const VhostUserFrontend::Mapping* VhostUserFrontend::lookup(uint64_t iova, uint64_t* start) const {
  auto it = iova_map_.upper_bound(iova);
  if (it == iova_map_.begin()) return nullptr;
  --it;
  if (iova - it->first >= it->second.size) return nullptr;
  *start = it->first;
  return &it->second;
}

void VhostUserFrontend::map(uint64_t iova, uint64_t gpa, uint64_t size, uint8_t perm) {
  uint64_t last = 0, gpa_last = 0;
  if (!is_aligned(iova, kPageSize) || !is_aligned(gpa, kPageSize) || !is_aligned(size, kPageSize) ||
      !range_last(iova, size, &last) || !range_last(gpa, size, &gpa_last))
    throw std::invalid_argument("VhostUserFrontend::map: iova, gpa and size must be 4 KiB aligned, size > 0, no wrap");
  if (perm < vu::kPermRo || perm > vu::kPermRw) throw std::invalid_argument("VhostUserFrontend::map: perm must be RO, WO or RW");
  auto next = iova_map_.upper_bound(iova);
  if (next != iova_map_.end() && next->first <= last)
    throw std::invalid_argument("VhostUserFrontend::map: overlaps the mapping at " + hex(next->first));
  if (next != iova_map_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + (prev->second.size - 1) >= iova)
      throw std::invalid_argument("VhostUserFrontend::map: overlaps the mapping at " + hex(prev->first));
  }
  iova_map_.emplace(iova, Mapping{size, gpa, perm});
}

bool VhostUserFrontend::unmap(uint64_t iova, uint64_t size) {
  if (!is_aligned(iova, kPageSize) || !is_aligned(size, kPageSize))
    throw std::invalid_argument("VhostUserFrontend::unmap: iova and size must be 4 KiB aligned");
  // size 0: everything from iova (virtio-iommu's full unmap); saturate at 2^64.
  const uint64_t last = size == 0 || iova + (size - 1) < iova ? UINT64_MAX : iova + (size - 1);
  auto it = iova_map_.upper_bound(iova);
  if (it != iova_map_.begin() && std::prev(it)->first + (std::prev(it)->second.size - 1) >= iova) --it;
  while (it != iova_map_.end() && it->first <= last) {
    const uint64_t start = it->first;
    const Mapping m = it->second;
    const uint64_t m_last = start + (m.size - 1);
    it = iova_map_.erase(it);
    if (start < iova) iova_map_.emplace(start, Mapping{iova - start, m.gpa, m.perm});
    if (m_last > last) it = iova_map_.emplace(last + 1, Mapping{m_last - last, m.gpa + (last + 1 - start), m.perm}).first;
  }
  if (state_ != State::kStarted) return true;  // QEMU's listener is registered only while started

  vu::IotlbMsg msg{};
  if (opts_.garbage_invalidate_fields) {  // QEMU's uninitialised stack struct: only iova, size, type are set
    msg.uaddr.set(0xa5a5a5a5a5a5a5a5);
    msg.perm = 0xa5;
    std::fill(std::begin(msg.padding), std::end(msg.padding), uint8_t{0xa5});
  }
  msg.iova.set(iova);
  msg.size.set(size);
  msg.type = vu::kIotlbInvalidate;
  uint8_t b[sizeof msg];
  encode(std::span<uint8_t>(b), msg);
  const auto t0 = Clock::now();
  send_request(vu::kIotlbMsg, b, {}, true);
  const uint64_t ack = read_ack(vu::kIotlbMsg);
  stats_.invalidate_ack_ns.push_back(
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()));
  ++stats_.invalidates;
  if (ack != 0) ++stats_.invalidate_nacks;
  return ack == 0;
}

// vhost_device_iotlb_miss: translate one IOMMU page, check it lies in the
// memory table, UPDATE with NEED_REPLY and wait for the ack.
bool VhostUserFrontend::send_update(uint64_t iova, bool write) {
  uint64_t start = 0;
  const Mapping* m = lookup(iova, &start);
  if (m == nullptr) return false;
  const uint8_t need = write ? vu::kPermWo : vu::kPermRo;
  if ((m->perm & need) != need) return false;
  const uint64_t page = iova & ~(kPageSize - 1);
  const uint64_t gpa = m->gpa + (page - start);
  const uint64_t ram_end = opts_.gpa_base + opts_.mem_bytes;
  if (gpa < opts_.gpa_base || gpa >= ram_end) return false;  // "Fail to lookup the translated address"
  vu::IotlbMsg u{};
  u.iova.set(page);
  u.size.set(std::min(kPageSize, ram_end - gpa));
  u.uaddr.set(reinterpret_cast<uint64_t>(mem_->hva(gpa)));
  u.perm = m->perm;
  u.type = vu::kIotlbUpdate;
  uint8_t b[sizeof u];
  encode(std::span<uint8_t>(b), u);
  const auto t0 = Clock::now();
  send_request(vu::kIotlbMsg, b, {}, true);
  const uint64_t ack = read_ack(vu::kIotlbMsg);
  stats_.update_ack_ns.push_back(
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()));
  ++stats_.updates;
  if (ack != 0) ++stats_.update_nacks;  // QEMU: "Fail to update device iotlb", and goes on
  return true;
}

void VhostUserFrontend::prefetch_used_rings() {
  if (!opts_.iommu || state_ != State::kStarted) return;
  for (auto& p : pairs_)
    for (int r = 0; r < 2; ++r) send_update(p->q[r]->device_config(true, EndpointId{0}).used, true);
}

// slave_read: one back-end request.
void VhostUserFrontend::handle_backend_message(uint32_t request, uint32_t flags, std::span<const uint8_t> payload,
                                               size_t* answered) {
  bool ok = false;
  if (request == vu::kBackendIotlbMsg && payload.size() == sizeof(vu::IotlbMsg) &&
      decode<vu::IotlbMsg>(payload).type == vu::kIotlbMiss) {
    const auto m = decode<vu::IotlbMsg>(payload);
    ++stats_.misses;
    ++miss_seq_;
    if (state_ != State::kStarted) {
      ++stats_.misses_stopped;  // "Unexpected IOTLB message when virtio device is stopped"
    } else if (opts_.drop_every_nth_miss != 0 && miss_seq_ % opts_.drop_every_nth_miss == 0) {
      ++stats_.misses_dropped;
      ok = true;
    } else if (send_update(m.iova.get(), m.perm != vu::kPermRo)) {
      ++stats_.misses_answered;
      ++*answered;
      ok = true;
    } else {
      ++stats_.misses_unmapped;  // QEMU sends nothing and reports success
      ok = true;
    }
  } else {
    ++stats_.backend_unexpected;  // QEMU: "Received unexpected msg type" / ACCESS_FAIL unsupported
  }
  if ((flags & vu::kFlagNeedReply) && backend_fd_ >= 0) {
    Le64 v;
    v.set(ok ? 0 : 1);
    uint8_t b[sizeof v];
    encode(std::span<uint8_t>(b), v);
    send_message(backend_fd_, vu::reply_header(request, sizeof v), b, {}, "back-end channel reply");
  }
}

size_t VhostUserFrontend::serve_misses(int timeout_ms) {
  size_t answered = 0;
  if (backend_fd_ < 0) return 0;
  if (timeout_ms > 0) {
    pollfd pfd{backend_fd_, POLLIN, 0};
    poll(&pfd, 1, timeout_ms);
  }
  for (;;) {
    // Drain what is readable now, then act on every whole message; an UPDATE's
    // ack wait lets the back end queue more, so go round until nothing is left.
    bool eof = false;
    for (;;) {
      uint8_t tmp[4096];
      const ssize_t r = recv_some(backend_fd_, tmp, sizeof tmp, MSG_DONTWAIT);
      if (r > 0) {
        backend_buf_.insert(backend_buf_.end(), tmp, tmp + r);
        continue;
      }
      eof = r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
      break;
    }
    size_t handled = 0;
    while (backend_buf_.size() >= sizeof(vu::Header)) {
      const auto h = decode<vu::Header>(backend_buf_);
      if (vu::check_header(h) != vu::Refusal::kNone) {
        // slave_read closes the channel for good on a framing error.
        ++stats_.backend_malformed;
        close_backend_channel();
        return answered;
      }
      const size_t whole = sizeof(vu::Header) + h.size.get();
      if (backend_buf_.size() < whole) break;
      // Taken off the buffer before it is acted on: an UPDATE that throws
      // leaves no message to be served twice.
      const std::vector<uint8_t> payload(backend_buf_.begin() + sizeof(vu::Header),
                                         backend_buf_.begin() + static_cast<ptrdiff_t>(whole));
      backend_buf_.erase(backend_buf_.begin(), backend_buf_.begin() + static_cast<ptrdiff_t>(whole));
      ++handled;
      handle_backend_message(h.request.get(), h.flags.get(), payload, &answered);
      if (backend_fd_ < 0) return answered;
    }
    if (eof) {
      close_backend_channel();
      return answered;
    }
    if (handled == 0) return answered;  // nothing whole was waiting
  }
}

// --- data side -------------------------------------------------------------------

const VhostUserPairStats& VhostUserFrontend::pair_stats(uint16_t qp) const noexcept { return pairs_[qp]->stats; }

void VhostUserFrontend::kick(Pair& p, int ring) {
  const uint64_t one = 1;
  // EAGAIN only when the counter is saturated: the back end has a kick pending anyway.
  if (write(p.kick_fd[ring], &one, sizeof one) == sizeof one) ++p.stats.kicks;
}

size_t VhostUserFrontend::post_rx(uint16_t qp, size_t n) {
  Pair& p = *pairs_.at(qp);
  Pool& pool = p.pool[0];
  size_t posted = 0;
  while (posted < n && !pool.free.empty()) {
    const uint32_t i = pool.free.back();
    const DriverBuf b{pool.addr_of(i), pool.len, true};
    if (!p.q[0]->add(std::span<const DriverBuf>(&b, 1), i)) break;
    pool.free.pop_back();
    ++posted;
  }
  if (posted != 0 && p.q[0]->publish()) kick(p, 0);
  return posted;
}

size_t VhostUserFrontend::send_burst(uint16_t qp, std::span<const std::span<const uint8_t>> frames) {
  Pair& p = *pairs_.at(qp);
  Pool& pool = p.pool[1];
  if (pool.free.size() < std::min(frames.size(), kMaxBurst)) reap_tx(qp);
  size_t sent = 0;
  for (const auto& f : frames) {
    if (sent == kMaxBurst || f.size() > pool.len - kNetHdrSize) break;
    if (pool.free.empty()) {
      ++p.stats.tx_full;
      break;
    }
    const uint32_t i = pool.free.back();
    uint8_t* dst = mem_->hva(pool.gpa_of(i));
    std::memset(dst, 0, kNetHdrSize);
    std::memcpy(dst + kNetHdrSize, f.data(), f.size());
    const DriverBuf b{pool.addr_of(i), static_cast<uint32_t>(kNetHdrSize + f.size()), false};
    if (!p.q[1]->add(std::span<const DriverBuf>(&b, 1), i)) {
      ++p.stats.tx_full;
      break;
    }
    pool.free.pop_back();
    ++sent;
  }
  if (sent != 0 && p.q[1]->publish()) kick(p, 1);
  p.stats.tx_frames += sent;
  return sent;
}

bool VhostUserFrontend::send(uint16_t qp, std::span<const uint8_t> frame) {
  return send_burst(qp, std::span<const std::span<const uint8_t>>(&frame, 1)) == 1;
}

size_t VhostUserFrontend::reap_tx(uint16_t qp) {
  Pair& p = *pairs_.at(qp);
  size_t n = 0;
  uint64_t token = 0;
  uint32_t len = 0;
  while (p.q[1]->get_used(&token, &len)) {
    p.pool[1].free.push_back(static_cast<uint32_t>(token));
    ++n;
  }
  p.stats.tx_completed += n;
  return n;
}

size_t VhostUserFrontend::poll_rx(uint16_t qp, const std::function<void(std::span<const uint8_t>)>& fn) {
  Pair& p = *pairs_.at(qp);
  Pool& pool = p.pool[0];
  const bool mrg = features_ & dataplane::kNetFeatureMrgRxbuf;
  size_t frames = 0;
  uint64_t token = 0;
  uint32_t len = 0;
  while (frames < kMaxBurst && p.q[0]->get_used(&token, &len)) {
    const uint32_t i = static_cast<uint32_t>(token);
    ++p.stats.rx_buffers;
    const uint8_t* buf = mem_->hva(pool.gpa_of(i));
    if (len > pool.len) {  // the device claims more than the buffer holds
      ++p.stats.rx_errors;
      p.merge_need = 0;
      pool.free.push_back(i);
      continue;
    }
    if (p.merge_need == 0) {
      // A frame's first buffer: the header, then (with MRG_RXBUF) num_buffers.
      if (len < kNetHdrSize) {
        ++p.stats.rx_errors;
        pool.free.push_back(i);
        continue;
      }
      const uint32_t nb = mrg ? decode<VirtioNetHdr>(std::span<const uint8_t>(buf, kNetHdrSize)).num_buffers.get() : 1;
      if (nb == 0 || nb > dataplane::kMaxMergeChains) {
        ++p.stats.rx_errors;
        pool.free.push_back(i);
        continue;
      }
      if (nb == 1) {
        fn(std::span<const uint8_t>(buf + kNetHdrSize, len - kNetHdrSize));
        ++frames;
        ++p.stats.rx_frames;
        p.stats.rx_bytes += len - kNetHdrSize;
      } else {
        p.frame.assign(buf + kNetHdrSize, buf + len);
        p.merge_need = nb;
        p.merge_have = 1;
      }
      pool.free.push_back(i);
      continue;
    }
    p.frame.insert(p.frame.end(), buf, buf + len);
    pool.free.push_back(i);
    if (++p.merge_have == p.merge_need) {
      fn(std::span<const uint8_t>(p.frame));
      ++frames;
      ++p.stats.rx_frames;
      p.stats.rx_bytes += p.frame.size();
      p.merge_need = 0;
    }
  }
  return frames;
}

}  // namespace vxlate::load
