#!/usr/bin/env python3
"""pcap_tool.py: writes and compares the pcap files of the vxlate-switch e2e tests.

  pcap_tool.py write OUT.pcap --count N [--seed S] [--min 60] [--max 1514]
                              [--jumbo K --jumbo-max 9000]
      N Ethernet frames (EtherType 0x88b5, local experimental): each carries a
      magic and its sequence number right after the Ethernet header, then
      random bytes; lengths uniform in [min, max] (the first and last frames
      are min and max), plus K frames (spread through the file) in
      (max, jumbo-max] with the last one exactly jumbo-max. Prints a summary.

  pcap_tool.py compare IN.pcap OUT.pcap [--ordered]
      Every frame of IN must be in OUT exactly once with identical bytes (by
      sequence number), and OUT must hold nothing else; with --ordered, in
      the same order. Prints what it found; exits 1 on any difference.

  pcap_tool.py count FILE.pcap
      Prints the number of frames.

Python 3 standard library only. Reads both microsecond and nanosecond pcap
files (DPDK's pcap PMD writes nanosecond ones) of either byte order.
"""
import argparse
import random
import struct
import sys

MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
ETHERTYPE = 0x88B5
TAG = b"VXSW"
HDR = 14 + len(TAG) + 4  # Ethernet header, tag, sequence number


