// load/src/frames.h: the frames the netperf workloads exchange, and their
// checks. Internal to vxlate::load.
//
// A frame is Ethernet | IPv4 (no options) | TCP (with timestamps) or UDP |
// payload. The 32-bit sequence number (the TCP seq field, or for UDP the
// length and checksum slots) and a payload pattern derived from it let the
// receiver check every frame without keeping a copy. Only the fields the
// checks read are filled in: MACs, EtherType, IPv4 version/IHL, total length
// and protocol, the source port (= queue pair), seq, and the TCP ack.
//
// Thread safety: pure functions on caller-owned buffers; any thread.
#pragma once

#include <cstddef>
#include <cstdint>

#include "vxlate/common/le.h"
#include "vxlate/load/netperf.h"

namespace vxlate::load::detail {

// The layouts (network order, as byte arrays, where a field is big-endian on
// the wire; seq and ack are the workload's own counters, little-endian).
struct EthIpv4Ports {
  uint8_t dst_mac[6];
  uint8_t src_mac[6];
  uint8_t ethertype[2];
  uint8_t ip_version_ihl;
  uint8_t ip_tos;
  uint8_t ip_total_length[2];
  uint8_t ip_id[2];
  uint8_t ip_fragment[2];
  uint8_t ip_ttl;
  uint8_t ip_protocol;
  uint8_t ip_checksum[2];
  uint8_t ip_src[4];
  uint8_t ip_dst[4];
  uint8_t src_port[2];
  uint8_t dst_port[2];
};

struct UdpFrameHead {
  EthIpv4Ports l2_l4;
  Le32 seq;  // the UDP length and checksum slots
};

struct TcpFrameHead {
  EthIpv4Ports l2_l4;
  Le32 seq;
  Le32 ack;
  uint8_t offset_flags[2];
  uint8_t window[2];
  uint8_t checksum[2];
  uint8_t urgent[2];
  uint8_t options[12];  // timestamps
};

static_assert(offsetof(EthIpv4Ports, ethertype) == 12 && offsetof(EthIpv4Ports, ip_version_ihl) == 14 &&
              offsetof(EthIpv4Ports, ip_total_length) == 16 && offsetof(EthIpv4Ports, ip_protocol) == 23 &&
              offsetof(EthIpv4Ports, src_port) == 34 && sizeof(EthIpv4Ports) == 38);
static_assert(offsetof(UdpFrameHead, seq) == 38 && sizeof(UdpFrameHead) == 42);
static_assert(offsetof(TcpFrameHead, seq) == 38 && offsetof(TcpFrameHead, ack) == 42 && sizeof(TcpFrameHead) == 66);

inline constexpr uint32_t kTcpHdr = sizeof(TcpFrameHead);  // Ethernet + IPv4 + TCP with timestamps
inline constexpr uint32_t kUdpHdr = sizeof(UdpFrameHead);  // Ethernet + IPv4 + UDP
inline constexpr uint32_t kMss = 1448;                      // TCP payload per frame (1500 MTU, timestamps)

// Header bytes of the workload's frames.
uint32_t l4_hdr(Workload w) noexcept;

// Writes a frame of `payload` bytes into f (room for l4_hdr(w) + payload):
// source port qp, sequence number seq, TCP ack `ack`, payload pattern of seq.
void write_frame(uint8_t* f, Workload w, uint16_t qp, uint32_t seq, uint32_t payload, uint32_t ack = 0) noexcept;

// Checks a frame's header fields and its payload pattern (all of it when
// `full`, else the first and last 16 bytes).
bool check_frame(const uint8_t* f, uint32_t len, Workload w, uint16_t qp, uint32_t seq, bool full) noexcept;

// Checks a tcp_stream ACK: a bare TCP header, IPv4, for queue pair qp (the
// low byte of its port).
bool check_ack(const uint8_t* f, uint32_t len, uint16_t qp) noexcept;

}  // namespace vxlate::load::detail
