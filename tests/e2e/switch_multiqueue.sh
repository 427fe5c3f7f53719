#!/usr/bin/env bash
# switch_multiqueue.sh VXLATE_SWITCH: two queue pairs per vhost-user port.
#
#   testpmd: net_virtio_user0/1 (queues=2, cq=1), --rxq=2 --txq=2, io
#   forwarding, start tx_first  <->  vxlate-switch: --vhost-user PATH,queues=2
#   twice (xconnect: port 0 queue q <-> port 1 queue q)
#
# The frames testpmd sends first (one burst per stream: 4 x 32) circulate for
# a few seconds. Then testpmd stops, drains what is still in its receive
# rings (a forwarding start flushes them; rxonly sends nothing back) and
# prints its counters. Checks: every queue of both ports carried traffic
# (testpmd's per-stream statistics and its per-queue xstats); per port,
# testpmd's RX-packets equal the switch's tx_packets (to that port) and its
# TX-packets the switch's rx_packets; testpmd got back everything it sent;
# nothing dropped anywhere. With 128 frames in flight and 256-descriptor
# rings the switch can always find room, however the two processes are
# scheduled.
# cq=1 (virtio-user's control queue, which sets the number of queue pairs)
# is what DPDK 22.11 implies for queues > 1 anyway; cq=0 is refused there
# ("multi-q requires ctrl-q").
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=e2e_lib.sh
source "$(dirname "$0")/e2e_lib.sh"
e2e_init switch_multiqueue

SWITCH=${1:?usage: switch_multiqueue.sh VXLATE_SWITCH}
[ -x "$SWITCH" ] || e2e_fail "$SWITCH is not executable"
RUN_S=${E2E_RUN_SECONDS:-4}
MIN_PER_QUEUE=${E2E_MIN_PER_QUEUE:-1000}
W=$E2E_WORK

e2e_spawn SW "$W/switch.log" "$SWITCH" "${SW_EAL[@]}" --file-prefix "$(e2e_prefix sw)" \
  -- --vhost-user "$W/s0.sock,queues=2" --vhost-user "$W/s1.sock,queues=2" --stats 1 --json
E2E_WATCH="$SW"
e2e_wait_for 30 "the switch's sockets" test -S "$W/s1.sock"

tp_open 7 "$W/tp.fifo"
E2E_STDIN=$W/tp.fifo e2e_spawn TP "$W/testpmd.log" stdbuf -oL "$TESTPMD" "${TP_EAL[@]}" \
  --file-prefix "$(e2e_prefix tp)" \
  --vdev "net_virtio_user0,path=$W/s0.sock,queues=2,cq=1" \
  --vdev "net_virtio_user1,path=$W/s1.sock,queues=2,cq=1" \
  -- -i --forward-mode=io --rxq=2 --txq=2 --nb-cores=1 --total-num-mbufs=16384
E2E_WATCH="$SW $TP"
e2e_wait_for 30 "testpmd's ports to start (prompt)" log_has "$W/testpmd.log" "^(testpmd> )+"
for p in 0 1; do
  e2e_wait_for 10 "switch port $p's session" sw_stat_is "$W/switch.log" $p running eq 1
done
tp_cmd 7 "start tx_first"
e2e_wait_for 15 "testpmd to forward" log_has "$W/testpmd.log" "io packet forwarding - ports=2 - cores=1 - streams=4"
e2e_log "forwarding on 4 streams (2 ports x 2 queues) for ${RUN_S}s"
r0=$(sw_stat "$W/switch.log" 0 rx_packets)
sleep "$RUN_S"
r1=$(sw_stat "$W/switch.log" 0 rx_packets)
e2e_log "switch port 0 received $((r1 - r0)) frames in the last ~${RUN_S}s of stats lines"

# Stop; a rxonly start flushes the receive rings (frames still in flight).
n=$(log_count "$W/testpmd.log" "Done\.")
tp_cmd 7 "stop"
e2e_wait_for 15 "testpmd to stop" log_has "$W/testpmd.log" "Done\." $((n + 1))
sleep 0.5   # the switch delivers what it still holds (microseconds)
tp_cmd 7 "set fwd rxonly"
tp_cmd 7 "start"
sleep 0.5
tp_cmd 7 "stop"
e2e_wait_for 15 "testpmd to stop again" log_has "$W/testpmd.log" "Done\." $((n + 2))
tp_cmd 7 "show port stats all"
tp_cmd 7 "show port xstats all"
tp_cmd 7 "quit"
tp_close 7
e2e_wait_exit "$TP" 20 || e2e_fail "testpmd did not quit"
[ "$E2E_RC" -eq 0 ] || e2e_fail "testpmd exited with $E2E_RC"
E2E_WATCH="$SW"
kill -TERM "$SW"
e2e_wait_exit "$SW" 20 || e2e_fail "vxlate-switch did not exit on SIGTERM"
[ "$E2E_RC" -eq 0 ] || e2e_fail "vxlate-switch exited with $E2E_RC"

