// Virtqueue chain walking into exact host segments, the used ring and 16-bit index wrap, indirect tables
// (also straddling two memory regions), EVENT_IDX and flag-based notification suppression, unpop.
#include "vxlate/dataplane/virtqueue.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "dataplane/virtqueue_test_support.h"

namespace vxlate::dataplane::virtqueue_test {
namespace {

TEST_P(VirtqueueTest, SimpleChainsAndUsedRing) {
  Virtqueue q(*dev_, fresh(8));
  set_desc(0, d(kBuf, 100));                 // readable only
  set_desc(1, d(kBuf + 0x1000, 200, W));     // writable only
  set_desc(2, d(kBuf + 0x2000, 10, N, 5));   // readable, readable, writable, writable
  set_desc(5, d(kBuf + 0x3000, 20, N, 3));
  set_desc(3, d(kBuf + 0x4000, 30, W | N, 4));
  set_desc(4, d(kBuf + 0x5000, 40, W));
  std::memcpy(host(kBuf), "payload", 7);
  offer({2, 0, 1});  // ring order, not head order
  ASSERT_TRUE(q.begin(reader_));
  EXPECT_EQ(q.available(), 3);

  ASSERT_TRUE(q.pop(&c_));
  expect_chain(2, 2, {{kBuf + 0x2000, 10}, {kBuf + 0x3000, 20}, {kBuf + 0x4000, 30}, {kBuf + 0x5000, 40}});
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(0, 1, {{kBuf, 100}});
  EXPECT_EQ(std::memcmp(reinterpret_cast<const void*>(c_.segs[0].addr), "payload", 7), 0);
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(1, 0, {{kBuf + 0x1000, 200}});
  EXPECT_FALSE(q.pop(&c_));

  q.push(2, 70);
  q.push(0, 0);
  EXPECT_EQ(used_idx(), 0) << "push is invisible until publish";
  q.push(1, 123);
  EXPECT_TRUE(q.publish());  // avail.flags 0: the driver wants interrupts
  EXPECT_EQ(used_idx(), 3);
  expect_used(0, 2, 70);
  expect_used(1, 0, 0);
  expect_used(2, 1, 123);
  EXPECT_FALSE(q.publish()) << "nothing pending";
  EXPECT_EQ(q.stats().chains, 3u);
  EXPECT_EQ(q.stats().used, 3u);
  EXPECT_EQ(q.stats().interrupts, 1u);
  EXPECT_EQ(q.stats().bad_total(), 0u);
}

TEST_P(VirtqueueTest, BufferAcrossRegionsAndReadOnlyMapping) {
  Virtqueue q(*dev_, fresh(8));
  set_desc(0, d(kBGpa - 8, 16));  // one descriptor, two host segments
  offer(0);
  if (ap()) {
    set_desc(1, raw(kRoIova + 16, 32));  // read-only mapping, device reads: fine
    offer(1);
  }
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(0, 2, {{kBGpa - 8, 8}, {kBGpa, 8}});
  if (ap()) {
    ASSERT_TRUE(q.pop(&c_));
    expect_chain(1, 1, {{kRoGpa + 16, 32}});
  }
  EXPECT_FALSE(q.pop(&c_));
  EXPECT_EQ(q.stats().bad_total(), 0u);
}

TEST_P(VirtqueueTest, ZeroLengthDescriptorsAreSkipped) {
  Virtqueue q(*dev_, fresh(8));
  set_desc(0, raw(kOutside, 0, N, 1));  // the address of an empty buffer is never translated
  set_desc(1, d(kBuf, 16, N, 2));
  set_desc(2, raw(~uint64_t{0}, 0, W | N, 3));
  set_desc(3, d(kBuf + 0x40, 32, W));
  set_desc(4, raw(kOutside, 0));  // a chain of nothing
  offer({0, 4});
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(0, 1, {{kBuf, 16}, {kBuf + 0x40, 32}});
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(4, 0, {});
  EXPECT_EQ(q.stats().bad_total(), 0u);
}

// avail.idx and used.idx both wrap past 65535 and the 4 ring slots wrap ~16 Ki
// times; every chain pops in order with its head, buffer and used entry, and
// EVENT_IDX decisions stay right across the wrap.
TEST_P(VirtqueueTest, IndicesWrapPast16Bits) {
  constexpr uint32_t kSize = 4;
  constexpr uint32_t kTotal = 65536 + 1000;
  Virtqueue q(*dev_, fresh(kSize, false, true));
  uint32_t seq = 0;
  uint16_t base = 0;
  uint64_t want_irqs = 0;
  for (uint32_t iter = 0; seq < kTotal; ++iter) {
    const uint32_t batch = 1 + iter % kSize;
    uint16_t heads[kSize];
    for (uint32_t j = 0; j < batch; ++j) {
      heads[j] = static_cast<uint16_t>((base + j) % kSize);
      set_desc(heads[j], d(kBuf + ((seq + j) % 512) * 64, 1 + (seq + j) % 61));
      offer(heads[j]);
    }
    base = static_cast<uint16_t>(base + 3);
    ASSERT_TRUE(q.begin(reader_));
    ASSERT_EQ(q.available(), batch);
    for (uint32_t j = 0; j < batch; ++j) {
      ASSERT_TRUE(q.pop(&c_));
      ASSERT_EQ(c_.head, heads[j]) << "seq " << seq + j;
      ASSERT_EQ(c_.nsegs, 1u);
      ASSERT_EQ(c_.segs[0].addr, reinterpret_cast<uint64_t>(host(kBuf + ((seq + j) % 512) * 64)));
      ASSERT_EQ(c_.segs[0].len, 1 + (seq + j) % 61);
      q.push(c_.head, (seq + j) & 0xffff);
    }
    ASSERT_FALSE(q.pop(&c_));
    const uint16_t old = static_cast<uint16_t>(seq);
    // The driver asks for an interrupt at the next entry, or at one already past.
    const bool want = iter % 2 == 0;
    store16(avail().used_event(), static_cast<uint16_t>(want ? old : old - 1), std::memory_order_seq_cst);
    ASSERT_EQ(q.publish(), want) << "seq " << seq;
    want_irqs += want;
    for (uint32_t j = 0; j < batch; ++j) {
      const VirtqUsedElem e = used().ring((seq + j) % kSize);
      ASSERT_EQ(e.id, heads[j]);
      ASSERT_EQ(e.len, (seq + j) & 0xffff);
    }
    seq += batch;
    ASSERT_EQ(used_idx(), static_cast<uint16_t>(seq));
    dev_->iotlb().quiescent(reader_);
  }
  EXPECT_EQ(q.stats().chains, seq);
  EXPECT_EQ(q.stats().used, seq);
  EXPECT_EQ(q.stats().interrupts, want_irqs);
  EXPECT_EQ(q.stats().bad_total(), 0u);
}

TEST_P(VirtqueueTest, IndirectTable) {
  Virtqueue q(*dev_, fresh(8));
  // Links 0 -> 2 -> 1 -> 3; readable then writable. WRITE on the descriptor
  // pointing at the table must be ignored (virtio 2.7.5.3.2).
  set_table(kTable, {d(kBuf, 10, N, 2), d(kBuf + 0x80, 30, W | N, 3), d(kBuf + 0x40, 20, N, 1),
                     d(kBuf + 0xc0, 40, W)});
  set_desc(0, d(kTable, 64, I | W));
  offer(0);
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(0, 2, {{kBuf, 10}, {kBuf + 0x40, 20}, {kBuf + 0x80, 30}, {kBuf + 0xc0, 40}});
  EXPECT_EQ(q.stats().bad_total(), 0u);
}

TEST_P(VirtqueueTest, IndirectTableStraddlesRegions) {
  Virtqueue q(*dev_, fresh(8));
  // 64 bytes at B - 24: entry 1 is split 8/8 between two host segments.
  const uint64_t t = kBGpa - 24;
  set_table(t, {d(kBuf, 10, N, 1), d(kBGpa - 8, 16, N, 2), d(kBuf + 0x100, 30, W | N, 3),
                d(kBGpa + 0x100, 40, W)});
  set_desc(0, d(t, 64, I));
  offer(0);
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(0, 3, {{kBuf, 10}, {kBGpa - 8, 8}, {kBGpa, 8}, {kBuf + 0x100, 30}, {kBGpa + 0x100, 40}});
}

TEST_P(VirtqueueTest, DirectThenIndirect) {
  Virtqueue q(*dev_, fresh(8));
  set_desc(0, d(kBuf, 16, N, 3));
  set_desc(3, d(kTable, 32, I));
  set_table(kTable, {d(kBuf + 0x40, 8, N, 1), d(kBuf + 0x80, 8, W)});
  offer(0);
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(0, 2, {{kBuf, 16}, {kBuf + 0x40, 8}, {kBuf + 0x80, 8}});
}

// pop()'s lookahead translates the indirect table of the chain two ahead, and
// the walk of that chain uses the translation when the descriptor it reads
// names the same bytes. A driver that changes the descriptor after the
// lookahead read it (another table, or the same one grown past what was
// translated) gets its new table walked; one that rewrites the table itself
// gets the new entries read.
TEST_P(VirtqueueTest, LookaheadTablesFollowTheDescriptorsTheWalkReads) {
  Virtqueue q(*dev_, fresh(8));
  const uint64_t other = kTable + 0x800;
  auto table_of = [&](uint16_t h) { return h == 3 ? kBGpa - 32 : kTable + 0x100 * h; };
  for (uint16_t h = 0; h < 5; ++h) {
    const uint64_t t = table_of(h);
    set_table(t, {d(kBuf + 0x100 * h, 12, N, 1), d(kBuf + 0x100 * h + 12, 20 + h)});
    set_desc(h, d(t, 32, I));
  }
  offer({0, 1, 2, 3, 4});
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));  // chain 0; the lookahead has translated chain 2's table
  expect_chain(0, 2, {{kBuf, 12}, {kBuf + 12, 20}});
  // Chain 2 now names another table; chain 3's table (translated by the next
  // pop's lookahead) will get a third entry and a longer descriptor.
  set_table(other, {d(kBuf + 0x900, 7)});
  set_desc(2, d(other, 16, I));
  ASSERT_TRUE(q.pop(&c_));  // chain 1; the lookahead translates 32 bytes of chain 3's table
  expect_chain(1, 2, {{kBuf + 0x100, 12}, {kBuf + 0x100 + 12, 21}});
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(2, 1, {{kBuf + 0x900, 7}});
  set_table(table_of(3), {d(kBuf + 0x300, 12, N, 1), d(kBuf + 0x300 + 12, 23, N, 2), d(kBuf + 0xa00, 5)});
  set_desc(3, d(table_of(3), 48, I));
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(3, 3, {{kBuf + 0x300, 12}, {kBuf + 0x300 + 12, 23}, {kBuf + 0xa00, 5}});
  // Chain 4's table keeps its address and length but not its entries.
  set_table(kTable + 0x400, {d(kBuf + 0xb00, 9, N, 1), d(kBuf + 0xb40, 3, W)});
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(4, 1, {{kBuf + 0xb00, 9}, {kBuf + 0xb40, 3}});
  EXPECT_FALSE(q.pop(&c_));
  EXPECT_EQ(q.stats().bad_total(), 0u);
}

