// NetDevice, the device side of virtio-net, against the guest driver model, in
// identity mode (GPAs, no IOMMU) and IOMMU mode (ACCESS_PLATFORM: IOVAs mapped
// through the virtio-iommu rings): transmit chains (direct, indirect, frames
// split over descriptors, over two memory regions and over several mbufs) into
// exact mbufs; refused transmit chains (writable part, shorter than the
// header, unmapped buffer with its fault event); running out of mbufs;
// mergeable receive (num_buffers, used lengths, payload from one- and
// multi-segment mbufs, multi-descriptor and indirect receive chains); receive
// without MRG_RXBUF (drop of a frame too big); running out of receive buffers
// (the gathered chains are reused in order); EVENT_IDX interrupt suppression.
#include "vxlate/dataplane/net.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "support/eal_env.h"
#include "vxlate/dataplane/iommu_queues.h"
#include "vxlate/load/guest.h"

namespace vxlate::dataplane {
namespace {

using load::DriverBuf;
using load::DriverQueue;
using load::GuestMemory;
using load::IommuDriver;

[[maybe_unused]] ::testing::Environment* const kEal =
    ::testing::AddGlobalTestEnvironment(new vxlate::test::EalEnv(1));

using Bytes = std::vector<uint8_t>;
constexpr uint64_t kGpa1 = 0x40000000, kSize1 = 16 << 20;
constexpr uint64_t kGpa2 = kGpa1 + kSize1, kSize2 = 1 << 20;  // contiguous in GPA, not in HVA
constexpr uint64_t kIovaOff = 0x100000000;                     // IOMMU mode: IOVA = GPA + this
constexpr uint64_t kNowhere = 0x300000000;                     // neither mapped nor guest memory
constexpr uint32_t kEp = 1;
constexpr uint32_t kRW = engine::kMapFlagRead | engine::kMapFlagWrite;

Bytes pattern(size_t n, uint8_t seed) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(seed + i * 131 + (i >> 8));
  return b;
}

Bytes mbuf_bytes(const rte_mbuf* m) {
  Bytes b;
  for (const rte_mbuf* s = m; s != nullptr; s = s->next) {
    const auto* p = rte_pktmbuf_mtod(s, const uint8_t*);
    b.insert(b.end(), p, p + s->data_len);
  }
  EXPECT_EQ(b.size(), m->pkt_len);
  return b;
}

class NetTest : public ::testing::TestWithParam<bool> {
 protected:
  bool iommu() const { return GetParam(); }

  void SetUp() override {
    pool = vxlate::test::EalEnv::pool();
    ASSERT_NE(pool, nullptr);
    const engine::MemRegion r[2] = {mem.region(), mem2.region()};
    ASSERT_EQ(dev.set_mem_table(r), Status::kOk);
    reader = rcu.register_reader();
    iq = std::make_unique<IommuQueues>(dev, reqq.device_config(false, EndpointId{0}),
                                       evq.device_config(false, EndpointId{0}));
    drv = std::make_unique<IommuDriver>(mem, reqq, [this] { iq->poll(online ? reader : Rcu::kNoReader); });
    data = mem.alloc(4 << 20, 4096);
    if (iommu()) {
      // All guest memory, rings included, at GPA + kIovaOff: two MAPs.
      drv->add_attach(1, kEp);
      drv->add_map(1, kGpa1 + kIovaOff, kSize1, kGpa1, kRW);
      drv->add_map(1, kGpa2 + kIovaOff, kSize2, kGpa2, kRW);
      ASSERT_EQ(drv->sync(), Status::kOk);
      rxq.set_dma_base(rxq.area_gpa() + kIovaOff);
      txq.set_dma_base(txq.area_gpa() + kIovaOff);
    }
    dev.iotlb().online(reader);
    online = true;
  }
  void TearDown() override {
    if (online) dev.iotlb().offline(reader);
    rcu.unregister_reader(reader);
  }

