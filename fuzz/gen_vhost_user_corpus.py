#!/usr/bin/env python3
"""Writes the vhost_user_fuzz seed corpus (fuzz/corpus/vhost_user/ by default).

Each seed is vhost_user_fuzz's input format (see fuzz/vhost_user_fuzz.cpp): a
config byte, then messages [ctl][12-byte header][one kind byte per
descriptor][payload]. The seeds are the conversations the port must serve,
with descriptor counts matching: QEMU 7.2 with a device IOTLB (connect-time
handshake for two queue pairs, the guest's features, vhost_dev_start of pair
0, its used-ring UPDATEs, data-plane bursts that miss, MISS service, wrapping
and size-0 INVALIDATEs, GET_VRING_BASE), DPDK 22.11 virtio-user in plain
mode (and its memory hot-plug), and a few hostile shapes next to each.

The payload layouts are vhost_user_wire.h's (packed little-endian, as
struct.pack "<" writes them).

Usage: fuzz/gen_vhost_user_corpus.py [OUTDIR]
"""
import os
import struct
import sys

# Requests (vhost_user_wire.h).
(GET_FEATURES, SET_FEATURES, SET_OWNER, RESET_OWNER, SET_MEM_TABLE, SET_LOG_BASE, SET_LOG_FD, SET_VRING_NUM,
 SET_VRING_ADDR, SET_VRING_BASE, GET_VRING_BASE, SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR,
 GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM, SET_VRING_ENABLE, SEND_RARP, NET_SET_MTU,
 SET_BACKEND_REQ_FD, IOTLB_MSG) = range(1, 23)
GET_MAX_MEM_SLOTS, ADD_MEM_REG, REM_MEM_REG = 36, 37, 38

V1, REPLY, NEED_REPLY = 0x1, 0x4, 0x8
NOFD = 0x100
MISS, UPDATE, INVALIDATE = 1, 2, 3
RO, WO, RW = 1, 2, 3

# Features (virtio_ring.h, vhost_user.h).
F_MRG_RXBUF = 1 << 15
F_MQ = 1 << 22
F_INDIRECT = 1 << 28
F_EVENT_IDX = 1 << 29
F_PROTOCOL = 1 << 30
F_VERSION_1 = 1 << 32
F_ACCESS_PLATFORM = 1 << 33
P_MQ, P_REPLY_ACK, P_BACKEND_REQ, P_STATUS = 1 << 0, 1 << 3, 1 << 5, 1 << 16

# ctl bits and descriptor kinds (vhost_user_fuzz.cpp).
BURST, SERVICE, CONNECTED = 0x10, 0x20, 0x40
SOCKET, EVENTFD = 0xFF, 0xFE

# Guest memory of the seeds: regions of REGION bytes (a memfd of REGION /
# 4096 pages); rings of 256 entries, ring r's desc/avail/used pages at
# RING_OFF + r * 0x4000 + {0, 0x1000, 0x2000} of the first region.
PAGE = 4096
REGION = 512 << 10
PAGES = REGION // PAGE
UADDR = 0x7F1200000000
IOVA = 0x10000000
RING_OFF = 0x10000
QSIZE = 256


def msg(request, payload=b"", flags=V1, kinds=(), ctl=0):
    assert len(kinds) <= 15
    return (bytes([ctl | len(kinds)]) + struct.pack("<III", request, flags, len(payload)) + bytes(kinds) + payload)


def u64(v):
    return struct.pack("<Q", v & (2**64 - 1))


def state(index, num):
    return struct.pack("<II", index, num)


def vring_addr(index, desc, avail, used, flags=0, log=0):
    return struct.pack("<IIQQQQ", index, flags, desc, used, avail, log)


def region(gpa, size, uaddr, offset=0):
    return struct.pack("<QQQQ", gpa, size, uaddr, offset)


def mem_table(regions, padding=0):
    return struct.pack("<II", len(regions), padding) + b"".join(regions)


def iotlb(type_, iova, size, uaddr=0, perm=RW):
    return struct.pack("<QQQBB6x", iova, size, uaddr, perm, type_)