python3 - "$W/switch.log" "$W/testpmd.log" "$MIN_PER_QUEUE" "$E2E_DIR" <<'EOF' || e2e_fail "see MISMATCH above"
import sys
sys.path.insert(0, sys.argv[4])
import e2e_stats
sw = {p["id"]: p for p in e2e_stats.switch(sys.argv[1])["ports"]}
tp = e2e_stats.testpmd(sys.argv[2])
least = int(sys.argv[3])
bad = []
def want(what, ok):
    if not ok:
        bad.append(what)
if len(tp["nic"]) != 2 or not tp["fwd"] or not tp["streams"] or len(tp["xstats"]) != 2:
    sys.exit(f"testpmd's statistics are incomplete: nic ports {sorted(tp['nic'])}, stops {len(tp['fwd'])}, "
             f"xstats ports {sorted(tp['xstats'])}")
streams = tp["streams"][0]  # the io forwarding run
print("testpmd streams (io forwarding):")
for s in streams:
    print(f"  RX {s['rx_port']}/{s['rx_queue']} -> TX {s['tx_port']}/{s['tx_queue']}: RX {s['rx_packets']} "
          f"TX {s['tx_packets']} dropped {s['tx_dropped']}")
    want(f"stream {s['rx_port']}/{s['rx_queue']} carried {s['rx_packets']} frames (< {least})",
         s["rx_packets"] >= least)
    want(f"stream {s['rx_port']}/{s['rx_queue']} TX-dropped {s['tx_dropped']}", s["tx_dropped"] == 0)
want(f"{len(streams)} streams, want 4", len(streams) == 4)
seen = {(s["rx_port"], s["rx_queue"]) for s in streams}
want(f"streams cover {sorted(seen)}", seen == {(0, 0), (0, 1), (1, 0), (1, 1)})
tot_rx = tot_tx = 0
for p in (0, 1):
    nic, x, v = tp["nic"][p], tp["xstats"][p], sw[p]
    q = {k: x.get(f"{k}_good_packets", -1) for k in ("rx_q0", "rx_q1", "tx_q0", "tx_q1")}
    print(f"port {p}: testpmd RX {nic['rx_packets']} TX {nic['tx_packets']} (per queue: {q}); "
          f"switch to testpmd {v['tx_packets']} from testpmd {v['rx_packets']}, dropped {v['dropped']}, "
          f"retries {v['retries']}, connects {v['connects']}")
    for k, n in q.items():
        want(f"port {p} {k}_good_packets {n} (< {least})", n >= least)
    want(f"port {p}: switch tx_packets {v['tx_packets']} != testpmd RX-packets {nic['rx_packets']}",
         v["tx_packets"] == nic["rx_packets"])
    want(f"port {p}: switch rx_packets {v['rx_packets']} != testpmd TX-packets {nic['tx_packets']}",
         v["rx_packets"] == nic["tx_packets"])
    want(f"port {p}: switch tx_bytes {v['tx_bytes']} != testpmd RX-bytes {nic['rx_bytes']}",
         v["tx_bytes"] == nic["rx_bytes"])
    want(f"port {p}: switch rx_bytes {v['rx_bytes']} != testpmd TX-bytes {nic['tx_bytes']}",
         v["rx_bytes"] == nic["tx_bytes"])
    want(f"port {p}: testpmd per-queue RX {q['rx_q0']}+{q['rx_q1']} != RX-packets {nic['rx_packets']}",
         q["rx_q0"] + q["rx_q1"] == nic["rx_packets"])
    for k in ("rx_missed", "rx_errors", "rx_nombuf", "tx_errors"):
        want(f"port {p}: testpmd {k} {nic[k]}", nic[k] == 0)
    for k in ("dropped", "drop_no_room", "drop_down", "bad_chains", "guest_rx_dropped", "refused"):
        want(f"port {p}: switch {k} {v[k]}", v[k] == 0)
    want(f"port {p}: switch connects {v['connects']}", v["connects"] == 1)
    for f in tp["fwd"]:
        want(f"port {p}: testpmd forwarding drops {f.get(p)}",
             f.get(p, {}).get("rx_dropped", 1) == 0 and f.get(p, {}).get("tx_dropped", 1) == 0)
    tot_rx += nic["rx_packets"]
    tot_tx += nic["tx_packets"]
print(f"testpmd sent {tot_tx} frames and received {tot_rx}")
want(f"testpmd sent {tot_tx} but received {tot_rx}", tot_rx == tot_tx)
for b in bad:
    print("MISMATCH: " + b)
sys.exit(1 if bad else 0)
EOF

e2e_log "PASS: both queues of both ports carried traffic; switch and testpmd counters agree; no drops"
