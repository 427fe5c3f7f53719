// load/src/peer.h: the netserver-like peer of one netperf queue pair, on the
// device lcore. Internal to vxlate::load.
//
// The peer takes the frames the guest sent (dequeued by the device lcore),
// checks each in order (header, sequence number, payload pattern: all of it
// for small frames, head and tail for MSS frames) and answers as netserver
// would: one 66-byte ACK per two tcp_stream frames, one 1-byte response per
// tcp_rr request, nothing for udp_stream_64. Answers wait in a small queue
// until the guest posts receive buffers for them; when that queue is full,
// further answers are not made (a tcp_stream ACK is cumulative anyway).
//
// Thread-safety contract: Reader side: the device lcore that owns the queue
// pair calls everything (flush() enqueues on the NetDevice under its reader id).
#pragma once

#include <cstdint>

#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "vxlate/dataplane/net.h"
#include "vxlate/load/netperf.h"

namespace vxlate::load::detail {

class Peer {
 public:
  Peer(Workload w, uint16_t qp) : w_(w), qp_(qp) {}

  // Takes one frame the guest sent (and frees its mbuf); answers go to the
  // queue, their mbufs from mp. Returns false when the frame was not the one
  // expected next (wrong header, sequence or payload).
  bool receive(rte_mbuf* m, rte_mempool* mp);
  // Sends queued answers to the guest; true when any was taken.
  bool flush(dataplane::NetDevice& net, uint32_t reader);
  // Frees the answers still queued (teardown).
  void drop_queued();

 private:
  Workload w_;
  uint16_t qp_;
  uint32_t expect_ = 0;   // sequence number of the next frame
  uint32_t unacked_ = 0;  // tcp_stream frames since the last ACK
  rte_mbuf* out_[dataplane::kMaxNetBurst * 2];
  uint16_t nout_ = 0;
};

}  // namespace vxlate::load::detail