def ring(r, part, base):
    return base + RING_OFF + r * 0x4000 + part * 0x1000


def qemu_connect(pairs=2):
    """vhost_user_backend_init + vhost_dev_init for each queue pair (notes 1.2)."""
    protocol = P_MQ | P_REPLY_ACK | P_BACKEND_REQ
    s = b""
    for qp in range(pairs):
        s += msg(GET_FEATURES) + msg(GET_PROTOCOL_FEATURES) + msg(SET_PROTOCOL_FEATURES, u64(protocol))
        if qp == 0:
            s += msg(GET_QUEUE_NUM) + msg(SET_BACKEND_REQ_FD, flags=V1 | NEED_REPLY, kinds=[SOCKET]) + msg(SET_OWNER)
        s += msg(GET_FEATURES)
        for r in (2 * qp, 2 * qp + 1):
            s += msg(SET_VRING_CALL, u64(r), kinds=[EVENTFD]) + msg(SET_VRING_ERR, u64(r), kinds=[EVENTFD])
    return s


def qemu_start(features, pairs=2):
    """The guest's features, then vhost_dev_start of pair 0 (notes 1.3)."""
    s = b"".join(msg(SET_VRING_ENABLE, state(r, 1 if r < 2 else 0)) for r in range(2 * pairs))
    s += msg(SET_FEATURES, u64(features))
    s += msg(SET_MEM_TABLE, mem_table([region(0, REGION, UADDR), region(1 << 32, REGION, UADDR + REGION)]),
             V1 | NEED_REPLY, [PAGES, PAGES])
    for r in (0, 1):
        s += (msg(SET_VRING_NUM, state(r, QSIZE)) + msg(SET_VRING_BASE, state(r, 0)) +
              msg(SET_VRING_ADDR, vring_addr(r, ring(r, 0, IOVA), ring(r, 1, IOVA), ring(r, 2, IOVA))) +
              msg(SET_VRING_KICK, u64(r), kinds=[EVENTFD]) + msg(SET_VRING_CALL, u64(r), kinds=[EVENTFD]))
    # vhost_dev_start's own UPDATE of each used ring, NEED_REPLY.
    for r in (0, 1):
        s += msg(IOTLB_MSG, iotlb(UPDATE, ring(r, 2, IOVA), PAGE, ring(r, 2, UADDR)), V1 | NEED_REPLY)
    return s


def qemu_misses():
    """Bursts that miss on desc/avail, MISS on the back-end channel, the UPDATEs
    that answer them, and a retry after kMissRetry."""
    s = msg(GET_FEATURES, ctl=BURST | SERVICE)
    for r in (0, 1):
        for part in (0, 1):
            s += msg(IOTLB_MSG, iotlb(UPDATE, ring(r, part, IOVA), PAGE, ring(r, part, UADDR), RO), V1 | NEED_REPLY,
                     ctl=BURST)
    s += msg(GET_FEATURES, ctl=BURST | SERVICE)
    return s


def qemu_stop():
    return msg(GET_VRING_BASE, state(0, 0)) + msg(GET_VRING_BASE, state(1, 0), ctl=BURST | SERVICE)