// The lookahead also translates the first buffer of the chain one ahead (up
// to the end of its page), and the walk of that chain uses the translation
// for the buffers that lie inside it, with the same access. A driver that
// changes the descriptor after the lookahead read it gets what the new
// descriptor says: another address, an offset inside the translated bytes,
// a buffer grown across a region boundary (two segments), a readable buffer
// made device-writable (refused where the page is read-only).
TEST_P(VirtqueueTest, LookaheadBuffersFollowTheDescriptorsTheWalkReads) {
  Virtqueue q(*dev_, fresh(8));
  auto table_of = [](uint16_t h) { return kTable + 0x100 * h; };
  const VirtqDesc ro = ap() ? raw(kRoIova, 16) : d(kRoGpa, 16);
  for (uint16_t h = 0; h < 6; ++h) {
    if (h == 4)
      set_table(table_of(h), {d(kBGpa - 8, 8)});
    else if (h == 5)
      set_table(table_of(h), {ro});
    else
      set_table(table_of(h), {d(kBuf + 0x100 * h, 12, N, 1), d(kBuf + 0x100 * h + 12, 64)});
    set_desc(h, d(table_of(h), h >= 4 ? 16 : 32, I));
  }
  offer({0, 1, 2, 3, 4, 5});
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(0, 2, {{kBuf, 12}, {kBuf + 12, 64}});
  ASSERT_TRUE(q.pop(&c_));  // its lookahead translates chain 2's first buffer (76 bytes)
  expect_chain(1, 2, {{kBuf + 0x100, 12}, {kBuf + 0x100 + 12, 64}});
  set_table(table_of(2), {d(kBuf + 0x900, 12, N, 1), d(kBuf + 0x200 + 12, 64)});
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(2, 2, {{kBuf + 0x900, 12}, {kBuf + 0x200 + 12, 64}});
  set_table(table_of(3), {d(kBuf + 0x300 + 4, 8, N, 1), d(kBuf + 0x300 + 12, 64)});
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(3, 2, {{kBuf + 0x300 + 4, 8}, {kBuf + 0x300 + 12, 64}});
  set_table(table_of(4), {d(kBGpa - 8, 16)});  // 8 bytes translated, 16 named
  ASSERT_TRUE(q.pop(&c_));
  expect_chain(4, 2, {{kBGpa - 8, 8}, {kBGpa, 8}});
  VirtqDesc w = ro;
  w.flags = W;
  set_table(table_of(5), {w});  // translated readable, named writable
  if (ap()) {
    EXPECT_FALSE(q.pop(&c_));
    EXPECT_EQ(q.stats().bad[ix(BadChain::kUnmapped)], 1u);
    EXPECT_EQ(q.stats().bad_total(), 1u);
  } else {
    ASSERT_TRUE(q.pop(&c_));
    expect_chain(5, 0, {{kRoGpa, 16}});
    EXPECT_EQ(q.stats().bad_total(), 0u);
  }
}

