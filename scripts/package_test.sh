#!/usr/bin/env bash
# package_test.sh: the installed package works for an out-of-tree consumer.
# Builds vxlate (Release, no tests or benchmarks) in build/pkg, installs it into
# a temporary prefix, then builds and runs examples/embed against it twice:
# through find_package(vxlate) (CMAKE_PREFIX_PATH) and through pkg-config
# (PKG_CONFIG_PATH). Also checks that only product libraries were installed,
# and that the consumer, not a DPDK application, got none of DPDK's
# -march/-include flags and needs no DPDK library but librte_rcu.
# Fails loudly on the first step that fails. JOBS: build parallelism (nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=${JOBS:-$(nproc)}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vxlate-pkg.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "package_test: FAILED: $*" >&2; exit 1; }

echo "--- package: build vxlate into build/pkg"
cmake -S . -B build/pkg -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DVXLATE_BUILD_TESTS=OFF -DVXLATE_BUILD_BENCH=OFF >/dev/null || fail "configure"
cmake --build build/pkg -j "$jobs" || fail "build"
echo "--- package: install into $tmp/prefix"
cmake --install build/pkg --prefix "$tmp/prefix" >/dev/null || fail "install"

prefix=$tmp/prefix
for lib in common pagetable iotlb engine dataplane; do
  [ -n "$(find "$prefix" -name "libvxlate_$lib.a")" ] || fail "libvxlate_$lib.a not installed"
  [ -d "$prefix/include/vxlate/$lib" ] || fail "include/vxlate/$lib not installed"
done
# The vhost-user back end: its own library, its header among dataplane's.
[ -n "$(find "$prefix" -name libvxlate_vhost_user.a)" ] || fail "libvxlate_vhost_user.a not installed"
[ -f "$prefix/include/vxlate/dataplane/vhost_user.h" ] || fail "vxlate/dataplane/vhost_user.h not installed"
extra=$(find "$prefix" -name 'libvxlate_*' ! -regex '.*/libvxlate_\(common\|pagetable\|iotlb\|engine\|dataplane\|vhost_user\)\.\(a\|so.*\)')
[ -z "$extra" ] || fail "non-product libraries installed: $extra"
[ ! -e "$prefix/include/vxlate/load" ] || fail "vxlate/load headers installed"
pcdir=$(dirname "$(find "$prefix" -name vxlate.pc | head -n1)")
[ -f "$pcdir/vxlate.pc" ] || fail "vxlate.pc not installed"

echo "--- package: examples/embed with find_package(vxlate)"
cmake -S examples/embed -B "$tmp/embed-cmake" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_COMPILE_WARNING_AS_ERROR=ON >/dev/null || fail "embed (find_package): configure"
cmake --build "$tmp/embed-cmake" || fail "embed (find_package): build"
"$tmp/embed-cmake/embed" || fail "embed (find_package): run"

echo "--- package: examples/embed with pkg-config ($pcdir)"
PKG_CONFIG_PATH="$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}" \
  cmake -S examples/embed -B "$tmp/embed-pc" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DEMBED_USE_PKG_CONFIG=ON -DCMAKE_COMPILE_WARNING_AS_ERROR=ON >/dev/null || fail "embed (pkg-config): configure"
cmake --build "$tmp/embed-pc" || fail "embed (pkg-config): build"
"$tmp/embed-pc/embed" || fail "embed (pkg-config): run"
PKG_CONFIG_PATH="$pcdir" pkg-config --exists --print-errors vxlate-dataplane || fail "vxlate-dataplane.pc"

# Not a DPDK application: no DPDK compiler flags reached the consumer, and the
# only DPDK library it needs is librte_rcu (DPDK's --as-needed drops the rest).
for b in embed-cmake embed-pc; do
  if ninja -C "$tmp/$b" -t commands embed | grep -q -e '-march=' -e 'rte_config\.h'; then
    fail "$b: DPDK's -march/-include flags reached the consumer"
  fi
  rte=$(readelf -d "$tmp/$b/embed" | grep -o 'librte_[a-z0-9_]*' | sort -u | tr '\n' ' ')
  [ "$rte" = "librte_rcu " ] || fail "$b: the core should need only librte_rcu from DPDK, needs: $rte"
done
echo "package_test: ok ($root, prefix removed on exit)"
