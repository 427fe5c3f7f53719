# shellcheck shell=bash
# e2e_lib.sh: shared helpers of the vxlate-switch end-to-end tests (sourced,
# not run). A test calls e2e_init NAME first; then every process it starts
# goes through e2e_spawn, which wraps it in `timeout` (so nothing outlives a
# test that was killed outright) and records it, and the EXIT trap ends each
# of them by its pid (TERM, then KILL) and removes the test's DPDK runtime
# directories. Every wait is bounded; e2e_fail prints why, the tails of the
# logs, and exits 1. The work directory (a mktemp -d) is removed after a pass
# and kept after a failure (its path is printed), or always with E2E_KEEP=1.
#
# testpmd runs interactively with its stdin on a FIFO (tp_open/tp_cmd), under
# `stdbuf -oL` so that its printf output and its prompt do not interleave
# mid-line in the log; e2e_stats.py parses the log.

# Variables here are used by the tests that source this file.
# shellcheck disable=SC2034,SC2054
E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_PROC_LIMIT=${E2E_PROC_LIMIT:-120}   # seconds any one process may live
export PYTHONDONTWRITEBYTECODE=1        # no __pycache__ in the source tree
E2E_PIDS=()
E2E_FAILED=0

e2e_init() {
  E2E_NAME=$1
  E2E_T0=$(date +%s.%N)
  if [ "$(nproc)" -lt 2 ]; then
    echo "SKIPPED: $E2E_NAME needs 2 CPUs (the switch and testpmd each poll on one)"
    exit 77
  fi
  # Short: unix socket paths must fit in 108 bytes.
  E2E_WORK=$(mktemp -d /tmp/vxe2e.XXXXXX) || { echo "FAIL: $E2E_NAME: mktemp"; exit 1; }
  E2E_TAG="vxe2e$$-"
  trap e2e_cleanup EXIT
  trap 'e2e_fail "interrupted (signal)"' INT TERM HUP
  e2e_log "work directory $E2E_WORK"
}

e2e_elapsed() { echo "$(date +%s.%N) $E2E_T0" | awk '{printf "%.1f", $1 - $2}'; }

e2e_log() { echo "[$E2E_NAME +$(e2e_elapsed)s] $*"; }

# A DPDK --file-prefix unique to this run (E2E_TAG: the test's pid); the
# runtime directories of all of them go at exit.
e2e_prefix() { echo "${E2E_TAG}$1"; }