// The largest legal chains: one just under each hostile case's limit.
TEST_P(VirtqueueTest, LimitsAreInclusive) {
  {
    Virtqueue q(*dev_, fresh(8));
    for (uint16_t i = 0; i < 8; ++i) set_desc(i, d(kBuf + 0x40 * i, 1, i < 7 ? N : 0, i + 1));  // size descriptors
    std::vector<VirtqDesc> t;
    for (uint16_t i = 0; i < 8; ++i) t.push_back(d(kBuf + 0x40 * i, 1, i < 7 ? N : 0, i + 1));  // size entries
    set_table(kTable, t);
    offer(0);
    ASSERT_TRUE(q.begin(reader_));
    ASSERT_TRUE(q.pop(&c_));
    EXPECT_EQ(c_.nsegs, 8u);
    set_desc(0, d(kTable, 8 * 16, I));
    offer(0);
    ASSERT_TRUE(q.begin(reader_));  // avail.idx is read once per burst
    ASSERT_TRUE(q.pop(&c_));
    EXPECT_EQ(c_.nsegs, 8u);
    // Writable bytes exactly UINT32_MAX (2 GiB + 2 GiB - 1 over the untouched region C).
    set_desc(1, d(kBigGpa, 0x80000000u, W | N, 2));
    set_desc(2, d(kBigGpa, 0x7fffffffu, W));
    offer(1);
    ASSERT_TRUE(q.begin(reader_));
    ASSERT_TRUE(q.pop(&c_));
    expect_chain(1, 0, {{kBigGpa, 0x80000000u}, {kBigGpa, 0x7fffffffu}});
    EXPECT_EQ(c_.writable_bytes, 0xffffffffu);
    EXPECT_EQ(q.stats().bad_total(), 0u);
  }
  {
    Virtqueue q(*dev_, fresh(128));
    std::vector<VirtqDesc> t;
    for (uint32_t i = 0; i < kMaxChainSegs; ++i) t.push_back(d(kBuf + 2 * i, 1, i + 1 < kMaxChainSegs ? N : 0, i + 1));
    set_table(kTable, t);
    set_desc(0, d(kTable, 16 * kMaxChainSegs, I));
    offer(0);
    t.resize(kMaxChainSegs - 2);  // and a last buffer that splits in two
    t.push_back(d(kBGpa - 4, 8));
    set_table(kTable + 0x1000, t);
    set_desc(1, d(kTable + 0x1000, 16 * (kMaxChainSegs - 1), I));
    offer(1);
    ASSERT_TRUE(q.begin(reader_));
    ASSERT_TRUE(q.pop(&c_));
    EXPECT_EQ(c_.nsegs, kMaxChainSegs);
    expect_seg(c_.segs[kMaxChainSegs - 1], kBuf + 2 * (kMaxChainSegs - 1), 1);
    ASSERT_TRUE(q.pop(&c_));
    EXPECT_EQ(c_.nsegs, kMaxChainSegs);
    expect_seg(c_.segs[kMaxChainSegs - 1], kBGpa, 4);
    EXPECT_EQ(q.stats().bad_total(), 0u);
  }
}