def virtio_user(queue_pairs=1, hotplug=False):
    """DPDK 22.11 virtio-user: plain mode, "GPA" = its virtual address."""
    s = msg(SET_OWNER) + msg(GET_FEATURES) + msg(GET_PROTOCOL_FEATURES)
    s += msg(SET_PROTOCOL_FEATURES, u64(P_MQ | P_REPLY_ACK)) + msg(GET_QUEUE_NUM)
    s += msg(SET_FEATURES, u64(F_VERSION_1 | F_PROTOCOL | F_MRG_RXBUF | F_INDIRECT | (F_MQ if queue_pairs > 1 else 0)))
    s += msg(SET_MEM_TABLE, mem_table([region(UADDR, REGION, UADDR)]), V1 | NEED_REPLY, [PAGES])
    rings = range(2 * queue_pairs)
    for r in rings:
        s += msg(SET_VRING_CALL, u64(r), kinds=[EVENTFD])
    for r in rings:
        s += (msg(SET_VRING_NUM, state(r, QSIZE)) + msg(SET_VRING_BASE, state(r, 0)) +
              msg(SET_VRING_ADDR, vring_addr(r, ring(r, 0, UADDR), ring(r, 1, UADDR), ring(r, 2, UADDR))) +
              msg(SET_VRING_KICK, u64(r), kinds=[EVENTFD]))
    for r in rings:
        s += msg(SET_VRING_ENABLE, state(r, 1), ctl=BURST)
    if hotplug:
        s += msg(SET_MEM_TABLE, mem_table([region(UADDR, REGION, UADDR), region(UADDR + REGION, REGION, UADDR + REGION)]),
                 V1 | NEED_REPLY, [PAGES, PAGES], ctl=BURST)
        s += msg(SET_MEM_TABLE, mem_table([region(UADDR + REGION, REGION, UADDR + REGION)]), V1 | NEED_REPLY, [PAGES],
                 ctl=BURST)
    s += msg(GET_VRING_BASE, state(0, 0)) + msg(GET_VRING_BASE, state(1, 0))
    return s


