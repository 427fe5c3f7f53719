#!/usr/bin/env python3
"""pvp_summary.py: the parsing and the arithmetic of bench/pvp.sh.

  pvp_summary.py testpmd LOG    one plain run's front end (dpdk-testpmd,
      interactive, two `show port stats all` a measured interval apart):
      prints "MPPS FRAMES": the sum over its ports of the last screen's Rx-pps
      (testpmd's own clock between the two shows) in millions, and the frames
      its ports received between the two screens.
  pvp_summary.py vuload LOG     one iommu run (vxlate-vuload --json): prints
      "MPPS FRAMES DROPS ACK_P99_US DRAINED": rx_pps in millions, rx_frames,
      drops, invalidate_ack_p99_us and drained (true|false: false when
      vuload's drain gave up, its drops then counting frames still in
      flight) of the last JSON object in LOG.
  pvp_summary.py summary DIR    reads DIR/results.tsv, writes DIR/summary.tsv,
      prints the table of medians and, last, the one-line verdict
      (the formats are bench/pvp.sh's header).

Exit status 1, with the reason on stderr, when a log lacks what it should
hold. Python 3 standard library only.
"""
import json
import re
import statistics
import sys

RESULTS_HEADER = ["config", "backend", "mode", "size", "rep", "mpps", "drops", "ack_p99_us"]
SUMMARY_HEADER = ["config", "backend", "mode", "size", "reps", "mpps_median", "mpps_spread", "drops_median",
                  "ack_p99_us_median"]
BACKENDS = ("vxlate", "net_vhost")
CONFIG_ORDER = {"plain-txonly": 0, "plain-io": 1, "iommu": 2}
MODE_ORDER = {"plain": 0, "identity": 1, "lazy": 2, "strict": 3}

NIC_HEAD = re.compile(r"NIC statistics for port (\d+)")
RX_PACKETS = re.compile(r"RX-packets:\s+(\d+)")
RX_PPS = re.compile(r"Rx-pps:\s+(\d+)")


def fail(msg):
    print(f"pvp_summary: {msg}", file=sys.stderr)
    sys.exit(1)


def testpmd(path):
    # Per port, the screens of `show port stats all` in order: [rx_packets, rx_pps].
    screens = {}
    port = None
    with open(path, errors="replace") as f:
        for line in f:
            m = NIC_HEAD.search(line)
            if m:
                port = int(m.group(1))
                screens.setdefault(port, []).append([None, None])
                continue
            if port is None:
                continue
            m = RX_PACKETS.search(line)
            if m and screens[port][-1][0] is None:
                screens[port][-1][0] = int(m.group(1))
            m = RX_PPS.search(line)
            if m:
                screens[port][-1][1] = int(m.group(1))
                port = None  # the screen's last figure this reads
    if sorted(screens) != [0, 1]:
        fail(f"{path}: port statistics of ports {sorted(screens)}, want 0 and 1")
    pps = frames = 0
    for p, s in sorted(screens.items()):
        if len(s) < 2 or None in s[-1] or None in s[-2]:
            fail(f"{path}: port {p}: fewer than two complete statistics screens")
        pps += s[-1][1]
        frames += s[-1][0] - s[-2][0]
    print(f"{pps / 1e6:.6g} {frames}")


def vuload(path):
    last = None
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith('{"tool":"vxlate-vuload"'):
                last = line
    if last is None:
        fail(f"{path}: no JSON report from vxlate-vuload")
    d = json.loads(last)
    print(f"{d['rx_pps'] / 1e6:.6g} {d['rx_frames']} {d['drops']} {d['invalidate_ack_p99_us']:.2f} "
          f"{'true' if d['drained'] else 'false'}")


def number(s):
    return None if s == "-" else float(s)


def fmt(x, digits=6):
    return "-" if x is None else f"{x:.{digits}g}"


def sig(x):
    """2-3 significant digits, never an exponent."""
    if x is None:
        return "n/a"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 0.1:
        return f"{x:.2f}"
    return f"{x:.2g}" if x > 0 else "0"