TEST_P(VirtqueueTest, EventIdxDecidesInterrupts) {
  Virtqueue q(*dev_, fresh(8, true, true));
  for (uint16_t h = 0; h < 8; ++h) {
    set_desc(h, d(kBuf + 64 * h, 16));
    offer(h);
  }
  ASSERT_TRUE(q.begin(reader_));
  // Each step pushes n entries (used.idx old -> old + n) under used_event.
  struct Step {
    int n;
    uint16_t used_event;
    bool want;
  };
  // used.idx: 0->3 (0xffff not crossed), none, 3->4 (2 already past), 4->5 (4
  // crossed), 5->6 (4 past), 6->8 (6 crossed).
  const Step steps[] = {{3, 0xffff, false}, {0, 0, false}, {1, 2, false},
                        {1, 4, true},       {1, 4, false}, {2, 6, true}};
  uint16_t idx = 0, h = 0;
  uint64_t irqs = 0;
  for (const Step& s : steps) {
    SCOPED_TRACE(idx);
    for (int i = 0; i < s.n; ++i, ++h) {
      ASSERT_TRUE(q.pop(&c_));
      EXPECT_EQ(c_.head, h);
      q.push(c_.head, 1);
    }
    store16(avail().used_event(), s.used_event, std::memory_order_seq_cst);
    EXPECT_EQ(q.publish(), s.want);
    idx = static_cast<uint16_t>(idx + s.n);
    EXPECT_EQ(used_idx(), idx);
    irqs += s.want;
  }
  EXPECT_EQ(q.stats().interrupts, irqs);
  // With EVENT_IDX the NO_INTERRUPT flag does not decide: used_event 8, 8 -> 9.
  avail().flags() = kAvailFlagNoInterrupt;
  store16(avail().used_event(), 8, std::memory_order_seq_cst);
  offer(0);
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  q.push(0, 1);
  EXPECT_TRUE(q.publish());
  EXPECT_EQ(used_idx(), 9);
}

