// bench/iotlb/baselines/sorted_list_rwlock.h: DPDK vhost's IOTLB, the cache rte_vhost
// uses for the vhost-user device IOTLB today.
//
// Models DPDK lib/vhost iotlb as its documentation and published design describe it:
// one cache per virtqueue, a TAILQ of {iova, size, uaddr, perm} entries kept sorted
// by iova, entries taken from a fixed mempool (IOTLB_CACHE_SIZE, 2048), a random
// entry evicted when the pool is empty, and an rte_rwlock_t that the data path
// read-locks around a whole burst while update and invalidate messages take it for
// writing. Written from that description, not from DPDK's code.
//
// Behaviour kept from DPDK:
//   - insert walks from the head to the first entry with a larger iova and links
//     the new one before it; an entry with the same iova is assumed identical and
//     the new one is dropped (vhost-user invalidates before it updates);
//   - eviction picks an index uniformly at random and walks the list to it;
//   - lookup walks from the head, stops at the first entry starting above the iova,
//     and the first entry containing the iova decides: without the needed
//     permission it is a miss (vhost then asks the VMM);
//   - invalidate removes whole entries that overlap the range (no trimming).
//
// Cost model: a lookup is O(n) dependent pointer loads through pool nodes scattered
// in memory (random eviction breaks any address order); a burst adds one read
// lock/unlock pair, two atomic RMWs on a line every reader of the queue shares.
// Readers block while the writer holds the lock. std::shared_mutex stands in for
// rte_rwlock_t (glibc's is a pthread_rwlock: the same shared-counter RMW per
// lock, plus a futex wait instead of spinning under writer contention).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <vector>

#include "baselines/baseline.h"

namespace vxlate::bench {

class SortedListRwlock {
 public:
  static constexpr const char* kName = "sorted_list_rwlock";
  // DPDK's IOTLB_CACHE_SIZE: the mempool size per virtqueue.
  static constexpr size_t kDpdkCacheSize = 2048;

  // Not thread-safe. Allocates the whole pool of max(capacity, 1) nodes up front.
  explicit SortedListRwlock(size_t capacity) : pool_(std::max<size_t>(capacity, 1)) {
    head_.next = head_.prev = &head_;
    for (Node& n : pool_) put_free(&n);
  }
  SortedListRwlock(const SortedListRwlock&) = delete;
  SortedListRwlock& operator=(const SortedListRwlock&) = delete;

  // Writer side. Caches [iova, iova + size) -> uaddr. Size 0 or a wrapping range is
  // ignored. Evicts a random entry when the pool is empty.
  void insert(uint64_t iova, uint64_t size, uint64_t uaddr, uint8_t perm) {
    uint64_t last;
    if (!range_last(iova, size, &last)) return;
    std::unique_lock lock(rwlock_);
    if (free_ == nullptr) evict_random();
    Node* pos = head_.next;
    while (pos != &head_ && pos->iova < iova) pos = pos->next;
    if (pos != &head_ && pos->iova == iova) return;  // DPDK: same iova is assumed identical
    Node* n = free_;
    free_ = n->next;
    n->iova = iova;
    n->size = size;
    n->uaddr = uaddr;
    n->perm = perm;
    link_before(n, pos);
    ++count_;
  }

  // Writer side. Removes every entry overlapping [iova, iova + size), whole.
  void invalidate(uint64_t iova, uint64_t size) {
    uint64_t last;
    if (!range_last(iova, size, &last)) return;
    std::unique_lock lock(rwlock_);
    for (Node* n = head_.next; n != &head_;) {
      Node* next = n->next;
      if (n->iova > last) break;  // sorted: nothing further can overlap
      if (n->iova + (n->size - 1) >= iova) remove(n);
      n = next;
    }
  }

  // Reader side, any thread; blocks while the writer holds the lock. The read lock
  // covers the whole burst, as vhost takes it once per enqueue/dequeue burst.
  //
  // noinline: inlined into bench_iotlb's timed loop, g++ 12 -O3 -DNDEBUG produced
  // code whose returned count was always 0 (correct at -O2, with UBSan, with
  // -fno-tree-pre -fno-gcse, and out of line). Not root-caused; one call per
  // burst is noise next to the list walks.
  [[gnu::noinline]] size_t translate_burst(std::span<const uint64_t> iovas, uint8_t need,
                                           BaselineTranslation* out) noexcept {
    std::shared_lock lock(rwlock_);
    size_t hits = 0;
    for (size_t i = 0; i < iovas.size(); ++i) {
      out[i] = lookup(iovas[i], need);
      hits += out[i].perm != 0;
    }
    return hits;
  }

  // Writer side (or quiescent): number of cached entries.
  size_t size() const {
    std::shared_lock lock(rwlock_);
    return count_;
  }

 private:
  struct Node {
    Node* next = nullptr;
    Node* prev = nullptr;
    uint64_t iova = 0;
    uint64_t size = 0;
    uint64_t uaddr = 0;
    uint8_t perm = 0;
  };

  BaselineTranslation lookup(uint64_t iova, uint8_t need) const noexcept {
    for (const Node* n = head_.next; n != &head_; n = n->next) {
      if (iova < n->iova) break;
      if (iova - n->iova >= n->size) continue;
      if (!perm_allows(n->perm, need)) break;  // the first containing entry decides
      return {n->uaddr + (iova - n->iova), n->perm};
    }
    return {0, 0};
  }

  void link_before(Node* n, Node* pos) {
    n->next = pos;
    n->prev = pos->prev;
    pos->prev->next = n;
    pos->prev = n;
  }

  void remove(Node* n) {
    n->prev->next = n->next;
    n->next->prev = n->prev;
    put_free(n);
    --count_;
  }

  void put_free(Node* n) {
    n->next = free_;
    free_ = n;
  }

  // DPDK picks rte_rand() % count and walks to that entry.
  void evict_random() {
    if (count_ == 0) return;
    uint64_t steps = next_random() % count_;
    Node* n = head_.next;
    while (steps-- != 0) n = n->next;
    remove(n);
  }

  // xorshift64*: writer-only, cheap, deterministic across runs.
  uint64_t next_random() {
    rng_ ^= rng_ >> 12;
    rng_ ^= rng_ << 25;
    rng_ ^= rng_ >> 27;
    return rng_ * 0x2545f4914f6cdd1dULL;
  }

  // The line every reader of the queue writes: on its own line so it does not also
  // bounce the list head.
  alignas(64) mutable std::shared_mutex rwlock_;
  alignas(64) Node head_;  // sentinel of a circular list; head_.next is the lowest iova
  size_t count_ = 0;
  Node* free_ = nullptr;  // the mempool's free list, singly linked through next
  uint64_t rng_ = 0x9e3779b97f4a7c15ULL;
  std::vector<Node> pool_;
};

}  // namespace vxlate::bench
