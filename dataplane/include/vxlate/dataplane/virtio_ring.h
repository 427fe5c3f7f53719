// vxlate/dataplane/virtio_ring.h: the VIRTIO 1.x split virtqueue layout
// (virtio spec 2.7 "Split Virtqueues") shared by the device side (virtqueue.h)
// and the guest driver model (vxlate/load/guest.h).
//
// A split queue of `size` entries (a power of two, at most kMaxQueueSize) is
// three areas in guest memory: the descriptor table (16 B per entry, 16-byte
// aligned), the avail ring written by the driver (2-byte aligned) and the used
// ring written by the device (4-byte aligned). All fields are little-endian;
// vxlate runs on little-endian hosts only (static_assert below), so fields are
// read in place.
//
// Index fields are shared between two agents that never lock: every access to
// avail.idx, used.idx, used_event and avail_event goes through std::atomic_ref
// with the orders named at each call site. The notification-suppression
// handshake (a store of one index followed by a load of the other agent's
// event index, on both sides) needs store->load ordering; both sides use
// seq_cst for that pair, where Linux uses virtio_mb().
//
// Thread safety: layout constants and pure functions; safe from any thread.
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>

namespace vxlate::dataplane {

static_assert(std::endian::native == std::endian::little, "virtio rings are little-endian; in-place reads need an LE host");

// Feature bits (virtio spec 6, virtio-net 5.1.3).
inline constexpr uint64_t kFeatureIndirectDesc = uint64_t{1} << 28;
inline constexpr uint64_t kFeatureEventIdx = uint64_t{1} << 29;
inline constexpr uint64_t kFeatureVersion1 = uint64_t{1} << 32;
inline constexpr uint64_t kFeatureAccessPlatform = uint64_t{1} << 33;
inline constexpr uint64_t kNetFeatureMrgRxbuf = uint64_t{1} << 15;

// Descriptor and ring flags.
inline constexpr uint16_t kDescFlagNext = 1;
inline constexpr uint16_t kDescFlagWrite = 2;
inline constexpr uint16_t kDescFlagIndirect = 4;
inline constexpr uint16_t kAvailFlagNoInterrupt = 1;
inline constexpr uint16_t kUsedFlagNoNotify = 1;

// Split queues hold at most 32768 entries (virtio spec 2.7: Queue Size).
inline constexpr uint32_t kMaxQueueSize = 32768;

// The layouts (virtio spec 2.7.5, 2.7.6, 2.7.8), in host order on an LE host.
// The rings are read in place (index fields through std::atomic_ref), so they
// keep natural alignment rather than the byte-array Le<T> fields of
// vxlate/common/le.h.
struct VirtqDesc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(offsetof(VirtqDesc, len) == 8 && offsetof(VirtqDesc, flags) == 12 && offsetof(VirtqDesc, next) == 14 &&
              sizeof(VirtqDesc) == 16);

// The header both rings start with; ring[size] follows, then the event index
// (used_event after the avail ring, avail_event after the used ring).
struct VirtqRingHeader {
  uint16_t flags;
  uint16_t idx;
};
static_assert(offsetof(VirtqRingHeader, idx) == 2 && sizeof(VirtqRingHeader) == 4);

struct VirtqUsedElem {
  uint32_t id;
  uint32_t len;
};
static_assert(offsetof(VirtqUsedElem, len) == 4 && sizeof(VirtqUsedElem) == 8);

// Byte sizes and alignment of the three areas (event fields included).
constexpr uint64_t desc_bytes(uint32_t size) { return sizeof(VirtqDesc) * uint64_t{size}; }
constexpr uint64_t avail_bytes(uint32_t size) {
  return sizeof(VirtqRingHeader) + sizeof(uint16_t) * uint64_t{size} + sizeof(uint16_t);
}
constexpr uint64_t used_bytes(uint32_t size) {
  return sizeof(VirtqRingHeader) + sizeof(VirtqUsedElem) * uint64_t{size} + sizeof(uint16_t);
}
inline constexpr uint64_t kDescAlign = 16;
inline constexpr uint64_t kAvailAlign = 2;
inline constexpr uint64_t kUsedAlign = 4;

constexpr bool valid_queue_size(uint32_t size) {
  return size != 0 && size <= kMaxQueueSize && (size & (size - 1)) == 0;
}

// Host views of the two rings once translated. Field accessors return
// references into guest memory.
struct AvailRing {
  uint8_t* base;
  uint32_t size;
  VirtqRingHeader& header() const { return *reinterpret_cast<VirtqRingHeader*>(base); }
  uint16_t& flags() const { return header().flags; }
  uint16_t& idx() const { return header().idx; }
  uint16_t& ring(uint32_t i) const { return reinterpret_cast<uint16_t*>(base + sizeof(VirtqRingHeader))[i]; }
  uint16_t& used_event() const { return ring(size); }
};

struct UsedRing {
  uint8_t* base;
  uint32_t size;
  VirtqRingHeader& header() const { return *reinterpret_cast<VirtqRingHeader*>(base); }
  uint16_t& flags() const { return header().flags; }
  uint16_t& idx() const { return header().idx; }
  VirtqUsedElem& ring(uint32_t i) const {
    return reinterpret_cast<VirtqUsedElem*>(base + sizeof(VirtqRingHeader))[i];
  }
  uint16_t& avail_event() const { return *reinterpret_cast<uint16_t*>(&ring(size)); }
};

// virtio spec 2.7.10: with EVENT_IDX, the other side wants a notification when
// its index moves from old_idx to new_idx past event_idx (vring_need_event).
constexpr bool need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx) {
  return static_cast<uint16_t>(new_idx - event_idx - 1) < static_cast<uint16_t>(new_idx - old_idx);
}

// Shared-index access with an explicit order (see the file note).
inline uint16_t load16(uint16_t& field, std::memory_order order) { return std::atomic_ref<uint16_t>(field).load(order); }
inline void store16(uint16_t& field, uint16_t v, std::memory_order order) {
  std::atomic_ref<uint16_t>(field).store(v, order);
}

}  // namespace vxlate::dataplane
