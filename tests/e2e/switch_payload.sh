#!/usr/bin/env bash
# switch_payload.sh VXLATE_SWITCH: checked payloads through vxlate-switch and
# testpmd, both ways.
#
#   IN.pcap -> [net_pcap0 | vxlate-switch | vhost-user] -> virtio-user (testpmd,
#   io forwarding on its one port) -> vhost-user -> vxlate-switch -> OUT.pcap
#
# IN holds a few thousand frames of 60..1514 bytes and a few jumbo frames up to
# 9000 bytes (more than one 2 KiB mbuf on both sides: mergeable receive
# buffers into testpmd, chained mbufs in the switch), each with a sequence
# number and random bytes (pcap_tool.py). After the traffic, OUT must hold
# every frame of IN exactly once, byte for byte and in order (one queue); the
# switch's --json counters must equal testpmd's port counters, and nothing
# may have been dropped anywhere.
#
# Ordering. The pcap is read once, as fast as the switch can, and a frame the
# vhost-user port cannot take is retried a few rounds and then dropped (the
# switch's policy). The switch takes nothing while its vhost-user peer is
# down, but "up" (a published data-plane session) comes when virtio-user sets
# DRIVER_OK, at testpmd's probe: long before testpmd posts receive buffers at
# port start. Started against the switch directly, testpmd loses the whole
# pcap (seen: 3008 of 3008 dropped, drop_no_room). So testpmd runs as the
# vhost-user server (server=1) and a first, pcap-less vxlate-switch serves it
# until its port is started and forwarding; that switch leaves without having
# moved a frame (it has no peer port, so nothing is polled); virtio-user
# reconnects to the real switch, whose session then starts on rings whose
# receive buffers are posted. Rings of 4096 descriptors each way hold the
# whole pcap, so no scheduling delay of either process on a loaded machine
# can make the switch find no room.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=e2e_lib.sh
source "$(dirname "$0")/e2e_lib.sh"
e2e_init switch_payload

SWITCH=${1:?usage: switch_payload.sh VXLATE_SWITCH}
[ -x "$SWITCH" ] || e2e_fail "$SWITCH is not executable"
FRAMES=${E2E_FRAMES:-3000}
JUMBO=${E2E_JUMBO:-8}
SEED=${E2E_SEED:-$RANDOM}
RING=4096
W=$E2E_WORK
SOCK=$W/vu.sock

e2e_log "pcap: $FRAMES frames of 60..1514 B + $JUMBO jumbo up to 9000 B, seed $SEED"
python3 "$E2E_DIR/pcap_tool.py" write "$W/in.pcap" --count "$FRAMES" --jumbo "$JUMBO" --jumbo-max 9000 \
  --seed "$SEED" || e2e_fail "pcap_tool write"
TOTAL=$((FRAMES + JUMBO))
# Receive descriptors the pcap needs at most (2 KiB buffers; a 9000-byte
# frame takes 5): they must all fit in testpmd's ring at once (see the top).
[ $((FRAMES + 5 * JUMBO)) -le $((RING - 32)) ] || e2e_fail "E2E_FRAMES/E2E_JUMBO too many for $RING-descriptor rings"
IN_BYTES=$(python3 -c "import sys; sys.path.insert(0, '$E2E_DIR'); import pcap_tool; print(sum(map(len, pcap_tool.read_pcap('$W/in.pcap'))))")