  void make_net(bool mrg) {
    const QueueConfig q[2] = {rxq.device_config(iommu(), EndpointId{kEp}),
                              txq.device_config(iommu(), EndpointId{kEp})};
    net = std::make_unique<NetDevice>(dev, q, mrg);
  }
  uint64_t dma(uint64_t gpa) const { return iommu() ? gpa + kIovaOff : gpa; }
  uint8_t* hva(uint64_t gpa) const { return gpa >= kGpa2 ? mem2.hva(gpa) : mem.hva(gpa); }
  // A guest buffer of n bytes filled with `fill`.
  uint64_t alloc(size_t n, uint8_t fill = 0xcc) {
    const uint64_t gpa = data + next;
    next = (next + n + 63) & ~uint64_t{63};
    std::memset(hva(gpa), fill, n);
    return gpa;
  }
  uint64_t place(const Bytes& b) {
    const uint64_t gpa = alloc(b.size());
    std::memcpy(hva(gpa), b.data(), b.size());
    return gpa;
  }
  DriverBuf ro(const Bytes& b) { return {dma(place(b)), static_cast<uint32_t>(b.size()), false}; }
  void post(DriverQueue& q, const std::vector<DriverBuf>& bufs, uint64_t token, bool indirect = false) {
    ASSERT_TRUE(q.add(bufs, token, indirect));
    q.publish();
  }
  // A receive chain of writable buffers of the given sizes; remembers their GPAs.
  void post_rx(std::vector<uint32_t> sizes, uint64_t token, bool indirect = false) {
    std::vector<DriverBuf> bufs;
    auto& parts = rx_parts[token];
    for (uint32_t s : sizes) {
      const uint64_t gpa = alloc(s);
      parts.push_back({gpa, s});
      bufs.push_back({dma(gpa), s, true});
    }
    post(rxq, bufs, token, indirect);
  }
  // The first `len` bytes the device wrote into receive chain `token`.
  Bytes rx_bytes(uint64_t token, uint32_t len) {
    Bytes b;
    for (auto [gpa, s] : rx_parts.at(token)) {
      const uint32_t take = std::min(s, len - static_cast<uint32_t>(b.size()));
      b.insert(b.end(), hva(gpa), hva(gpa) + take);
    }
    return b;
  }
  std::vector<std::pair<uint64_t, uint32_t>> used(DriverQueue& q) {
    std::vector<std::pair<uint64_t, uint32_t>> v;
    uint64_t t = 0;
    uint32_t l = 0;
    while (q.get_used(&t, &l)) v.push_back({t, l});
    return v;
  }
  rte_mbuf* make_mbuf(const Bytes& b, std::vector<size_t> segs) {
    rte_mbuf* head = nullptr;
    size_t off = 0;
    for (size_t s : segs) {
      rte_mbuf* m = rte_pktmbuf_alloc(pool);
      char* p = m != nullptr ? rte_pktmbuf_append(m, static_cast<uint16_t>(s)) : nullptr;
      if (p == nullptr) {
        ADD_FAILURE() << "mbuf alloc/append of " << s << " bytes failed";
        rte_pktmbuf_free(m);
        return head;
      }
      std::memcpy(p, b.data() + off, s);
      off += s;
      if (head == nullptr) head = m;
      else EXPECT_EQ(rte_pktmbuf_chain(head, m), 0);
    }
    EXPECT_EQ(off, b.size());
    return head;
  }
  uint16_t tx(rte_mbuf** pkts, uint16_t n, rte_mempool* mp = nullptr) {
    const uint16_t r = net->dequeue_burst(reader, 0, mp ? mp : pool, pkts, n);
    dev.iotlb().quiescent(reader);
    return r;
  }
  uint16_t rx(rte_mbuf* const* pkts, uint16_t n) {
    const uint16_t r = net->enqueue_burst(reader, 0, pkts, n);
    dev.iotlb().quiescent(reader);
    return r;
  }
  // Checks a received frame spread over chains tokens[i] with used lengths lens[i].
  void expect_rx(const Bytes& frame, std::vector<uint64_t> tokens, std::vector<uint32_t> lens,
                 const std::vector<std::pair<uint64_t, uint32_t>>& got) {
    ASSERT_EQ(got.size(), tokens.size());
    Bytes all;
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].first, tokens[i]) << i;
      EXPECT_EQ(got[i].second, lens[i]) << i;
      const Bytes b = rx_bytes(got[i].first, got[i].second);
      all.insert(all.end(), b.begin(), b.end());
    }
    ASSERT_GE(all.size(), kNetHdrSize);
    uint16_t nb = 0;
    std::memcpy(&nb, all.data() + kNetHdrNumBuffersOffset, 2);
    EXPECT_EQ(nb, tokens.size());
    EXPECT_EQ(Bytes(all.begin(), all.begin() + kNetHdrNumBuffersOffset), Bytes(kNetHdrNumBuffersOffset, 0));
    EXPECT_EQ(Bytes(all.begin() + kNetHdrSize, all.end()), frame);
  }

  GuestMemory mem{kGpa1, kSize1};
  GuestMemory mem2{kGpa2, kSize2};
  Rcu rcu{4};
  engine::Device dev{engine::Config{}, rcu};
  DriverQueue reqq{mem, 64, true, false};
  DriverQueue evq{mem, 16, true, false};
  DriverQueue rxq{mem, 128, true, true};
  DriverQueue txq{mem, 64, true, true};
  std::unique_ptr<IommuQueues> iq;
  std::unique_ptr<IommuDriver> drv;
  std::unique_ptr<NetDevice> net;
  rte_mempool* pool = nullptr;
  uint32_t reader = 0;
  bool online = false;
  uint64_t data = 0, next = 0;
  std::map<uint64_t, std::vector<std::pair<uint64_t, uint32_t>>> rx_parts;
};

