// tests/support/virtio_iommu.h: virtio-iommu requests as a test's driver posts
// them, and the device's replies as a test reads them, built and read through
// the wire layouts of vxlate/engine/wire.h and never by byte offset.
//
// A test builds a request as its wire struct (attach_req() ... probe_req(): the
// head's type set, every other field as given, reserved bytes zero), edits a
// field where it wants a malformed one, and turns it into bytes with
// encoded(), or into a posted request with make_request(): the readable part
// plus a writable part of the size the test chooses, pre-filled so that what
// the device wrote is observable. Replies are read with tail_of() (the tail
// ends the writable part, whatever its size), probe_props() (the PROBE
// property list) and read_wire() (one layout, e.g. a fault event, out of a
// guest buffer).
//
// Golden tests that pin the layout byte by byte (a PROBE reply, the config
// space) keep their literal bytes: they check wire.h independently of it.
//
// Thread safety: value types and pure functions; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <vector>

#include "vxlate/common/le.h"
#include "vxlate/engine/device.h"
#include "vxlate/engine/wire.h"

namespace vxlate::test {

namespace wire = engine::wire;

// --- requests (the device-readable part) ------------------------------------

// The builders are the wire layer's own (vxlate/engine/wire.h).
using wire::attach_req;
using wire::detach_req;
using wire::map_req;
using wire::probe_req;
using wire::unmap_req;

// A wire layout as an exact-size byte buffer (a readable part, or guest bytes
// to copy). Bytes past sizeof(T), for a longer readable part, the caller appends.
template <typename T>
std::vector<uint8_t> encoded(const T& layout) {
  std::vector<uint8_t> b(sizeof(T));
  encode(std::span<uint8_t>(b), layout);
  return b;
}

// --- replies ------------------------------------------------------------------

// One layout out of `bytes`; throws std::length_error (a test failure under
// gtest) when `bytes` is too short for it.
template <typename T>
T read_wire(std::span<const uint8_t> bytes) {
  if (bytes.size() < sizeof(T)) throw std::length_error("read_wire: buffer shorter than its layout");
  return decode<T>(bytes);
}

// The tail the device wrote: the last kTailSize bytes of the writable part.
inline wire::ReqTail tail_of(std::span<const uint8_t> writable) {
  if (writable.size() < engine::kTailSize) throw std::length_error("tail_of: writable part shorter than the tail");
  return decode<wire::ReqTail>(writable.last(engine::kTailSize));
}

// Whether tail.reserved is zeroed, as the device must leave it.
inline bool reserved_zero(const wire::ReqTail& t) { return (t.reserved[0] | t.reserved[1] | t.reserved[2]) == 0; }

// One PROBE property: its type and its bytes (the wire::ProbeProp header, then
// `length` value bytes), so that read_wire<wire::ProbeResvMem>(p.bytes) reads
// a RESV_MEM property whole.
struct ProbeProperty {
  uint16_t type;  // bits 0-11 of the header's type; 12-15 are reserved
  std::span<const uint8_t> bytes;
};
inline constexpr uint16_t kProbeTypeMask = 0xfff;

// The property list of a PROBE reply (the writable part before the tail, or
// its first probe_size bytes): properties back to back up to the first of type
// NONE, or up to the last one whose header and value fit. The bytes after the
// list are the caller's to check.
inline std::vector<ProbeProperty> probe_props(std::span<const uint8_t> props) {
  std::vector<ProbeProperty> out;
  size_t off = 0;
  while (off + sizeof(wire::ProbeProp) <= props.size()) {
    const auto head = decode<wire::ProbeProp>(props.subspan(off));
    const uint16_t type = head.type.get() & kProbeTypeMask;
    const size_t size = sizeof(wire::ProbeProp) + head.length.get();
    if (type == engine::kProbeTypeNone || off + size > props.size()) break;
    out.push_back(ProbeProperty{type, props.subspan(off, size)});
    off += size;
  }
  return out;
}

// --- posted requests ----------------------------------------------------------

// Fill byte of a fresh writable part: a byte the device did not write keeps it.
inline constexpr uint8_t kUnwritten = 0xff;

// One request as the driver posts it: the readable part and the writable part
// (room for PROBE properties, then the tail).
struct PostedRequest {
  std::vector<uint8_t> readable;
  std::vector<uint8_t> writable;

  // A burst entry for Device::handle_burst(); valid while *this lives unresized.
  engine::Request request() { return engine::Request{readable, writable, 0}; }
  uint8_t type() const { return read_wire<wire::ReqHead>(readable).type; }
  wire::ReqTail tail() const { return tail_of(writable); }
  uint8_t status() const { return tail().status; }
};

// `req` (a wire request layout) with a writable part of `writable_size` bytes
// filled with kUnwritten.
template <typename T>
PostedRequest make_request(const T& req, size_t writable_size = engine::kTailSize) {
  return PostedRequest{encoded(req), std::vector<uint8_t>(writable_size, kUnwritten)};
}

}  // namespace vxlate::test