if [ -z "${E2E_DIRECT:-}" ]; then
  # 1. testpmd: the vhost-user server, waiting for a back end at probe.
  tp_open 7 "$W/tp.fifo"
  E2E_STDIN=$W/tp.fifo e2e_spawn TP "$W/testpmd.log" stdbuf -oL "$TESTPMD" "${TP_EAL[@]}" \
    --file-prefix "$(e2e_prefix tp)" \
    --vdev "net_virtio_user0,path=$SOCK,queues=1,server=1,queue_size=$RING" \
    -- -i --forward-mode=io --port-topology=loop --rxd=$RING --txd=$RING --total-num-mbufs=16384
  E2E_WATCH="$TP"
  e2e_wait_for 30 "testpmd to listen on $SOCK" log_has "$W/testpmd.log" "waiting for client connection"

  # 2. The first back end: brings testpmd through probe and port start.
  e2e_spawn BOOT "$W/switch-boot.log" "$SWITCH" "${SW_EAL[@]}" --file-prefix "$(e2e_prefix boot)" \
    -- --vhost-user "$SOCK,client" --stats 1
  E2E_WATCH="$TP $BOOT"
  e2e_wait_for 30 "testpmd's port to start (prompt)" log_has "$W/testpmd.log" "^(testpmd> )+"
  tp_cmd 7 "start"
  e2e_wait_for 15 "testpmd to forward" log_has "$W/testpmd.log" "io packet forwarding - ports=1"
  e2e_wait_for 15 "the first switch's session" sw_stat_is "$W/switch-boot.log" 0 running eq 1
  kill -TERM "$BOOT"
  e2e_wait_exit "$BOOT" 15 || e2e_fail "the first switch did not exit on SIGTERM"
  [ "$E2E_RC" -eq 0 ] || e2e_fail "the first switch exited with $E2E_RC"
  moved=$(($(sw_stat "$W/switch-boot.log" 0 rx_packets) + $(sw_stat "$W/switch-boot.log" 0 tx_packets)))
  [ "$moved" -eq 0 ] || e2e_fail "the first switch moved $moved frames (it must move none)"
  e2e_log "testpmd forwarding; first switch gone without moving a frame"

  # 3. The switch under test: pcap port 0 <-> vhost-user port 1 (client).
  t_start=$(date +%s%N)
  e2e_spawn SW "$W/switch.log" "$SWITCH" "${SW_EAL[@]}" --file-prefix "$(e2e_prefix sw)" \
    --vdev "net_pcap0,rx_pcap=$W/in.pcap,tx_pcap=$W/out.pcap" \
    -- --vhost-user "$SOCK,client" --stats 1 --json
  E2E_WATCH="$TP $SW"
  e2e_wait_for 30 "virtio-user to reconnect" log_has "$W/testpmd.log" "reconnection succeeds"
else
  # E2E_DIRECT=1: the plain order (switch as server, then testpmd as client),
  # which shows the startup loss described at the top (expected to FAIL
  # while the switch drops what a just-probed front end cannot take).
  e2e_log "E2E_DIRECT: testpmd connects straight to the switch"
  t_start=$(date +%s%N)
  e2e_spawn SW "$W/switch.log" "$SWITCH" "${SW_EAL[@]}" --file-prefix "$(e2e_prefix sw)" \
    --vdev "net_pcap0,rx_pcap=$W/in.pcap,tx_pcap=$W/out.pcap" \
    -- --vhost-user "$SOCK" --stats 1 --json
  E2E_WATCH="$SW"
  e2e_wait_for 30 "the switch's socket" test -S "$SOCK"
  tp_open 7 "$W/tp.fifo"
  E2E_STDIN=$W/tp.fifo e2e_spawn TP "$W/testpmd.log" stdbuf -oL "$TESTPMD" "${TP_EAL[@]}" \
    --file-prefix "$(e2e_prefix tp)" --vdev "net_virtio_user0,path=$SOCK,queues=1,queue_size=$RING" \
    -- -i --forward-mode=io --port-topology=loop --rxd=$RING --txd=$RING --total-num-mbufs=16384
  E2E_WATCH="$TP $SW"
  e2e_wait_for 30 "testpmd's port to start (prompt)" log_has "$W/testpmd.log" "^(testpmd> )+"
  tp_cmd 7 "start"
  e2e_wait_for 15 "testpmd to forward" log_has "$W/testpmd.log" "io packet forwarding - ports=1"
  sleep 2
  e2e_log "switch pcap port: rx_packets=$(sw_stat "$W/switch.log" 0 rx_packets);" \
    "vhost-user port: tx_packets=$(sw_stat "$W/switch.log" 1 tx_packets) drop_no_room=$(sw_stat "$W/switch.log" 1 drop_no_room)"
  sw_stat_is "$W/switch.log" 1 dropped eq 0 ||
    e2e_fail "startup loss: the switch dropped $(sw_stat "$W/switch.log" 1 dropped) frames for testpmd before it posted receive buffers"
fi
e2e_wait_for 30 "all $TOTAL frames back on the pcap port" sw_stat_is "$W/switch.log" 0 tx_packets ge "$TOTAL"
t_done=$(date +%s%N)
sleep 1  # anything more (a duplicate) would show up by now
e2e_log "all $TOTAL frames back within $(((t_done - t_start) / 1000000)) ms of the switch's start"

# 4. testpmd: stop, counters, quit (then the switch sees its peer leave).
n=$(log_count "$W/testpmd.log" "Done\.")
tp_cmd 7 "stop"
e2e_wait_for 15 "testpmd to stop" log_has "$W/testpmd.log" "Done\." $((n + 1))
tp_cmd 7 "show port stats all"
tp_cmd 7 "quit"
tp_close 7
e2e_wait_exit "$TP" 20 || e2e_fail "testpmd did not quit"
[ "$E2E_RC" -eq 0 ] || e2e_fail "testpmd exited with $E2E_RC"
E2E_WATCH="$SW"

