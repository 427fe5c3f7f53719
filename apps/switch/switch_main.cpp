// vxlate-switch: the reference DPDK vSwitch on vxlate's vhost-user back end.
//
//   vxlate-switch [EAL options] -- --vhost-user PATH[,client][,queues=N][,rx-out-of-order] [--vhost-user ...]
//                 [--xconnect | --learning] [--stats SECONDS] [--json]
//
// Ports: the ethdevs the EAL options create (--vdev net_ring0, net_tap0,
// net_null0, net_pcap0, net_virtio_user0, ...) by port id, then the vhost-user
// ports in command-line order. --xconnect (the default) forwards port 2k <->
// 2k+1 on every queue both have; --learning is a MAC-learning bridge over all
// ports (queue 0, one lcore). A vhost-user port's `rx-out-of-order` lets
// frames go on into the receive buffers behind one whose translation is
// missing (PortConfig::rx_out_of_order, off by default: see its caveat).
//
// Each worker lcore polls its share of the (port pair, queue) tasks; it is a
// reader of the back end's Rcu, reports a quiescent state after every round
// and goes offline while idle, so INVALIDATE acks never wait on an idle lcore.
// A frame the destination cannot take yet (its receive buffer's translation
// is missing, or the guest has posted no buffer) stays with the lcore and is
// offered again: never dropped for a miss, and a cross-connect pushes back on
// its source (whose own queue absorbs or drops) instead of dropping. Nothing
// is taken from a port whose cross-connected vhost-user peer is down, and
// what was held for a port that goes down is dropped and counted. The
// learning bridge drops what a destination cannot take (counted).
//
// Counters: per port, on stdout every --stats seconds, through rte_telemetry
// under /vxlate/ports and /vxlate/port,<id> (dpdk-telemetry.py), and at exit
// (SIGINT/SIGTERM) as text or, with --json, as one JSON object.
#include <getopt.h>
#include <sched.h>
#include <csignal>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_telemetry.h>

#include "vxlate/common/rcu.h"
#include "vxlate/dataplane/vhost_user.h"

namespace {

namespace vu = vxlate::dataplane::vhost_user;

constexpr uint16_t kBurst = 32;
constexpr uint32_t kIdleRounds = 1024;   // empty rounds before an lcore goes offline
constexpr uint16_t kEthDescs = 1024;

std::atomic<bool> g_stop{false};

void on_signal(int) { g_stop.store(true, std::memory_order_relaxed); }

// One port of the switch: an ethdev or a vhost-user port.
struct SwitchPort {
  uint16_t id = 0;
  std::string name;
  uint16_t eth = RTE_MAX_ETHPORTS;  // ethdev port id, or none
  vu::Port* vhost = nullptr;
  uint16_t queues = 1;
  // Frames dropped on the way to this port (no room: learning mode; or
  // the port down); written by the lcore that owns the queue.
  std::atomic<uint64_t> drop_no_room{0}, drop_down{0}, retries{0};

  bool is_vhost() const { return vhost != nullptr; }
  uint16_t rx(uint32_t reader, uint16_t q, rte_mempool* mp, rte_mbuf** m, uint16_t n) const {
    return vhost ? vhost->dequeue_burst(reader, q, mp, m, n) : rte_eth_rx_burst(eth, q, m, n);
  }
  // Takes up to n frames; those taken are no longer the caller's.
  uint16_t tx(uint32_t reader, uint16_t q, rte_mbuf** m, uint16_t n) const {
    if (!vhost) return rte_eth_tx_burst(eth, q, m, n);
    const uint16_t k = vhost->enqueue_burst(reader, q, m, n);
    rte_pktmbuf_free_bulk(m, k);  // the back end copied them
    return k;
  }
};

void add(std::atomic<uint64_t>& c, uint64_t n) { c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }

// One direction of a forwarding task, with the frames still to deliver.
struct Direction {
  SwitchPort* src = nullptr;
  SwitchPort* dst = nullptr;
  uint16_t q = 0;
  rte_mbuf* bufs[kBurst];
  uint16_t n = 0, off = 0;

