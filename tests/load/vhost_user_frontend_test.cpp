// End-to-end: the vhost-user front end (vxlate/load/vhost_user_frontend.h)
// against DPDK's own back end, dpdk-testpmd's net_vhost with
// iommu-support=1 and mac forwarding, so every frame sent on a transmitq comes
// back on the receiveq of the same pair with its MAC addresses rewritten.
// Invariants checked: every frame that comes back is one that was sent, intact
// and once; with an IOMMU every MISS is for a mapped IOVA and is answered,
// every UPDATE and INVALIDATE is acked with 0; after an INVALIDATE's ack the
// back end writes nothing into the invalidated buffers (they stay poisoned)
// and returns no receive buffer, yet keeps reading the still-mapped transmit
// buffers; GET_VRING_BASE reports exactly the chains the driver saw used.
// Skipped (GTEST_SKIP) where dpdk-testpmd is not in PATH (VXLATE_TESTPMD may
// name another binary); each case starts its own testpmd (unique --file-prefix
// and socket) and stops it.
//
// FakeBackend cases (no testpmd; labelled fast): an in-process back end that
// records every message, checks it with the back end's own rules
// (check_request), and answers, or answers wrongly on request, to pin the
// QEMU 7.2 message order and the front end's refusal of bad replies.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "vxlate/dataplane/vhost_user_wire.h"
#include "vxlate/dataplane/virtio_ring.h"
#include "vxlate/load/vhost_user_frontend.h"

