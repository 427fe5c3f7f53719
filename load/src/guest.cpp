#include "vxlate/load/guest.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <stdexcept>
#include <system_error>

#include "vxlate/common/le.h"
#include "vxlate/common/range.h"
#include "vxlate/engine/wire.h"

namespace vxlate::load {

using dataplane::avail_bytes;
using dataplane::AvailRing;
using dataplane::desc_bytes;
using dataplane::kAvailFlagNoInterrupt;
using dataplane::kDescFlagIndirect;
using dataplane::kDescFlagNext;
using dataplane::kDescFlagWrite;
using dataplane::kUsedFlagNoNotify;
using dataplane::load16;
using dataplane::need_event;
using dataplane::QueueConfig;
using dataplane::store16;
using dataplane::used_bytes;
using dataplane::UsedRing;
using dataplane::valid_queue_size;
using dataplane::VirtqDesc;
using dataplane::VirtqUsedElem;

// --- GuestMemory -------------------------------------------------------------

GuestMemory::GuestMemory(uint64_t gpa_base, uint64_t size) : gpa_base_(gpa_base), size_(size) {
  if (size == 0 || !is_aligned(size, 4096) || !is_aligned(gpa_base, 4096))
    throw std::invalid_argument("GuestMemory: base and size must be non-zero multiples of 4 KiB");
  fd_ = memfd_create("vxlate-guest", MFD_CLOEXEC);
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "memfd_create");
  if (ftruncate(fd_, static_cast<off_t>(size)) != 0) {
    const int e = errno;
    close(fd_);
    throw std::system_error(e, std::generic_category(), "ftruncate");
  }
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (p == MAP_FAILED) {
    const int e = errno;
    close(fd_);
    throw std::system_error(e, std::generic_category(), "mmap");
  }
  hva_ = static_cast<uint8_t*>(p);
}

GuestMemory::~GuestMemory() {
  munmap(hva_, size_);
  close(fd_);
}

uint64_t GuestMemory::alloc(uint64_t size, uint64_t align) {
  const uint64_t off = (next_ + align - 1) & ~(align - 1);
  if (off > size_ || size > size_ - off) throw std::bad_alloc();
  next_ = off + size;
  return gpa_base_ + off;
}

// --- DriverQueue -------------------------------------------------------------

DriverQueue::DriverQueue(GuestMemory& mem, uint32_t size, bool event_idx, bool indirect)
    : mem_(mem), size_(size), event_idx_(event_idx), indirect_(indirect) {
  if (!valid_queue_size(size)) throw std::invalid_argument("DriverQueue: size must be a power of two <= 32768");
  avail_off_ = desc_bytes(size);
  used_off_ = (avail_off_ + avail_bytes(size) + 4095) & ~uint64_t{4095};  // virtio 1.0 legacy-style layout
  indirect_off_ = (used_off_ + used_bytes(size) + 15) & ~uint64_t{15};
  area_bytes_ = indirect_off_ + (indirect ? uint64_t{size} * kMaxIndirect * sizeof(VirtqDesc) : 0);
  area_bytes_ = (area_bytes_ + 4095) & ~uint64_t{4095};
  area_gpa_ = mem.alloc(area_bytes_, 4096);
  dma_base_ = area_gpa_;
  uint8_t* base = mem.hva(area_gpa_);
  std::memset(base, 0, area_bytes_);
  desc_ = reinterpret_cast<VirtqDesc*>(base);
  avail_ = AvailRing{base + avail_off_, size};
  used_ = UsedRing{base + used_off_, size};
  next_.resize(size);
  chain_len_.assign(size, 0);
  token_.assign(size, 0);
  for (uint32_t i = 0; i < size; ++i) next_[i] = static_cast<uint16_t>(i + 1);
  num_free_ = size;
}

QueueConfig DriverQueue::device_config(bool access_platform, EndpointId ep) const noexcept {
  QueueConfig c;
  c.size = size_;
  c.desc = dma_base_;
  c.avail = dma_base_ + avail_off_;
  c.used = dma_base_ + used_off_;
  c.access_platform = access_platform;
  c.event_idx = event_idx_;
  c.indirect = indirect_;
  c.ep = ep;
  return c;
}