# 5. The switch: SIGTERM; its pcap PMD writes OUT out on close.
kill -TERM "$SW"
e2e_wait_exit "$SW" 20 || e2e_fail "vxlate-switch did not exit on SIGTERM"
[ "$E2E_RC" -eq 0 ] || e2e_fail "vxlate-switch exited with $E2E_RC"

# 6. Payloads: every frame once, identical, in order.
python3 "$E2E_DIR/pcap_tool.py" compare "$W/in.pcap" "$W/out.pcap" --ordered \
  || e2e_fail "OUT.pcap is not IN.pcap (seed $SEED)"

# 7. Counters.
python3 - "$W/switch.log" "$W/testpmd.log" "$TOTAL" "$IN_BYTES" "$E2E_DIR" <<'EOF' || e2e_fail "counters disagree (see above)"
import sys
sys.path.insert(0, sys.argv[5])
import e2e_stats
sw = {p["id"]: p for p in e2e_stats.switch(sys.argv[1])["ports"]}
tp = e2e_stats.testpmd(sys.argv[2])
total, nbytes = int(sys.argv[3]), int(sys.argv[4])
pcap, vu = sw[0], sw[1]
nic = tp["nic"].get(0)
fwd = tp["fwd"][-1].get(0) if tp["fwd"] else None
bad = []
def want(what, got, exp):
    if got != exp:
        bad.append(f"{what}: {got}, want {exp}")
if nic is None or fwd is None:
    sys.exit("counters: testpmd printed no port statistics")
print(f"switch pcap port: rx {pcap['rx_packets']} tx {pcap['tx_packets']} frames, dropped {pcap['dropped']}")
print(f"switch vhost-user port: to testpmd {vu['tx_packets']} frames / {vu['tx_bytes']} B, "
      f"from testpmd {vu['rx_packets']} / {vu['rx_bytes']} B, dropped {vu['dropped']}, retries {vu['retries']}, "
      f"held for miss {vu['frames_held_for_miss']}, connects {vu['connects']}")
print(f"testpmd port 0: RX {nic['rx_packets']} / {nic['rx_bytes']} B (missed {nic['rx_missed']}, errors "
      f"{nic['rx_errors']}, nombuf {nic['rx_nombuf']}), TX {nic['tx_packets']} / {nic['tx_bytes']} B "
      f"(errors {nic['tx_errors']}); forwarding: RX-dropped {fwd['rx_dropped']} TX-dropped {fwd['tx_dropped']}")
want("switch pcap rx_packets", pcap["rx_packets"], total)
want("switch pcap tx_packets", pcap["tx_packets"], total)
want("switch pcap rx_bytes", pcap["rx_bytes"], nbytes)
want("switch pcap tx_bytes", pcap["tx_bytes"], nbytes)
want("switch vhost-user tx_packets (to testpmd) vs testpmd RX-packets", vu["tx_packets"], nic["rx_packets"])
want("switch vhost-user rx_packets (from testpmd) vs testpmd TX-packets", vu["rx_packets"], nic["tx_packets"])
want("switch vhost-user tx_bytes vs testpmd RX-bytes", vu["tx_bytes"], nic["rx_bytes"])
want("switch vhost-user rx_bytes vs testpmd TX-bytes", vu["rx_bytes"], nic["tx_bytes"])
want("testpmd RX-packets", nic["rx_packets"], total)
want("testpmd TX-packets", nic["tx_packets"], total)
for k in ("rx_missed", "rx_errors", "rx_nombuf", "tx_errors"):
    want(f"testpmd {k}", nic[k], 0)
want("testpmd forwarding RX-dropped", fwd["rx_dropped"], 0)
want("testpmd forwarding TX-dropped", fwd["tx_dropped"], 0)
for name, p in (("pcap", pcap), ("vhost-user", vu)):
    for k in ("dropped", "drop_no_room", "drop_down"):
        want(f"switch {name} {k}", p[k], 0)
for k in ("bad_chains", "guest_rx_dropped", "refused"):
    want(f"switch vhost-user {k}", vu[k], 0)
want("switch vhost-user connects", vu["connects"], 1)
for b in bad:
    print("MISMATCH: " + b)
sys.exit(1 if bad else 0)
EOF

e2e_log "PASS: $TOTAL frames ($IN_BYTES B) pcap -> switch -> testpmd -> switch -> pcap, identical, counters agree"
