#!/usr/bin/env python3
"""Writes the virtqueue_fuzz seed corpus (fuzz/corpus/virtqueue/ by default).

Each seed is virtqueue_fuzz's input format (see fuzz/virtqueue_fuzz.cpp): an
11-byte header, then steps [op][args]. The seeds are a driver's ordinary
traffic (direct and indirect chains, the virtio-iommu queues) and the hostile
shapes the bounded-work promise is about: loops, zero-length runs, giant
lengths, avail index jumps and races, IOVA holes, overlapping rings; and
chains that miss in window B with hold_on_miss and park_on_miss: held in
their ring, or parked while the chains behind them go on, walked again after
a MAP, given back, completed by complete_parked().

Usage: fuzz/gen_virtqueue_corpus.py [OUTDIR]
"""
import os
import struct
import sys

# Header bits (Run::Run in virtqueue_fuzz.cpp).
INDIRECT, EVENT_IDX, AP, CUSTOM = 0x10, 0x20, 0x40, 0x80
SWAPPED, SELF_CONTROL, BYTES_X256, DESCS_X16, HOLD_ON_MISS, PARK_ON_MISS = 1, 2, 4, 8, 0x10, 0x20
SIZE_0, SIZE_6, SIZE_32768 = 12, 13, 14

# Steps.
WRITE, DESC, AVAIL, AVAIL_IDX, BEGIN, POP, UNPOP, END, KICKS, MAP, UNMAP, ATTACH, POLL = range(13)
COMPLETE_PARKED = 15
PARKED_MISSES = 15 | 0x10  # room: (op >> 5), 0: one per parked chain
# Descriptor flags and address windows (DESC's fl byte).
N, W, I = 1, 2, 4
WIN_MEM, WIN_B, WIN_WRAP, WIN_ZERO = 0x00, 0x10, 0x20, 0x30
# DESC targets.
QUEUE, REQQ, EVQ, SLOT = 0, 1, 2, 3
# POP actions.
PUSH_MIN, REFUSE, HOLD, PUSH_ALL = 0, 1, 2, 3
TOUCH, DRAIN = 4, 8
ALL = 0xFFFF  # BEGIN: kMaxQueueSize
WIN_A = 0x8000  # MAP/UNMAP page: window A

BUF = 0x8000  # buffer chunks (gpa offset)
TABLE = 0xC000  # indirect tables in these seeds
READ, WRITEP = 1, 2


def header(size_log2, h0=0, h1=0, max_bytes=0, max_descs=0, layout=(0, 0, 0)):
    return bytes([size_log2 | h0, h1]) + struct.pack("<HB", max_bytes, max_descs) + struct.pack("<HHH", *layout)


def write(off, data):
    assert len(data) < 256
    return struct.pack("<BHB", WRITE, off, len(data)) + data


def desc(i, aoff, length, flags=0, nxt=0, tgt=QUEUE, win=WIN_MEM):
    return struct.pack("<BBHBHIH", DESC, tgt, i, flags | win, aoff, length, nxt)


