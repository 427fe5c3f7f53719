// vhost_user_fuzz: libFuzzer target for the control side of a vhost-user-net
// port (vxlate::dataplane::vhost_user::Port::handle_message), driven by a
// hostile front end: any message sequence, with any descriptors attached.
//
// One Port per input (a persistent Rcu with one reader, the harness), fed the
// input's messages as the Backend would feed them: each message with its
// descriptors, disconnect() after every kClose and at the end. Descriptors
// are real: memfds of a size the input picks (memory regions that fit their
// file or not), eventfds (kick/call/err), and ends of AF_UNIX socketpairs (a
// back-end channel the harness reads MISS messages from). Between messages the
// harness may run the reader side as an lcore does (zero-length bursts and a
// prefetch() on every queue pair: ring translation through the device IOTLB
// or the memory table, misses posted; no mbuf is touched) and the control
// thread's service() (MISS messages on the back-end channel).
//
// Input format (every byte string is a valid input; a message cut short by
// the end of input is dropped):
//   config, 1 byte: bits 0..3 queue pairs - 1 (1..16); bit 4: the port does
//     not offer VIRTIO_F_ACCESS_PLATFORM (PortConfig::iommu = false)
//   then messages:
//     ctl    u8    bits 0..3: descriptor count (capped at kMaxFds);
//                  bit 4: bursts and prefetch after it (when a session runs);
//                  bit 5: service() after it; bit 6: connected() before it
//     header 12 bytes: request, flags, size (u32 LE each, the wire Header)
//     kinds  one byte per descriptor: 0xff a socketpair end, 0xfe an eventfd,
//                  else a memfd of that many 4 KiB pages (0: empty file)
//     payload  `size` bytes (missing bytes read as 0); none when size is over
//                  kMaxPayload (the header is refused, as by the Backend)
//
// Checked, trapping on the first violation:
//   - every reply: flags exactly 0x5, the request's id, size field = payload
//     length = 8 (QEMU and virtio-user accept nothing else);
//   - the conversation cannot hang or desync a front end: a kContinue GET_*
//     has a reply; any other kContinue message has a reply exactly when it
//     asked for one (NEED_REPLY);
//   - every message on the back-end channel: request BACKEND_IOTLB_MSG, flags
//     exactly 0x1 (no NEED_REPLY), size 32, type MISS, a page-aligned IOVA,
//     perm 1..3;
//   - after disconnect(): not running; at the end of the input (and after
//     destroying the port): every descriptor the input created is closed
//     (/proc/self/fd count as at the start) and no mapping the port made is
//     left (/proc/self/map_files count as at the start).
//
// Seeds: fuzz/gen_vhost_user_corpus.py writes fuzz/corpus/vhost_user/ in this
// format. VUFUZZ_TRACE=1 prints one line per message on stderr.
#include <dirent.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "vxlate/common/le.h"
#include "vxlate/common/rcu.h"
#include "vxlate/dataplane/vhost_user.h"
#include "vxlate/dataplane/vhost_user_wire.h"