bool DriverQueue::add(std::span<const DriverBuf> bufs, uint64_t token, bool use_indirect) {
  const bool indirect = use_indirect && indirect_ && bufs.size() > 1 && bufs.size() <= kMaxIndirect;
  const uint32_t need = indirect ? 1 : static_cast<uint32_t>(bufs.size());
  if (bufs.empty() || need > num_free_) return false;
  const uint16_t head = free_head_;
  uint16_t idx = head;
  auto fill = [](VirtqDesc* d, const DriverBuf& b, bool more, uint16_t next) {
    d->addr = b.addr;
    d->len = b.len;
    d->flags = static_cast<uint16_t>((b.device_writable ? kDescFlagWrite : 0) | (more ? kDescFlagNext : 0));
    d->next = more ? next : 0;
  };
  if (indirect) {
    VirtqDesc* table = reinterpret_cast<VirtqDesc*>(mem_.hva(area_gpa_ + indirect_off_) +
                                                    uint64_t{head} * kMaxIndirect * sizeof(VirtqDesc));
    for (size_t i = 0; i < bufs.size(); ++i)
      fill(&table[i], bufs[i], i + 1 < bufs.size(), static_cast<uint16_t>(i + 1));
    VirtqDesc& d = desc_[head];
    d.addr = dma_base_ + indirect_off_ + uint64_t{head} * kMaxIndirect * sizeof(VirtqDesc);
    d.len = static_cast<uint32_t>(bufs.size() * sizeof(VirtqDesc));
    d.flags = kDescFlagIndirect;
    d.next = 0;
    idx = next_[head];
  } else {
    for (size_t i = 0; i < bufs.size(); ++i) {
      const uint16_t nxt = next_[idx];
      fill(&desc_[idx], bufs[i], i + 1 < bufs.size(), nxt);
      idx = nxt;
    }
  }
  free_head_ = idx;
  num_free_ -= need;
  chain_len_[head] = static_cast<uint16_t>(need);
  token_[head] = token;
  // plain store: published by the release in publish().
  avail_.ring(avail_idx_ & (size_ - 1)) = head;
  ++avail_idx_;
  return true;
}

void DriverQueue::expose() {
  if (avail_idx_ == published_) return;
  published_ = avail_idx_;
  // release: publishes descriptors and ring entries (pairs with the device's
  // acquire of avail.idx).
  store16(avail_.idx(), published_, std::memory_order_release);
}

bool DriverQueue::publish() {
  if (avail_idx_ == notified_) return false;
  const uint16_t old = notified_;
  notified_ = published_ = avail_idx_;
  // seq_cst: releases descriptors and ring entries (pairs with the device's
  // acquire of avail.idx) and orders this store before the load of
  // avail_event/flags (pairs with the device's seq_cst pair in enable_kicks()).
  store16(avail_.idx(), published_, std::memory_order_seq_cst);
  bool kick = false;
  if (event_idx_) {
    kick = need_event(load16(used_.avail_event(), std::memory_order_seq_cst), published_, old);
  } else {
    kick = !(load16(used_.flags(), std::memory_order_seq_cst) & kUsedFlagNoNotify);
  }
  if (kick) ++kicks_;
  return kick;
}

bool DriverQueue::get_used(uint64_t* token, uint32_t* len) {
  // acquire: pairs with the device's release of used.idx in Virtqueue::publish().
  const uint16_t idx = load16(used_.idx(), std::memory_order_acquire);
  if (idx == last_used_) return false;
  const VirtqUsedElem e = used_.ring(last_used_ & (size_ - 1));
  ++last_used_;
  if (e.id >= size_ || chain_len_[e.id] == 0)
    throw std::runtime_error("DriverQueue: device returned a head it was not given");
  // Return the chain to the free list, walking the driver's shadow links.
  uint16_t tail = static_cast<uint16_t>(e.id);
  for (uint16_t i = 1; i < chain_len_[e.id]; ++i) tail = next_[tail];
  next_[tail] = free_head_;
  free_head_ = static_cast<uint16_t>(e.id);
  num_free_ += chain_len_[e.id];
  chain_len_[e.id] = 0;
  *token = token_[e.id];
  *len = e.len;
  return true;
}

void DriverQueue::disable_interrupts() {
  // relaxed: a hint; with EVENT_IDX Linux leaves used_event stale likewise.
  if (!event_idx_) store16(avail_.flags(), kAvailFlagNoInterrupt, std::memory_order_relaxed);
}

void DriverQueue::enable_interrupts() {
  // seq_cst: pairs with the device's seq_cst store of used.idx then load of used_event.
  if (event_idx_) {
    store16(avail_.used_event(), last_used_, std::memory_order_seq_cst);
  } else {
    store16(avail_.flags(), 0, std::memory_order_seq_cst);
  }
}