def slot_desc(off, aoff, length, flags=0, nxt=0, win=WIN_MEM):
    """A descriptor at gpa offset `off` (16-byte aligned): indirect tables."""
    assert off % 16 == 0
    return desc(off // 16, aoff, length, flags, nxt, SLOT, win)


def avail(head, q=0):
    return struct.pack("<BBH", AVAIL, q, head)


def avail_idx(delta, q=0):
    return struct.pack("<BBH", AVAIL_IDX, q, delta)


def begin(budget=ALL):
    return struct.pack("<BH", BEGIN, budget)


def pop(act=PUSH_ALL | DRAIN, arg=0):
    return struct.pack("<BBH", POP, act, arg)


def unpop(n):
    return bytes([UNPOP, n])


def give_back(n, first=False):
    """UNPOP on a queue that parks: the last (or first) n chains held."""
    return bytes([UNPOP, (0x80 if first else 0) | n])


def end():
    return bytes([END])


def kicks(enable):
    return bytes([KICKS, 1 if enable else 0])


def map_(page, npages, gpa_page, perm=READ | WRITEP, dom=0):
    return struct.pack("<BBHBBB", MAP, dom, page, npages - 1, gpa_page, perm)


def unmap(page, npages, dom=0):
    return struct.pack("<BBHB", UNMAP, dom, page, npages - 1)


def attach(dom=0, detach=False):
    return bytes([ATTACH, (0x80 if detach else 0) | dom])


def poll():
    return bytes([POLL])


def complete_parked():
    return bytes([COMPLETE_PARKED])


def parked_misses(room=0):
    return bytes([PARKED_MISSES | room << 5])


def burst(budget=ALL, act=PUSH_ALL | DRAIN, arg=0):
    return begin(budget) + pop(act, arg) + end()


def seeds():
    s = {}
    # Good direct chains: readable then writable, offered twice.
    s["direct_good"] = (header(3) + desc(0, BUF, 64, N, 1) + desc(1, BUF + 0x1000, 128, W) +
                        desc(2, BUF + 0x2000, 0x800, W) + avail(0) + avail(2) +
                        burst(act=PUSH_ALL | DRAIN | TOUCH, arg=0x5A) +
                        avail(0) + begin(1) + pop(PUSH_MIN, 16) + pop() + end())
    # Indirect tables: a good one, one straddling two swapped chunks, a nested one.
    table = (slot_desc(TABLE, BUF, 32, N, 1) + slot_desc(TABLE + 16, BUF + 0x100, 64, N | W, 2) +
             slot_desc(TABLE + 32, BUF + 0x200, 64, W))
    s["indirect"] = (header(4, INDIRECT) + table + desc(0, TABLE, 48, I) + desc(1, TABLE, 48, I | N, 0) +
                     desc(2, BUF + 0x1ff0, 0x40, W) + avail(0) + avail(1) + avail(2) + burst())
    s["indirect_swapped_ap"] = (header(4, INDIRECT | AP, SWAPPED) + table +
                                desc(0, BUF + 0x0ff0, 48, I) + desc(1, BUF + 0x0ff8, 0x20, N, 2) +
                                desc(2, BUF + 0x1ff0, 0x40, W) + avail(0) + avail(1) + burst())
    # Loops: a direct ring of zero-length descriptors, an indirect table that loops.
    loop = b"".join(desc(i, BUF, 0, N, (i + 1) % 8) for i in range(8))
    s["loop_direct"] = header(3) + loop + avail(0) + avail(3) + avail(5) + burst(2) + burst()
    s["loop_indirect"] = (header(3, INDIRECT) + slot_desc(TABLE, BUF, 0, N, 1) + slot_desc(TABLE + 16, BUF, 0, N, 0) +
                          desc(0, TABLE, 32, I) + avail(0) + burst())
    # Zero-length runs up to the per-chain descriptor cap, then a real buffer.
    runs = b"".join(desc(i, BUF, 0, N, i + 1) for i in range(31)) + desc(31, BUF, 16, W)
    s["zero_len_runs"] = header(5, 0, 0, 0, 8) + runs + avail(0) + avail(20) + burst()
    # Giant lengths: readable over the limit (refused), writable cut to it.
    s["giant_lengths"] = (header(3, 0, BYTES_X256, 16) + desc(0, 0, 0xFFFFFFFF) +
                          desc(1, BUF, 0xFFFFFFFF, W) + desc(2, 0xFFF0, 0xFFFFFFFF, W, 0, QUEUE, WIN_WRAP) +
                          avail(0) + avail(1) + avail(2) + burst(act=PUSH_ALL | DRAIN | TOUCH, arg=1))
    # Avail index: jumps by exactly the size (fine), past it (broken); a race:
    # the driver offers more mid-burst, which waits for the next burst.
    s["avail_jump"] = (header(3) + desc(0, BUF, 8, W) + avail_idx(8) + burst() + avail_idx(9) + burst() + burst())
    s["avail_race"] = (header(3, EVENT_IDX) + desc(0, BUF, 8, W) + desc(1, BUF + 8, 8, W) + avail(0) + begin() +
                       avail(1) + pop() + kicks(True) + pop() + end() + begin() + kicks(False) + pop() +
                       desc(1, BUF, 0, I) + end())
    # Holding and unpop: hold three, give two back, pop them again.
    s["unpop"] = (header(3) + desc(0, BUF, 8, W) + desc(1, BUF + 8, 8, W) + desc(2, BUF + 16, 8, W) + avail(0) +
                  avail(1) + avail(2) + begin() + pop(HOLD) + pop(HOLD) + pop(HOLD) + unpop(2) + pop(REFUSE) +
                  pop(PUSH_MIN | DRAIN, 4) + end())
    # ACCESS_PLATFORM: window B with a read-only page, a hole and a page past
    # guest memory; buffers across them; then the endpoint leaves its domain.
    s["ap_holes"] = (header(4, AP, SELF_CONTROL) + map_(0, 2, 8) + map_(2, 1, 9, READ) + map_(4, 1, 0x40) +
                     desc(0, 0x0F00, 0x200, N, 1, win=WIN_B) + desc(1, 0x1F00, 0x100, W, 0, win=WIN_B) +
                     desc(2, 0x2000, 0x100, 0, 0, win=WIN_B) + desc(3, 0x3000, 0x10, W, 0, win=WIN_B) +
                     desc(4, 0x4000, 0x10, W, 0, win=WIN_B) + b"".join(avail(h) for h in range(5)) + burst() +
                     unmap(0, 2) + avail(0) + burst() + attach(0, True) + avail(4) + burst() + attach(0) +
                     unmap(WIN_A, 16) + avail(4) + burst())
    # The virtio-iommu queues: ATTACH and MAP through the request queue, fault
    # events from a data queue translation into event queue buffers.
    att = struct.pack("<B3xIII4x", 1, 1, 1, 0)
    mp = struct.pack("<B3xIQQQI", 3, 1, 2 << 32, (2 << 32) + 0xFFF, 0x40000000 + BUF, 3)
    s["iommu_queues"] = (header(3, AP) + write(BUF + 0x100, att) + write(BUF + 0x200, mp) +
                         desc(0, BUF + 0x100, len(att), N, 1, REQQ) + desc(1, BUF + 0x300, 4, W, 0, REQQ) +
                         desc(2, BUF + 0x200, len(mp), N, 3, REQQ) + desc(3, BUF + 0x304, 4, W, 0, REQQ) +
                         avail(0, 1) + avail(2, 1) + poll() +
                         desc(0, 0x0000, 0x10, W, 0, win=WIN_B) + desc(1, 0x1000, 0x10, W, 0, win=WIN_B) +
                         avail(0) + avail(1) + burst() +
                         desc(0, BUF + 0x400, 16, W, 0, EVQ) + desc(1, BUF + 0x500, 24, W, 0, EVQ) +
                         avail(0, 2) + avail(1, 2) + poll())
    # Swapped chunks and a hole: one buffer per chunk boundary, a chain of many.
    many = b"".join(desc(i, BUF + 0xF80 + 0x1000 * (i % 3), 0x100, W | N, i + 1) for i in range(40)) + desc(40, BUF, 4, W)
    s["swapped_many_segs"] = header(6, 0, SWAPPED) + many + avail(0) + avail(39) + burst() + desc(0, BUF + 0x5000, 4, W) + avail(0) + burst()
    # Custom layout: used ring over the descriptor table, avail ring misaligned.
    s["overlap_rings"] = (header(3, CUSTOM, 0, 0, 0, (0x100, 0x300, 0x100)) + desc(0, BUF, 8, W) + desc(1, BUF, 8) +
                          avail(0) + avail(1) + burst() + burst())
    s["misaligned_rings"] = header(3, CUSTOM | EVENT_IDX, 0, 0, 0, (0x108, 0x301, 0x402)) + avail(0) + burst()
    s["bad_sizes"] = header(SIZE_6) + avail(0) + burst()
    # 1024 entries: a chain stopped by kMaxChainDescs (a self-loop), and one
    # that reaches the cap inside a 1024-entry indirect table.
    s["big_queue"] = (header(10, INDIRECT) + desc(5, BUF, 0, N, 5) + desc(6, BUF, 0, N, 7) +
                      desc(7, TABLE, 16 * 1024, I) + slot_desc(TABLE, BUF, 0, N, 0) + avail(5) + avail(6) + burst())
    # hold_on_miss without parking: a receive chain whose buffer misses in
    # window B (empty) waits in its ring, and the chain behind it too, until a
    # MAP of that page.
    miss0 = desc(0, 0x0000, 0x100, W, 0, win=WIN_B)
    parks = HOLD_ON_MISS | PARK_ON_MISS
    good12 = desc(1, BUF, 64, W) + desc(2, BUF + 0x100, 64, W)
    s["hold_miss"] = (header(3, AP, HOLD_ON_MISS) + miss0 + good12 + avail(0) + avail(1) + burst() + burst() +
                      map_(0, 1, 8) + burst() + avail(2) + burst())
    # Parking: the missing chain is set aside, the two behind it complete; it
    # is not walked again until a MAP (of another page first: it misses
    # again), then completes, out of order.
    s["park_map"] = (header(3, AP, parks) + miss0 + good12 + avail(0) + avail(1) + avail(2) + burst() +
                     parked_misses() + burst() + map_(4, 1, 9) + burst() + map_(0, 1, 8) + avail(1) + burst())
    # Giving back: hold what pop() returns (the chain parked before it
    # included, once a MAP made it translate), give back the last one and then
    # the first two, pop them again in the same burst.
    s["park_give_back"] = (header(3, AP, parks) + miss0 + good12 + avail(0) + avail(1) + avail(2) + burst() +
                           map_(0, 1, 8) + avail(1) + avail(2) + begin() + pop(HOLD | DRAIN) + give_back(1) +
                           pop(HOLD) + give_back(2, True) + pop(PUSH_ALL | DRAIN) + end())
    # complete_parked(): two chains parked (a miss in window B, a write to a
    # read-only page), the queue stopped, their used entries written; then
    # the ring goes on.
    ro = map_(2, 1, 9, READ) + desc(3, 0x2000, 0x40, W, 0, win=WIN_B)
    s["park_complete"] = (header(3, AP | EVENT_IDX, parks) + miss0 + good12 + ro + avail(0) + avail(3) +
                          avail(1) + burst() + parked_misses(1) + parked_misses() + complete_parked() +
                          avail(0) + avail(2) + burst() + complete_parked())
    # A full FIFO (size 2): the third missing chain is held in its ring; after
    # a MAP the parked ones and the held one all complete, the budget of one
    # burst spent on walking them again first.
    s["park_full"] = (header(1, AP, parks) + desc(0, 0x0000, 0x10, W, 0, win=WIN_B) +
                      desc(1, 0x0100, 0x10, W, 0, win=WIN_B) + avail(0) + avail(1) + burst() + avail(0) + burst() +
                      burst() + map_(0, 1, 8) + burst(2) + burst() + burst())
    # Size 2, head 0 posted twice while it misses: the FIFO is full, so the
    # two chains given back find no room (completed empty, as loops); with
    # the used ring unmapped from window A complete_parked() writes nothing,
    # after a MAP of it again it completes both.
    s["park_overflow"] = (header(1, AP, parks) + desc(0, 0x0000, 0x10, W, 0, win=WIN_B) +
                          desc(1, BUF, 0x10, W) + avail(0) + avail(0) + burst() + avail(1) + avail(1) + begin() +
                          pop(HOLD | DRAIN) + give_back(2) + end() + unmap(WIN_A, 16) + complete_parked() +
                          map_(WIN_A | 5, 3, 5) + complete_parked())
    # A parked chain the guest rewrites into a bad one (INDIRECT without the
    # feature): walked again after a MAP, completed empty.
    s["park_turns_bad"] = (header(3, AP, parks) + miss0 + good12 + avail(0) + avail(1) + burst() +
                           desc(0, TABLE, 16, I) + map_(6, 1, 10) + avail(2) + burst())
    return s


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "virtqueue")
    os.makedirs(out, exist_ok=True)
    for name, data in seeds().items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