  // Returns how many frames moved (received or delivered).
  uint32_t step(uint32_t reader, rte_mempool* mp) {
    uint32_t moved = 0;
    if (n == 0) {
      // A cross-connect to a vhost-user port that is down takes nothing: the
      // frames wait in the source's queue (its own drop policy applies).
      if (dst->is_vhost() && !dst->vhost->running()) return 0;
      n = src->rx(reader, q, mp, bufs, kBurst);
      off = 0;
      moved += n;
      if (n == 0) return 0;
    }
    const uint16_t sent = dst->tx(reader, q, bufs + off, static_cast<uint16_t>(n - off));
    off = static_cast<uint16_t>(off + sent);
    moved += sent;
    if (off == n) {
      n = 0;
      return moved;
    }
    // What is left waits for room (a MISS out, or the guest's buffers all
    // used): the cross-connect pushes back on its source, whose own queue
    // then absorbs or drops, rather than dropping here. Only a destination
    // whose front end is gone loses what was held for it (a connected one
    // that restarts its session for a ring change keeps it).
    if (dst->is_vhost() && !dst->vhost->running() && !dst->vhost->attached()) {
      add(dst->drop_down, n - off);
      rte_pktmbuf_free_bulk(bufs + off, n - off);
      n = 0;
      return moved;
    }
    add(dst->retries, 1);
    return moved;
  }
  void drop_all() {
    if (n > off) rte_pktmbuf_free_bulk(bufs + off, n - off);
    n = 0;
  }
};

struct Options {
  std::vector<vu::PortConfig> vhost;
  bool learning = false;
  unsigned stats_seconds = 0;
  bool json = false;
};

struct Switch {
  std::vector<std::unique_ptr<SwitchPort>> ports;
  rte_mempool* pool = nullptr;
  vxlate::Rcu* rcu = nullptr;
  bool learning = false;
  // Xconnect: the directions each worker serves.
  std::vector<std::vector<Direction>> work;
};

Switch* g_switch = nullptr;

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "vxlate-switch: %s\n"
               "usage: vxlate-switch [EAL options] -- --vhost-user PATH[,client][,queues=N][,rx-out-of-order] [--vhost-user ...]\n"
               "                     [--xconnect | --learning] [--stats SECONDS] [--json]\n",
               msg);
  std::exit(2);
}

vu::PortConfig parse_vhost(const std::string& arg) {
  vu::PortConfig c;
  size_t pos = arg.find(',');
  c.path = arg.substr(0, pos);
  if (c.path.empty()) usage("--vhost-user needs a socket path");
  while (pos != std::string::npos) {
    const size_t next = arg.find(',', pos + 1);
    const std::string opt = arg.substr(pos + 1, next == std::string::npos ? std::string::npos : next - pos - 1);
    if (opt == "client") {
      c.client = true;
    } else if (opt == "rx-out-of-order") {
      c.rx_out_of_order = true;
    } else if (opt.rfind("queues=", 0) == 0) {
      char* end = nullptr;
      const unsigned long q = std::strtoul(opt.c_str() + 7, &end, 10);
      if (*end != '\0' || q == 0 || q > vu::kMaxQueuePairs)
        usage(("queues must be 1.." + std::to_string(vu::kMaxQueuePairs) + ": " + opt).c_str());
      c.queue_pairs = static_cast<uint16_t>(q);
    } else {
      usage(("unknown --vhost-user option: " + opt).c_str());
    }
    pos = next;
  }
  return c;
}

Options parse(int argc, char** argv) {
  Options o;
  static const option longopts[] = {{"vhost-user", required_argument, nullptr, 'v'},
                                    {"xconnect", no_argument, nullptr, 'x'},
                                    {"learning", no_argument, nullptr, 'l'},
                                    {"stats", required_argument, nullptr, 's'},
                                    {"json", no_argument, nullptr, 'j'},
                                    {"help", no_argument, nullptr, 'h'},
                                    {nullptr, 0, nullptr, 0}};
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, "", longopts, nullptr)) != -1) {
    switch (c) {
      case 'v': o.vhost.push_back(parse_vhost(optarg)); break;
      case 'x': o.learning = false; break;
      case 'l': o.learning = true; break;
      case 's': {
        char* end = nullptr;
        const unsigned long s = std::strtoul(optarg, &end, 10);
        if (*end != '\0' || s > 86400) usage("--stats takes whole seconds");
        o.stats_seconds = static_cast<unsigned>(s);
        break;
      }
      case 'j': o.json = true; break;
      case 'h': usage("help");
      default: usage("bad option");
    }
  }
  if (optind != argc) usage("unexpected argument");
  return o;
}

