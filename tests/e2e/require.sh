#!/usr/bin/env bash
# require.sh PROG ... -- COMMAND [ARGS ...]: runs COMMAND if every PROG exists
# (a name looked up in PATH, or a path to an executable); else prints
# "SKIPPED: PROG not found" and exits 77, the SKIP_RETURN_CODE that
# vxlate_e2e_test (tests/CMakeLists.txt) gives its tests.
set -euo pipefail
readonly skip=77
while (($#)) && [ "$1" != -- ]; do
  if [[ "$1" == */* ]]; then
    [ -x "$1" ] || { echo "SKIPPED: $1 not found"; exit "$skip"; }
  else
    command -v "$1" >/dev/null 2>&1 || { echo "SKIPPED: $1 not found"; exit "$skip"; }
  fi
  shift
done
if [ "${1:-}" != -- ] || [ $# -lt 2 ]; then
  echo "usage: require.sh PROG ... -- COMMAND [ARGS ...]" >&2
  exit 2
fi
shift
exec "$@"
