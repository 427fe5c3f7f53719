// vxlate/load/guest.h: the guest side, for tests and load: guest RAM in a
// memfd, the driver side of a split virtqueue, and a virtio-iommu driver that
// behaves like Linux's (drivers/iommu/virtio-iommu.c). A test double: it lives
// in vxlate::load, which no product target links.
//
// GuestMemory is one memfd mapped MAP_SHARED: the same pages a VMM would hand a
// vhost-user back end. Its bump allocator serves setup only (rings, request
// slots, packet buffers); drivers recycle what they allocated.
//
// DriverQueue writes descriptors and the avail ring and reads the used ring,
// exactly as Linux's virtio_ring.c does for a split queue: a free list threaded
// through the descriptor table (a private shadow, so a device cannot corrupt
// the driver's own bookkeeping), indirect tables preallocated per head,
// EVENT_IDX or flag-based notification suppression. Its rings and indirect
// tables live in one "coherent" area that the owner maps once for the device
// (dma_alloc_coherent) and announces with set_dma_base().
//
// IommuDriver is the virtio-iommu driver: add_*() queue requests without
// waiting (viommu_add_req; each is visible in avail.idx at once, as Linux's
// virtqueue_add exposes it, so a polling device may serve it before the
// kick), sync() kicks the request queue and busy-polls the used ring until
// every queued request is back (viommu_sync_req), and reports the first
// non-OK status. A full request queue syncs first, as Linux does.
// Requests are written with the virtio-iommu layouts of vxlate/engine/wire.h,
// the ones the device decodes, so the model cannot drift from the device.
//
// Thread-safety contract: the guest is outside the device's thread roles.
// Guest side: not thread-safe; each object belongs to one guest thread
// (IommuDriver may be shared by several guest threads under an external lock,
// as Linux's viommu request_lock). Setup only: constructors. The device side
// runs on other threads and only ever communicates through guest memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <new>
#include <span>
#include <vector>

#include "vxlate/common/status.h"
#include "vxlate/dataplane/virtio_ring.h"
#include "vxlate/dataplane/virtqueue.h"
#include "vxlate/engine/device.h"

namespace vxlate::load {

// Allocates whole cache lines of their own (64-byte aligned, the size rounded
// up): a guest thread's arrays share no line with what malloc put beside
// them, the device lcore's data included. The guest side writes them on every
// frame; a line shared with the device's data would bounce between the two
// cores and move the device's figures with the heap's layout (a guest-only
// change once moved lazy mode's udp_stream_64 figure by 2%; that sharing was
// the cause could not be counted here, and this rules it out). Throws
// std::bad_array_new_length / std::bad_alloc as new does.
template <typename T>
struct LineAllocator {
  using value_type = T;
  static constexpr size_t kLine = 64;
  LineAllocator() noexcept = default;
  template <typename U>
  LineAllocator(const LineAllocator<U>&) noexcept {}
  T* allocate(size_t n) {
    if (n > (SIZE_MAX - kLine) / sizeof(T)) throw std::bad_array_new_length();
    const size_t bytes = (n * sizeof(T) + kLine - 1) & ~(kLine - 1);
    return static_cast<T*>(::operator new(bytes, std::align_val_t{kLine}));
  }
  void deallocate(T* p, size_t) noexcept { ::operator delete(p, std::align_val_t{kLine}); }
  template <typename U>
  bool operator==(const LineAllocator<U>&) const noexcept {
    return true;
  }
};
template <typename T>
using LineVector = std::vector<T, LineAllocator<T>>;

class GuestMemory {
 public:
  // Setup only. Creates a memfd of `size` bytes (a multiple of 4 KiB) at
  // guest-physical `gpa_base`. Throws std::invalid_argument for a bad size or
  // base, std::system_error when memfd/mmap fail.
  GuestMemory(uint64_t gpa_base, uint64_t size);
  ~GuestMemory();
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;