void setup_ethdev(SwitchPort& p, uint16_t queues, rte_mempool* pool) {
  rte_eth_dev_info info{};
  if (rte_eth_dev_info_get(p.eth, &info) != 0) usage("rte_eth_dev_info_get failed");
  queues = std::max<uint16_t>(1, std::min<uint16_t>({queues, static_cast<uint16_t>(info.max_rx_queues), static_cast<uint16_t>(info.max_tx_queues)}));
  rte_eth_conf conf{};
  if (rte_eth_dev_configure(p.eth, queues, queues, &conf) != 0) usage("rte_eth_dev_configure failed");
  const int socket = rte_eth_dev_socket_id(p.eth);
  for (uint16_t q = 0; q < queues; ++q) {
    if (rte_eth_rx_queue_setup(p.eth, q, kEthDescs, socket < 0 ? SOCKET_ID_ANY : socket, nullptr, pool) != 0 ||
        rte_eth_tx_queue_setup(p.eth, q, kEthDescs, socket < 0 ? SOCKET_ID_ANY : socket, nullptr) != 0)
      usage("ethdev queue setup failed");
  }
  if (rte_eth_dev_start(p.eth) != 0) usage("rte_eth_dev_start failed");
  rte_eth_promiscuous_enable(p.eth);
  p.queues = queues;
}

// Per-port counters, for the stats line, telemetry and the final report.
struct Counters {
  uint64_t rx = 0, tx = 0, rx_bytes = 0, tx_bytes = 0, dropped = 0;
  vu::PortStats vhost;
};

Counters read_counters(const SwitchPort& p) {
  Counters c;
  if (p.is_vhost()) {
    c.vhost = p.vhost->stats();
    // The port's view: rx = frames from the guest (its tx queue), tx = to it.
    c.rx = c.vhost.tx_packets;
    c.rx_bytes = c.vhost.tx_bytes;
    c.tx = c.vhost.rx_packets;
    c.tx_bytes = c.vhost.rx_bytes;
    c.dropped = c.vhost.rx_dropped;
  } else {
    rte_eth_stats s{};
    rte_eth_stats_get(p.eth, &s);
    c.rx = s.ipackets;
    c.tx = s.opackets;
    c.rx_bytes = s.ibytes;
    c.tx_bytes = s.obytes;
    c.dropped = s.imissed + s.oerrors;
  }
  c.dropped += p.drop_no_room.load(std::memory_order_relaxed) + p.drop_down.load(std::memory_order_relaxed);
  return c;
}

