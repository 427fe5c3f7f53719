#!/usr/bin/env python3
"""e2e_stats.py: reads the counters of the vxlate-switch e2e tests' logs.

  e2e_stats.py testpmd LOG   dpdk-testpmd's output, as one JSON object:
      nic:     {port: {rx_packets, rx_missed, rx_bytes, rx_errors, rx_nombuf,
                       tx_packets, tx_errors, tx_bytes}}  (the last
                       "show port stats" / --stats-period screen of each port)
      fwd:     [{port: {rx_packets, rx_dropped, tx_packets, tx_dropped}}, ...]
                       (one entry per "stop": the forward statistics)
      streams: [[{rx_port, rx_queue, tx_port, tx_queue, rx_packets,
                  tx_packets, tx_dropped}, ...], ...]  (per "stop", when
                       testpmd prints per-stream statistics)
      xstats:  {port: {name: value}}  (the last "show port xstats")
  e2e_stats.py switch LOG    vxlate-switch's final --json object.

Imported by the tests' inline checks (sys.path has this directory): the
functions testpmd(path) and switch(path) return the same as dicts. Python 3
standard library only.
"""
import json
import re
import sys

# testpmd's cmdline writes its prompt (and echoes the command) straight to
# the terminal; the tests line-buffer the rest, so a prompt only ever starts
# a line. Strip it, and what it echoed, from there.
PROMPT = re.compile(r"^(testpmd> )+")

NIC_HEAD = re.compile(r"NIC statistics for port (\d+)")
FWD_HEAD = re.compile(r"Forward statistics for port (\d+)")
STREAM_HEAD = re.compile(r"Forward Stats for RX Port=\s*(\d+)/Queue=\s*(\d+) -> TX Port=\s*(\d+)/Queue=\s*(\d+)")
XSTATS_HEAD = re.compile(r"NIC extended statistics for port (\d+)")
ACC_HEAD = re.compile(r"Accumulated forward statistics for all ports")
KV = re.compile(r"([A-Za-z][A-Za-z_-]*):\s+(\d+)")


def _lines(path):
    with open(path, errors="replace") as f:
        for raw in f:
            line = raw.rstrip("\n")
            m = PROMPT.match(line)
            if m:
                line = line[m.end():]
            yield line


def _kv(line):
    return {k.lower().replace("-", "_"): int(v) for k, v in KV.findall(line)}


def testpmd(path):
    nic, xstats = {}, {}
    fwd, streams = [], []
    cur_fwd, cur_streams = {}, []
    block = None  # (kind, key)
    for line in _lines(path):
        m = NIC_HEAD.search(line)
        if m:
            block = ("nic", int(m.group(1)))
            nic[block[1]] = {}
            continue
        m = FWD_HEAD.search(line)
        if m:
            block = ("fwd", int(m.group(1)))
            cur_fwd[block[1]] = {}
            continue
        m = STREAM_HEAD.search(line)
        if m:
            s = dict(zip(("rx_port", "rx_queue", "tx_port", "tx_queue"), map(int, m.groups())))
            cur_streams.append(s)
            block = ("stream", s)
            continue
        m = XSTATS_HEAD.search(line)
        if m:
            block = ("xstats", int(m.group(1)))
            xstats[block[1]] = {}
            continue
        if ACC_HEAD.search(line) or "Done." in line and (cur_fwd or cur_streams):
            # The end of one stop's statistics.
            if cur_fwd or cur_streams:
                fwd.append(cur_fwd)
                streams.append(cur_streams)
                cur_fwd, cur_streams = {}, []
            block = None
            continue
        if block is None:
            continue
        kind, key = block
        if kind == "xstats":
            m = re.match(r"^\s*([a-z0-9_]+):\s+(\d+)\s*$", line)
            if m:
                xstats[key][m.group(1)] = int(m.group(2))
            elif line.strip():
                block = None
            continue
        if kind == "nic" and ("Throughput" in line or line.strip().startswith("####")):
            block = None
            continue
        kv = _kv(line)
        if not kv:
            continue
        if kind == "nic":
            nic[key].update(kv)
        elif kind == "fwd":
            cur_fwd[key].update(kv)
        elif kind == "stream":
            key.update(kv)
    if cur_fwd or cur_streams:
        fwd.append(cur_fwd)
        streams.append(cur_streams)
    return {"nic": nic, "fwd": fwd, "streams": streams, "xstats": xstats}


def switch(path):
    last = None
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith('{"ports":'):
                last = line
    if last is None:
        raise SystemExit(f"e2e_stats: {path}: no final JSON object from vxlate-switch")
    return json.loads(last)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("testpmd", "switch"):
        print(__doc__, file=sys.stderr)
        return 2
    d = testpmd(sys.argv[2]) if sys.argv[1] == "testpmd" else switch(sys.argv[2])
    json.dump(d, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