  // Any thread. The memory-table entry a VMM would send (SET_MEM_TABLE).
  engine::MemRegion region() const noexcept { return {gpa_base_, size_, reinterpret_cast<uint64_t>(hva_)}; }
  // Any thread.
  int fd() const noexcept { return fd_; }
  // Any thread. Host pointer of a guest-physical address inside the region.
  uint8_t* hva(uint64_t gpa) const noexcept { return hva_ + (gpa - gpa_base_); }
  // Setup only: `size` bytes aligned to `align` (a power of two). Throws
  // std::bad_alloc when the region is exhausted.
  uint64_t alloc(uint64_t size, uint64_t align);

 private:
  uint64_t gpa_base_;
  uint64_t size_;
  int fd_ = -1;
  uint8_t* hva_ = nullptr;
  uint64_t next_ = 0;  // bump offset
};

// One buffer of a chain as the driver posts it: `addr` is what goes into the
// descriptor (an IOVA with ACCESS_PLATFORM, else a GPA).
struct DriverBuf {
  uint64_t addr;
  uint32_t len;
  bool device_writable;
};

// alignas(64), here and on IommuDriver: the object's own fields, which its
// guest thread writes, share no line with a neighbour (see LineAllocator).
class alignas(64) DriverQueue {
 public:
  // Largest indirect table per chain.
  static constexpr uint32_t kMaxIndirect = 16;

  // Setup only. Allocates the coherent area (descriptor table, avail and used
  // rings, one indirect table per head) in `mem`. size: a power of two <=
  // kMaxQueueSize, else std::invalid_argument.
  DriverQueue(GuestMemory& mem, uint32_t size, bool event_idx, bool indirect);

  // Setup only. The coherent area, for the owner to map; device addresses of
  // the rings are dma_base + offset (dma_base defaults to the area's GPA:
  // identity).
  uint64_t area_gpa() const noexcept { return area_gpa_; }
  uint64_t area_bytes() const noexcept { return area_bytes_; }
  void set_dma_base(uint64_t dma) noexcept { dma_base_ = dma; }
  // Setup only. What the device needs to find the queue.
  dataplane::QueueConfig device_config(bool access_platform, EndpointId ep) const noexcept;

  // Guest side.
  uint32_t size() const noexcept { return size_; }
  uint32_t free_count() const noexcept { return num_free_; }
  // Guest side. Adds a chain (readable buffers first); `token` comes back from
  // get_used(). Uses an indirect table when asked and negotiated (one slot
  // then). False when the queue has no room (nothing changes). Not visible
  // until publish() or expose().
  bool add(std::span<const DriverBuf> bufs, uint64_t token, bool use_indirect = false);
  // Guest side. Publishes added chains (avail.idx) and says whether the device
  // wants a kick for the chains added since the last kick decision (EVENT_IDX
  // avail_event or the NO_NOTIFY flag); counts kicks.
  bool publish();
  // Guest side. Publishes added chains (avail.idx) without deciding a kick,
  // as Linux's virtqueue_add_split() does on every add (virtqueue_kick()
  // decides later): a polling device may take them at once. The next
  // publish() decides the kick for them.
  void expose();
  // Guest side. Takes the next used entry; false when none. Throws
  // std::runtime_error when the device returns a head it was not given.
  bool get_used(uint64_t* token, uint32_t* len);
  // Guest side. Interrupt suppression: a polling driver disables interrupts;
  // enable writes used_event / clears NO_INTERRUPT.
  void disable_interrupts();
  void enable_interrupts();

  // Guest side.
  uint64_t kicks() const noexcept { return kicks_; }
  // Guest side. Host views of the rings, for tests that play a hostile driver.
  dataplane::VirtqDesc* desc() const noexcept { return desc_; }
  dataplane::AvailRing avail() const noexcept { return avail_; }
  dataplane::UsedRing used() const noexcept { return used_; }