e2e_fail() {
  trap - INT TERM HUP
  E2E_FAILED=1
  echo "FAIL: $E2E_NAME: $*"
  local f
  for f in "$E2E_WORK"/*.log; do
    [ -f "$f" ] || continue
    echo "----- last lines of $(basename "$f") -----"
    # The switch's stats lines are many and long: the last of each port, cut.
    grep -vE '^port [0-9]+ ' "$f" | tail -n 20 | cut -c1-300
    grep -E '^port [0-9]+ ' "$f" | tail -n 4 | cut -c1-600
  done
  echo "FAIL: $E2E_NAME: $*"
  exit 1
}

e2e_cleanup() {
  local rc=$?
  local p
  exec 7>&- 8>&-
  for p in "${E2E_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  local deadline=$((SECONDS + 5))
  for p in "${E2E_PIDS[@]}"; do
    while kill -0 "$p" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then
      # timeout forwards TERM but not KILL: end the child by its pid too.
      local c
      c=$(e2e_child "$p")
      [ -n "$c" ] && kill -KILL "$c" 2>/dev/null
      kill -KILL "$p" 2>/dev/null
    fi
  done
  wait 2>/dev/null
  rm -rf "/var/run/dpdk/$E2E_TAG"* "${XDG_RUNTIME_DIR:-/nonexistent}/dpdk/$E2E_TAG"* 2>/dev/null
  if [ "$rc" -eq 0 ] && [ "$E2E_FAILED" -eq 0 ] && [ -z "${E2E_KEEP:-}" ]; then
    rm -rf "$E2E_WORK"
  else
    echo "[$E2E_NAME] logs kept in $E2E_WORK"
  fi
  exit "$rc"
}

# e2e_spawn VAR LOG CMD [ARGS...]: starts CMD in the background, stdout and
# stderr to LOG, stdin from /dev/null unless E2E_STDIN names a file or FIFO;
# sets VAR to the pid of its `timeout` wrapper (signals sent to it reach CMD;
# e2e_child gives CMD's own pid).
e2e_spawn() {
  local var=$1 log=$2
  shift 2
  local in=${E2E_STDIN:-/dev/null}
  timeout -k 5 "$E2E_PROC_LIMIT" "$@" <"$in" >"$log" 2>&1 7>&- 8>&- &
  local pid=$!
  E2E_PIDS+=("$pid")
  printf -v "$var" '%s' "$pid"
}

# The pid of the process a `timeout` wrapper runs (empty if none yet).
e2e_child() {
  local c
  c=$(cat "/proc/$1/task/$1/children" 2>/dev/null)
  echo "${c%% *}" | tr -d ' '
}

# e2e_real_pid WRAPPER: waits (5 s) for the wrapped process and prints its pid.
e2e_real_pid() {
  local i c
  for ((i = 0; i < 50; i++)); do
    c=$(e2e_child "$1")
    [ -n "$c" ] && { echo "$c"; return 0; }
    sleep 0.1
  done
  return 1
}

e2e_alive() { kill -0 "$1" 2>/dev/null; }

# e2e_wait_exit PID SECONDS: waits for a spawned process; sets E2E_RC to its
# exit status; returns 1 if it is still running after SECONDS.
e2e_wait_exit() {
  local pid=$1 limit=$2
  local deadline
  deadline=$(($(date +%s%N) + limit * 1000000000))
  while e2e_alive "$pid"; do
    [ "$(date +%s%N)" -ge "$deadline" ] && return 1
    sleep 0.1
  done
  # (braces: no "Killed" notice from bash for a wrapper that re-raised SIGKILL)
  { wait "$pid"; } 2>/dev/null
  E2E_RC=$?
  return 0
}

# e2e_wait_for SECONDS WHAT CMD [ARGS...]: polls CMD (every 0.2 s) until it
# succeeds; fails the test naming WHAT after SECONDS, or at once when one of
# the pids in E2E_WATCH (space separated) has died.
e2e_wait_for() {
  local limit=$1 what=$2
  shift 2
  local deadline p
  deadline=$(($(date +%s%N) + limit * 1000000000))
  while ! "$@"; do
    for p in ${E2E_WATCH:-}; do
      e2e_alive "$p" || e2e_fail "waiting for $what: process $p exited"
    done
    [ "$(date +%s%N)" -ge "$deadline" ] && e2e_fail "timed out after ${limit}s waiting for $what"
    sleep 0.2
  done
}

# log_has FILE REGEX [COUNT]: FILE has at least COUNT (1) lines matching REGEX.
log_has() {
  local n
  n=$(grep -cE -- "$2" "$1" 2>/dev/null)
  [ "${n:-0}" -ge "${3:-1}" ]
}

log_count() {
  local n
  n=$(grep -cE -- "$2" "$1" 2>/dev/null)
  echo "${n:-0}"
}

# sw_stat LOG PORT KEY: KEY of PORT in the switch's last --stats line (empty if none).
sw_stat() {
  grep -E "^port $2 " "$1" 2>/dev/null | tail -n 1 | tr ' ' '\n' | sed -n "s/^$3=//p"
}

# sw_stat_is LOG PORT KEY OP VALUE: the last stats line's KEY compares (test -OP).
sw_stat_is() {
  local v
  v=$(sw_stat "$1" "$2" "$3")
  [ -n "$v" ] && test "$v" "-$4" "$5"
}

# The switch's final --json object (the last line of its stdout starting with {).
sw_json() { grep -E '^\{"ports":' "$1" | tail -n 1; }

# --- testpmd on a FIFO ------------------------------------------------------

# tp_open FD FIFO: creates FIFO and opens it read-write as FD (7 or 8),
# which never blocks; a process spawned with E2E_STDIN=FIFO reads what
# tp_cmd FD writes, and sees end of input (testpmd: quit) once tp_close FD
# has closed the only writer (e2e_spawn closes 7 and 8 in its children).
tp_open() {
  mkfifo "$2" || e2e_fail "mkfifo $2"
  case $1 in
    7) exec 7<>"$2" ;;
    8) exec 8<>"$2" ;;
    *) e2e_fail "tp_open: fd $1" ;;
  esac
}
tp_cmd() { echo "$2" >&"$1"; }
tp_close() {
  case $1 in
    7) exec 7>&- ;;
    8) exec 8>&- ;;
  esac
}

# Common EAL and testpmd options. Each process polls one lcore: the switch's
# worker is lcore 1 (main 0), testpmd's forwarding lcore is 0 (main 1).
SW_EAL=(--no-huge --no-pci -m 256 -l 0,1 --log-level=lib.eal:notice)
TP_EAL=(--no-huge --no-pci -m 512 -l 0,1 --main-lcore 1 --log-level=lib.eal:notice)
TESTPMD=${TESTPMD:-dpdk-testpmd}
