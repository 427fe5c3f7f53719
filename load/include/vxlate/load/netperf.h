// vxlate/load/netperf.h: netperf-like load through real rings: a guest
// driver model on its own lcores and the vxlate device side on another,
// exchanging packets and virtio-iommu requests through split virtqueues in a
// memfd, on DPDK lcores.
//
// Guest side, per queue pair (one lcore each): a virtio-net driver that sends
// frames on the transmit queue and reaps receive buffers, in one of three
// modes, as Linux does with a vIOMMU:
//   identity  no vIOMMU on the device's path: descriptors carry GPAs, nothing mapped;
//   lazy      buffers keep long-lived mappings (page_pool style); every
//             `lazy_recycle` completions a buffer moves to a fresh IOVA: the
//             new IOVA's MAP is queued without waiting, and the driver syncs
//             once per `lazy_flush` such moves (Linux's flush queue); after
//             that sync the buffer takes its new IOVA the next time it is
//             posted, and its old IOVA's UNMAP is queued then, the IOVA
//             reused only after the next sync. The buffer itself is never
//             held back (Linux frees the memory at once and defers only the
//             IOVA), so buffers are posted in the same order in every mode;
//   strict    every buffer is mapped (MAP, batched per burst, one sync) before
//             it is posted and unmapped (UNMAP batched, one sync) after it
//             completes; then the guest poisons it. The host side checks every
//             frame it receives, and the guest checks before reusing a receive
//             buffer that its poison is intact: the device touched nothing after
//             an UNMAP completed.
// The virtio-iommu driver is shared by the queue pairs under a lock (Linux's
// request_lock) and busy-polls its request queue in sync().
//
// Device side, one lcore: a vSwitch-like poll loop over every queue pair
// (dequeue_burst, a netserver-like peer that checks each frame and answers,
// enqueue_burst), one IOTLB quiescent report per iteration, and between bursts
// the virtio-iommu request queue (IommuQueues::poll with its own reader id, so
// its cache applies the invalidations and the grace period skips it). While
// its data queues keep it busy it holds requests for batching (request_batch,
// request_wait_us; the guest's sync kicks the queue through
// IommuQueues::notify), see vxlate/dataplane/iommu_queues.h.
//
// Workloads (netperf names): tcp_stream (64 KiB sends cut into 1448-byte MSS
// frames; the peer returns one 66-byte ACK per two frames), udp_stream_64
// (64-byte UDP payloads, guest to host only), tcp_rr (one 1-byte request and
// one 1-byte response at a time per queue pair; round-trip latency sampled).
//
// The sources, one job each (load/src/): config.cpp (names, checks),
// frames.cpp (building and checking frames), guest_qp.cpp (the guest side of
// one queue pair), peer.cpp (the netserver-like peer on the device lcore),
// device_lcore.cpp (the device lcore's poll loop), run.cpp (setup, launch,
// join on the main lcore), paired.cpp (two runs in turns, and their
// summary), report.cpp (the figures, progress and JSON).
// EAL comes up through vxlate/load/eal.h.
//
// Timing. A run is set up (guest memory, rings, EAL mbuf pool, the setup
// MAPs) before the clock starts, and the clock starts once every lcore runs;
// then `warmup_seconds` of traffic whose figures are dropped, then the
// measured interval (`seconds`, or until `packets`, or until the clean
// windows add up to `clean_seconds`). Every figure of NetperfResult but the
// correctness counters covers the measured interval only. Wall-clock
// throughput on a shared machine moves with how much CPU the other processes
// leave to the run's lcores, and a latency-bound run (tcp_rr) stalls whenever
// either lcore is descheduled. So the measured interval is also cut into
// `window_seconds` windows: a window is clean when every lcore of the run got
// at least kCleanShare of it and of the window before as CPU time
// (CLOCK_THREAD_CPUTIME_ID), and the robust figures come from clean windows
// only: frames/s (median), and the device's and the guests' TSC cycles per
// frame in the iterations that found work, the work a frame costs each side,
// which does not move when a core is stolen. Trade-off: a clean-window figure
// is what the run does when it has its CPUs, not what a loaded machine
// delivers (pps() is that). What no window can see is where a hypervisor put
// the CPUs: every frame moves cache lines between the two lcores, and their
// round trip (lcore_rtt_ns_before, lcore_rtt_ns_after) can change
// several-fold as the host moves vCPUs; compare runs with the same round trip.
//
// Thread-safety contract: run_netperf() is called on the EAL main lcore with
// no other lcore busy; it uses the main lcore and queue_pairs worker lcores.
// The name helpers and to_json() are pure: any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace vxlate::load {

enum class Workload : uint8_t { kTcpStream, kUdpStream64, kTcpRr };
enum class Mode : uint8_t { kIdentity, kLazy, kStrict };
// Any thread. The netperf-style names ("tcp_stream", "lazy", ...), and back.
const char* to_string(Workload w) noexcept;
const char* to_string(Mode m) noexcept;
bool parse_workload(std::string_view s, Workload* w) noexcept;
bool parse_mode(std::string_view s, Mode* m) noexcept;