// --- IommuDriver --------------------------------------------------------------

IommuDriver::IommuDriver(GuestMemory& mem, DriverQueue& requestq, Idle idle)
    : mem_(mem), q_(requestq), idle_(std::move(idle)) {
  // Each request takes two descriptors (readable struct, writable tail).
  const uint32_t slots = q_.size() / 2;
  slots_gpa_ = mem.alloc(uint64_t{slots} * kSlotBytes, 64);
  for (uint32_t i = slots; i-- > 0;) free_slots_.push_back(i);
  added_at_.assign(slots, 0);
  q_.disable_interrupts();
}

template <typename Req>
void IommuDriver::add(const Req& req) {
  static_assert(sizeof(Req) + sizeof(engine::wire::ReqTail) <= kSlotBytes);
  constexpr uint32_t len = sizeof(Req);
  if (free_slots_.empty() || q_.free_count() < 2) sync();
  const uint32_t slot = free_slots_.back();
  free_slots_.pop_back();
  const uint64_t gpa = slots_gpa_ + uint64_t{slot} * kSlotBytes;
  uint8_t* p = mem_.hva(gpa);
  encode(std::span<uint8_t>(p, len), req);
  std::memset(p + len, 0, kSlotBytes - len);
  const uint64_t tail_gpa = gpa + kSlotBytes - engine::kTailSize;
  // The status byte starts out as an invalid value so that a device that
  // completes without writing it is noticed.
  engine::wire::ReqTail tail{};
  tail.status = 0xff;
  encode(std::span<uint8_t>(mem_.hva(tail_gpa), engine::kTailSize), tail);
  const DriverBuf bufs[2] = {{gpa, len, false}, {tail_gpa, static_cast<uint32_t>(engine::kTailSize), true}};
  if (rtt_sink_ != nullptr) added_at_[slot] = now_();
  q_.add(bufs, slot);
  q_.expose();
  ++outstanding_;
  ++requests_;
}

void IommuDriver::add_attach(uint32_t domain, uint32_t endpoint, uint32_t flags) {
  add(engine::wire::attach_req(domain, endpoint, flags));
}

void IommuDriver::add_detach(uint32_t domain, uint32_t endpoint) {
  add(engine::wire::detach_req(domain, endpoint));
}

void IommuDriver::add_map(uint32_t domain, uint64_t iova, uint64_t size, uint64_t gpa, uint32_t flags) {
  add(engine::wire::map_req(domain, iova, iova + size - 1, gpa, flags));
  ++maps_;
}

void IommuDriver::add_unmap(uint32_t domain, uint64_t iova, uint64_t size) {
  add(engine::wire::unmap_req(domain, iova, iova + size - 1));
  ++unmaps_;
}

namespace {

// Appends one round trip while `v` has room (see record_round_trips).
void record(std::vector<uint32_t>& v, uint64_t ticks) {
  if (v.size() < v.capacity()) v.push_back(static_cast<uint32_t>(std::min<uint64_t>(ticks, UINT32_MAX)));
}

}  // namespace

Status IommuDriver::sync() {
  if (outstanding_ == 0) return Status::kOk;
  // The kick decision; without a notify hook (a device that polls without
  // asking for kicks) the count still says what Linux would send.
  if (q_.publish() && notify_) notify_();
  const uint64_t kicked = rtt_sink_ != nullptr ? now_() : 0;
  ++syncs_;
  while (outstanding_ > 0) {
    uint64_t slot = 0;
    uint32_t len = 0;
    if (!q_.get_used(&slot, &len)) {
      idle_();
      continue;
    }
    const uint64_t tail_gpa = slots_gpa_ + slot * kSlotBytes + kSlotBytes - engine::kTailSize;
    const uint8_t status =
        decode<engine::wire::ReqTail>(std::span<const uint8_t>(mem_.hva(tail_gpa), engine::kTailSize)).status;
    if (len != engine::kTailSize || status != 0) {
      ++failures_;
      if (first_error_ == Status::kOk) first_error_ = len == 0 ? Status::kDevErr : static_cast<Status>(status);
    }
    if (rtt_sink_ != nullptr) {
      const uint64_t now = now_();
      record(rtt_sink_->from_add, now - added_at_[slot]);
      record(rtt_sink_->from_kick, now - kicked);
    }
    free_slots_.push_back(static_cast<uint32_t>(slot));
    --outstanding_;
  }
  const Status st = first_error_;
  first_error_ = Status::kOk;
  return st;
}

}  // namespace vxlate::load
