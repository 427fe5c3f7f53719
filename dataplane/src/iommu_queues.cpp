#include "vxlate/dataplane/iommu_queues.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace vxlate::dataplane {

namespace {
// The control thread is not an Rcu reader; Virtqueue ignores the id without
// ACCESS_PLATFORM.
constexpr uint32_t kNoReader = 0;
// Request chains whose head descriptors are prefetched ahead of the pops,
// topped up kPrefetchStep at a time.
constexpr uint16_t kPrefetchHeads = 16;
constexpr uint16_t kPrefetchStep = 8;
}  // namespace

namespace {
// PROBE needs probe_size bytes of properties plus the tail; others the tail.
size_t max_writable(const engine::Device& dev) {
  return std::max<size_t>(dev.config().probe_size + engine::kTailSize, 64);
}
// What a queue's consumer can use bounds what its chains translate. One byte
// more than a request can use, so that an oversized writable part is still
// seen (and refused).
// A request or an event buffer is a few descriptors (Linux: head, request,
// tail; PROBE one more): a longer chain is refused after kMaxRequestDescs.
constexpr uint32_t kMaxRequestDescs = 16;
QueueConfig bounded(QueueConfig q, uint64_t max_bytes) {
  q.max_chain_bytes = static_cast<uint32_t>(std::min<uint64_t>(max_bytes, UINT32_MAX));
  q.max_chain_descs = kMaxRequestDescs;
  // No virtqueue lookahead: poll() pops a whole burst before it reads any
  // request and prefetches each request struct as it pops, which overlaps
  // their misses already; the lookahead's hint translations only repeated
  // that (BM_IommuQueuesRemap 98.5 -> 93.2 ns per request, bench/RESULTS.md).
  // The event queue, one event now and then, has nothing to look ahead at.
  q.lookahead = false;
  return q;
}
}  // namespace

IommuQueues::IommuQueues(engine::Device& dev, const QueueConfig& requestq, const QueueConfig& eventq)
    : dev_(dev),
      req_(dev, bounded(requestq, kMaxReadable + max_writable(dev) + 1)),
      evq_(dev, bounded(eventq, kFaultEventSize)),
      max_writable_(max_writable(dev)) {
  if (requestq.access_platform || eventq.access_platform)
    throw std::invalid_argument("IommuQueues: the virtio-iommu queues are not translated by the IOMMU itself");
  // A burst never holds more requests than the queue has entries (begin()
  // refuses an avail index further ahead), nor more than one handle_burst()
  // takes: scratch for that many (a queue of 0 or a bad size never begins).
  const size_t burst = valid_queue_size(requestq.size) ? std::min<size_t>(requestq.size, engine::kMaxRequestBurst) : 0;
  slots_.resize(burst);
  out_.resize(burst * max_writable_);
  chains_.resize(burst);
  reqs_.resize(burst);
}

void IommuQueues::scatter(const Chain& c, const uint8_t* src, uint32_t len) noexcept {
  for (uint32_t s = c.nreadable; s < c.nsegs && len > 0; ++s) {
    const uint32_t take = static_cast<uint32_t>(std::min<uint64_t>(len, c.segs[s].len));
    std::memcpy(reinterpret_cast<uint8_t*>(c.segs[s].addr), src, take);
    src += take;
    len -= take;
  }
}

bool IommuQueues::hold(bool idle) noexcept {
  const uint16_t waiting = req_.available();
  if (batching_.min_requests <= 1 || idle || waiting == 0 || waiting >= batching_.min_requests) {
    holding_ = false;
    return false;
  }
  if (kicked_) {
    ++stats_.kicked;
    holding_ = false;
    return false;
  }
  if (!holding_) {
    holding_ = true;
    held_since_ = std::chrono::steady_clock::now();
    held_polls_ = 0;
  } else if (std::chrono::steady_clock::now() - held_since_ >= batching_.max_wait) {
    ++stats_.overdue;
    holding_ = false;
    return false;
  }
  ++stats_.held;
  return true;
}