 private:
  GuestMemory& mem_;
  uint32_t size_;
  bool event_idx_;
  bool indirect_;
  uint64_t area_gpa_ = 0;
  uint64_t area_bytes_ = 0;
  uint64_t dma_base_ = 0;
  uint64_t avail_off_ = 0, used_off_ = 0, indirect_off_ = 0;
  dataplane::VirtqDesc* desc_ = nullptr;
  dataplane::AvailRing avail_{nullptr, 0};
  dataplane::UsedRing used_{nullptr, 0};
  LineVector<uint16_t> next_;      // shadow free list / chain links
  LineVector<uint16_t> chain_len_; // descriptors each head holds
  LineVector<uint64_t> token_;
  uint16_t free_head_ = 0;
  uint32_t num_free_ = 0;
  uint16_t avail_idx_ = 0;     // shadow of avail.idx (next to write)
  uint16_t published_ = 0;     // avail.idx as last published
  uint16_t notified_ = 0;      // avail.idx at the last kick decision
  uint16_t last_used_ = 0;
  uint64_t kicks_ = 0;
};

// The guest's virtio-iommu driver over a request queue (and its event queue).
class alignas(64) IommuDriver {
 public:
  // Runs while sync() waits for the device: a single-threaded test passes the
  // device's poll; threads pass a pause.
  using Idle = std::function<void()>;

  // Setup only. Takes half of `requestq`'s size in request slots from `mem`.
  IommuDriver(GuestMemory& mem, DriverQueue& requestq, Idle idle);
  // Guest side.
  void set_idle(Idle idle) { idle_ = std::move(idle); }
  // Setup only: called when sync() kicks the request queue (the device asked
  // for kicks: avail_event or used.flags), e.g. IommuQueues::notify(). None by
  // default: a polling device needs no kick, and kicks() still counts them.
  using Notify = std::function<void()>;
  void set_notify(Notify notify) { notify_ = std::move(notify); }

  // Guest side. viommu_add_req: queue one request (syncing first if the
  // queue is full).
  void add_attach(uint32_t domain, uint32_t endpoint, uint32_t flags = 0);
  void add_detach(uint32_t domain, uint32_t endpoint);
  void add_map(uint32_t domain, uint64_t iova, uint64_t size, uint64_t gpa, uint32_t flags);
  void add_unmap(uint32_t domain, uint64_t iova, uint64_t size);
  // Guest side. viommu_sync_req: kick, then wait for every queued request.
  // Returns the first non-OK status among them (and counts all failures).
  Status sync();

  // Guest side (or anyone once the guest threads stopped).
  uint64_t requests() const noexcept { return requests_; }
  uint64_t maps() const noexcept { return maps_; }
  uint64_t unmaps() const noexcept { return unmaps_; }
  uint64_t syncs() const noexcept { return syncs_; }
  uint64_t failures() const noexcept { return failures_; }

  // Guest side. From now on, when sync() reaps a request's used entry, the
  // time since the request's add goes to *from_add and the time since the
  // sync kick that followed it to *from_kick, in ticks of `now` (the caller's
  // clock, e.g. the TSC), each while its vector has spare capacity: the
  // caller reserves them, so nothing is allocated while the guest runs and
  // later samples are dropped. nullptr stops recording.
  using Clock = uint64_t (*)();
  struct RoundTrips {
    std::vector<uint32_t> from_add, from_kick;
  };
  void record_round_trips(RoundTrips* sink, Clock now) noexcept {
    rtt_sink_ = sink;
    now_ = now;
  }

 private:
  static constexpr uint32_t kSlotBytes = 64;  // request struct (<= 36 B) + tail
  // Writes `req` (a wire:: request layout) into a free slot and queues it.
  template <typename Req>
  void add(const Req& req);

  GuestMemory& mem_;
  DriverQueue& q_;
  Idle idle_;
  Notify notify_;
  uint64_t slots_gpa_ = 0;
  LineVector<uint32_t> free_slots_;
  LineVector<uint64_t> added_at_;  // per slot: now_() at its add, while recording
  RoundTrips* rtt_sink_ = nullptr;
  Clock now_ = nullptr;
  uint32_t outstanding_ = 0;
  Status first_error_ = Status::kOk;
  uint64_t requests_ = 0, maps_ = 0, unmaps_ = 0, syncs_ = 0, failures_ = 0;
};

}  // namespace vxlate::load