struct NetperfProgress {
  double seconds;
  uint64_t packets;
  uint64_t payload_bytes;
};

struct NetperfConfig {
  Workload workload = Workload::kTcpStream;
  Mode mode = Mode::kLazy;
  uint16_t queue_pairs = 1;
  uint32_t queue_size = 256;
  double seconds = 2.0;          // measured interval, unless `packets` is set
  uint64_t packets = 0;          // stop after this many data frames (RR: transactions) per queue pair
  double warmup_seconds = 0;     // traffic before the measured interval (needs packets == 0)
  double window_seconds = 0.001; // clean-window length (see Timing)
  double clean_seconds = 0;      // > 0: end the measured interval once its clean windows
                                 // add up to this (`seconds` is then the cap)
  uint32_t lazy_recycle = 64;    // completions between buffer recycles (lazy)
  uint32_t lazy_flush = 32;      // recycles (moves to a new IOVA) per sync (lazy)
  bool random_buffers = false;   // the driver takes a random free buffer instead of the
                                 // last transmit buffer freed (LIFO, as SLUB's per-CPU
                                 // freelists) or the next receive buffer in address order
                                 // (as virtio-net carves them from a page frag; see
                                 // load/src/rx_free_list.h): no constant stride between
                                 // the frames the device reads and writes
  bool lazy_move = true;         // false: a recycle sends the same UNMAP and MAP for a
                                 // spare IOVA of the same page and the buffer keeps its
                                 // IOVA (the requests and syncs without the device
                                 // ever seeing a buffer at a new IOVA; a diagnostic)
  uint32_t strict_batch = 32;    // frames mapped/unmapped per sync (strict)
  uint32_t request_batch = 16;   // while busy with frames, the device holds virtio-iommu
                                 // requests until this many wait, the driver kicks, or
  uint32_t request_wait_us = 1000;  // the oldest waited this long (IommuQueues::
                                 // set_batching; request_batch 1: off)
  bool event_idx = true;
  bool indirect = true;
  // Called from the main lcore about every 0.5 s while running.
  std::function<void(const NetperfProgress&)> progress;
};

// A window is clean when each lcore of the run got this share of it as CPU time.
inline constexpr double kCleanShare = 0.98;

struct NetperfResult {
  double setup_seconds = 0;        // from the call to the start of the clock (not measured)
  double seconds = 0;              // the measured interval (warm-up excluded)
  uint64_t packets = 0;            // data frames guest to host (RR: transactions)
  uint64_t payload_bytes = 0;      // goodput bytes guest to host
  uint64_t rx_frames = 0;          // frames host to guest (ACKs, responses)
  uint64_t translations = 0;       // device-side translate calls (rings, buffers)
  uint64_t map_requests = 0;
  uint64_t unmap_requests = 0;
  uint64_t syncs = 0;
  uint64_t request_bursts = 0;     // device handle_burst calls
  uint64_t iotlb_hits = 0;
  uint64_t iotlb_misses = 0;
  uint64_t corrupt = 0;            // frames whose contents did not match (must be 0)
  uint64_t poison_violations = 0;  // receive buffers written after their UNMAP (must be 0)
  uint64_t bad_chains = 0;         // chains the device refused (must be 0 here)
  uint64_t request_failures = 0;   // virtio-iommu requests that did not return OK (must be 0)
  uint64_t fault_events = 0;
  double rr_p50_us = 0;
  double rr_p99_us = 0;
  // virtio-iommu requests (measured interval): the round trip of each, from
  // the guest's add (request_rtt) and from the kick of the sync_req that
  // waits for it (request_kick) to that sync_req seeing its used entry (a
  // polling device may serve it before the kick), and the device
  // lcore's request-handling time per MAP or UNMAP. Lazy mode adds its UNMAPs
  // long before the kick, so there request_kick is the one to read.
  uint64_t request_round_trips = 0;
  double request_rtt_p50_us = 0;
  double request_rtt_p99_us = 0;
  double request_kick_p50_us = 0;
  double request_kick_p99_us = 0;
  double device_ns_per_request = 0;
  // Where the device lcore's time went (TSC cycles, summed over the run).
  double device_busy_share = 0;    // iterations that found work / all iterations
  double device_frames_per_busy_iter = 0;  // frames dequeued per iteration that found work
  double device_request_share = 0; // share of device cycles in request handling
  double guest_sync_share = 0;     // share of guest cycles spent waiting in sync_req
  // How the machine treated the run (measured interval).
  double guest_cpu_share = 0;      // CPU time / wall of the least-served guest lcore
  double device_cpu_share = 0;     // CPU time / wall of the device lcore
  uint64_t device_offline = 0;     // times the device lcore went offline when idle
  uint64_t same_cpu_windows = 0;   // windows that found guest 0 and the device on one CPU
  // Cache-line round trip between the main and the device lcore, probed
  // before and after the run: where the host put the vCPUs.
  double lcore_rtt_ns_before = 0;
  double lcore_rtt_ns_after = 0;
  // Clean windows (see Timing in the file note).
  uint64_t windows = 0;
  uint64_t clean_windows = 0;
  double clean_pps = 0;            // median over clean windows of frames the device took per second
  double device_cycles_per_frame = 0;  // device TSC cycles in busy iterations per frame, clean windows
  double guest_cycles_per_frame = 0;   // guest TSC cycles in busy steps per frame, clean windows

