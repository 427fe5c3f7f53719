#include "frames.h"

#include <span>

namespace vxlate::load::detail {

namespace {

constexpr uint8_t kIpProtoTcp = 6;
constexpr uint8_t kIpProtoUdp = 17;

uint8_t ip_protocol(Workload w) noexcept { return w == Workload::kUdpStream64 ? kIpProtoUdp : kIpProtoTcp; }

void put_be16(uint8_t (&field)[2], uint16_t v) noexcept {
  field[0] = static_cast<uint8_t>(v >> 8);
  field[1] = static_cast<uint8_t>(v);
}

// The payload pattern of frame `seq`.
uint8_t pattern(uint32_t seq, uint32_t i) noexcept { return static_cast<uint8_t>(seq * 7 + i); }

}  // namespace

uint32_t l4_hdr(Workload w) noexcept { return w == Workload::kUdpStream64 ? kUdpHdr : kTcpHdr; }

void write_frame(uint8_t* f, Workload w, uint16_t qp, uint32_t seq, uint32_t payload, uint32_t ack) noexcept {
  const uint32_t hdr = l4_hdr(w);
  EthIpv4Ports h{};
  h.dst_mac[0] = 0x02;  // locally administered MACs
  h.dst_mac[5] = 1;
  h.src_mac[0] = 0x02;
  h.src_mac[5] = 2;
  h.ethertype[0] = 0x08;  // IPv4
  h.ip_version_ihl = 0x45;
  // IPv4 total length: from the IPv4 header to the end of the payload.
  put_be16(h.ip_total_length, static_cast<uint16_t>(hdr - offsetof(EthIpv4Ports, ip_version_ihl) + payload));
  h.ip_protocol = ip_protocol(w);
  put_be16(h.src_port, qp);  // source port = queue pair
  if (w == Workload::kUdpStream64) {
    UdpFrameHead u{};
    u.l2_l4 = h;
    u.seq.set(seq);
    encode(std::span<uint8_t>(f, sizeof u), u);
  } else {
    TcpFrameHead t{};
    t.l2_l4 = h;
    t.seq.set(seq);
    t.ack.set(ack);
    encode(std::span<uint8_t>(f, sizeof t), t);
  }
  uint8_t* p = f + hdr;
  for (uint32_t i = 0; i < payload; ++i) p[i] = pattern(seq, i);
}

bool check_frame(const uint8_t* f, uint32_t len, Workload w, uint16_t qp, uint32_t seq, bool full) noexcept {
  const uint32_t hdr = l4_hdr(w);
  if (len < hdr) return false;
  // Both layouts start with the same 42 bytes (UdpFrameHead is their prefix).
  const UdpFrameHead h = decode<UdpFrameHead>(std::span<const uint8_t>(f, sizeof(UdpFrameHead)));
  if (h.l2_l4.ethertype[0] != 0x08 || h.l2_l4.ip_protocol != ip_protocol(w)) return false;
  if (h.l2_l4.src_port[0] != static_cast<uint8_t>(qp >> 8) || h.l2_l4.src_port[1] != static_cast<uint8_t>(qp))
    return false;
  if (h.seq.get() != seq) return false;
  const uint32_t payload = len - hdr;
  const uint8_t* p = f + hdr;
  auto ok = [&](uint32_t i) { return p[i] == pattern(seq, i); };
  if (full || payload <= 32) {
    for (uint32_t i = 0; i < payload; ++i)
      if (!ok(i)) return false;
    return true;
  }
  for (uint32_t i = 0; i < 16; ++i)
    if (!ok(i) || !ok(payload - 1 - i)) return false;
  return true;
}

bool check_ack(const uint8_t* f, uint32_t len, uint16_t qp) noexcept {
  if (len != kTcpHdr) return false;
  const EthIpv4Ports h = decode<EthIpv4Ports>(std::span<const uint8_t>(f, sizeof(EthIpv4Ports)));
  return h.ethertype[0] == 0x08 && h.src_port[1] == static_cast<uint8_t>(qp);
}

}  // namespace vxlate::load::detail