size_t IommuQueues::poll(uint32_t self_reader, bool* interrupt, bool idle) noexcept {
  bool irq = false;
  size_t n = 0;
  // acquire: pairs with notify()'s release. Loaded before begin() reads
  // avail.idx, so the requests a kick seen here announced are all available.
  const uint64_t bell = doorbell_.rings.load(std::memory_order_acquire);
  if (bell != bell_seen_) {
    bell_seen_ = bell;
    kicked_ = true;
  }
  // A batch held by the last poll grows only when looked at. A busy
  // caller's poll that keeps holding it (no kick seen, not idle) reads
  // neither avail.idx, a line the driver writes with every request it adds,
  // nor the clock, but every kLookEvery-th time: requests added meanwhile
  // join the batch a few polls later; a kick or an idle poll serves at once.
  if (holding_ && kicks_armed_ && !kicked_ && !idle && ++held_polls_ % kLookEvery != 0) {
    ++stats_.held;
    return finish(irq, interrupt, 0);
  }
  // An idle request queue, a poll loop's common case, costs a look at
  // avail.idx: no burst is begun (requests held for batching are still
  // available, so none is held then). A kick seen above was for requests
  // already served (the driver publishes before it kicks), as after an
  // empty burst below. Batching asks for kicks in its first poll, empty or
  // not, so that one begins.
  const bool empty = (batching_.min_requests <= 1 || kicks_armed_) && req_.surely_empty();
  if (empty) kicked_ = false;
  // Requests held by the last poll and none added since (a busy caller's
  // common case while a lazy driver's requests wait): hold() decides on what
  // the last begin() counted, with no burst begun to find the same chains
  // again. A kick, an idle caller or the deadline ends the hold there, and
  // they are served below.
  const bool same_held = !empty && holding_ && kicks_armed_ && req_.surely_unchanged();
  if (same_held && hold(idle)) {
    return finish(irq, interrupt, 0);
  }
  // Every chain popped, good, bad or refused, counts against the burst.
  const bool begun = !empty && req_.begin(kNoReader, engine::kMaxRequestBurst);
  bool kicked_late = false;  // the arming re-check saw requests begin() did not
  if (begun && batching_.min_requests > 1 && !kicks_armed_) {
    // Ask for kicks before holding anything. Requests that arrived before the
    // driver could see that may never be kicked for: serve them as if kicked,
    // those begin() saw now, those that came after it in the next poll.
    kicks_armed_ = true;
    armed_at_ = req_.last_avail();
    uint16_t idx = 0;
    if (req_.enable_kicks(&idx)) {
      kicked_ = true;
      kicked_late = static_cast<uint16_t>(idx - req_.last_avail()) > req_.available();
    }
  }
  // (A held burst found overdue above is served now, without asking again.)
  if (begun && (same_held || !hold(idle))) {
    // The chains' descriptors up to kPrefetchHeads ahead of the pops: a
    // line transfer each from the driver's core, overlapped instead of paid
    // one per pop. (Not on an empty poll, the device loop's common case.)
    if (req_.available() != 0) req_.prefetch_heads(0, kPrefetchHeads);
    uint32_t popped = 0;
    // First every chain of the burst is popped and checked, and the first
    // line of each request struct prefetched: the guest wrote them on another
    // core, and their misses overlap instead of coming one per request.
    while (n < chains_.size() && req_.pop(&chains_[n])) {
      if (++popped % kPrefetchStep == 0) req_.prefetch_heads(kPrefetchHeads - kPrefetchStep, kPrefetchStep);
      const Chain& c = chains_[n];
      // A request needs its struct (readable) and room for the tail
      // (writable); the device never writes beyond what it can scatter.
      if (c.readable_bytes == 0 || c.writable_bytes < engine::kTailSize || c.writable_bytes > max_writable_) {
        req_.refuse(c, BadChain::kDirection);
        continue;
      }
      // The request struct's line for reading, and the tail's for writing:
      // the device writes it after the burst, and a line fetched shared would
      // need a second transfer to be written. Where the driver put both in
      // one line (Linux's viommu_add_req does), one prefetch for writing.
      const uint64_t req = c.segs[0].addr;
      const uint64_t tail = c.segs[c.nreadable].addr;
      if (((req ^ tail) >> 6) != 0) __builtin_prefetch(reinterpret_cast<const void*>(req));
      __builtin_prefetch(reinterpret_cast<const void*>(tail), 1);
      ++n;
    }
    for (size_t i = 0; i < n; ++i) {
      const Chain& c = chains_[i];
      Slot& slot = slots_[i];
      // Gather the readable part (at most kMaxReadable bytes: more than any
      // request struct, so truncation cannot change a request's meaning).
      size_t in_len = 0;
      for (uint32_t s = 0; s < c.nreadable && in_len < kMaxReadable; ++s) {
        const size_t take = std::min<uint64_t>(kMaxReadable - in_len, c.segs[s].len);
        std::memcpy(slot.in + in_len, reinterpret_cast<const uint8_t*>(c.segs[s].addr), take);
        in_len += take;
      }
      slot.out_len = static_cast<uint32_t>(c.writable_bytes);
      // The device writes only the tail (and PROBE's properties) but reports
      // the whole writable part as used: no byte of an earlier request may leak.
      std::memset(out_.data() + i * max_writable_, 0, slot.out_len);
      reqs_[i] = engine::Request{std::span<const uint8_t>(slot.in, in_len),
                                 std::span<uint8_t>(out_.data() + i * max_writable_, slot.out_len), 0};
    }
    if (n > 0) {
      // Every request applied, one sync, and only then any completion.
      dev_.handle_burst(std::span<engine::Request>(reqs_.data(), n), self_reader);
      for (size_t i = 0; i < n; ++i) {
        scatter(chains_[i], reqs_[i].writable.data(), reqs_[i].used);
        req_.push(chains_[i].head, reqs_[i].used);
      }
      stats_.requests += n;
      ++stats_.bursts;
    }
    irq |= req_.publish();
    if (batching_.min_requests > 1) {
      // Served all the kick asked for (or more wait: the next poll goes on).
      // A kick for requests that came after begin() stands: this poll could
      // not serve them, and nothing below re-checks when it consumed nothing.
      kicked_ = (kicked_ && req_.available() != 0) || kicked_late;
      // The driver's next sync must kick: avail_event at last_avail (or
      // used.flags 0), rewritten only when this poll consumed something (a
      // store to a line the driver reads, and a full fence). When more
      // arrived meanwhile, a sync among them may have looked at the old
      // avail_event and not kicked: serve them as if it had (virtio's
      // re-check after enabling notifications).
      if (req_.last_avail() != armed_at_) {
        armed_at_ = req_.last_avail();
        kicked_ |= req_.enable_kicks();
      }
    }
  }
  return finish(irq, interrupt, n);
}