TEST_P(VirtqueueTest, NoInterruptFlagWithoutEventIdx) {
  Virtqueue q(*dev_, fresh(8));
  set_desc(0, d(kBuf, 16));
  offer({0, 0, 0});
  ASSERT_TRUE(q.begin(reader_));
  store16(avail().used_event(), 0, std::memory_order_relaxed);  // ignored without EVENT_IDX
  for (const uint16_t flags : {kAvailFlagNoInterrupt, uint16_t{0}, kAvailFlagNoInterrupt}) {
    avail().flags() = flags;
    ASSERT_TRUE(q.pop(&c_));
    q.push(0, 1);
    EXPECT_EQ(q.publish(), flags == 0);
  }
  EXPECT_EQ(used_idx(), 3);
  EXPECT_EQ(q.stats().interrupts, 1u);
}

// NO_NOTIFY in used.flags, or with EVENT_IDX avail_event = the next avail slot
// to pop (never written without EVENT_IDX); enable_kicks() re-checks avail.idx.
TEST_P(VirtqueueTest, KickSuppression) {
  for (const bool event_idx : {false, true}) {
    SCOPED_TRACE(event_idx);
    Virtqueue q(*dev_, fresh(8, true, event_idx));
    for (uint16_t h = 0; h < 3; ++h) set_desc(h, d(kBuf, 16));
    store16(used().avail_event(), 0x5555, std::memory_order_relaxed);
    offer({0, 1});
    ASSERT_TRUE(q.begin(reader_));
    q.disable_kicks();
    EXPECT_EQ(used().flags(), kUsedFlagNoNotify);
    ASSERT_TRUE(q.pop(&c_));
    ASSERT_TRUE(q.pop(&c_));
    EXPECT_FALSE(q.enable_kicks()) << "nothing beyond what was popped";
    if (!event_idx) { EXPECT_EQ(used().flags(), 0); }  // with EVENT_IDX the driver ignores flags
    EXPECT_EQ(used().avail_event(), event_idx ? 2 : 0x5555);
    q.disable_kicks();
    EXPECT_EQ(used().flags(), kUsedFlagNoNotify);
    offer(2);  // arrives while kicks are off
    EXPECT_TRUE(q.enable_kicks());
    EXPECT_EQ(used().avail_event(), event_idx ? 2 : 0x5555);
    EXPECT_FALSE(q.pop(&c_)) << "avail.idx is read once per burst";
    ASSERT_TRUE(q.begin(reader_));
    ASSERT_TRUE(q.pop(&c_));
    EXPECT_EQ(c_.head, 2);
    EXPECT_FALSE(q.enable_kicks());
    EXPECT_EQ(used().avail_event(), event_idx ? 3 : 0x5555);
  }
}

