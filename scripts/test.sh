#!/usr/bin/env bash
# The whole test suite: install what is missing, then build and test three
# configurations: Release (all tests), ASan+UBSan (all tests), TSan (all tests;
# the stress label is what TSan is for), with the engine's libFuzzer target run
# for FUZZ_SECONDS (default 60) under ASan+UBSan before TSan. Ends with ctest's
# summary line. `scripts/test.sh release` (or asan, fuzz, tsan) runs one step.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
configs=("$@")
((${#configs[@]})) || configs=(release asan fuzz tsan)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
for c in "${configs[@]}"; do
  if [ "$c" = fuzz ]; then
    echo "=== fuzz: engine_fuzz for ${FUZZ_SECONDS:-60} s"
    scripts/fuzz.sh
    continue
  fi
  echo "=== $c: build"
  scripts/build.sh "$c"
  echo "=== $c: test"
  ctest --test-dir "build/$c" --output-on-failure -j 2
done
