#!/usr/bin/env bash
# The whole test suite: install what is missing, then build and test:
# Release (all tests), the installed package (examples/embed built out of tree
# against it, with find_package and with pkg-config), ASan+UBSan with the debug
# contract checks (all tests but the VM), the libFuzzer targets for
# FUZZ_SECONDS each (default 60) under ASan+UBSan, and TSan with the debug
# checks (all tests but the VM; the stress label is what TSan is for). The VM
# end-to-end test (e2e_vm, a minute of QEMU under TCG) runs in Release only:
# the sanitized switch meets real front ends in the other e2e tests. Ends with
# ctest's summary line.
# `scripts/test.sh release` (or package, asan, fuzz, tsan) runs one step.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
configs=("$@")
((${#configs[@]})) || configs=(release package asan fuzz tsan)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
for c in "${configs[@]}"; do
  if [ "$c" = fuzz ]; then
    echo "=== fuzz: engine_fuzz, virtqueue_fuzz and vhost_user_fuzz, ${FUZZ_SECONDS:-60} s each"
    scripts/fuzz.sh
    continue
  fi
  if [ "$c" = package ]; then
    echo "=== package: install, then build and run examples/embed against it"
    scripts/package_test.sh
    continue
  fi
  echo "=== $c: build"
  scripts/build.sh "$c"
  echo "=== $c: test"
  skip=()
  [ "$c" = release ] || skip=(-E '^e2e_vm$')
  ctest --test-dir "build/$c" --output-on-failure -j 2 "${skip[@]}"
done
