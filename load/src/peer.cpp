#include "peer.h"

#include <algorithm>
#include <cstring>
#include <iterator>

#include "frames.h"

namespace vxlate::load::detail {

using dataplane::kMaxNetBurst;

namespace {

// An answer frame: header, `payload` bytes, ack = seq.
rte_mbuf* make_reply(rte_mempool* mp, Workload w, uint16_t qp, uint32_t seq, uint32_t payload) {
  rte_mbuf* m = rte_pktmbuf_alloc(mp);
  if (m == nullptr) return nullptr;
  const uint32_t len = l4_hdr(w) + payload;
  auto* f = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, static_cast<uint16_t>(len)));
  if (f == nullptr) {
    rte_pktmbuf_free(m);
    return nullptr;
  }
  write_frame(f, w, qp, seq, payload, seq);
  return m;
}

}  // namespace

bool Peer::receive(rte_mbuf* m, rte_mempool* mp) {
  const uint8_t* f = rte_pktmbuf_mtod(m, const uint8_t*);
  // Frames of one mbuf segment here (<= 1514 bytes); check the payload fully
  // for small frames, head and tail for MSS frames.
  const bool ok = m->nb_segs == 1 && check_frame(f, m->data_len, w_, qp_, expect_, m->data_len <= 128);
  ++expect_;
  if (w_ == Workload::kTcpStream && ++unacked_ == 2 && nout_ < std::size(out_)) {
    unacked_ = 0;
    if (rte_mbuf* a = make_reply(mp, w_, qp_, expect_ - 1, 0)) out_[nout_++] = a;
  } else if (w_ == Workload::kTcpRr && nout_ < std::size(out_)) {
    if (rte_mbuf* r = make_reply(mp, w_, qp_, expect_ - 1, 1)) out_[nout_++] = r;
  }
  rte_pktmbuf_free(m);
  return ok;
}

bool Peer::flush(dataplane::NetDevice& net, uint32_t reader) {
  if (nout_ == 0) return false;
  const uint16_t sent = net.enqueue_burst(reader, qp_, out_, std::min<uint16_t>(nout_, kMaxNetBurst));
  // enqueue_burst copies; the caller keeps and frees every mbuf.
  for (uint16_t i = 0; i < sent; ++i) rte_pktmbuf_free(out_[i]);
  std::memmove(out_, out_ + sent, (nout_ - sent) * sizeof(rte_mbuf*));
  nout_ = static_cast<uint16_t>(nout_ - sent);
  return sent > 0;
}

void Peer::drop_queued() {
  for (uint16_t i = 0; i < nout_; ++i) rte_pktmbuf_free(out_[i]);
  nout_ = 0;
}

}  // namespace vxlate::load::detail