// name, value pairs of a port's counters, shared by every output.
template <typename F>
void for_each_counter(const SwitchPort& p, F&& f) {
  const Counters c = read_counters(p);
  f("rx_packets", c.rx);
  f("tx_packets", c.tx);
  f("rx_bytes", c.rx_bytes);
  f("tx_bytes", c.tx_bytes);
  f("dropped", c.dropped);
  f("drop_no_room", p.drop_no_room.load(std::memory_order_relaxed));
  f("drop_down", p.drop_down.load(std::memory_order_relaxed));
  f("retries", p.retries.load(std::memory_order_relaxed));
  if (!p.is_vhost()) return;
  const vu::PortStats& v = c.vhost;
  f("running", p.vhost->running() ? 1 : 0);
  f("frames_held_for_miss", v.rx_held);
  f("rx_buffers_parked", v.rx_parked);
  f("rx_parked_returned", v.rx_parked_returned);
  f("rx_parked_lost", v.rx_parked_lost);
  f("guest_rx_dropped", v.rx_dropped);
  f("tx_no_mbuf", v.tx_no_mbuf);
  f("bad_chains", v.bad_chains);
  f("ring_misses", v.ring_misses);
  f("interrupts", v.interrupts);
  f("connects", v.connects);
  f("disconnects", v.disconnects);
  f("messages", v.messages);
  f("refused", v.refused);
  f("iotlb_updates", v.updates);
  f("iotlb_updates_refused", v.updates_refused);
  f("iotlb_invalidates", v.invalidates);
  f("invalidate_ack_ns_avg", v.invalidates ? v.ack_ns_total / v.invalidates : 0);
  f("invalidate_ack_ns_max", v.ack_ns_max);
  f("misses_sent", v.misses_sent);
  f("misses_deduped", v.misses_deduped);
  f("misses_retried", v.misses_retried);
  f("misses_unsent", v.misses_unsent);
  f("misses_stale", v.misses_stale);
  f("misses_held", v.misses_held);
  f("iotlb_flushes", v.iotlb_flushes);
  f("iotlb_hits", v.iotlb_hits);
  f("iotlb_lookups", v.iotlb_lookups);
  for (uint16_t q = 0; q < p.queues; ++q) {
    // Per queue pair: rx/tx from the switch's view, as for the port.
    const vu::PortStats qs = p.vhost->pair_stats(q);
    char k[48];
    std::snprintf(k, sizeof k, "q%u_rx_packets", q);
    f(k, qs.tx_packets);
    std::snprintf(k, sizeof k, "q%u_tx_packets", q);
    f(k, qs.rx_packets);
    std::snprintf(k, sizeof k, "q%u_frames_held_for_miss", q);
    f(k, qs.rx_held);
  }
}

void print_stats(FILE* out) {
  for (const auto& p : g_switch->ports) {
    std::fprintf(out, "port %u %s:", p->id, p->name.c_str());
    for_each_counter(*p, [&](const char* k, uint64_t v) { std::fprintf(out, " %s=%" PRIu64, k, v); });
    std::fprintf(out, "\n");
  }
  std::fflush(out);
}

void print_json(FILE* out) {
  std::fprintf(out, "{\"ports\":[");
  bool first_port = true;
  for (const auto& p : g_switch->ports) {
    std::fprintf(out, "%s{\"id\":%u,\"name\":\"%s\",\"kind\":\"%s\"", first_port ? "" : ",", p->id, p->name.c_str(),
                 p->is_vhost() ? "vhost-user" : "ethdev");
    for_each_counter(*p, [&](const char* k, uint64_t v) { std::fprintf(out, ",\"%s\":%" PRIu64, k, v); });
    std::fprintf(out, "}");
    first_port = false;
  }
  std::fprintf(out, "]}\n");
  std::fflush(out);
}

int tm_ports(const char*, const char*, rte_tel_data* d) {
  rte_tel_data_start_array(d, RTE_TEL_INT_VAL);
  for (const auto& p : g_switch->ports) rte_tel_data_add_array_int(d, p->id);
  return 0;
}

int tm_port(const char*, const char* params, rte_tel_data* d) {
  if (params == nullptr) return -EINVAL;
  char* end = nullptr;
  const unsigned long id = std::strtoul(params, &end, 10);
  if (*end != '\0' || id >= g_switch->ports.size()) return -EINVAL;
  const SwitchPort& p = *g_switch->ports[id];
  rte_tel_data_start_dict(d);
  rte_tel_data_add_dict_string(d, "name", p.name.c_str());
  for_each_counter(p, [&](const char* k, uint64_t v) { rte_tel_data_add_dict_u64(d, k, v); });
  return 0;
}