TEST_P(VirtqueueTest, UnpopRepopsTheSameChains) {
  Virtqueue q(*dev_, fresh(8));
  for (uint16_t h = 0; h < 3; ++h) {
    set_desc(h, d(kBuf + 64 * h, 8 + h, W));
    offer(h);
  }
  ASSERT_TRUE(q.begin(reader_));
  for (uint16_t h = 0; h < 3; ++h) ASSERT_TRUE(q.pop(&c_));
  q.unpop(2);
  EXPECT_EQ(q.available(), 2);
  for (uint16_t h = 1; h < 3; ++h) {
    ASSERT_TRUE(q.pop(&c_));
    EXPECT_EQ(c_.head, h);
    expect_seg(c_.segs[0], kBuf + 64 * h, 8 + h);
    q.push(h, h);
  }
  EXPECT_FALSE(q.pop(&c_));
  q.push(0, 0);
  q.publish();
  EXPECT_EQ(used_idx(), 3);
  expect_used(0, 1, 1);
  expect_used(1, 2, 2);
  expect_used(2, 0, 0);
}

// surely_empty(), the idle poll's shortcut (IommuQueues::poll): true only
// when a burst would find nothing, read through the rings begin() kept for
// the current memory table; never for an IOVA queue (begin() revalidates its
// rings through the Burst).
TEST_P(VirtqueueTest, SurelyEmptyOnlyWhenNothingWaits) {
  Virtqueue q(*dev_, fresh(8));
  EXPECT_FALSE(q.surely_empty()) << "no rings kept before a begin()";
  set_desc(0, d(kBuf, 100));
  ASSERT_TRUE(q.begin(reader_));
  EXPECT_FALSE(q.pop(&c_));
  EXPECT_EQ(q.surely_empty(), !ap());
  offer(0);
  EXPECT_FALSE(q.surely_empty()) << "a chain waits";
  ASSERT_TRUE(q.begin(reader_));
  ASSERT_TRUE(q.pop(&c_));
  q.push(0, 0);
  EXPECT_FALSE(q.surely_empty()) << "a used entry waits";
  q.publish();
  EXPECT_EQ(q.surely_empty(), !ap());
  // The same regions again: a new table, for which no ring was translated.
  ASSERT_EQ(synced([&] { return static_cast<int>(dev_->set_mem_table(regions())); }), 0);
  EXPECT_FALSE(q.surely_empty()) << "the kept rings belong to the old table";
  ASSERT_TRUE(q.begin(reader_));
  EXPECT_EQ(q.surely_empty(), !ap());
}

// surely_unchanged(): begin() would see what the last one saw, chains left
// waiting included (what request batching holds); never for an IOVA queue.
TEST_P(VirtqueueTest, SurelyUnchangedOnlyWhileAvailIdxStands) {
  Virtqueue q(*dev_, fresh(8));
  EXPECT_FALSE(q.surely_unchanged()) << "no rings kept before a begin()";
  set_desc(0, d(kBuf, 100));
  set_desc(1, d(kBuf + 0x100, 100));
  offer(0);
  ASSERT_TRUE(q.begin(reader_));
  EXPECT_EQ(q.available(), 1u);
  EXPECT_EQ(q.surely_unchanged(), !ap()) << "the chain begin() saw still waits, nothing new";
  EXPECT_FALSE(q.surely_empty()) << "but the queue is not empty";
  offer(1);
  EXPECT_FALSE(q.surely_unchanged()) << "avail.idx moved";
  ASSERT_TRUE(q.begin(reader_));
  EXPECT_EQ(q.available(), 2u);
  EXPECT_EQ(q.surely_unchanged(), !ap());
  ASSERT_TRUE(q.pop(&c_));
  q.push(c_.head, 0);
  EXPECT_FALSE(q.surely_unchanged()) << "a used entry waits";
  q.publish();
  EXPECT_EQ(q.surely_unchanged(), !ap()) << "one chain popped, avail.idx as begin() read it";
  ASSERT_EQ(synced([&] { return static_cast<int>(dev_->set_mem_table(regions())); }), 0);
  EXPECT_FALSE(q.surely_unchanged()) << "the kept rings belong to the old table";
}

INSTANTIATE_TEST_SUITE_P(Modes, VirtqueueTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) { return p.param ? "Iova" : "Gpa"; });

}  // namespace
}  // namespace vxlate::dataplane::virtqueue_test