size_t IommuQueues::finish(bool irq, bool* interrupt, size_t served) noexcept {
  irq |= deliver_events();
  if (interrupt != nullptr) *interrupt = irq;
  return served;
}

bool IommuQueues::deliver_events() noexcept {
  // Top up the pending list from the engine's per-reader rings.
  if (npending_ < kPendingEvents)
    npending_ += dev_.drain_events(std::span<engine::FaultEvent>(pending_.data() + npending_, kPendingEvents - npending_));
  if (npending_ == 0 || !evq_.begin(kNoReader, kPendingEvents)) return false;
  size_t sent = 0;
  Chain c;
  while (sent < npending_ && evq_.pop(&c)) {
    if (c.nreadable != 0 || c.writable_bytes < kFaultEventSize) {
      evq_.refuse(c, BadChain::kDirection);
      continue;
    }
    const engine::FaultEvent& e = pending_[sent++];
    engine::wire::Fault ev{};  // reserved bytes zero
    ev.reason = e.reason;
    ev.flags.set(e.flags);
    ev.endpoint.set(e.endpoint);
    ev.address.set(e.address);
    uint8_t buf[kFaultEventSize];
    encode(std::span<uint8_t>(buf), ev);
    scatter(c, buf, kFaultEventSize);
    evq_.push(c.head, kFaultEventSize);
  }
  std::move(pending_.begin() + sent, pending_.begin() + npending_, pending_.begin());
  npending_ -= sent;
  stats_.events += sent;
  return evq_.publish();
}

}  // namespace vxlate::dataplane