// A forwarding lcore's part in the grace periods: a registered reader of the
// back end's Rcu, online while it forwards, reporting a quiescent state
// after every round, offline while idle (no INVALIDATE ack waits on a
// sleeping lcore).
class PollReader {
 public:
  explicit PollReader(vxlate::Rcu& rcu) : rcu_(rcu), id_(rcu.register_reader()) { rcu_.online(id_); }
  ~PollReader() {
    if (online_) rcu_.offline(id_);
    rcu_.unregister_reader(id_);
  }
  PollReader(const PollReader&) = delete;
  PollReader& operator=(const PollReader&) = delete;
  uint32_t id() const { return id_; }
  // Before a round.
  void wake() {
    if (!online_) {
      rcu_.online(id_);
      online_ = true;
    }
  }
  // After a round; busy: it moved frames or holds some.
  void round_done(bool busy) {
    rcu_.quiescent(id_);
    if (busy) {
      idle_ = 0;
    } else if (++idle_ >= kIdleRounds) {
      rcu_.offline(id_);
      online_ = false;
      std::this_thread::sleep_for(std::chrono::microseconds(50));
      idle_ = kIdleRounds / 2;
    }
  }

 private:
  vxlate::Rcu& rcu_;
  const uint32_t id_;
  bool online_ = true;
  uint32_t idle_ = 0;
};

// Polls `dirs` until stopped. Online while forwarding, offline while idle.
void forward(std::vector<Direction>& dirs) {
  PollReader poll(*g_switch->rcu);
  const uint32_t reader = poll.id();
  uint32_t rounds = 0;
  while (!g_stop.load(std::memory_order_relaxed)) {
    poll.wake();
    uint32_t moved = 0;
    for (Direction& d : dirs) moved += d.step(reader, g_switch->pool);
    // Miss-ahead on the vhost-user ports (device IOTLB), in idle rounds and
    // every 16th busy one: their posted buffers' translations are asked for
    // before a frame needs them.
    if (moved == 0 || (++rounds & 15) == 0) {
      for (Direction& d : dirs)
        if (d.dst->is_vhost()) d.dst->vhost->prefetch(reader, d.q);
    }
    bool holding = false;
    for (const Direction& d : dirs) holding |= d.n != 0;
    poll.round_done(moved != 0 || holding);
  }
  for (Direction& d : dirs) d.drop_all();
}

// The learning bridge: one lcore, queue 0 of every port.
void learn(std::vector<Direction>&) {
  Switch& sw = *g_switch;
  PollReader poll(*sw.rcu);
  const uint32_t reader = poll.id();
  std::unordered_map<uint64_t, uint16_t> macs;  // MAC -> port (control of this one lcore)
  rte_mbuf* in[kBurst];
  // Per destination, at most one reference per frame of every source's burst.
  std::vector<std::vector<rte_mbuf*>> out(sw.ports.size());
  for (auto& v : out) v.reserve(size_t{kBurst} * sw.ports.size());
  while (!g_stop.load(std::memory_order_relaxed)) {
    poll.wake();
    uint32_t moved = 0;
    for (auto& src : sw.ports) {
      const uint16_t n = src->rx(reader, 0, sw.pool, in, kBurst);
      moved += n;
      for (uint16_t i = 0; i < n; ++i) {
        rte_mbuf* m = in[i];
        if (m->data_len < sizeof(rte_ether_hdr)) {
          rte_pktmbuf_free(m);
          add(src->drop_no_room, 1);
          continue;
        }
        const auto* eh = rte_pktmbuf_mtod(m, const rte_ether_hdr*);
        uint64_t smac = 0, dmac = 0;
        std::memcpy(&smac, eh->src_addr.addr_bytes, RTE_ETHER_ADDR_LEN);
        std::memcpy(&dmac, eh->dst_addr.addr_bytes, RTE_ETHER_ADDR_LEN);
        if (!rte_is_multicast_ether_addr(&eh->src_addr)) {
          if (macs.size() < 65536 || macs.contains(smac)) macs[smac] = src->id;
        }
        auto it = rte_is_multicast_ether_addr(&eh->dst_addr) ? macs.end() : macs.find(dmac);
        if (it != macs.end()) {
          if (it->second != src->id) {
            out[it->second].push_back(m);
            continue;
          }
          rte_pktmbuf_free(m);  // back where it came from
          continue;
        }
        // Flood: one reference per destination, each let go by that
        // destination's delivery below.
        for (auto& dst : sw.ports) {
          if (dst->id == src->id) continue;
          rte_mbuf_refcnt_update(m, 1);
          out[dst->id].push_back(m);
        }
        rte_pktmbuf_free(m);  // the flood's own reference
      }
    }
    for (auto& dst : sw.ports) {
      auto& v = out[dst->id];
      size_t off = 0;
      while (off < v.size()) {
        const uint16_t k = static_cast<uint16_t>(std::min<size_t>(kBurst, v.size() - off));
        // Every destination owns one reference per frame (tx() lets go of
        // what it took); what it did not take is dropped in learning mode.
        const uint16_t sent = dst->tx(reader, 0, v.data() + off, k);
        if (sent < k) {
          add(dst->drop_no_room, k - sent);
          rte_pktmbuf_free_bulk(v.data() + off + sent, k - sent);
        }
        off += k;
      }
      v.clear();
    }
    poll.round_done(moved != 0);
  }
}