def count(x):
    if x is None:
        return "n/a"
    return f"{x:.0f}" if x == int(x) else f"{x:.1f}"


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summary(out):
    groups = {}
    with open(f"{out}/results.tsv") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header != RESULTS_HEADER:
            fail(f"{out}/results.tsv: header {header}, want {RESULTS_HEADER}")
        for line in f:
            r = dict(zip(RESULTS_HEADER, line.rstrip("\n").split("\t")))
            key = (r["config"], r["mode"], int(r["size"]), r["backend"])
            g = groups.setdefault(key, {"mpps": [], "drops": [], "ack": []})
            g["mpps"].append(float(r["mpps"]))
            g["drops"].append(number(r["drops"]))
            g["ack"].append(number(r["ack_p99_us"]))
    if not groups:
        fail(f"{out}/results.tsv: no results")
    med = {}
    rows = []
    for key in sorted(groups, key=lambda k: (CONFIG_ORDER.get(k[0], 9), MODE_ORDER.get(k[1], 9), k[2],
                                             BACKENDS.index(k[3]) if k[3] in BACKENDS else 9)):
        g = groups[key]
        m = statistics.median(g["mpps"])
        spread = (max(g["mpps"]) - min(g["mpps"])) / m if m > 0 else None
        d, a = median(g["drops"]), median(g["ack"])
        med[key] = {"mpps": m, "spread": spread, "drops": d, "ack": a, "reps": len(g["mpps"])}
        rows.append([key[0], key[3], key[1], str(key[2]), str(len(g["mpps"])), fmt(m), fmt(spread, 3), fmt(d),
                     fmt(a)])
    with open(f"{out}/summary.tsv", "w") as f:
        f.write("\t".join(SUMMARY_HEADER) + "\n")
        for r in rows:
            f.write("\t".join(r) + "\n")

    def get(config, mode, backend, what, size=64):
        v = med.get((config, mode, size, backend))
        return None if v is None else v[what]

    def ratio(a, b):
        return None if a is None or b is None or b == 0 else a / b

    # The table: one line per configuration, both back ends side by side.
    print(f"{'config':<13} {'mode':<6} {'size':>5}  {'vxlate Mpps':>12} {'spread':>6}  {'net_vhost Mpps':>14} "
          f"{'spread':>6}  {'ratio':>6}  {'drops vx/nv':>13}  {'ack-p99 us vx/nv':>17}")
    seen = []
    for key in med:
        if key[:3] not in seen:
            seen.append(key[:3])
    for config, mode, size in seen:
        vx = med.get((config, mode, size, "vxlate"), {})
        nv = med.get((config, mode, size, "net_vhost"), {})
        pct = lambda v: "-" if v.get("spread") is None else f"{v['spread'] * 100:.0f}%"
        mp = lambda v: "-" if "mpps" not in v else f"{v['mpps']:.6f}" if v["mpps"] < 0.01 else f"{v['mpps']:.4g}"
        dr = "-" if vx.get("drops") is None and nv.get("drops") is None else \
            f"{count(vx.get('drops'))}/{count(nv.get('drops'))}"
        ak = "-" if vx.get("ack") is None and nv.get("ack") is None else f"{sig(vx.get('ack'))}/{sig(nv.get('ack'))}"
        print(f"{config:<13} {mode:<6} {size:>5}  {mp(vx):>12} {pct(vx):>6}  {mp(nv):>14} {pct(nv):>6}  "
              f"{sig(ratio(vx.get('mpps'), nv.get('mpps'))):>6}  {dr:>13}  {ak:>17}")

    a = get("plain-txonly", "plain", "vxlate", "mpps")
    b = get("plain-txonly", "plain", "net_vhost", "mpps")
    r2 = ratio(get("iommu", "lazy", "vxlate", "mpps"), get("iommu", "lazy", "net_vhost", "mpps"))
    r3 = ratio(get("iommu", "strict", "vxlate", "mpps"), get("iommu", "strict", "net_vhost", "mpps"))

    def drops(backend):
        xs = [get("iommu", m, backend, "drops") for m in ("lazy", "strict")]
        return None if None in xs else sum(xs)

    # The vIOMMU's cost through each back end: the same tool without it
    # (identity: no ACCESS_PLATFORM) against lazy mode (full runs only).
    for backend in BACKENDS:
        ident = get("iommu", "identity", backend, "mpps")
        if ident is not None:
            print(f"{backend}: iommu-lazy / identity {sig(ratio(get('iommu', 'lazy', backend, 'mpps'), ident))} "
                  f"(64-byte frames through vxlate-vuload)")

    print(f"pvp: plain {sig(ratio(a, b))} ({sig(a)} vs {sig(b)} Mpps); iommu-lazy {sig(r2)}; iommu-strict {sig(r3)}; "
          f"drops vxlate {count(drops('vxlate'))} net_vhost {count(drops('net_vhost'))}; "
          f"ack-p99 vxlate {sig(get('iommu', 'strict', 'vxlate', 'ack'))} us "
          f"net_vhost {sig(get('iommu', 'strict', 'net_vhost', 'ack'))} us")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("testpmd", "vuload", "summary"):
        print(__doc__, file=sys.stderr)
        return 2
    {"testpmd": testpmd, "vuload": vuload, "summary": summary}[sys.argv[1]](sys.argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
