#!/usr/bin/env python3
"""Writes the engine_fuzz seed corpus (fuzz/corpus/engine/ by default).

Each seed is engine_fuzz's input format (see fuzz/engine_fuzz.cpp): one config
byte, then records [u8 readable_len][u8 sel][readable bytes]. Seeds are valid
driver-like sequences (ATTACH/MAP/UNMAP/DETACH/PROBE, bursts) and malformed
ones, so the fuzzer starts from every decoder branch and status.

Usage: fuzz/gen_corpus.py [OUTDIR]
"""
import os
import struct
import sys

ATTACH, DETACH, MAP, UNMAP, PROBE = 1, 2, 3, 4, 5
R, W, MMIO = 1, 2, 4
RW = R | W
PAGE = 0x1000
BURST = 0x80  # sel bit 7: joins a burst with the next record
# sel bits 0..2: writable size
W_TAIL, W_NONE, W_SHORT, W_PLUS1, W_PROBE, W_PROBE_SHORT, W_PROBE_LONG, W_16 = range(8)

# Config byte bits (make_config() in engine_fuzz.cpp).
PROBE_0, PROBE_24, PROBE_48, PROBE_512 = 0, 1, 2, 3
DOM_1_8, F_MMIO, GRANULE_64K, INPUT_32, RESV_EP1, TIGHT_CAPS = 4, 8, 16, 32, 64, 128


def attach(d, ep, flags=0, reserved=b"\0" * 4):
    return struct.pack("<B3xIII", ATTACH, d, ep, flags) + reserved


def detach(d, ep):
    return struct.pack("<B3xII8x", DETACH, d, ep)


def map_(d, start, end, phys, flags=RW):
    return struct.pack("<B3xIQQQI", MAP, d, start, end, phys, flags)


def unmap(d, start, end, reserved=b"\0" * 4):
    return struct.pack("<B3xIQQ", UNMAP, d, start, end) + reserved


def probe(ep):
    return struct.pack("<B3xI64x", PROBE, ep)


def pages(d, first, last):
    return map_(d, first * PAGE, (last + 1) * PAGE - 1, 0x100000000 + first * PAGE)


def unpages(d, first, last):
    return unmap(d, first * PAGE, (last + 1) * PAGE - 1)


def rec(readable, sel=W_TAIL):
    assert len(readable) < 256
    return bytes([len(readable), sel]) + readable


def seed(cfg, *records):
    return bytes([cfg]) + b"".join(records)


def burst(reqs, sel=W_TAIL):
    """All but the last record carry the burst bit."""
    return b"".join(rec(r, sel | (BURST if i + 1 < len(reqs) else 0)) for i, r in enumerate(reqs))


