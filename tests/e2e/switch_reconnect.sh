#!/usr/bin/env bash
# switch_reconnect.sh VXLATE_SWITCH: a front end that dies mid-traffic and
# comes back, with vxlate-switch as the vhost-user client.
#
#   testpmd: net_virtio_user0/1 with server=1 (it listens), io forwarding,
#   start tx_first  <->  vxlate-switch --vhost-user PATH,client (twice)
#
# 1. The switch starts first (its client ports retry with back-off): the
#    baseline of its open fds and shared mappings.
# 2. testpmd #1 listens; the switch connects; traffic flows. The front end's
#    memory shows in /proc/PID/maps as shared mappings of files the switch
#    did not map at the baseline (with testpmd --no-huge: "/memfd:nohuge
#    (deleted)", a file of testpmd's, beside the switch's own of that name).
# 3. SIGKILL testpmd mid-traffic. The switch stays up, both sessions end
#    (running=0, disconnects=1), its counters freeze, and its fds and shared
#    mappings are back to the baseline: nothing of the dead front end is left.
# 4. testpmd #2 (its stale sockets removed first: a killed server leaves
#    them); the switch reconnects (connects=2), traffic resumes (counters
#    grow). Stop it cleanly, draining its receive rings: the switch's
#    counters since the kill equal testpmd #2's port counters exactly, with
#    nothing dropped in that session. After it quits: baseline again.
# 5. SIGTERM: the switch's final JSON says connects=2 disconnects=2 per port.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=e2e_lib.sh
source "$(dirname "$0")/e2e_lib.sh"
e2e_init switch_reconnect

SWITCH=${1:?usage: switch_reconnect.sh VXLATE_SWITCH}
[ -x "$SWITCH" ] || e2e_fail "$SWITCH is not executable"
MIN_FRAMES=${E2E_MIN_FRAMES:-10000}   # traffic "flows": at least this many frames
W=$E2E_WORK
S0=$W/s0.sock
S1=$W/s1.sock

# --- the switch's resources ---------------------------------------------------