def seeds():
    s = {}
    qemu_features = F_VERSION_1 | F_ACCESS_PLATFORM | F_PROTOCOL | F_MRG_RXBUF | F_EVENT_IDX | F_MQ | F_INDIRECT
    cfg = bytes([0x01])  # 2 queue pairs, ACCESS_PLATFORM offered
    s["qemu_iommu"] = cfg + qemu_connect() + qemu_start(qemu_features) + qemu_misses() + qemu_stop()
    # Invalidations: a page, QEMU's upper IOMMU section (ends at 2^64), one
    # that wraps past 0, size 0 (everything), garbage uaddr/perm.
    s["qemu_invalidate"] = (cfg + qemu_connect() + qemu_start(qemu_features) + qemu_misses() +
                            msg(IOTLB_MSG, iotlb(INVALIDATE, ring(0, 0, IOVA), PAGE, 0xDEADBEEF, 0xA5),
                                V1 | NEED_REPLY, ctl=BURST | SERVICE) +
                            msg(IOTLB_MSG, iotlb(INVALIDATE, 0xFEF00000, 2**64 - 0xFEF00000), V1 | NEED_REPLY) +
                            msg(IOTLB_MSG, iotlb(INVALIDATE, ring(1, 0, IOVA), 2**64 - ring(1, 0, IOVA) + 0x5000),
                                V1 | NEED_REPLY, ctl=BURST) +
                            msg(IOTLB_MSG, iotlb(INVALIDATE, 0x1000, 0), V1 | NEED_REPLY, ctl=BURST | SERVICE) +
                            qemu_stop())
    # Hostile next to a good session: bad UPDATEs (perm, size 0, wrap, two
    # regions, outside memory), a bad table (overlap, past its file), wrong fd
    # counts, 32-bit ring indices, then a reconnect.
    bad = (msg(IOTLB_MSG, iotlb(UPDATE, 0x1000, PAGE, UADDR, 0), V1 | NEED_REPLY) +
           msg(IOTLB_MSG, iotlb(UPDATE, 0x1000, 0, UADDR), V1 | NEED_REPLY) +
           msg(IOTLB_MSG, iotlb(UPDATE, 2**64 - PAGE, 2 * PAGE, UADDR), V1 | NEED_REPLY) +
           msg(IOTLB_MSG, iotlb(UPDATE, 0x1000, 2 * PAGE, UADDR + REGION - PAGE), V1 | NEED_REPLY) +
           msg(IOTLB_MSG, iotlb(UPDATE, 0x1000, PAGE, UADDR - PAGE), V1 | NEED_REPLY) +
           msg(SET_MEM_TABLE, mem_table([region(0, REGION, UADDR), region(PAGE, REGION, UADDR + REGION)]),
               V1 | NEED_REPLY, [PAGES, PAGES]) +
           msg(SET_MEM_TABLE, mem_table([region(0, REGION, UADDR, PAGE)]), V1 | NEED_REPLY, [PAGES]) +
           msg(SET_MEM_TABLE, mem_table([region(0, REGION, UADDR)], 1), V1 | NEED_REPLY, [PAGES]) +
           msg(SET_MEM_TABLE, mem_table([region(0, REGION, UADDR)]), V1 | NEED_REPLY, [PAGES, PAGES]) +
           msg(SET_VRING_KICK, u64(0), kinds=[EVENTFD, EVENTFD]) +
           msg(SET_VRING_NUM, state(0x10000, QSIZE), V1 | NEED_REPLY) +
           msg(SET_VRING_NUM, state(0, 3), V1 | NEED_REPLY) +
           msg(SET_VRING_CALL, u64(0x10000 | NOFD), V1 | NEED_REPLY) +
           msg(SET_PROTOCOL_FEATURES, u64(1 << 9), V1 | NEED_REPLY) +
           msg(SET_FEATURES, u64(1 << 63 | F_VERSION_1), V1 | NEED_REPLY) +
           msg(GET_MAX_MEM_SLOTS, flags=V1 | NEED_REPLY))
    s["qemu_hostile"] = (cfg + qemu_connect() + qemu_start(qemu_features) + bad +
                         qemu_connect() + qemu_start(qemu_features) + qemu_misses() +
                         msg(ADD_MEM_REG, struct.pack("<Q", 0) + region(1 << 33, REGION, UADDR + 4 * REGION),
                             V1 | NEED_REPLY, [PAGES]) +
                         msg(SET_VRING_ADDR, vring_addr(0, 0, 0, 0), flags=REPLY | V1) +
                         qemu_connect(1) + qemu_start(qemu_features, 1) + msg(RESET_OWNER) + qemu_connect(1))
    # virtio-user, one and two queue pairs, memory hot-plug; then IOTLB
    # messages it must not send (no ACCESS_PLATFORM) and a SET_BACKEND_REQ_FD
    # without BACKEND_REQ.
    s["virtio_user"] = cfg + virtio_user()
    s["virtio_user_mq_hotplug"] = (cfg + virtio_user(2, hotplug=True) +
                                   msg(IOTLB_MSG, iotlb(UPDATE, 0x1000, PAGE, UADDR), V1 | NEED_REPLY) +
                                   msg(SET_BACKEND_REQ_FD, flags=V1 | NEED_REPLY, kinds=[SOCKET]) +
                                   msg(SET_VRING_ADDR, vring_addr(0, UADDR + REGION - 0x800, ring(0, 1, UADDR),
                                                                  ring(0, 2, UADDR)), ctl=BURST))
    # The port without ACCESS_PLATFORM offered, one queue pair: QEMU without a
    # vIOMMU (plain mode, ring addresses are QEMU's virtual addresses).
    s["qemu_plain"] = (bytes([0x10]) + qemu_connect(1).replace(u64(P_MQ | P_REPLY_ACK | P_BACKEND_REQ),
                                                               u64(P_REPLY_ACK | P_BACKEND_REQ)) +
                       b"".join(msg(SET_VRING_ENABLE, state(r, 1)) for r in (0, 1)) +
                       msg(SET_FEATURES, u64(F_VERSION_1 | F_PROTOCOL | F_MRG_RXBUF | F_EVENT_IDX)) +
                       msg(SET_MEM_TABLE, mem_table([region(0, REGION, UADDR)]), V1 | NEED_REPLY, [PAGES]) +
                       b"".join(msg(SET_VRING_NUM, state(r, QSIZE)) + msg(SET_VRING_BASE, state(r, 0)) +
                                msg(SET_VRING_ADDR, vring_addr(r, ring(r, 0, UADDR), ring(r, 1, UADDR),
                                                               ring(r, 2, UADDR))) +
                                msg(SET_VRING_KICK, u64(r), kinds=[EVENTFD], ctl=BURST) for r in (0, 1)) +
                       qemu_stop())
    return s


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus",
                                                             "vhost_user")
    os.makedirs(out, exist_ok=True)
    for name, data in seeds().items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