  double pps() const noexcept { return seconds > 0 ? packets / seconds : 0; }
  double gbps() const noexcept { return seconds > 0 ? payload_bytes * 8.0 / seconds / 1e9 : 0; }
  double hit_rate() const noexcept {
    return iotlb_hits + iotlb_misses ? double(iotlb_hits) / double(iotlb_hits + iotlb_misses) : 0;
  }
  double unmaps_per_sync() const noexcept { return syncs ? double(unmap_requests) / double(syncs) : 0; }
  bool clean() const noexcept { return corrupt == 0 && poison_violations == 0 && bad_chains == 0 && request_failures == 0; }
};

// EAL main lcore, no other lcore busy (see contract). Runs one load. Throws
// std::runtime_error for a config that cannot run (too few lcores, bad sizes).
NetperfResult run_netperf(const NetperfConfig& cfg);

// Paired runs: two configurations (a baseline `a`, usually identity, and `b`,
// usually lazy) set up side by side, each with its own guest memory, rings,
// vIOMMU and device, served in turn by the same two lcores: a slice of `a`,
// a slice of `b`, a slice of `a`, ... ending with `a`. The host moves the
// vCPUs every few seconds to minutes and a frame's cost moves with the
// placement (Timing above); runs of a second or more, even interleaved, land
// in different placements, but neighbouring slices a few milliseconds apart
// share theirs. So every `b` slice is compared with the two `a` slices around
// it, and the figure is the median of those ratios.
//
// A slice: the main lcore switches both lcores to the run (the device lcore
// between two iterations, the guest between two steps: frames and requests in
// flight wait for the run's next turn), probes the lcore round trip (a short
// probe, lcore_probe.h), lets the run settle for one window (the other run's
// lines leave the caches), then measures `slice_seconds`: frames the device
// took, the device's and the guest's busy cycles, and both lcores' CPU time.
// The first `warmup_seconds` (of each run) are slices that are not recorded;
// then each run's measured interval begins, and the pair stops once both
// runs' clean windows add up to `clean_seconds` (if set) or their measured
// slices to `seconds`. Each NetperfResult covers its own run's measured
// slices only (`seconds` is their sum; the clean windows are inside them).
// Needs queue_pairs == 1 and a run length in seconds (not packets) in both,
// the same window_seconds, warmup_seconds, seconds and clean_seconds.
struct PairedSlice {
  uint8_t run = 0;             // 0: a, 1: b
  double seconds = 0;          // measured (settling excluded)
  double pps = 0;              // frames the device took per second
  double device_cycles_per_frame = 0;
  double guest_cycles_per_frame = 0;
  double lcore_rtt_ns = 0;     // probed at the start of the slice
  bool clean = false;          // both lcores had kCleanShare of it as CPU time
};

// The b slices against the a slices around them. A triple (a, b, a) counts
// when its three slices are clean and their round-trip probes lie within
// kPairedPlacement of one another (one placement); each figure's ratio is b's
// speed over the mean of the two a's (frames/s b / a; cycles per frame a / b).
inline constexpr double kPairedPlacement = 1.4;
struct PairedRatio {
  double median = 0, p25 = 0, p75 = 0;
};
struct PairedSummary {
  size_t triples = 0;          // b slices with an a slice on each side
  size_t counted = 0;          // triples that count (see above)
  PairedRatio pps, device_cycles, guest_cycles;
  double rtt_ns_median = 0;    // of the counted triples' b slices
};
// Any thread. Pure.
PairedSummary summarize(const std::vector<PairedSlice>& slices);

struct PairedResult {
  NetperfResult a, b;
  std::vector<PairedSlice> slices;  // in the order they ran
  PairedSummary summary;
};

// EAL main lcore, no other lcore busy (see contract; one worker lcore used).
// b_first: b's run is set up (its memory allocated) before a's; repeated
// pairs alternate it so that neither side always gets the first allocation.
// Throws std::runtime_error for configs that cannot run or cannot be paired.
PairedResult run_netperf_paired(const NetperfConfig& a, const NetperfConfig& b, double slice_seconds,
                                bool b_first = false);

// Any thread. One line of JSON with every result field.
std::string to_json(const NetperfConfig& cfg, const NetperfResult& r);

}  // namespace vxlate::load
