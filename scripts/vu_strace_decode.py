#!/usr/bin/env python3
"""vu_strace_decode.py QEMU.STRACE: decodes the vhost-user messages in an
`strace -f -tt -xx -s 4096 -e trace=sendmsg,recvmsg` of QEMU (vm_run.sh with
VXLATE_VM_STRACE=1 writes one) into one line per message:

  TIME FD DIR REQUEST flags=.. size=.. [fds=N] decoded-payload

DIR is "fe>" for what QEMU sent and "<be" for what it received. On the main
socket QEMU sends requests and receives replies; on the backend channel
(SET_SLAVE_REQ_FD's socket) it receives requests (IOTLB MISS) and sends
replies. Byte streams are reassembled per fd and direction (QEMU reads a
header and its payload with separate recvmsg calls).

--summary prints counts per (channel, direction, request[, iotlb type]) instead.
Note: QEMU 7.2 leaves uaddr and perm of an INVALIDATE uninitialised (stack
garbage shows up there); only iova and size mean anything.
"""
import re
import struct
import sys
from collections import Counter, defaultdict

MAIN = {
    1: "GET_FEATURES", 2: "SET_FEATURES", 3: "SET_OWNER", 4: "RESET_OWNER", 5: "SET_MEM_TABLE",
    6: "SET_LOG_BASE", 7: "SET_LOG_FD", 8: "SET_VRING_NUM", 9: "SET_VRING_ADDR", 10: "SET_VRING_BASE",
    11: "GET_VRING_BASE", 12: "SET_VRING_KICK", 13: "SET_VRING_CALL", 14: "SET_VRING_ERR",
    15: "GET_PROTOCOL_FEATURES", 16: "SET_PROTOCOL_FEATURES", 17: "GET_QUEUE_NUM", 18: "SET_VRING_ENABLE",
    19: "SEND_RARP", 20: "NET_SET_MTU", 21: "SET_SLAVE_REQ_FD", 22: "IOTLB_MSG", 23: "SET_VRING_ENDIAN",
    24: "GET_CONFIG", 25: "SET_CONFIG", 31: "GET_INFLIGHT_FD", 32: "SET_INFLIGHT_FD", 34: "RESET_DEVICE",
    36: "GET_MAX_MEM_SLOTS", 37: "ADD_MEM_REG", 38: "REM_MEM_REG", 39: "SET_STATUS", 40: "GET_STATUS",
}
BACKEND = {1: "BACKEND_IOTLB_MSG", 2: "CONFIG_CHANGE_MSG", 3: "VRING_HOST_NOTIFIER_MSG"}
IOTLB_TYPE = {1: "MISS", 2: "UPDATE", 3: "INVALIDATE", 4: "ACCESS_FAIL"}
PERM = {0: "none", 1: "RO", 2: "WO", 3: "RW"}

LINE = re.compile(r'^(\d+)\s+(\S+)\s+(sendmsg|recvmsg)\((\d+), \{(.*)\}, [^)]*\)\s+=\s+(-?\d+)')
IOV = re.compile(r'iov_base="((?:\\x[0-9a-f]{2})*)"')
FDS = re.compile(r'SCM_RIGHTS, cmsg_data=\[([^\]]*)\]')