namespace {

using vxlate::Le64;
using vxlate::Rcu;
using vxlate::decode;
using namespace vxlate::dataplane::vhost_user;

// Descriptors one message carries at most: a full memory table plus two
// extra (wrong counts), without running the process out of them.
constexpr size_t kMaxFds = kMaxMemRegions + 2;
constexpr uint8_t kKindSocket = 0xff;
constexpr uint8_t kKindEventfd = 0xfe;
constexpr uint64_t kPage = 4096;
constexpr char kMemfdName[] = "vufz";
constexpr size_t kReplyPayload = 8;  // every reply this back end sends: a u64 or a vring state

bool g_trace = false;

#define FUZZ_CHECK(cond, ...)                                      \
  do {                                                             \
    if (!(cond)) {                                                 \
      std::fprintf(stderr, "vhost_user_fuzz: check failed: %s: ", #cond); \
      std::fprintf(stderr, __VA_ARGS__);                           \
      std::fprintf(stderr, "\n");                                  \
      __builtin_trap();                                            \
    }                                                              \
  } while (0)

struct Harness {
  Rcu rcu{1};
  uint32_t reader = rcu.register_reader();
};

Harness& harness() {
  static Harness* h = [] {
    g_trace = std::getenv("VUFUZZ_TRACE") != nullptr;
    return new Harness;
  }();
  return *h;
}

size_t open_fds() {
  DIR* d = ::opendir("/proc/self/fd");
  FUZZ_CHECK(d != nullptr, "opendir /proc/self/fd");
  size_t n = 0;
  while (const dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n - 1;  // the directory's own descriptor
}

// File-backed mappings of this process (/proc/self/map_files has one entry
// per mapping; much cheaper than formatting /proc/self/maps under ASan). A
// memfd mapping the port left behind shows as one more than at the start.
size_t file_mappings() {
  DIR* d = ::opendir("/proc/self/map_files");
  FUZZ_CHECK(d != nullptr, "opendir /proc/self/map_files");
  size_t n = 0;
  while (const dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n;
}

bool is_get(uint32_t request) {
  return request == kGetFeatures || request == kGetProtocolFeatures || request == kGetQueueNum ||
         request == kGetVringBase || request == kGetMaxMemSlots;
}

// One descriptor of the kind the input asked for; socketpair peers go to `peers`.
int make_fd(uint8_t kind, std::vector<int>* peers) {
  if (kind == kKindSocket) {
    int sv[2];
    FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) == 0, "socketpair");
    peers->push_back(sv[0]);
    return sv[1];
  }
  if (kind == kKindEventfd) {
    const int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    FUZZ_CHECK(fd >= 0, "eventfd");
    return fd;
  }
  const int fd = ::memfd_create(kMemfdName, MFD_CLOEXEC);
  FUZZ_CHECK(fd >= 0, "memfd_create");
  FUZZ_CHECK(::ftruncate(fd, static_cast<off_t>(kind * kPage)) == 0, "ftruncate");
  return fd;
}

void check_reply(const Header& h, Port::Action a, const std::vector<uint8_t>& reply) {
  const uint32_t request = h.request.get();
  if (!reply.empty()) {
    FUZZ_CHECK(reply.size() == sizeof(Header) + kReplyPayload, "request %u: reply of %zu bytes", request,
               reply.size());
    const auto rh = decode<Header>(reply);
    FUZZ_CHECK(rh.flags.get() == kReplyFlags, "request %u: reply flags %#x", request, rh.flags.get());
    FUZZ_CHECK(rh.request.get() == request, "request %u: reply to %u", request, rh.request.get());
    FUZZ_CHECK(rh.size.get() == kReplyPayload, "request %u: reply size %u", request, rh.size.get());
  }
  if (a != Port::Action::kContinue) return;
  const bool need_reply = (h.flags.get() & kFlagNeedReply) != 0;
  if (is_get(request)) {
    FUZZ_CHECK(!reply.empty(), "GET request %u went on without a reply", request);
  } else {
    FUZZ_CHECK(reply.empty() != need_reply, "request %u flags %#x: %s", request, h.flags.get(),
               need_reply ? "NEED_REPLY went on without a reply" : "a reply nobody asked for");
  }
}

// Everything the port sent on the back-end channels (the peers' ends).
void drain_peers(const std::vector<int>& peers) {
  uint8_t buf[4096];
  for (int fd : peers) {
    for (;;) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) break;
      // SOCK_STREAM: MISS messages are 44 bytes each and sent whole.
      FUZZ_CHECK(n % (sizeof(Header) + sizeof(IotlbMsg)) == 0, "back-end channel: %zd bytes", n);
      for (ssize_t at = 0; at < n; at += sizeof(Header) + sizeof(IotlbMsg)) {
        const std::span<const uint8_t> msg(buf + at, sizeof(Header) + sizeof(IotlbMsg));
        const auto h = decode<Header>(msg);
        const auto m = decode<IotlbMsg>(msg.subspan(sizeof(Header)));
        FUZZ_CHECK(h.request.get() == kBackendIotlbMsg && h.flags.get() == kFlagVersion &&
                       h.size.get() == sizeof(IotlbMsg),
                   "back-end message request %u flags %#x size %u", h.request.get(), h.flags.get(), h.size.get());
        FUZZ_CHECK(m.type == kIotlbMiss && m.iova.get() % kPage == 0 && m.perm >= kPermRo && m.perm <= kPermRw,
                   "MISS type %u iova %#llx perm %u", m.type, static_cast<unsigned long long>(m.iova.get()), m.perm);
      }
    }
  }
}