int worker_main(void* arg) {
  auto* dirs = static_cast<std::vector<Direction>*>(arg);
  if (g_switch->learning) learn(*dirs);
  else forward(*dirs);
  return 0;
}

// The CPUs for the vhost-user control thread, DPDK's rule for its control
// threads: those the process may run on, less every CPU a forwarding lcore
// busy-polls; all of them when nothing is left (a process confined to its
// lcores' CPUs shares them with the scheduler's help).
cpu_set_t control_cpus(const cpu_set_t& allowed, const std::vector<unsigned>& forwarding) {
  cpu_set_t cpus = allowed;
  for (unsigned l : forwarding) {
    // The lcore's whole cpuset: with --lcores 0@1, lcore 0 polls CPU 1
    // (rte_lcore_to_cpu_id() would say 0).
    const rte_cpuset_t lc = rte_lcore_cpuset(l);
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &lc)) CPU_CLR(c, &cpus);
  }
  return CPU_COUNT(&cpus) != 0 ? cpus : allowed;
}

}  // namespace

int main(int argc, char** argv) {
  // Before rte_eal_init() pins this thread to the main lcore's CPU.
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (::sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
    std::perror("vxlate-switch: sched_getaffinity");
    return 1;
  }
  const int eal_args = rte_eal_init(argc, argv);
  if (eal_args < 0) {
    std::fprintf(stderr, "vxlate-switch: rte_eal_init failed: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  argv[eal_args] = argv[0];
  const Options opt = parse(argc - eal_args, argv + eal_args);
  ::signal(SIGINT, on_signal);
  ::signal(SIGTERM, on_signal);
  ::signal(SIGPIPE, SIG_IGN);

  Switch sw;
  g_switch = &sw;
  sw.learning = opt.learning;
  const unsigned lcores = rte_lcore_count();
  sw.pool = rte_pktmbuf_pool_create("vxsw_pool", 16383, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
  if (sw.pool == nullptr) {
    std::fprintf(stderr, "vxlate-switch: mbuf pool: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  vxlate::Rcu rcu(lcores);
  sw.rcu = &rcu;
  auto backend = std::make_unique<vu::Backend>(rcu);

  // Ports: ethdevs by id, then vhost-user ports in command-line order.
  uint16_t eth;
  RTE_ETH_FOREACH_DEV(eth) {
    auto p = std::make_unique<SwitchPort>();
    p->id = static_cast<uint16_t>(sw.ports.size());
    p->eth = eth;
    char name[RTE_ETH_NAME_MAX_LEN] = "?";
    rte_eth_dev_get_name_by_port(eth, name);
    p->name = name;
    sw.ports.push_back(std::move(p));
  }
  try {
    for (const vu::PortConfig& c : opt.vhost) {
      auto p = std::make_unique<SwitchPort>();
      p->id = static_cast<uint16_t>(sw.ports.size());
      p->vhost = &backend->add_port(c);
      p->name = "vhost-user:" + c.path;
      p->queues = c.queue_pairs;
      sw.ports.push_back(std::move(p));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vxlate-switch: %s\n", e.what());
    return 1;
  }
  if (sw.ports.empty()) usage("no ports (give --vdev or --vhost-user)");
  // Ethdev queues: as many as the cross-connected peer has (learning: 1).
  for (auto& p : sw.ports) {
    if (p->is_vhost()) continue;
    uint16_t want = 1;
    if (!opt.learning && (p->id ^ 1u) < sw.ports.size()) want = sw.ports[p->id ^ 1u]->queues;
    setup_ethdev(*p, want, sw.pool);
  }

  // Tasks: (pair k, queue q) both ways, spread over the workers (or the main lcore alone).
  std::vector<unsigned> workers;
  unsigned l;
  RTE_LCORE_FOREACH_WORKER(l) workers.push_back(l);
  const size_t nworkers = std::max<size_t>(1, workers.size());
  sw.work.resize(nworkers);
  if (!opt.learning) {
    size_t t = 0;
    for (size_t a = 0; a + 1 < sw.ports.size(); a += 2) {
      SwitchPort* pa = sw.ports[a].get();
      SwitchPort* pb = sw.ports[a + 1].get();
      for (uint16_t q = 0; q < std::min(pa->queues, pb->queues); ++q, ++t) {
        auto& w = sw.work[t % nworkers];
        Direction ab, ba;
        ab.src = pa, ab.dst = pb, ab.q = q;
        ba.src = pb, ba.dst = pa, ba.q = q;
        w.push_back(ab);
        w.push_back(ba);
      }
    }
    if (sw.ports.size() % 2 != 0)
      std::fprintf(stderr, "vxlate-switch: port %zu has no cross-connect peer; it is not polled\n", sw.ports.size() - 1);
  }
  rte_telemetry_register_cmd("/vxlate/ports", tm_ports, "Returns the vxlate-switch port ids.");
  rte_telemetry_register_cmd("/vxlate/port", tm_port, "Returns a port's counters. Parameters: int port_id");

  // Forwarding lcores: the workers that get tasks, or the main lcore alone.
  std::vector<unsigned> forwarding(workers.begin(), workers.begin() + std::min(workers.size(),
                                                                              opt.learning ? size_t{1} : nworkers));
  if (workers.empty()) forwarding.push_back(rte_get_main_lcore());
  const cpu_set_t ctl = control_cpus(allowed, forwarding);
  try {
    backend->start(&ctl);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vxlate-switch: %s\n", e.what());
    return 1;
  }
  std::printf("vxlate-switch: %zu ports (%s), %zu forwarding lcore(s)\n", sw.ports.size(),
              opt.learning ? "learning" : "xconnect", workers.empty() ? size_t{1} : workers.size());
  for (const auto& p : sw.ports) std::printf("  port %u: %s, %u queue(s)\n", p->id, p->name.c_str(), p->queues);
  std::fflush(stdout);

  // Learning: one lcore serves every port.
  const size_t active = opt.learning ? 1 : nworkers;
  if (!workers.empty()) {
    for (size_t i = 0; i < active; ++i) rte_eal_remote_launch(worker_main, &sw.work[i], workers[i]);
    auto next = std::chrono::steady_clock::now() + std::chrono::seconds(opt.stats_seconds);
    while (!g_stop.load(std::memory_order_relaxed)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (opt.stats_seconds != 0 && std::chrono::steady_clock::now() >= next) {
        print_stats(stdout);
        next += std::chrono::seconds(opt.stats_seconds);
      }
    }
    rte_eal_mp_wait_lcore();
  } else {
    // No worker lcore: forward on the main lcore; stats from a helper thread.
    std::thread stats([&] {
      auto next = std::chrono::steady_clock::now() + std::chrono::seconds(opt.stats_seconds);
      while (!g_stop.load(std::memory_order_relaxed)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        if (opt.stats_seconds != 0 && std::chrono::steady_clock::now() >= next) {
          print_stats(stdout);
          next += std::chrono::seconds(opt.stats_seconds);
        }
      }
    });
    worker_main(&sw.work[0]);
    stats.join();
  }
  backend->stop();
  if (opt.json) print_json(stdout);
  else print_stats(stdout);
  for (auto& p : sw.ports) {
    if (p->is_vhost()) continue;
    rte_eth_dev_stop(p->eth);
    rte_eth_dev_close(p->eth);
  }
  backend.reset();
  rte_mempool_free(sw.pool);
  rte_eal_cleanup();
  return 0;
}