def decode_payload(chan, req, flags, body):
    if flags & 0x4:  # a reply
        if chan == "main" and req == 11 and len(body) == 8:
            i, n = struct.unpack("<II", body)
            return "index=%u num=%u" % (i, n)
        if len(body) == 8:
            return "u64=%#x" % struct.unpack("<Q", body)[0]
        return ""
    if (chan == "main" and req == 22) or (chan == "backend" and req == 1):
        if len(body) >= 26:
            iova, size, uaddr, perm, typ = struct.unpack("<QQQBB", body[:26])
            return "%s iova=%#x size=%#x uaddr=%#x perm=%s" % (
                IOTLB_TYPE.get(typ, typ), iova, size, uaddr, PERM.get(perm, perm))
    if chan != "main":
        return ""
    if req in (8, 10, 11, 18) and len(body) >= 8:
        i, n = struct.unpack("<II", body[:8])
        return "index=%u num=%u" % (i, n)
    if req in (12, 13, 14) and len(body) >= 8:
        u = struct.unpack("<Q", body[:8])[0]
        return "index=%u%s" % (u & 0xff, " NOFD" if u & 0x100 else "")
    if req == 9 and len(body) >= 40:
        i, fl, d, u, a, lg = struct.unpack("<IIQQQQ", body[:40])
        return "index=%u flags=%#x desc=%#x used=%#x avail=%#x log=%#x" % (i, fl, d, u, a, lg)
    if req in (1, 2, 15, 16, 17, 20) and len(body) >= 8:
        return "u64=%#x" % struct.unpack("<Q", body[:8])[0]
    if req == 5 and len(body) >= 8:
        n = struct.unpack("<I", body[:4])[0]
        regs = []
        for k in range(n):
            off = 8 + 32 * k
            if off + 32 > len(body):
                break
            gpa, sz, ua, mo = struct.unpack("<QQQQ", body[off:off + 32])
            regs.append("gpa=%#x size=%#x uaddr=%#x off=%#x" % (gpa, sz, ua, mo))
        return "nregions=%u %s" % (n, "; ".join(regs))
    return ""


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    summary = "--summary" in sys.argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    streams = defaultdict(bytearray)   # (fd, dir) -> pending bytes
    pend_fds = defaultdict(int)
    first_t = {}
    main_fd = None
    out = []
    for line in open(args[0], errors="replace"):
        m = LINE.match(line)
        if not m:
            continue
        _, t, call, fd, msg, ret = m.groups()
        fd = int(fd)
        if int(ret) <= 0:
            continue
        data = b"".join(bytes.fromhex(s.replace("\\x", "")) for s in IOV.findall(msg))[:int(ret)]
        key = (fd, "fe>" if call == "sendmsg" else "<be")
        if main_fd is None and call == "sendmsg":
            main_fd = fd  # QEMU's first vhost-user message is GET_FEATURES on the main socket
        if not streams[key]:
            first_t[key] = t
        streams[key] += data
        f = FDS.search(msg)
        if f:
            pend_fds[key] += len([x for x in f.group(1).split(",") if x.strip()])
        buf = streams[key]
        while len(buf) >= 12:
            req, flags, size = struct.unpack("<III", bytes(buf[:12]))
            if len(buf) < 12 + size:
                break
            body = bytes(buf[12:12 + size])
            del buf[:12 + size]
            chan = "main" if fd == main_fd else "backend"
            names = MAIN if chan == "main" else BACKEND
            name = names.get(req, "REQ%u" % req)
            nf = pend_fds.pop(key, 0)
            dec = decode_payload(chan, req, flags, body)
            out.append((first_t.get(key, t), fd, key[1], chan, name, flags, size, nf, dec))
            first_t[key] = t
    if summary:
        c = Counter()
        for t, fd, d, chan, name, flags, size, nf, dec in out:
            kind = "reply" if flags & 0x4 else "req"
            sub = dec.split()[0] if name.endswith("IOTLB_MSG") and kind == "req" and dec else ""
            extra = " NOFD" if "NOFD" in dec else ""
            c[(chan, d, name, kind, sub + extra)] += 1
        for k, v in sorted(c.items()):
            print("%5u %-7s %s %-22s %-5s %s" % (v, k[0], k[1], k[2], k[3], k[4]))
        return
    for t, fd, d, chan, name, flags, size, nf, dec in out:
        print("%s fd=%u %s %-7s %-22s flags=%#x size=%u%s %s" % (
            t, fd, d, chan, name, flags, size, " fds=%u" % nf if nf else "", dec))


if __name__ == "__main__":
    main()