void bursts(Harness& h, Port& port) {
  for (uint16_t qp = 0; qp < port.config().queue_pairs; ++qp) {
    h.rcu.online(h.reader);
    (void)port.dequeue_burst(h.reader, qp, nullptr, nullptr, 0);
    (void)port.enqueue_burst(h.reader, qp, nullptr, 0);
    port.prefetch(h.reader, qp);
    h.rcu.quiescent(h.reader);
    h.rcu.offline(h.reader);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Harness& h = harness();
  const size_t fds_at_start = open_fds();
  const size_t maps_at_start = file_mappings();
  std::vector<int> peers;
  {
    PortConfig cfg;
    cfg.path = "unused";
    cfg.queue_pairs = static_cast<uint16_t>(1 + (data[0] & 15));
    cfg.iommu = (data[0] & 0x10) == 0;
    Port port(h.rcu, cfg);
    // service()'s clock: deterministic, 7 ms per message (kMissRetry is 20).
    auto now = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
    std::vector<uint8_t> payload, reply;
    std::vector<int> fds;
    size_t pos = 1;
    while (pos < size) {
      const uint8_t ctl = data[pos++];
      if (size - pos < sizeof(Header)) break;
      const auto hdr = decode<Header>(std::span<const uint8_t>(data + pos, sizeof(Header)));
      pos += sizeof(Header);
      const size_t nfds = std::min<size_t>(ctl & 15, kMaxFds);
      fds.clear();
      for (size_t i = 0; i < nfds; ++i) fds.push_back(make_fd(pos < size ? data[pos++] : 0, &peers));
      const uint32_t len = hdr.size.get();
      payload.assign(len <= kMaxPayload ? len : 0, 0);
      const size_t take = std::min(payload.size(), size - pos);
      if (take != 0) std::memcpy(payload.data(), data + pos, take);
      pos += take;

      if (ctl & 0x40) port.connected();
      const Port::Action a = port.handle_message(hdr, payload, fds, &reply);
      if (g_trace)
        std::fprintf(stderr, "msg %u flags %#x size %u fds %zu -> %s reply %zu running %d\n", hdr.request.get(),
                     hdr.flags.get(), len, nfds, a == Port::Action::kClose ? "close" : "continue", reply.size(),
                     port.running());
      check_reply(hdr, a, reply);
      if (a == Port::Action::kClose) {
        port.disconnect();
        FUZZ_CHECK(!port.running(), "running after disconnect()");
      }
      if ((ctl & 0x10) && port.running()) bursts(h, port);
      now += std::chrono::milliseconds(7);
      if (ctl & 0x20) {
        (void)port.service(now);
        drain_peers(peers);
      }
    }
    port.disconnect();
    FUZZ_CHECK(!port.running(), "running after disconnect()");
    drain_peers(peers);
    for (int fd : peers) ::close(fd);
    FUZZ_CHECK(open_fds() == fds_at_start, "descriptors leaked: %zu open, %zu at the start", open_fds(),
               fds_at_start);
    FUZZ_CHECK(file_mappings() == maps_at_start, "mappings left after disconnect(): %zu, %zu at the start",
               file_mappings(), maps_at_start);
  }
  FUZZ_CHECK(open_fds() == fds_at_start, "descriptors leaked by ~Port: %zu open, %zu at the start", open_fds(),
             fds_at_start);
  return 0;
}