INSTANTIATE_TEST_SUITE_P(Modes, NetTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Iommu" : "Identity"; });

TEST_P(NetTest, TxFramesExact) {
  make_net(true);
  const Bytes hdr(kNetHdrSize, 0x5a);
  std::vector<Bytes> frames = {pattern(60, 1), pattern(300, 2), pattern(64, 3), pattern(0x200 - kNetHdrSize, 4),
                               pattern(5000, 5), Bytes{}};
  const Bytes& f1 = frames[1];
  post(txq, {ro(hdr), ro(frames[0])}, 0);
  post(txq, {ro(hdr), ro(Bytes(f1.begin(), f1.begin() + 100)), ro(Bytes(f1.begin() + 100, f1.end()))}, 1, true);
  Bytes one = hdr;  // header and frame in one descriptor
  one.insert(one.end(), frames[2].begin(), frames[2].end());
  post(txq, {ro(one)}, 2);
  // Header and frame over the boundary between the two memory regions.
  Bytes cross = hdr;
  cross.insert(cross.end(), frames[3].begin(), frames[3].end());
  const uint64_t cross_gpa = kGpa2 - 0x100;
  std::memcpy(hva(cross_gpa), cross.data(), 0x100);
  std::memcpy(hva(kGpa2), cross.data() + 0x100, 0x100);
  post(txq, {{dma(cross_gpa), 0x200, false}}, 3);
  post(txq, {ro(hdr), ro(frames[4])}, 4, true);
  post(txq, {ro(hdr)}, 5);  // an empty frame

  rte_mbuf* pkts[kMaxNetBurst] = {};
  ASSERT_EQ(tx(pkts, kMaxNetBurst), 6);
  uint64_t bytes = 0;
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(pkts[i]->pkt_len, frames[i].size()) << i;
    EXPECT_EQ(mbuf_bytes(pkts[i]), frames[i]) << i;
    bytes += frames[i].size();
  }
  EXPECT_EQ(pkts[4]->nb_segs, 3);  // 5000 bytes over 2 KiB mbufs
  for (size_t i = 0; i < 6; ++i) rte_pktmbuf_free(pkts[i]);
  const std::vector<std::pair<uint64_t, uint32_t>> want = {{0, 0}, {1, 0}, {2, 0}, {3, 0}, {4, 0}, {5, 0}};
  EXPECT_EQ(used(txq), want);
  EXPECT_EQ(net->tx_stats(0).packets, 6u);
  EXPECT_EQ(net->tx_stats(0).bytes, bytes);
  EXPECT_EQ(net->txq(0).stats().chains, 6u);
  EXPECT_EQ(net->txq(0).stats().bad_total(), 0u);
  EXPECT_EQ(tx(pkts, kMaxNetBurst), 0);
}

