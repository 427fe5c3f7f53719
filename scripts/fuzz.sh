#!/usr/bin/env bash
# fuzz.sh [LIBFUZZER_ARGS...]: builds the libFuzzer targets with clang and
# ASan+UBSan in build/fuzz, then runs engine_fuzz for FUZZ_SECONDS (default 60)
# over a copy of fuzz/corpus/engine in a temporary directory: nothing is written
# into the source tree. Exits non-zero when the fuzzer finds a crash, a leak,
# a timeout or an invariant violation; the reproducer is kept in the temporary
# directory, whose path is printed.
# FUZZ_TIMEOUT: seconds one input may take (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."

CC=clang CXX=clang++ cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DVXLATE_SANITIZE=address -DVXLATE_BUILD_FUZZ=ON -DVXLATE_BUILD_TESTS=OFF -DVXLATE_BUILD_BENCH=OFF >/dev/null
cmake --build build/fuzz -j "$(nproc)" --target engine_fuzz
bin=build/fuzz/fuzz/engine_fuzz
[[ -x $bin ]] || { echo "fuzz.sh: $bin was not built (is fuzz/ added to CMakeLists.txt?)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/vxlate-fuzz.XXXXXX")
mkdir -p "$work/corpus" "$work/artifacts"
cp fuzz/corpus/engine/* "$work/corpus/"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
rc=0
"$bin" -max_total_time="${FUZZ_SECONDS:-60}" -timeout="${FUZZ_TIMEOUT:-10}" -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" "$@" "$work/corpus" || rc=$?
if ((rc != 0)); then
  echo "fuzz.sh: engine_fuzz failed (exit $rc); reproducer(s) in $work/artifacts:" >&2
  ls -l "$work/artifacts" >&2
  echo "fuzz.sh: replay with: $bin $work/artifacts/<file>" >&2
  exit "$rc"
fi
rm -rf "$work"
echo "fuzz.sh: engine_fuzz found nothing"
