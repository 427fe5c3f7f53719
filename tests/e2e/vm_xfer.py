#!/usr/bin/env python3
"""vm_xfer.py: the host end of scripts/e2e.sh's bulk transfers with the guest.

  vm_xfer.py --lines N [--listen PORT] [--peer IP --peer-port PORT] [--timeout S]

The payload is `seq 1 N` ("1\\n2\\n...N\\n"), what the guest's busybox makes.
First (--listen) it takes one TCP connection on PORT (the guest's `seq 1 N |
nc HOST PORT`), reads it to its end and prints
  XFER recv port=P bytes=B md5=M expect_bytes=E expect_md5=X ok=0|1
then (--peer-port) it connects to the guest's `nc -l -p PORT`, retrying until
it listens, sends the payload, half-closes, drains and prints
  XFER send port=P bytes=B md5=M rc=0|1
Every step is bounded by --timeout seconds (a failed step prints rc/ok 0 and
the reason). "XFER ready" once listening. Python 3 standard library only.
"""
import argparse
import hashlib
import socket
import sys
import time


def say(*a):
    print(*a, flush=True)


def payload(n):
    return b"".join(b"%d\n" % i for i in range(1, n + 1))


def recv_one(port, want, deadline):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(1)
    say("XFER ready port=%d" % port)
    h = hashlib.md5()
    n = 0
    why = ""
    try:
        ls.settimeout(max(1.0, deadline - time.monotonic()))
        c, peer = ls.accept()
        say("XFER accepted from %s:%d" % peer)
        with c:
            while True:
                c.settimeout(max(1.0, deadline - time.monotonic()))
                b = c.recv(1 << 16)
                if not b:
                    break
                h.update(b)
                n += len(b)
    except OSError as e:
        why = " error=%s" % type(e).__name__
    finally:
        ls.close()
    md5 = h.hexdigest()
    ok = int(not why and n == len(want) and md5 == hashlib.md5(want).hexdigest())
    say("XFER recv port=%d bytes=%d md5=%s expect_bytes=%d expect_md5=%s ok=%d%s"
        % (port, n, md5, len(want), hashlib.md5(want).hexdigest(), ok, why))
    return ok


def send_one(ip, port, data, deadline):
    tries = 0
    while True:
        tries += 1
        try:
            s = socket.create_connection((ip, port), timeout=3)
            break
        except OSError as e:
            if time.monotonic() > deadline:
                say("XFER send port=%d bytes=0 md5=- rc=1 error=connect:%s tries=%d"
                    % (port, type(e).__name__, tries))
                return 0
            time.sleep(0.3)
    why = ""
    try:
        with s:
            s.settimeout(max(1.0, deadline - time.monotonic()))
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            while s.recv(1 << 16):
                pass
    except OSError as e:
        why = " error=%s" % type(e).__name__
    rc = 1 if why else 0
    say("XFER send port=%d bytes=%d md5=%s rc=%d tries=%d%s"
        % (port, len(data), hashlib.md5(data).hexdigest(), rc, tries, why))
    return int(rc == 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, required=True)
    ap.add_argument("--listen", type=int, default=0)
    ap.add_argument("--peer", default="")
    ap.add_argument("--peer-port", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()
    data = payload(a.lines)
    ok = 1
    if a.listen:
        ok &= recv_one(a.listen, data, time.monotonic() + a.timeout)
    if a.peer_port:
        ok &= send_one(a.peer, a.peer_port, data, time.monotonic() + a.timeout)
    say("XFER done ok=%d" % ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