namespace {

using namespace vxlate::load;
namespace vu = vxlate::dataplane::vhost_user;
namespace dp = vxlate::dataplane;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// --- dpdk-testpmd ----------------------------------------------------------------

std::string find_testpmd() {
  if (const char* e = std::getenv("VXLATE_TESTPMD")) return access(e, X_OK) == 0 ? e : "";
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  for (std::string d; std::getline(dirs, d, ':');) {
    const std::string p = (d.empty() ? "." : d) + "/dpdk-testpmd";
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

// The first two CPUs this process may run on (the same one twice on a
// single-CPU cpuset): testpmd's main lcore and its forwarding lcore.
std::string lcore_map() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    for (int c = 0; c < CPU_SETSIZE && cpus.size() < 2; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
  if (cpus.empty()) cpus.push_back(0);
  if (cpus.size() == 1) cpus.push_back(cpus[0]);
  return "0@" + std::to_string(cpus[0]) + ",1@" + std::to_string(cpus[1]);
}

// One testpmd with a net_vhost port (the vhost-user server) serving `queues`
// pairs, mac forwarding, non-interactive: it runs until its stdin closes.
class Testpmd {
 public:
  Testpmd(const std::string& bin, uint16_t queues) {
    static int seq = 0;
    const std::string tag = std::to_string(getpid()) + "-" + std::to_string(seq++);
    prefix_ = "vxfe" + tag;
    const auto dir = std::filesystem::temp_directory_path();
    sock_ = (dir / ("vxfe-" + tag + ".sock")).string();
    log_ = (dir / ("vxfe-" + tag + ".log")).string();
    std::filesystem::remove(sock_);
    const std::string q = std::to_string(queues);
    const std::vector<std::string> args = {
        bin, "--no-huge", "--no-pci", "-m", "512", "--lcores", lcore_map(), "--file-prefix", prefix_,
        "--vdev", "net_vhost0,iface=" + sock_ + ",iommu-support=1,queues=" + q, "--",
        "--forward-mode=mac", "--auto-start", "--nb-cores=1", "--rxq=" + q, "--txq=" + q,
        "--total-num-mbufs=8192"};
    int in[2];
    if (pipe2(in, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test
      const int out = open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(in[0], 0);
      if (out >= 0) {
        dup2(out, 1);
        dup2(out, 2);
      }
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(in[0]);
    stdin_ = in[1];
    if (pid_ < 0) throw std::runtime_error("fork");
  }

  ~Testpmd() {
    // EOF on stdin ends testpmd's "Press enter to exit" wait: a clean exit.
    if (stdin_ >= 0) close(stdin_);
    bool exited = false;
    for (auto until = Clock::now() + 5s; Clock::now() < until;) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        exited = true;
        break;
      }
      std::this_thread::sleep_for(20ms);
    }
    if (!exited) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::error_code ec;
    std::filesystem::remove(sock_, ec);
    // EAL's runtime directory for this --file-prefix (root, or per user).
    std::filesystem::remove_all("/var/run/dpdk/" + prefix_, ec);
    if (const char* x = std::getenv("XDG_RUNTIME_DIR")) std::filesystem::remove_all(std::string(x) + "/dpdk/" + prefix_, ec);
    std::filesystem::remove_all("/tmp/dpdk/" + prefix_, ec);
    if (!::testing::Test::HasFailure()) std::filesystem::remove(log_, ec);
  }

  // Waits until the vhost-user socket exists (the front end retries the
  // connect until testpmd listens). False if testpmd died or took too long.
  bool wait_ready() {
    for (auto until = Clock::now() + 20s; Clock::now() < until;) {
      struct stat st;
      if (stat(sock_.c_str(), &st) == 0) return true;
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  const std::string& socket() const { return sock_; }
  // The last lines of testpmd's output, for failure messages.
  std::string tail(size_t lines = 40) const {
    std::ifstream f(log_);
    std::vector<std::string> all;
    for (std::string l; std::getline(f, l);) all.push_back(l);
    std::string s = "--- testpmd (" + log_ + ") ---\n";
    for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) s += all[i] + "\n";
    return s;
  }

 private:
  pid_t pid_ = -1;
  int stdin_ = -1;
  std::string prefix_, sock_, log_;
};

// --- frames --------------------------------------------------------------------

constexpr uint8_t kDst[6] = {0x02, 0, 0, 0, 0, 0x01};
constexpr uint8_t kSrc[6] = {0x02, 0, 0, 0, 0, 0x02};
constexpr size_t kMinFrame = 60;
constexpr size_t kSeqOffset = 14;

size_t frame_len(uint64_t seq, size_t max_len) { return kMinFrame + (seq * 37) % (max_len - kMinFrame + 1); }

uint8_t pattern(uint64_t seq, size_t i) { return static_cast<uint8_t>(seq * 131 + i * 7); }

std::vector<uint8_t> make_frame(uint64_t seq, size_t max_len) {
  std::vector<uint8_t> f(frame_len(seq, max_len));
  std::memcpy(f.data(), kDst, 6);
  std::memcpy(f.data() + 6, kSrc, 6);
  f[12] = 0x88;  // local experimental ethertype 0x88b5
  f[13] = 0xb5;
  std::memcpy(f.data() + kSeqOffset, &seq, sizeof seq);
  for (size_t i = kSeqOffset + sizeof seq; i < f.size(); ++i) f[i] = pattern(seq, i);
  return f;
}

// One queue pair's traffic: frames carry a sequence number; each must come
// back once, intact after the MAC addresses (testpmd's mac mode rewrites them).
struct Flow {
  Flow(uint16_t q, size_t max) : qp(q), max_len(max) {}
  uint16_t qp;
  size_t max_len;
  uint64_t sent = 0;
  uint64_t received = 0;
  uint64_t bad = 0;
  std::vector<bool> seen;
  Clock::time_point last_rx = Clock::now();

  void check(std::span<const uint8_t> f) {
    uint64_t seq = 0;
    bool ok = f.size() >= kMinFrame && f[12] == 0x88 && f[13] == 0xb5;
    if (ok) {
      std::memcpy(&seq, f.data() + kSeqOffset, sizeof seq);
      ok = seq < sent && !seen[seq] && f.size() == frame_len(seq, max_len) &&
           std::memcmp(f.data() + 6, kSrc, 6) != 0;  // the source was rewritten by testpmd
      for (size_t i = kSeqOffset + sizeof seq; ok && i < f.size(); ++i) ok = f[i] == pattern(seq, i);
    }
    if (!ok) {
      ++bad;
      return;
    }
    seen[seq] = true;
    ++received;
    last_rx = Clock::now();
  }
};

// A window of frames in flight; frames lost to a MISS (DPDK drops the frame
// whose buffer it cannot translate) are written off after 1 ms without progress.
constexpr uint64_t kWindow = 32;

// One round of the guest's and the vIOMMU's work over every flow.
void step(VhostUserFrontend& fe, std::vector<Flow>& flows, bool send, uint32_t queue_size) {
  fe.serve_misses();
  for (Flow& f : flows) {
    fe.reap_tx(f.qp);
    fe.poll_rx(f.qp, [&](std::span<const uint8_t> frame) { f.check(frame); });
    fe.post_rx(f.qp, queue_size);
    if (send && (f.sent - f.received < kWindow || Clock::now() - f.last_rx > 1ms)) {
      const auto frame = make_frame(f.sent, f.max_len);
      f.seen.push_back(false);
      if (fe.send(f.qp, frame)) {
        ++f.sent;
        if (f.sent - f.received >= kWindow) f.last_rx = Clock::now();
      } else {
        f.seen.pop_back();
      }
    }
  }
}

// Runs traffic until every flow got `want` frames back; false after `budget`.
bool pump(VhostUserFrontend& fe, std::vector<Flow>& flows, uint64_t want, uint32_t queue_size,
          Clock::duration budget = 30s) {
  const auto until = Clock::now() + budget;
  while (Clock::now() < until) {
    step(fe, flows, true, queue_size);
    if (std::all_of(flows.begin(), flows.end(), [&](const Flow& f) { return f.received >= want; })) return true;
  }
  return false;
}

// Stops sending and waits until the back end has returned every transmit
// chain and no frame came back for 50 ms.
void quiesce(VhostUserFrontend& fe, std::vector<Flow>& flows, uint32_t queue_size) {
  const auto until = Clock::now() + 2s;
  auto quiet_since = Clock::now();
  uint64_t last = 0;
  while (Clock::now() < until) {
    step(fe, flows, false, queue_size);
    uint64_t got = 0;
    bool tx_done = true;
    for (const Flow& f : flows) {
      got += f.received;
      tx_done = tx_done && fe.pair_stats(f.qp).tx_completed == fe.pair_stats(f.qp).tx_frames;
    }
    if (got != last) {
      last = got;
      quiet_since = Clock::now();
    }
    if (tx_done && Clock::now() - quiet_since > 50ms) return;
  }
}

std::string describe(const VhostUserFrontend& fe, const std::vector<Flow>& flows) {
  const auto& s = fe.stats();
  std::string d = "misses " + std::to_string(s.misses) + " answered " + std::to_string(s.misses_answered) +
                  " unmapped " + std::to_string(s.misses_unmapped) + " dropped " + std::to_string(s.misses_dropped) +
                  " updates " + std::to_string(s.updates) + " invalidates " + std::to_string(s.invalidates);
  for (const Flow& f : flows) {
    const auto& p = fe.pair_stats(f.qp);
    d += "; qp" + std::to_string(f.qp) + ": sent " + std::to_string(f.sent) + " back " + std::to_string(f.received) +
         " bad " + std::to_string(f.bad) + " tx_completed " + std::to_string(p.tx_completed) + " rx_buffers " +
         std::to_string(p.rx_buffers) + " rx_errors " + std::to_string(p.rx_errors);
  }
  return d;
}

uint64_t median(std::vector<uint64_t> v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

class VhostUserFrontendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bin_ = find_testpmd();
    if (bin_.empty()) GTEST_SKIP() << "dpdk-testpmd not found (PATH, or VXLATE_TESTPMD)";
  }
  // Starts testpmd and returns options pointing at it.
  VhostUserFrontendOptions launch(uint16_t queues) {
    tp_ = std::make_unique<Testpmd>(bin_, queues);
    if (!tp_->wait_ready()) throw std::runtime_error("dpdk-testpmd did not come up\n" + tp_->tail());
    VhostUserFrontendOptions o;
    o.path = tp_->socket();
    o.queue_pairs = queues;
    o.connect_timeout_ms = 10000;
    return o;
  }
  std::string bin_;
  std::unique_ptr<Testpmd> tp_;
};

// --- cases -----------------------------------------------------------------------

TEST_F(VhostUserFrontendTest, IommuRoundTripThenInvalidate) {
  VhostUserFrontendOptions o = launch(1);
  o.iommu = true;
  VhostUserFrontend* fe_ptr = nullptr;
  std::vector<std::pair<VhostUserDmaArea, uint64_t>> areas;  // what start() mapped, and at which IOVA
  o.dma_map = [&](const VhostUserDmaArea& a) {
    const uint64_t iova = fe_ptr->default_iova(a.gpa);
    fe_ptr->map(iova, a.gpa, a.bytes, a.perm);
    areas.emplace_back(a, iova);
    return iova;
  };
  VhostUserFrontend fe(o);
  fe_ptr = &fe;
  ASSERT_NO_THROW(fe.start()) << tp_->tail();
  ASSERT_EQ(areas.size(), 4u);
  EXPECT_TRUE(fe.features() & dp::kFeatureAccessPlatform);
  EXPECT_TRUE(fe.features() & dp::kFeatureVersion1);
  EXPECT_EQ(fe.protocol_features() & 0x28, 0x28u);  // REPLY_ACK and BACKEND_REQ
  EXPECT_EQ(fe.stats().updates, 2u) << "QEMU's prefetch: one UPDATE per used ring";

  std::vector<Flow> flows{{0, 1514}};
  const bool done = pump(fe, flows, 300, o.queue_size);  // DPDK drops on misses: slow on a loaded machine
  ASSERT_TRUE(done) << describe(fe, flows) << "\n" << tp_->tail();
  quiesce(fe, flows, o.queue_size);
  const auto& s = fe.stats();
  EXPECT_EQ(flows[0].bad, 0u);
  EXPECT_GT(s.misses_answered, 0u);
  EXPECT_EQ(s.misses, s.misses_answered) << "every MISS was for a mapped IOVA";
  EXPECT_EQ(s.update_nacks, 0u);
  EXPECT_EQ(fe.pair_stats(0).rx_errors, 0u);
  std::printf("iommu: %llu frames round-tripped of %llu sent, %llu misses served, UPDATE ack median %llu ns\n",
              static_cast<unsigned long long>(flows[0].received), static_cast<unsigned long long>(flows[0].sent),
              static_cast<unsigned long long>(s.misses_answered),
              static_cast<unsigned long long>(median(s.update_ack_ns)));

  // INVALIDATE the receive buffers; once acked, the back end must not write
  // them (poisoned now) nor complete a receive chain, while transmit goes on.
  const auto rx = std::find_if(areas.begin(), areas.end(),
                               [](const auto& a) { return a.first.use == VhostUserDmaArea::kRxBuffers; });
  ASSERT_NE(rx, areas.end());
  ASSERT_TRUE(fe.unmap(rx->second, rx->first.bytes));
  uint8_t* pool = fe.memory().hva(rx->first.gpa);
  std::memset(pool, 0xee, rx->first.bytes);
  const uint64_t rx_buffers = fe.pair_stats(0).rx_buffers;
  const uint64_t tx_done = fe.pair_stats(0).tx_completed;
  const uint64_t unmapped = s.misses_unmapped;
  for (auto until = Clock::now() + 200ms; Clock::now() < until;) {
    step(fe, flows, true, o.queue_size);
    std::this_thread::sleep_for(1ms);  // paced: under 200 frames, fewer than the ring holds
  }
  quiesce(fe, flows, o.queue_size);
  EXPECT_EQ(fe.pair_stats(0).rx_buffers, rx_buffers) << "a receive chain completed after its INVALIDATE was acked";
  EXPECT_TRUE(std::all_of(pool, pool + rx->first.bytes, [](uint8_t b) { return b == 0xee; }))
      << "the back end wrote a receive buffer after its INVALIDATE was acked";
  EXPECT_GT(fe.pair_stats(0).tx_completed, tx_done) << "transmit stopped although its buffers stay mapped";
  EXPECT_GT(s.misses_unmapped, unmapped) << "no MISS for the invalidated receive buffers";

  // The rest: rings and transmit buffers, each acked.
  for (const auto& [a, iova] : areas) {
    if (a.use != VhostUserDmaArea::kRxBuffers) {
      EXPECT_TRUE(fe.unmap(iova, a.bytes));
    }
  }
  EXPECT_EQ(s.invalidates, areas.size());
  EXPECT_EQ(s.invalidate_nacks, 0u);
  ASSERT_EQ(s.invalidate_ack_ns.size(), areas.size());
  std::printf("iommu: %zu INVALIDATEs acked, ack median %llu ns, max %llu ns\n", s.invalidate_ack_ns.size(),
              static_cast<unsigned long long>(median(s.invalidate_ack_ns)),
              static_cast<unsigned long long>(*std::max_element(s.invalidate_ack_ns.begin(), s.invalidate_ack_ns.end())));

  const std::vector<uint32_t> bases = fe.stop();
  ASSERT_EQ(bases.size(), 2u);
  EXPECT_EQ(bases[0], fe.pair_stats(0).rx_buffers & 0xffff) << describe(fe, flows);
  EXPECT_EQ(bases[1], fe.pair_stats(0).tx_completed & 0xffff) << describe(fe, flows);
  fe.disconnect();
}

TEST_F(VhostUserFrontendTest, PlainRoundTrip) {
  VhostUserFrontendOptions o = launch(1);
  VhostUserFrontend fe(o);
  ASSERT_NO_THROW(fe.start()) << tp_->tail();
  EXPECT_FALSE(fe.features() & dp::kFeatureAccessPlatform);
  std::vector<Flow> flows{{0, 1514}};
  ASSERT_TRUE(pump(fe, flows, 600, o.queue_size)) << describe(fe, flows) << "\n" << tp_->tail();
  quiesce(fe, flows, o.queue_size);
  EXPECT_EQ(flows[0].bad, 0u);
  EXPECT_EQ(fe.stats().misses, 0u);
  EXPECT_EQ(fe.stats().updates, 0u);
  std::printf("plain: %llu frames round-tripped of %llu sent\n", static_cast<unsigned long long>(flows[0].received),
              static_cast<unsigned long long>(flows[0].sent));
  const std::vector<uint32_t> bases = fe.stop();
  ASSERT_EQ(bases.size(), 2u);
  EXPECT_EQ(bases[0], fe.pair_stats(0).rx_buffers & 0xffff);
  EXPECT_EQ(bases[1], fe.pair_stats(0).tx_completed & 0xffff);
}

// MRG_RXBUF with 256-byte receive buffers: frames up to 1514 bytes span up
// to seven buffers (num_buffers), gathered by poll_rx.
TEST_F(VhostUserFrontendTest, IommuMergeableSmallBuffers) {
  VhostUserFrontendOptions o = launch(1);
  o.iommu = true;
  o.rx_buf_len = 256;
  VhostUserFrontend fe(o);
  ASSERT_NO_THROW(fe.start()) << tp_->tail();
  ASSERT_TRUE(fe.features() & dp::kNetFeatureMrgRxbuf);
  std::vector<Flow> flows{{0, 1514}};
  ASSERT_TRUE(pump(fe, flows, 500, o.queue_size)) << describe(fe, flows) << "\n" << tp_->tail();
  quiesce(fe, flows, o.queue_size);
  EXPECT_EQ(flows[0].bad, 0u);
  EXPECT_EQ(fe.pair_stats(0).rx_errors, 0u);
  EXPECT_GT(fe.pair_stats(0).rx_buffers, 2 * fe.pair_stats(0).rx_frames) << "frames were not merged";
  EXPECT_EQ(fe.stats().misses, fe.stats().misses_answered);
  EXPECT_EQ(fe.stop()[0], fe.pair_stats(0).rx_buffers & 0xffff);
}

// Two queue pairs (MQ, GET_QUEUE_NUM, SET_VRING_ENABLE for pair 1 last),
// EVENT_IDX and INDIRECT_DESC negotiated, 512-entry rings whose used rings
// span two pages (QEMU's prefetch covers the first only).
TEST_F(VhostUserFrontendTest, IommuTwoQueuePairsEventIdx) {
  VhostUserFrontendOptions o = launch(2);
  o.iommu = true;
  o.event_idx = true;
  o.indirect = true;
  o.queue_size = 512;
  VhostUserFrontend fe(o);
  ASSERT_NO_THROW(fe.start()) << tp_->tail();
  EXPECT_TRUE(fe.features() & dp::kFeatureEventIdx);
  EXPECT_TRUE(fe.features() & (uint64_t{1} << 22));  // VIRTIO_NET_F_MQ
  std::vector<Flow> flows{{0, 1514}, {1, 1514}};
  ASSERT_TRUE(pump(fe, flows, 300, o.queue_size)) << describe(fe, flows) << "\n" << tp_->tail();
  quiesce(fe, flows, o.queue_size);
  EXPECT_EQ(flows[0].bad + flows[1].bad, 0u);
  EXPECT_EQ(fe.stats().misses, fe.stats().misses_answered);
  const std::vector<uint32_t> bases = fe.stop();
  ASSERT_EQ(bases.size(), 4u);
  for (uint16_t qp = 0; qp < 2; ++qp) {
    EXPECT_EQ(bases[2 * qp], fe.pair_stats(qp).rx_buffers & 0xffff);
    EXPECT_EQ(bases[2 * qp + 1], fe.pair_stats(qp).tx_completed & 0xffff);
  }
}

// A MISS that gets no answer (QEMU: unmapped IOVA) must not be answered by
// anything else: with every MISS dropped the back end only has the prefetched
// used rings, so no frame can come back and no UPDATE beyond the prefetch goes out.
TEST_F(VhostUserFrontendTest, IommuUnansweredMissesGetNoUpdate) {
  VhostUserFrontendOptions o = launch(1);
  o.iommu = true;
  o.drop_every_nth_miss = 1;
  VhostUserFrontend fe(o);
  ASSERT_NO_THROW(fe.start()) << tp_->tail();
  std::vector<Flow> flows{{0, 200}};
  EXPECT_FALSE(pump(fe, flows, 1, o.queue_size, 300ms));
  const auto& s = fe.stats();
  EXPECT_EQ(flows[0].received, 0u);
  EXPECT_GT(s.misses, 0u);
  EXPECT_EQ(s.misses_dropped, s.misses);
  EXPECT_EQ(s.updates, 2u);
  fe.stop();
}

// --- an in-process back end ------------------------------------------------------

// One message as the fake back end saw it.
struct Seen {
  uint32_t request;
  uint32_t flags;
  std::vector<uint8_t> payload;
  size_t nfds;
  vu::Refusal refusal;  // check_request's verdict
};

// A vhost-user back end on a thread: answers GET_* and every NEED_REPLY; a
// fault makes its reply to one request wrong.
class FakeBackend {
 public:
  enum class Fault { kNone, kFlags, kSize, kNack };

  FakeBackend(uint64_t features, uint64_t protocol) : features_(features), protocol_(protocol) {
    static int seq = 0;
    path_ = (std::filesystem::temp_directory_path() /
             ("vxfe-fake-" + std::to_string(getpid()) + "-" + std::to_string(seq++) + ".sock"))
                .string();
    std::filesystem::remove(path_);
    listen_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, path_.c_str(), path_.size() + 1);
    if (listen_ < 0 || bind(listen_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || listen(listen_, 1) != 0)
      throw std::runtime_error("fake back end: cannot listen on " + path_);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeBackend() {
    shutdown(listen_, SHUT_RDWR);
    {
      std::lock_guard<std::mutex> l(mu_);
      if (conn_ >= 0) shutdown(conn_, SHUT_RDWR);
    }
    thread_.join();
    close(listen_);
    if (conn_ >= 0) close(conn_);
    if (backend_fd_ >= 0) close(backend_fd_);
    std::filesystem::remove(path_);
  }

  const std::string& path() const { return path_; }
  void fault(uint32_t request, Fault f) {
    std::lock_guard<std::mutex> l(mu_);
    fault_request_ = request;
    fault_ = f;
  }
  std::vector<Seen> seen() {
    std::lock_guard<std::mutex> l(mu_);
    return seen_;
  }
  // The back-end channel the front end handed over (SET_BACKEND_REQ_FD).
  int backend_fd() {
    std::lock_guard<std::mutex> l(mu_);
    return backend_fd_;
  }
  // Writes a MISS on the back-end channel, as DPDK's vhost_user_iotlb_miss.
  void send_miss(uint64_t iova, uint8_t perm, bool need_reply = false) {
    vu::IotlbMsg m{};
    m.iova.set(iova);
    m.perm = perm;
    m.type = vu::kIotlbMiss;
    vu::Header h{};
    h.request.set(vu::kBackendIotlbMsg);
    h.flags.set(vu::kFlagVersion | (need_reply ? vu::kFlagNeedReply : 0));
    h.size.set(sizeof m);
    uint8_t b[sizeof h + sizeof m];
    vxlate::encode(std::span<uint8_t>(b, sizeof h), h);
    vxlate::encode(std::span<uint8_t>(b + sizeof h, sizeof m), m);
    ASSERT_EQ(write(backend_fd(), b, sizeof b), static_cast<ssize_t>(sizeof b));
  }

 private:
  static bool read_all(int fd, uint8_t* p, size_t n, std::vector<int>* fds) {
    size_t got = 0;
    while (got < n) {
      iovec iov{p + got, n - got};
      alignas(cmsghdr) char ctl[CMSG_SPACE(8 * sizeof(int))];
      msghdr mh{};
      mh.msg_iov = &iov;
      mh.msg_iovlen = 1;
      mh.msg_control = ctl;
      mh.msg_controllen = sizeof ctl;
      const ssize_t r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
      if (r <= 0) return false;
      for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++i) {
          int f;
          std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
          fds->push_back(f);
        }
      }
      got += static_cast<size_t>(r);
    }
    return true;
  }

  void reply(int fd, uint32_t request, std::span<const uint8_t> payload) {
    Fault f;
    {
      std::lock_guard<std::mutex> l(mu_);
      f = fault_request_ == request ? fault_ : Fault::kNone;
    }
    vu::Header h = vu::reply_header(request, static_cast<uint32_t>(payload.size()));
    std::vector<uint8_t> body(payload.begin(), payload.end());
    if (f == Fault::kFlags) h.flags.set(vu::kReplyFlags | vu::kFlagNeedReply);  // 0xd: NEED_REPLY echoed
    if (f == Fault::kSize) {
      body.resize(4);
      h.size.set(4);
    }
    if (f == Fault::kNack) body[0] = 1;
    std::vector<uint8_t> out(sizeof h + body.size());
    vxlate::encode(std::span<uint8_t>(out.data(), sizeof h), h);
    std::memcpy(out.data() + sizeof h, body.data(), body.size());
    (void)!write(fd, out.data(), out.size());
  }

  void serve() {
    const int c = accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return;
    {
      std::lock_guard<std::mutex> l(mu_);
      conn_ = c;
    }
    for (;;) {
      std::vector<int> fds;
      uint8_t hb[sizeof(vu::Header)];
      if (!read_all(c, hb, sizeof hb, &fds)) break;
      const auto h = vxlate::decode<vu::Header>(hb);
      std::vector<uint8_t> payload(std::min<uint32_t>(h.size.get(), vu::kMaxPayload));
      if (!payload.empty() && !read_all(c, payload.data(), payload.size(), &fds)) break;
      const uint32_t req = h.request.get();
      Seen m{req, h.flags.get(), payload, fds.size(), vu::check_request(h, payload, fds.size(), 2)};
      {
        std::lock_guard<std::mutex> l(mu_);
        seen_.push_back(m);
        if (req == vu::kSetBackendReqFd && fds.size() == 1) {
          backend_fd_ = fds[0];
          fds.clear();
        }
      }
      for (int f : fds) close(f);
      auto u64 = [&](uint64_t v) {
        uint8_t b[8];
        std::memcpy(b, &v, 8);
        reply(c, req, b);
      };
      switch (req) {
        case vu::kGetFeatures: u64(features_); break;
        case vu::kGetProtocolFeatures: u64(protocol_); break;
        case vu::kGetQueueNum: u64(1); break;
        case vu::kGetVringBase: {
          vu::VringState st = vxlate::decode<vu::VringState>(payload);
          st.num.set(7);
          uint8_t b[sizeof st];
          vxlate::encode(std::span<uint8_t>(b), st);
          reply(c, req, b);
          break;
        }
        default:
          if (h.flags.get() & vu::kFlagNeedReply) u64(0);
      }
    }
  }

  uint64_t features_, protocol_;
  std::string path_;
  int listen_ = -1;
  std::thread thread_;
  std::mutex mu_;
  int conn_ = -1;
  int backend_fd_ = -1;
  uint32_t fault_request_ = 0;
  Fault fault_ = Fault::kNone;
  std::vector<Seen> seen_;
};

constexpr uint64_t kFakeFeatures = dp::kFeatureVersion1 | dp::kFeatureAccessPlatform | dp::kNetFeatureMrgRxbuf |
                                   (uint64_t{1} << 30);
constexpr uint64_t kFakeProtocol = 0x29;  // MQ | REPLY_ACK | BACKEND_REQ

// QEMU 7.2's order for one queue pair with a vIOMMU (notes 1.2, 1.3), every
// message valid by the back end's rules, ring addresses and UPDATEs in IOVA
// space; then MISS -> UPDATE, an unmapped MISS unanswered, INVALIDATE, stop.
TEST(FakeBackend, QemuOrderAndIotlb) {
  FakeBackend be(kFakeFeatures, kFakeProtocol);
  VhostUserFrontendOptions o;
  o.path = be.path();
  o.iommu = true;
  VhostUserFrontend fe(o);
  ASSERT_NO_THROW(fe.start());
  EXPECT_EQ(fe.features(), kFakeFeatures);
  const std::vector<Seen> start = be.seen();
  const std::vector<uint32_t> want = {
      vu::kGetFeatures, vu::kGetProtocolFeatures, vu::kSetProtocolFeatures, vu::kGetQueueNum,
      vu::kSetBackendReqFd, vu::kSetOwner, vu::kGetFeatures,
      vu::kSetVringCall, vu::kSetVringErr, vu::kSetVringCall, vu::kSetVringErr,
      vu::kSetVringEnable, vu::kSetVringEnable,   // the guest's feature write
      vu::kSetVringEnable, vu::kSetVringEnable,   // restored at DRIVER_OK
      vu::kSetFeatures, vu::kSetMemTable,
      vu::kSetVringNum, vu::kSetVringBase, vu::kSetVringAddr, vu::kSetVringKick, vu::kSetVringCall,
      vu::kSetVringNum, vu::kSetVringBase, vu::kSetVringAddr, vu::kSetVringKick, vu::kSetVringCall,
      vu::kIotlbMsg, vu::kIotlbMsg};  // the used rings' prefetch
  ASSERT_EQ(start.size(), want.size());
  const uint64_t ram = o.gpa_base, ram_end = o.gpa_base + o.mem_bytes;
  const auto hva_base = reinterpret_cast<uint64_t>(fe.memory().hva(o.gpa_base));
  for (size_t i = 0; i < want.size(); ++i) {
    const Seen& m = start[i];
    EXPECT_EQ(m.request, want[i]) << "message " << i;
    EXPECT_EQ(m.refusal, vu::Refusal::kNone) << "message " << i << ": " << vu::to_string(m.refusal);
    const bool need_reply = m.request == vu::kSetBackendReqFd || m.request == vu::kSetMemTable || m.request == vu::kIotlbMsg;
    EXPECT_EQ(m.flags, need_reply ? 0x9u : 0x1u) << "message " << i;
  }
  EXPECT_EQ(vxlate::decode<vxlate::Le64>(start[2].payload).get(), kFakeProtocol);
  EXPECT_EQ(vxlate::decode<vxlate::Le64>(start[15].payload).get(), kFakeFeatures);
  const auto region = vxlate::decode<vu::MemRegion>(std::span<const uint8_t>(start[16].payload).subspan(8));
  EXPECT_EQ(region.guest_phys_addr.get(), ram);
  EXPECT_EQ(region.userspace_addr.get(), hva_base);
  // Ring addresses are IOVAs: outside guest-physical RAM and outside our VAs.
  for (size_t i : {19u, 24u}) {
    const auto a = vxlate::decode<vu::VringAddr>(start[i].payload);
    for (uint64_t addr : {a.desc_user_addr.get(), a.avail_user_addr.get(), a.used_user_addr.get()}) {
      EXPECT_TRUE(addr < ram || addr >= ram_end) << std::hex << addr;
      EXPECT_EQ(fe.default_iova(addr - vxlate::load::VhostUserFrontend::kIovaBase + ram), addr);
    }
    EXPECT_EQ(a.log_guest_addr.get(), a.used_user_addr.get());
  }
  for (size_t i : {27u, 28u}) {
    const auto u = vxlate::decode<vu::IotlbMsg>(start[i].payload);
    EXPECT_EQ(u.type, vu::kIotlbUpdate);
    EXPECT_EQ(u.size.get(), VhostUserFrontend::kPageSize);
    EXPECT_EQ(u.iova.get() % VhostUserFrontend::kPageSize, 0u);
    EXPECT_EQ(u.perm, vu::kPermRw);
    EXPECT_GE(u.uaddr.get(), hva_base);
    EXPECT_LT(u.uaddr.get(), hva_base + o.mem_bytes);
  }

  // A MISS inside ring 0's descriptor table: one UPDATE for its page.
  const uint64_t desc0 = vxlate::decode<vu::VringAddr>(start[19].payload).desc_user_addr.get();
  be.send_miss(desc0 + 0x18, vu::kPermRo);
  EXPECT_EQ(fe.serve_misses(1000), 1u);
  // Unmapped: no answer; with NEED_REPLY, QEMU's ack on the back-end channel.
  be.send_miss(0x7000'0000'0000, vu::kPermRw, true);
  EXPECT_EQ(fe.serve_misses(1000), 0u);
  uint8_t ack[sizeof(vu::Header) + 8];
  ASSERT_EQ(read(be.backend_fd(), ack, sizeof ack), static_cast<ssize_t>(sizeof ack));
  const auto ah = vxlate::decode<vu::Header>(ack);
  EXPECT_EQ(ah.flags.get(), vu::kReplyFlags);
  EXPECT_EQ(ah.request.get(), vu::kBackendIotlbMsg);
  EXPECT_EQ(ah.size.get(), 8u);
  EXPECT_EQ(fe.stats().misses, 2u);
  EXPECT_EQ(fe.stats().misses_answered, 1u);
  EXPECT_EQ(fe.stats().misses_unmapped, 1u);
  ASSERT_TRUE(fe.unmap(desc0, VhostUserFrontend::kPageSize));
  be.send_miss(desc0, vu::kPermRo);  // now unmapped too
  EXPECT_EQ(fe.serve_misses(1000), 0u);
  const std::vector<uint32_t> bases = fe.stop();
  EXPECT_EQ(bases, (std::vector<uint32_t>{7, 7}));

  const std::vector<Seen> all = be.seen();
  ASSERT_EQ(all.size(), want.size() + 4);  // UPDATE, INVALIDATE, 2 GET_VRING_BASE
  const auto upd = vxlate::decode<vu::IotlbMsg>(all[want.size()].payload);
  EXPECT_EQ(upd.type, vu::kIotlbUpdate);
  EXPECT_EQ(upd.iova.get(), desc0);
  EXPECT_EQ(upd.perm, vu::kPermRw);
  const auto inv = vxlate::decode<vu::IotlbMsg>(all[want.size() + 1].payload);
  EXPECT_EQ(all[want.size() + 1].flags, 0x9u);
  EXPECT_EQ(inv.type, vu::kIotlbInvalidate);
  EXPECT_EQ(inv.iova.get(), desc0);
  EXPECT_EQ(inv.size.get(), VhostUserFrontend::kPageSize);
  EXPECT_EQ(all[want.size() + 2].request, vu::kGetVringBase);
  EXPECT_EQ(fe.stats().invalidate_ack_ns.size(), 1u);
}

// Replies the front end must refuse: flags other than 0x5, a wrong size, a
// non-zero REPLY_ACK during setup.
TEST(FakeBackend, BadRepliesThrow) {
  struct Case {
    uint32_t request;
    FakeBackend::Fault fault;
    const char* says;  // in the exception's message
  };
  const Case cases[] = {
      {vu::kGetFeatures, FakeBackend::Fault::kFlags, "GET_FEATURES has flags 0xd, want exactly 0x5"},
      {vu::kGetProtocolFeatures, FakeBackend::Fault::kSize, "GET_PROTOCOL_FEATURES has size 4, want 8"},
      {vu::kSetMemTable, FakeBackend::Fault::kNack, "SET_MEM_TABLE refused"},
      {vu::kSetBackendReqFd, FakeBackend::Fault::kNack, "SET_BACKEND_REQ_FD refused"},
  };
  for (const Case& c : cases) {
    FakeBackend be(kFakeFeatures, kFakeProtocol);
    be.fault(c.request, c.fault);
    VhostUserFrontendOptions o;
    o.path = be.path();
    o.iommu = true;
    o.reply_timeout_ms = 1000;
    VhostUserFrontend fe(o);
    std::string what;
    try {
      fe.start();
    } catch (const std::runtime_error& e) {
      what = e.what();
    }
    EXPECT_NE(what.find(c.says), std::string::npos) << "got \"" << what << "\", want \"" << c.says << "\"";
  }
}

// An INVALIDATE acked with non-zero: unmap() says so and counts it (QEMU
// only logs "Fail to invalidate device iotlb").
TEST(FakeBackend, InvalidateNack) {
  FakeBackend be(kFakeFeatures, kFakeProtocol);
  be.fault(vu::kIotlbMsg, FakeBackend::Fault::kNack);
  VhostUserFrontendOptions o;
  o.path = be.path();
  o.iommu = true;
  o.prefetch_used_on_start = false;
  VhostUserFrontend fe(o);
  ASSERT_NO_THROW(fe.start());
  EXPECT_FALSE(fe.unmap(VhostUserFrontend::kIovaBase, VhostUserFrontend::kPageSize));
  EXPECT_EQ(fe.stats().invalidate_nacks, 1u);
}

// Without the IOMMU the protocol has no back-end-channel traffic and the
// rings are the front end's VAs.
TEST(FakeBackend, PlainRingsAreFrontEndVas) {
  FakeBackend be(kFakeFeatures & ~dp::kFeatureAccessPlatform, 0x9);  // MQ | REPLY_ACK
  VhostUserFrontendOptions o;
  o.path = be.path();
  VhostUserFrontend fe(o);
  ASSERT_NO_THROW(fe.start());
  ASSERT_EQ(fe.stop().size(), 2u);  // its replies order every earlier message
  const auto hva_base = reinterpret_cast<uint64_t>(fe.memory().hva(o.gpa_base));
  size_t addrs = 0;
  for (const Seen& m : be.seen()) {
    EXPECT_NE(m.request, vu::kSetBackendReqFd);
    EXPECT_NE(m.request, vu::kIotlbMsg);
    EXPECT_EQ(m.refusal, vu::Refusal::kNone);
    if (m.request != vu::kSetVringAddr) continue;
    ++addrs;
    const auto a = vxlate::decode<vu::VringAddr>(m.payload);
    EXPECT_GE(a.desc_user_addr.get(), hva_base);
    EXPECT_LT(a.used_user_addr.get(), hva_base + o.mem_bytes);
    EXPECT_GE(a.log_guest_addr.get(), o.gpa_base);  // a GPA, as QEMU's used_phys
  }
  EXPECT_EQ(addrs, 2u);
}

}  // namespace
