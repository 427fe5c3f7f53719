#!/usr/bin/env bash
# run_traces.sh: runs every tests/engine/traces/*.trace through vxlate-replay and
# compares the output with the trace's expectations.
#
#   run_traces.sh PATH/TO/vxlate-replay
#
# NAME.expected holds the exact stdout. When NAME.expected_stderr exists the trace
# must fail as malformed: exit status 2 and exactly that stderr; otherwise it must
# exit 0 with nothing on stderr. Each trace runs twice, as a FILE argument and on
# stdin, and both runs must match. Prints one line per failure and
# "N passed, M failed" at the end; exits 1 on any failure, 2 on bad usage.
set -u

if [[ $# -ne 1 ]]; then
  echo "usage: $0 PATH/TO/vxlate-replay" >&2
  exit 2
fi
bin=$1
if [[ ! -x "$bin" ]]; then
  echo "$0: $bin is not an executable" >&2
  exit 2
fi
traces=$(cd "$(dirname "${BASH_SOURCE[0]}")/traces" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

passed=0
failed=0

# check NAME MODE: runs one trace one way (MODE file | stdin); prints why it fails.
check() {
  local name=$1 mode=$2 trace="$traces/$1.trace" rc want_rc=0 want_err=/dev/null
  if [[ -f "$traces/$name.expected_stderr" ]]; then
    want_rc=2
    want_err="$traces/$name.expected_stderr"
  fi
  if [[ $mode == file ]]; then
    "$bin" "$trace" >"$work/out" 2>"$work/err"
  else
    "$bin" <"$trace" >"$work/out" 2>"$work/err"
  fi
  rc=$?
  local ok=1
  if [[ $rc -ne $want_rc ]]; then
    echo "FAIL $name ($mode): exit status $rc, expected $want_rc"
    ok=0
  fi
  if ! diff -u --label expected --label actual \
      "$traces/$name.expected" "$work/out" >"$work/diff"; then
    echo "FAIL $name ($mode): stdout differs"
    cat "$work/diff"
    ok=0
  fi
  if ! diff -u --label expected_stderr --label actual_stderr \
      "$want_err" "$work/err" >"$work/diff"; then
    echo "FAIL $name ($mode): stderr differs"
    cat "$work/diff"
    ok=0
  fi
  [[ $ok -eq 1 ]]
}

shopt -s nullglob
for trace in "$traces"/*.trace; do
  name=$(basename "$trace" .trace)
  if [[ ! -f "$traces/$name.expected" ]]; then
    echo "FAIL $name: no $name.expected"
    failed=$((failed + 1))
    continue
  fi
  if check "$name" file && check "$name" stdin; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
done

echo "$passed passed, $failed failed"
if [[ $passed -eq 0 || $failed -ne 0 ]]; then
  exit 1
fi
exit 0