SEEDS = {
    # The strict-mode driver: attach, map, unmap, detach, one request at a time.
    "strict_map_unmap": seed(0, rec(attach(1, 0)), rec(map_(1, 0x10000, 0x10fff, 0x100000000)),
                             rec(unmap(1, 0x10000, 0x10fff)), rec(detach(1, 0))),
    # Lazy mode: 8 MAPs one by one, then 8 UNMAPs and a DETACH in one burst.
    "lazy_burst": seed(0, rec(attach(3, 2)), *[rec(pages(3, i, i)) for i in range(8)],
                       burst([unpages(3, i, i) for i in range(8)] + [detach(3, 2)])),
    # The spec's seven UNMAP examples, each in its own domain.
    "spec_unmap_examples": seed(0,
        rec(attach(10, 0)), rec(unpages(10, 0, 4)),
        rec(attach(11, 1)), rec(pages(11, 0, 9)), rec(unpages(11, 0, 9)),
        rec(attach(12, 2)), rec(pages(12, 0, 4)), rec(pages(12, 5, 9)), rec(unpages(12, 0, 9)),
        rec(attach(13, 3)), rec(pages(13, 0, 9)), rec(unpages(13, 0, 4)),
        rec(attach(14, 4)), rec(pages(14, 0, 4)), rec(pages(14, 5, 9)), rec(unpages(14, 0, 4)),
        rec(attach(15, 5)), rec(pages(15, 0, 4)), rec(unpages(15, 0, 9)),
        rec(attach(16, 6)), rec(pages(16, 0, 4)), rec(pages(16, 10, 14)), rec(unpages(16, 0, 14))),
    # PROBE: fits, writable one short, endpoint missing, longer writable.
    "probe": seed(PROBE_512, rec(probe(3), W_PROBE), rec(probe(3), W_PROBE_SHORT), rec(probe(0x10), W_PROBE),
                  rec(probe(15), W_PROBE_LONG), rec(probe(2), W_TAIL)),
    # A per-endpoint RESERVED region: MAP over it fails once ep 1 is attached;
    # PROBE of ep 1 needs 48 bytes.
    "resv_ep1": seed(RESV_EP1 | PROBE_48, rec(attach(4, 1)), rec(map_(4, 0x8000000, 0x8000fff, 0)),
                     rec(map_(4, 0xfee00000, 0xfee00fff, 0)), rec(probe(1), W_PROBE), rec(probe(2), W_PROBE)),
    # Caps: 2 domains, 4 mappings.
    "tight_caps": seed(TIGHT_CAPS, rec(attach(1, 1)), rec(attach(2, 2)), rec(attach(3, 3)),
                       *[rec(pages(1, i, i)) for i in range(5)], rec(unpages(1, 0, 0)), rec(pages(2, 0, 0))),
    # Default caps: the 9th domain and the 65th mapping get NOMEM.
    "caps_nomem": seed(0, *[rec(attach(d, d)) for d in range(9)],
                       burst([pages(0, i, i) for i in range(64)]), rec(pages(1, 0, 0))),
    # Domain range [1, 8], input range [1 MiB, 4 GiB): RANGE in check order.
    "ranges": seed(DOM_1_8 | INPUT_32, rec(attach(9, 0x10000)), rec(detach(0, 0)), rec(attach(8, 0)),
                   rec(map_(8, 0, PAGE - 1, 0)), rec(map_(8, 0x100000, 0x1000000ff, 0)),
                   rec(map_(8, 0x100001, 0x101fff, 0)), rec(map_(8, 0x100000, 0x100fff, 1)),
                   rec(map_(8, 0x200000, 0x1fffff, 0)), rec(unmap(8, 0, 0xffffffffffffffff))),
    # 64 KiB granule: a 4 KiB MAP is RANGE, a 64 KiB one is fine.
    "granule_64k": seed(GRANULE_64K, rec(attach(1, 0)), rec(map_(1, 0x10000, 0x10fff, 0)),
                        rec(map_(1, 0x10000, 0x1ffff, 0x20000, R)), rec(unmap(1, 0x10000, 0x17fff)),
                        rec(unmap(1, 0x10000, 0x1ffff))),
    # Bypass domains and kind mismatch; MMIO with and without F_MMIO.
    "bypass_mmio": seed(F_MMIO, rec(attach(2, 1, 1)), rec(attach(2, 0)), rec(map_(2, 0, PAGE - 1, 0)),
                        rec(unmap(2, 0, PAGE - 1)), rec(attach(1, 0)), rec(attach(1, 1, 1)),
                        rec(map_(1, 0, PAGE - 1, 0xfe000000, MMIO | R)), rec(map_(1, PAGE, 2 * PAGE - 1, 0, 0))),
    # Moving ATTACH, domain death and the driver's replay of every MAP.
    "moving_attach": seed(0, rec(attach(5, 1)), rec(attach(5, 2)), rec(pages(5, 0, 99)), rec(attach(6, 1)),
                          rec(detach(5, 2)), rec(attach(5, 2)), rec(pages(5, 0, 99)), rec(attach(6, 2)),
                          rec(detach(5, 2)), rec(attach(6, 2))),
    # A burst that detaches and re-attaches mid-way, then maps into the new domain.
    "burst_reattach": seed(0, burst([attach(7, 3), pages(7, 0, 511), detach(7, 3), attach(7, 3),
                                     pages(7, 0, 0), map_(7, 0x40000000, 0x7fffffff, 0x80000000),
                                     unmap(7, 0x40000000, 0x7fffffff), unpages(7, 0, 0)])),
    # Malformed: short, unknown type, writable missing or short, reserved
    # bits, unknown flags, end < start.
    "malformed": seed(0, rec(b""), rec(attach(1, 0)[:-1]), rec(attach(1, 0), W_NONE), rec(attach(1, 0), W_SHORT),
                      rec(b"\x00" * 20), rec(b"\x06" + b"\x00" * 63), rec(attach(1, 0, 0, b"\0\1\0\0")),
                      rec(attach(1, 0, 2)), rec(attach(1, 0), W_PLUS1), rec(map_(1, 0, PAGE - 1, 0, 8)),
                      rec(map_(1, PAGE, 0, 0)), rec(unmap(1, 0, PAGE - 1, b"\0\0\1\0"), W_16),
                      rec(probe(0)[:71]), rec(detach(1, 0) + b"\xff" * 30), rec(detach(1, 0))),
    # Records cut short by the end of input.
    "truncated": seed(PROBE_24, rec(attach(1, 0)), bytes([36, 0]) + map_(1, 0, PAGE - 1, 0)[:20]),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "engine")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