TEST_P(NetTest, TxRefusesBadChains) {
  make_net(true);
  const Bytes hdr(kNetHdrSize, 0);
  const Bytes fc = pattern(90, 7), fd = pattern(70, 8);
  const uint64_t w = alloc(64);
  post(txq, {ro(hdr), ro(pattern(50, 6)), {dma(w), 64, true}}, 0);  // a writable buffer
  post(txq, {ro(Bytes(kNetHdrSize - 2, 0))}, 1);                     // shorter than the header
  post(txq, {ro(Bytes(6, 0)), ro(Bytes(6, 0)), ro(fc)}, 2);           // header over two descriptors
  post(txq, {ro(hdr), {kNowhere, 100, false}}, 3);                   // not translatable
  post(txq, {ro(hdr), ro(fd)}, 4, true);
  rte_mbuf* pkts[4] = {};
  // Bad and refused chains count against the burst: the first 4 slots hold
  // one good chain, the fifth the other.
  ASSERT_EQ(tx(pkts, 4), 1);
  ASSERT_EQ(tx(pkts + 1, 4), 1);
  EXPECT_EQ(mbuf_bytes(pkts[0]), fc);
  EXPECT_EQ(mbuf_bytes(pkts[1]), fd);
  rte_pktmbuf_free(pkts[0]);
  rte_pktmbuf_free(pkts[1]);
  const std::vector<std::pair<uint64_t, uint32_t>> want = {{0, 0}, {1, 0}, {2, 0}, {3, 0}, {4, 0}};
  EXPECT_EQ(used(txq), want);
  const auto& st = net->txq(0).stats();
  EXPECT_EQ(st.bad[static_cast<size_t>(BadChain::kDirection)], 2u);
  EXPECT_EQ(st.bad[static_cast<size_t>(BadChain::kUnmapped)], 1u);
  EXPECT_EQ(st.chains, 2u);
  EXPECT_EQ(net->tx_stats(0).packets, 2u);
  EXPECT_EQ(std::vector<uint8_t>(hva(w), hva(w) + 64), Bytes(64, 0xcc));
  // The IOMMU refused the buffer: a MAPPING fault event for the endpoint. No
  // IOMMU on the path: nothing to report.
  engine::FaultEvent ev[4];
  const size_t n = dev.drain_events(ev);
  if (!iommu()) {
    EXPECT_EQ(n, 0u);
    return;
  }
  ASSERT_EQ(n, 1u);
  EXPECT_EQ(ev[0].reason, engine::kFaultReasonMapping);
  EXPECT_EQ(ev[0].flags, engine::kFaultFlagRead | engine::kFaultFlagAddress);
  EXPECT_EQ(ev[0].endpoint, kEp);
  EXPECT_EQ(ev[0].address, kNowhere);
}

