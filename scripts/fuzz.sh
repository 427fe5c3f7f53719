#!/usr/bin/env bash
# fuzz.sh [LIBFUZZER_ARGS...]: builds the libFuzzer targets with clang,
# ASan+UBSan and the contract checks (VXLATE_DEBUG_CHECKS, as the asan config
# of build.sh) in build/fuzz, then runs engine_fuzz, virtqueue_fuzz and
# vhost_user_fuzz, each for FUZZ_SECONDS (default 60) over a copy of its corpus
# (fuzz/corpus/engine, fuzz/corpus/virtqueue, fuzz/corpus/vhost_user) in a
# temporary directory of its own: nothing is written into the source tree.
# LIBFUZZER_ARGS go to all of them. Exits non-zero when a fuzzer finds a
# crash, a leak, a timeout or an invariant violation (the other targets still
# run); the reproducer is kept in that target's temporary directory, whose
# path is printed.
# FUZZ_TIMEOUT: seconds one input may take (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."

targets=(engine_fuzz virtqueue_fuzz vhost_user_fuzz)
CC=clang CXX=clang++ cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DVXLATE_SANITIZE=address -DVXLATE_DEBUG_CHECKS=ON -DVXLATE_BUILD_FUZZ=ON -DVXLATE_BUILD_TESTS=OFF -DVXLATE_BUILD_BENCH=OFF >/dev/null
cmake --build build/fuzz -j "$(nproc)" --target "${targets[@]}"
for t in "${targets[@]}"; do
  bin=build/fuzz/fuzz/$t
  [[ -x $bin ]] || { echo "fuzz.sh: $bin was not built (is fuzz/ added to CMakeLists.txt?)" >&2; exit 2; }
done

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for t in "${targets[@]}"; do
  bin=build/fuzz/fuzz/$t
  work=$(mktemp -d "${TMPDIR:-/tmp}/vxlate-fuzz.XXXXXX")
  mkdir -p "$work/corpus" "$work/artifacts"
  cp "fuzz/corpus/${t%_fuzz}"/* "$work/corpus/"
  rc=0
  "$bin" -max_total_time="${FUZZ_SECONDS:-60}" -timeout="${FUZZ_TIMEOUT:-10}" -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" "$@" "$work/corpus" || rc=$?
  if ((rc != 0)); then
    echo "fuzz.sh: $t failed (exit $rc); reproducer(s) in $work/artifacts:" >&2
    ls -l "$work/artifacts" >&2
    echo "fuzz.sh: replay with: $bin $work/artifacts/<file>" >&2
    ((status != 0)) || status=$rc
    continue
  fi
  rm -rf "$work"
  echo "fuzz.sh: $t found nothing"
done
exit "$status"