def read_pcap(path):
    """Returns the list of frames (bytes) of a pcap file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise SystemExit(f"pcap_tool: {path}: {len(data)} bytes, not a pcap file (truncated, or never flushed)")
    for endian in ("<", ">"):
        magic = struct.unpack(endian + "I", data[:4])[0]
        if magic in (MAGIC_US, MAGIC_NS):
            break
    else:
        raise SystemExit(f"pcap_tool: {path}: bad magic {data[:4].hex()}")
    _, _, _, _, snaplen, linktype = struct.unpack(endian + "HHiIII", data[4:24])
    if linktype != LINKTYPE_ETHERNET:
        raise SystemExit(f"pcap_tool: {path}: link type {linktype}, not Ethernet")
    frames = []
    off = 24
    while off < len(data):
        if off + 16 > len(data):
            raise SystemExit(f"pcap_tool: {path}: truncated record header at byte {off}")
        _, _, caplen, origlen = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        if off + caplen > len(data):
            raise SystemExit(f"pcap_tool: {path}: truncated record at byte {off}")
        if caplen != origlen:
            raise SystemExit(f"pcap_tool: {path}: frame {len(frames)} captured {caplen} of {origlen} bytes "
                             f"(snaplen {snaplen})")
        frames.append(data[off:off + caplen])
        off += caplen
    return frames


def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", MAGIC_US, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET))
        for i, fr in enumerate(frames):
            f.write(struct.pack("<IIII", i // 1000000, i % 1000000, len(fr), len(fr)))
            f.write(fr)


def make_frame(seq, length, rng):
    dst = bytes([0x02, 0x00, 0x00, 0x00, 0x00, 0x02])
    src = bytes([0x02, 0x00, 0x00, 0x00, 0x00, 0x01])
    head = dst + src + struct.pack(">H", ETHERTYPE) + TAG + struct.pack(">I", seq)
    return head + rng.randbytes(length - len(head))


def seq_of(frame):
    if len(frame) < HDR or frame[12:14] != struct.pack(">H", ETHERTYPE) or frame[14:18] != TAG:
        return None
    return struct.unpack(">I", frame[18:22])[0]


def cmd_write(a):
    if a.min < HDR or a.max < a.min or (a.jumbo and a.jumbo_max <= a.max):
        raise SystemExit("pcap_tool: bad sizes")
    rng = random.Random(a.seed)
    total = a.count + a.jumbo
    jumbo_at = set(rng.sample(range(1, total - 1), a.jumbo)) if a.jumbo else set()
    frames = []
    normal = 0
    jumbos = 0
    for seq in range(total):
        if seq in jumbo_at:
            jumbos += 1
            length = a.jumbo_max if jumbos == a.jumbo else rng.randint(a.max + 1, a.jumbo_max)
        else:
            normal += 1
            length = a.min if normal == 1 else a.max if normal == a.count else rng.randint(a.min, a.max)
        frames.append(make_frame(seq, length, rng))
    write_pcap(a.out, frames)
    lens = [len(f) for f in frames]
    print(f"pcap_tool: wrote {a.out}: {len(frames)} frames ({a.count} of {a.min}..{a.max} B, {a.jumbo} jumbo "
          f"up to {a.jumbo_max} B), {sum(lens)} bytes, min {min(lens)} max {max(lens)}")


def cmd_compare(a):
    sent = read_pcap(a.input)
    got = read_pcap(a.output)
    want = {}
    for f in sent:
        s = seq_of(f)
        if s is None or s in want:
            raise SystemExit(f"pcap_tool: {a.input}: not a pcap_tool file (frame without or with a repeated sequence)")
        want[s] = f
    seen = {}
    foreign = mismatched = duplicates = 0
    problems = []
    for i, f in enumerate(got):
        s = seq_of(f)
        if s is None or s not in want:
            foreign += 1
            if len(problems) < 10:
                problems.append(f"OUT frame {i}: not from IN ({len(f)} B, starts {f[:24].hex()})")
            continue
        if s in seen:
            duplicates += 1
            if len(problems) < 10:
                problems.append(f"OUT frame {i}: sequence {s} again (first at OUT frame {seen[s]})")
            continue
        seen[s] = i
        if f != want[s]:
            mismatched += 1
            if len(problems) < 10:
                w = want[s]
                diff = next((k for k in range(min(len(f), len(w))) if f[k] != w[k]), min(len(f), len(w)))
                problems.append(f"OUT frame {i}: sequence {s} differs: {len(f)} B, sent {len(w)} B, "
                                f"first difference at byte {diff}")
    missing = sorted(set(want) - set(seen))
    if missing:
        problems.append(f"missing sequences ({len(missing)}): {missing[:20]}{' ...' if len(missing) > 20 else ''}")
    out_of_order = 0
    if a.ordered:
        order = [seq_of(f) for f in got if seq_of(f) in want]
        out_of_order = sum(1 for x, y in zip(order, order[1:]) if y < x)
        if out_of_order:
            problems.append(f"{out_of_order} frames arrived out of order")
    sent_bytes = sum(len(f) for f in sent)
    got_bytes = sum(len(f) for f in got)
    print(f"pcap_tool: IN {len(sent)} frames / {sent_bytes} B, OUT {len(got)} frames / {got_bytes} B: "
          f"{len(seen)} matched, {len(missing)} missing, {duplicates} duplicate, {mismatched} differing, "
          f"{foreign} foreign" + (f", {out_of_order} out of order" if a.ordered else ""))
    for p in problems:
        print("  " + p)
    ok = not (missing or duplicates or mismatched or foreign or out_of_order)
    print("pcap_tool: " + ("identical" if ok else "DIFFERENT"))
    return 0 if ok else 1


def cmd_count(a):
    print(len(read_pcap(a.file)))
    return 0


def main():
    p = argparse.ArgumentParser(description="pcap writer/comparer for the vxlate-switch e2e tests")
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("out")
    w.add_argument("--count", type=int, required=True)
    w.add_argument("--seed", type=int, default=1)
    w.add_argument("--min", type=int, default=60)
    w.add_argument("--max", type=int, default=1514)
    w.add_argument("--jumbo", type=int, default=0)
    w.add_argument("--jumbo-max", type=int, default=9000)
    c = sub.add_parser("compare")
    c.add_argument("input")
    c.add_argument("output")
    c.add_argument("--ordered", action="store_true")
    n = sub.add_parser("count")
    n.add_argument("file")
    a = p.parse_args()
    if a.cmd == "write":
        return cmd_write(a) or 0
    if a.cmd == "compare":
        return cmd_compare(a)
    return cmd_count(a)


if __name__ == "__main__":
    sys.exit(main())