TEST_P(NetTest, TxOutOfMbufsLeavesChainInRing) {
  make_net(true);
  rte_mempool* tiny = rte_pktmbuf_pool_create("tiny_pool", 2, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
  ASSERT_NE(tiny, nullptr);
  const Bytes big = pattern(5000, 11), small = pattern(100, 12);
  post(txq, {ro(Bytes(kNetHdrSize, 0)), ro(small)}, 0);
  post(txq, {ro(Bytes(kNetHdrSize, 0)), ro(big)}, 1);  // needs 3 mbufs, the pool has 2
  rte_mbuf* pkts[4] = {};
  ASSERT_EQ(tx(pkts, 4, tiny), 1);
  EXPECT_EQ(mbuf_bytes(pkts[0]), small);
  rte_pktmbuf_free(pkts[0]);
  EXPECT_EQ(net->tx_stats(0).no_mbuf, 1u);
  EXPECT_EQ(rte_mempool_avail_count(tiny), 2u);  // the partial mbuf chain was freed
  EXPECT_EQ(used(txq).size(), 1u);
  ASSERT_EQ(tx(pkts, 4), 1);  // the chain was left in the ring
  EXPECT_EQ(mbuf_bytes(pkts[0]), big);
  rte_pktmbuf_free(pkts[0]);
  const std::vector<std::pair<uint64_t, uint32_t>> want = {{1, 0}};
  EXPECT_EQ(used(txq), want);
  rte_mempool_free(tiny);
}

TEST_P(NetTest, RxMergeable) {
  make_net(true);
  for (uint64_t t = 0; t < 8; ++t) post_rx({256}, t);
  const Bytes f0 = pattern(1000, 21), f1 = pattern(1000, 22), f2 = pattern(400, 23);
  rte_mbuf* m0 = make_mbuf(f0, {1000});
  rte_mbuf* m1 = make_mbuf(f1, {300, 400, 300});
  ASSERT_EQ(rx(&m0, 1), 1);
  // ceil((1000 + 12) / 256) = 4 buffers.
  expect_rx(f0, {0, 1, 2, 3}, {256, 256, 256, 244}, used(rxq));
  EXPECT_EQ(hva(rx_parts[3][0].first)[244], 0xcc);
  ASSERT_EQ(rx(&m1, 1), 1);
  expect_rx(f1, {4, 5, 6, 7}, {256, 256, 256, 244}, used(rxq));
  // Multi-descriptor chains, one of them indirect.
  post_rx({128, 128}, 8);
  post_rx({100, 156}, 9, true);
  rte_mbuf* m2 = make_mbuf(f2, {150, 250});
  ASSERT_EQ(rx(&m2, 1), 1);
  expect_rx(f2, {8, 9}, {256, 156}, used(rxq));
  EXPECT_EQ(net->rx_stats(0).packets, 3u);
  EXPECT_EQ(net->rx_stats(0).bytes, 2400u);
  EXPECT_EQ(net->rx_stats(0).dropped, 0u);
  EXPECT_EQ(net->rxq(0).stats().used, 10u);
  rte_pktmbuf_free(m0);
  rte_pktmbuf_free(m1);
  rte_pktmbuf_free(m2);
}

TEST_P(NetTest, RxWithoutMergeable) {
  make_net(false);
  post_rx({256}, 0);
  post_rx({200, 56}, 1);
  post_rx({256}, 2);
  // 245 + 12 is one byte over a buffer; 244 + 12 = 256 fits exactly.
  const Bytes big = pattern(1000, 31), over = pattern(245, 33), fits = pattern(244, 32);
  rte_mbuf* m[3] = {make_mbuf(big, {1000}), make_mbuf(over, {245}), make_mbuf(fits, {100, 144})};
  ASSERT_EQ(rx(m, 3), 3);  // the first two are taken and dropped
  const auto u = used(rxq);
  ASSERT_EQ(u.size(), 3u);
  EXPECT_EQ(u[0], (std::pair<uint64_t, uint32_t>{0, 0}));
  EXPECT_EQ(u[1], (std::pair<uint64_t, uint32_t>{1, 0}));
  EXPECT_EQ(rx_bytes(0, 256), Bytes(256, 0xcc));  // untouched
  EXPECT_EQ(rx_bytes(1, 256), Bytes(256, 0xcc));
  expect_rx(fits, {2}, {256}, {u[2]});
  EXPECT_EQ(net->rx_stats(0).dropped, 2u);
  EXPECT_EQ(net->rx_stats(0).packets, 1u);
  EXPECT_EQ(net->rx_stats(0).bytes, 244u);
  for (rte_mbuf* x : m) rte_pktmbuf_free(x);
}

TEST_P(NetTest, RxInconsistentMbufIsDroppedNotCopied) {
  // The caller's mbuf claims 200 bytes but its segments hold 600: the buffers
  // gathered for 200 must not be overrun by a copy that walks data_len.
  make_net(true);
  post_rx({256}, 0);
  post_rx({256}, 1);
  rte_mbuf* bad = make_mbuf(pattern(600, 41), {300, 300});
  bad->pkt_len = 200;
  ASSERT_EQ(rx(&bad, 1), 1);  // taken and dropped
  EXPECT_EQ(net->rx_stats(0).dropped, 1u);
  EXPECT_TRUE(used(rxq).empty());
  EXPECT_EQ(rx_bytes(0, 256), Bytes(256, 0xcc));  // untouched
  EXPECT_EQ(rx_bytes(1, 256), Bytes(256, 0xcc));
  bad->pkt_len = 600;
  rte_pktmbuf_free(bad);
  // The ring is intact: the next frame lands in the first buffer.
  const Bytes ok = pattern(100, 42);
  rte_mbuf* good = make_mbuf(ok, {100});
  ASSERT_EQ(rx(&good, 1), 1);
  expect_rx(ok, {0}, {112}, used(rxq));
  rte_pktmbuf_free(good);
}

TEST_P(NetTest, RxOutOfBuffersGivesChainsBack) {
  make_net(true);
  for (uint64_t t = 0; t < 6; ++t) post_rx({256}, t);  // 1.5 frames' worth
  const Bytes f[3] = {pattern(1000, 41), pattern(1000, 42), pattern(1000, 43)};
  rte_mbuf* m[3] = {make_mbuf(f[0], {1000}), make_mbuf(f[1], {1000}), make_mbuf(f[2], {500, 500})};
  ASSERT_EQ(rx(m, 3), 1);
  expect_rx(f[0], {0, 1, 2, 3}, {256, 256, 256, 244}, used(rxq));
  EXPECT_EQ(net->rxq(0).stats().used, 4u);
  EXPECT_EQ(net->rx_stats(0).packets, 1u);
  EXPECT_EQ(net->rx_stats(0).dropped, 0u);
  EXPECT_EQ(rx(m + 1, 2), 0);  // still short: nothing taken, nothing completed
  EXPECT_EQ(net->rxq(0).stats().used, 4u);
  for (uint64_t t = 6; t < 12; ++t) post_rx({256}, t);
  ASSERT_EQ(rx(m + 1, 2), 2);
  const auto u = used(rxq);
  ASSERT_EQ(u.size(), 8u);
  expect_rx(f[1], {4, 5, 6, 7}, {256, 256, 256, 244}, {u.begin(), u.begin() + 4});
  expect_rx(f[2], {8, 9, 10, 11}, {256, 256, 256, 244}, {u.begin() + 4, u.end()});
  for (rte_mbuf* x : m) rte_pktmbuf_free(x);
}

// A receive queue that parks chains (QueueConfig::park_on_miss, the
// vhost-user back end's rx_out_of_order): a buffer that misses is passed and
// the frame goes into the buffers behind it; chains gathered for a frame that
// does not fit are given back and come first, in their order, next time; the
// parked buffer is used once its page is mapped, before the newer ones.
TEST_P(NetTest, RxParkedBufferIsPassedAndGivenBackChainsKeepTheirOrder) {
  if (!iommu()) GTEST_SKIP() << "misses exist only behind an IOMMU";
  QueueConfig q[2] = {rxq.device_config(true, EndpointId{kEp}), txq.device_config(true, EndpointId{kEp})};
  q[0].hold_on_miss = q[0].park_on_miss = true;
  net = std::make_unique<NetDevice>(dev, q, true);
  ASSERT_TRUE(net->rxq(0).parks());
  const uint64_t gpa0 = alloc(256);
  rx_parts[0].push_back({gpa0, 256});
  post(rxq, {{kNowhere + (gpa0 & 0xfff), 256, true}}, 0);  // misses until mapped below
  for (uint64_t t = 1; t < 7; ++t) post_rx({256}, t);
  const Bytes f[3] = {pattern(1000, 71), pattern(1000, 72), pattern(100, 73)};
  rte_mbuf* m[3] = {make_mbuf(f[0], {1000}), make_mbuf(f[1], {1000}), make_mbuf(f[2], {100})};
  ASSERT_EQ(rx(m, 1), 1);
  expect_rx(f[0], {1, 2, 3, 4}, {256, 256, 256, 244}, used(rxq));
  EXPECT_EQ(net->rxq(0).stats().parked, 1u);
  EXPECT_EQ(net->rxq(0).parked(), 1u);
  EXPECT_EQ(rx(m + 1, 1), 0) << "two buffers and the parked one: short";
  EXPECT_TRUE(used(rxq).empty());
  EXPECT_EQ(net->rxq(0).parked(), 3u) << "the two given back, before the parked one";
  for (uint64_t t = 7; t < 9; ++t) post_rx({256}, t);
  ASSERT_EQ(rx(m + 1, 1), 1);
  expect_rx(f[1], {5, 6, 7, 8}, {256, 256, 256, 244}, used(rxq));
  dev.iotlb().offline(reader);
  drv->add_map(1, kNowhere, 4096, gpa0 & ~uint64_t{0xfff}, kRW);
  ASSERT_EQ(drv->sync(), Status::kOk);
  dev.iotlb().online(reader);
  post_rx({256}, 9);
  ASSERT_EQ(rx(m + 2, 1), 1);
  expect_rx(f[2], {0}, {112}, used(rxq));
  EXPECT_EQ(net->rxq(0).parked(), 0u);
  EXPECT_EQ(net->rx_stats(0).dropped, 0u);
  EXPECT_EQ(net->rxq(0).stats().bad_total(), 0u);
  for (rte_mbuf* x : m) rte_pktmbuf_free(x);
}

// Regression: a frame that would need more than kMaxMergeChains buffers is
// dropped and counted, its chains go to the next frame, and the burst goes on.
TEST_P(NetTest, RxFrameOverMergeLimitDropped) {
  make_net(true);
  for (uint64_t t = 0; t < 70; ++t) post_rx({64}, t);
  const Bytes big = pattern(64 * kMaxMergeChains - kNetHdrSize + 1, 61), small = pattern(50, 62);
  rte_mbuf* m[2] = {make_mbuf(big, {1500, 1500, static_cast<uint16_t>(big.size() - 3000)}), make_mbuf(small, {50})};
  ASSERT_EQ(rx(m, 2), 2);
  EXPECT_EQ(net->rx_stats(0).dropped, 1u);
  EXPECT_EQ(net->rx_stats(0).packets, 1u);
  expect_rx(small, {0}, {62}, used(rxq));
  for (rte_mbuf* x : m) rte_pktmbuf_free(x);
}

TEST_P(NetTest, EventIdxSuppressesInterrupts) {
  make_net(true);
  for (uint64_t t = 0; t < 16; ++t) post_rx({256}, t);
  const Bytes f = pattern(100, 51), big = pattern(1000, 52);
  rte_mbuf* m = make_mbuf(f, {100});
  rte_mbuf* mb = make_mbuf(big, {1000});
  // used_event starts at 0: the first entry signals, later ones do not.
  ASSERT_EQ(rx(&m, 1), 1);
  EXPECT_EQ(net->rxq(0).stats().interrupts, 1u);
  ASSERT_EQ(rx(&m, 1), 1);
  ASSERT_EQ(rx(&m, 1), 1);
  EXPECT_EQ(net->rxq(0).stats().interrupts, 1u);
  EXPECT_EQ(used(rxq).size(), 3u);
  rxq.enable_interrupts();  // used_event = 3
  ASSERT_EQ(rx(&m, 1), 1);  // used 3 -> 4 crosses it
  EXPECT_EQ(net->rxq(0).stats().interrupts, 2u);
  // used_event = 5: one publish of 4 entries (4 -> 8) crosses it once.
  store16(rxq.avail().used_event(), 5, std::memory_order_seq_cst);
  ASSERT_EQ(rx(&mb, 1), 1);
  EXPECT_EQ(net->rxq(0).stats().interrupts, 3u);
  // used_event = 9: publishing 8 -> 9 does not reach past it.
  store16(rxq.avail().used_event(), 9, std::memory_order_seq_cst);
  ASSERT_EQ(rx(&m, 1), 1);
  EXPECT_EQ(net->rxq(0).stats().interrupts, 3u);
  ASSERT_EQ(rx(&m, 1), 1);  // 9 -> 10
  EXPECT_EQ(net->rxq(0).stats().interrupts, 4u);
  // Transmit: first completion signals (used_event 0), the next does not.
  post(txq, {ro(Bytes(kNetHdrSize, 0)), ro(f)}, 0);
  rte_mbuf* pkts[2] = {};
  ASSERT_EQ(tx(pkts, 2), 1);
  rte_pktmbuf_free(pkts[0]);
  post(txq, {ro(Bytes(kNetHdrSize, 0)), ro(f)}, 1);
  ASSERT_EQ(tx(pkts, 2), 1);
  rte_pktmbuf_free(pkts[0]);
  EXPECT_EQ(net->txq(0).stats().interrupts, 1u);
  EXPECT_EQ(net->interrupts(0), 5u);
  rte_pktmbuf_free(m);
  rte_pktmbuf_free(mb);
}

}  // namespace
}  // namespace vxlate::dataplane