# Open fds: two equal readings in a row (a client port's connect attempt
# holds a socket for a moment).
fd_count() {
  local a b i
  a=$(find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  for ((i = 0; i < 20; i++)); do
    sleep 0.05
    b=$(find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    [ "$a" = "$b" ] && { echo "$a"; return; }
    a=$b
  done
  echo "$a"
}
# Shared mappings as "dev inode path", one per line.
shared_maps() { awk 'substr($2, 4, 1) == "s" { print $4, $5, $6, $7 }' "/proc/$1/maps"; }
# Shared mappings of files the switch did not map at the baseline: the front end's memory.
fe_maps() { shared_maps "$1" | awk 'NR == FNR { base[$1 " " $2] = 1; next } !(($1 " " $2) in base)' "$W/maps.base" -; }
fe_map_count() { fe_maps "$1" | wc -l; }
memfd_count() { grep -c memfd "/proc/$1/maps"; }
resources() {  # a line for the log
  echo "fds $(fd_count "$1"), shared mappings $(shared_maps "$1" | wc -l)" \
    "(front end's: $(fe_map_count "$1"); lines naming memfd: $(memfd_count "$1")), maps lines $(wc -l <"/proc/$1/maps")"
}
# counter PORT KEY from the switch's last stats line
sc() { sw_stat "$W/switch.log" "$1" "$2"; }
both_running() { sw_stat_is "$W/switch.log" 0 running eq "$1" && sw_stat_is "$W/switch.log" 1 running eq "$1"; }
both_stat_ge() { sw_stat_is "$W/switch.log" 0 "$1" ge "$2" && sw_stat_is "$W/switch.log" 1 "$1" ge "$2"; }
rx_ge() { [ "$(($(sc 0 rx_packets) + $(sc 1 rx_packets)))" -ge "$1" ]; }

start_testpmd() {  # VAR FD NAME
  tp_open "$2" "$W/$3.fifo"
  E2E_STDIN=$W/$3.fifo e2e_spawn "$1" "$W/$3.log" stdbuf -oL "$TESTPMD" "${TP_EAL[@]}" \
    --file-prefix "$(e2e_prefix "$3")" \
    --vdev "net_virtio_user0,path=$S0,queues=1,server=1" \
    --vdev "net_virtio_user1,path=$S1,queues=1,server=1" \
    -- -i --forward-mode=io --nb-cores=1 --total-num-mbufs=16384
}

# 1. The switch and its baseline.
e2e_spawn SWW "$W/switch.log" "$SWITCH" "${SW_EAL[@]}" --file-prefix "$(e2e_prefix sw)" \
  -- --vhost-user "$S0,client" --vhost-user "$S1,client" --stats 1 --json
E2E_WATCH="$SWW"
e2e_wait_for 30 "the switch to start" log_has "$W/switch.log" "^vxlate-switch: 2 ports"
SW=$(e2e_real_pid "$SWW") || e2e_fail "no switch process under its wrapper"
sleep 1
{ echo "none none"; shared_maps "$SW" | awk '{ print $1, $2 }' | sort -u; } >"$W/maps.base"
fd_base=$(fd_count "$SW")
maps_base=$(shared_maps "$SW" | wc -l)
e2e_log "switch pid $SW, baseline: $(resources "$SW")"

# 2. testpmd #1; traffic.
start_testpmd TP1 7 testpmd1
E2E_WATCH="$SWW $TP1"
e2e_wait_for 30 "testpmd #1's ports to start (prompt)" log_has "$W/testpmd1.log" "^(testpmd> )+"
e2e_wait_for 15 "both sessions" both_running 1
tp_cmd 7 "start tx_first"
e2e_wait_for 20 "$MIN_FRAMES frames through the switch" rx_ge "$MIN_FRAMES"
fd_conn=$(fd_count "$SW")
fe_conn=$(fe_map_count "$SW")
e2e_log "connected: $(resources "$SW")"
fe_maps "$SW" | sed 's/^/    front end mapping: /'
[ "$fe_conn" -ge 1 ] || e2e_fail "no front-end mapping found while connected"
[ "$fd_conn" -gt "$fd_base" ] || e2e_fail "connected with $fd_conn fds, no more than the baseline $fd_base"
sleep 1
rx_before=$(($(sc 0 rx_packets) + $(sc 1 rx_packets)))

# 3. SIGKILL testpmd #1 mid-traffic.
TP1_PID=$(e2e_real_pid "$TP1") || e2e_fail "no testpmd process under its wrapper"
grep -q testpmd "/proc/$TP1_PID/comm" || e2e_fail "pid $TP1_PID is $(cat "/proc/$TP1_PID/comm"), not testpmd"
kill -KILL "$TP1_PID"
tp_close 7
e2e_wait_exit "$TP1" 10 || e2e_fail "testpmd #1 survived SIGKILL"
e2e_log "killed testpmd #1 (pid $TP1_PID) with $rx_before frames received by the switch a second before"
E2E_WATCH="$SWW"
e2e_wait_for 15 "both sessions to end" both_running 0
e2e_wait_for 15 "both disconnects" both_stat_ge disconnects 1
sleep 1.5
e2e_alive "$SWW" || e2e_fail "the switch died with its front end"
grep -q . "/proc/$SW/maps" || e2e_fail "switch pid $SW is gone"
fd_gone=$(fd_count "$SW")
fe_gone=$(fe_map_count "$SW")
maps_gone=$(shared_maps "$SW" | wc -l)
e2e_log "disconnected: $(resources "$SW")"
[ "$fe_gone" -eq 0 ] || { fe_maps "$SW"; e2e_fail "$fe_gone front-end mappings left after the disconnect"; }
[ "$maps_gone" -eq "$maps_base" ] || e2e_fail "$maps_gone shared mappings after the disconnect, $maps_base at the baseline"
[ "$fd_gone" -eq "$fd_base" ] || { ls -l "/proc/$SW/fd"; e2e_fail "$fd_gone fds after the disconnect, $fd_base at the baseline"; }
# Frozen counters: the snapshot the second session is measured from.
snap() { grep -E "^port [01] " "$W/switch.log" | tail -n 2 | sed -E 's/ running=[01]//'; }
s1=$(snap)
sleep 1.2
s2=$(snap)
[ "$s1" = "$s2" ] || e2e_fail "the switch's counters still move with no front end"
declare -A AFTER
for p in 0 1; do
  for k in rx_packets tx_packets rx_bytes tx_bytes dropped drop_down drop_no_room; do AFTER[$p.$k]=$(sc $p $k); done
done
e2e_log "after the kill: port 0 rx/tx ${AFTER[0.rx_packets]}/${AFTER[0.tx_packets]}, port 1 rx/tx" \
  "${AFTER[1.rx_packets]}/${AFTER[1.tx_packets]}; dropped ${AFTER[0.dropped]}/${AFTER[1.dropped]}" \
  "(drop_down ${AFTER[0.drop_down]}/${AFTER[1.drop_down]}: frames for a port that went away)"

# 4. testpmd #2: reconnect, traffic resumes.
rm -f "$S0" "$S1"
start_testpmd TP2 8 testpmd2
E2E_WATCH="$SWW $TP2"
e2e_wait_for 30 "testpmd #2's ports to start (prompt)" log_has "$W/testpmd2.log" "^(testpmd> )+"
e2e_wait_for 15 "both reconnects" both_stat_ge connects 2
e2e_wait_for 15 "both sessions again" both_running 1
tp_cmd 8 "start tx_first"
rx_after=$((${AFTER[0.rx_packets]} + ${AFTER[1.rx_packets]}))
e2e_wait_for 20 "traffic to resume ($MIN_FRAMES more frames)" rx_ge $((rx_after + MIN_FRAMES))
fd_conn2=$(fd_count "$SW")
e2e_log "reconnected: $(resources "$SW")"
[ "$(fe_map_count "$SW")" -ge 1 ] || e2e_fail "no front-end mapping found while connected again"
[ "$fd_conn2" -eq "$fd_conn" ] || e2e_fail "reconnected with $fd_conn2 fds, $fd_conn on the first connection"
sleep 1
n=$(log_count "$W/testpmd2.log" "Done\.")
tp_cmd 8 "stop"
e2e_wait_for 15 "testpmd #2 to stop" log_has "$W/testpmd2.log" "Done\." $((n + 1))
sleep 0.5
tp_cmd 8 "set fwd rxonly"
tp_cmd 8 "start"
sleep 0.5
tp_cmd 8 "stop"
e2e_wait_for 15 "testpmd #2 to stop again" log_has "$W/testpmd2.log" "Done\." $((n + 2))
tp_cmd 8 "show port stats all"
tp_cmd 8 "quit"
tp_close 8
e2e_wait_exit "$TP2" 20 || e2e_fail "testpmd #2 did not quit"
[ "$E2E_RC" -eq 0 ] || e2e_fail "testpmd #2 exited with $E2E_RC"
E2E_WATCH="$SWW"
e2e_wait_for 15 "both second disconnects" both_stat_ge disconnects 2
e2e_wait_for 5 "both sessions to end again" both_running 0
fd_end=$(fd_count "$SW")
e2e_log "after testpmd #2 quit: $(resources "$SW")"
[ "$(fe_map_count "$SW")" -eq 0 ] || e2e_fail "front-end mappings left after the second disconnect"
[ "$fd_end" -eq "$fd_base" ] || e2e_fail "$fd_end fds after the second disconnect, $fd_base at the baseline"

# 5. Stop the switch; its final counters.
kill -TERM "$SWW"
e2e_wait_exit "$SWW" 20 || e2e_fail "vxlate-switch did not exit on SIGTERM"
[ "$E2E_RC" -eq 0 ] || e2e_fail "vxlate-switch exited with $E2E_RC"
after_args=()
for p in 0 1; do
  for k in rx_packets tx_packets rx_bytes tx_bytes dropped; do after_args+=("$p.$k=${AFTER[$p.$k]}"); done
done
python3 - "$W/switch.log" "$W/testpmd2.log" "$E2E_DIR" "${after_args[@]}" <<'EOF' || e2e_fail "see MISMATCH above"
import sys
sys.path.insert(0, sys.argv[3])
import e2e_stats
sw = {p["id"]: p for p in e2e_stats.switch(sys.argv[1])["ports"]}
tp = e2e_stats.testpmd(sys.argv[2])
after = {}
for a in sys.argv[4:]:
    k, v = a.split("=")
    after[k] = int(v)
bad = []
def want(what, ok):
    if not ok:
        bad.append(what)
if len(tp["nic"]) != 2:
    sys.exit("testpmd #2 printed no port statistics")
for p in (0, 1):
    v, nic = sw[p], tp["nic"][p]
    d = {k: v[k] - after[f"{p}.{k}"] for k in ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "dropped")}
    print(f"port {p}: total rx {v['rx_packets']} tx {v['tx_packets']} dropped {v['dropped']} (drop_down "
          f"{v['drop_down']}), connects {v['connects']} disconnects {v['disconnects']}; second session: switch "
          f"rx {d['rx_packets']} tx {d['tx_packets']} dropped {d['dropped']}, testpmd #2 TX {nic['tx_packets']} "
          f"RX {nic['rx_packets']}")
    want(f"port {p}: connects {v['connects']}, want 2", v["connects"] == 2)
    want(f"port {p}: disconnects {v['disconnects']}, want 2", v["disconnects"] == 2)
    want(f"port {p}: second session: switch rx {d['rx_packets']} != testpmd #2 TX {nic['tx_packets']}",
         d["rx_packets"] == nic["tx_packets"])
    want(f"port {p}: second session: switch tx {d['tx_packets']} != testpmd #2 RX {nic['rx_packets']}",
         d["tx_packets"] == nic["rx_packets"])
    want(f"port {p}: second session: switch rx bytes {d['rx_bytes']} != testpmd #2 TX {nic['tx_bytes']}",
         d["rx_bytes"] == nic["tx_bytes"])
    want(f"port {p}: second session: switch tx bytes {d['tx_bytes']} != testpmd #2 RX {nic['rx_bytes']}",
         d["tx_bytes"] == nic["rx_bytes"])
    want(f"port {p}: second session dropped {d['dropped']}", d["dropped"] == 0)
    for k in ("bad_chains", "guest_rx_dropped", "refused", "drop_no_room"):
        want(f"port {p}: switch {k} {v[k]}", v[k] == 0)
    for k in ("rx_missed", "rx_errors", "rx_nombuf", "tx_errors"):
        want(f"port {p}: testpmd #2 {k} {nic[k]}", nic[k] == 0)
for b in bad:
    print("MISMATCH: " + b)
sys.exit(1 if bad else 0)
EOF

e2e_log "PASS: switch survived SIGKILL of its front end, released every fd and mapping, reconnected and forwarded again"
