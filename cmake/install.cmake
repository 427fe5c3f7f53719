# cmake/install.cmake: what `cmake --install` puts under the prefix.
#
#   include/vxlate/{common,pagetable,iotlb,engine,dataplane}/   public headers
#   lib*/libvxlate_{common,pagetable,iotlb,engine,dataplane,vhost_user}.a  product libraries
#   bin/vxlate-replay, bin/vxlate-netperf                       (apps/CMakeLists.txt)
#   lib*/cmake/vxlate/   vxlateConfig.cmake, vxlateConfigVersion.cmake,
#                        vxlateTargets*.cmake: vxlate::common, ::pagetable,
#                        ::iotlb, ::engine, ::dataplane, ::vhost_user (and ::dpdk, below)
#   lib*/pkgconfig/      vxlate.pc (the core), vxlate-dataplane.pc
#
# Only product libraries are installed: never vxlate::load (test doubles, load
# generation, EAL bootstrap), test or benchmark targets.
#
# DPDK in the installed interface. DPDK's pkg-config cflags are
#   -I/usr/include/dpdk -I/usr/include/x86_64-linux-gnu/dpdk
#   -include rte_config.h -march=corei7 (+ -I of its private requirements)
# and libdpdk-libs.pc, the only other DPDK .pc, carries the same. vxlate's own
# build compiles with all of them (vxlate_dpdk in the top-level CMakeLists.txt),
# so our objects are built the way DPDK's own libraries are. A consumer gets
# DPDK's include directories and libraries, and neither -include nor -march:
#   - The core's public headers use DPDK in one place (vxlate/common/rcu.h
#     includes rte_rcu_qsbr.h; the data plane's net.h adds rte_mbuf.h and
#     rte_mempool.h). DPDK's headers include rte_config.h themselves
#     (rte_common.h), and vxlate's headers test no RTE_ macro before including
#     them, so `-include rte_config.h` changes nothing for them: every public
#     header compiles on its own with only the -I flags.
#   - -march selects code inside DPDK's static inline functions (SSE4.2 paths
#     and the like); no layout depends on it (cache-line size and lcore limits
#     come from rte_config.h). Consumer code built for another -march calls the
#     same ABI. DPDK's shared libraries were built for corei7, so that is the
#     CPU floor at run time whatever the consumer compiles for.
#   - A back end that is not a DPDK application embeds the core without
#     adopting DPDK's compiler flags: it keeps its own -march, and a forced
#     include of rte_config.h is not injected into every one of its files.
# The exported vxlate::dpdk therefore links vxlate::libdpdk, an imported target
# that vxlateConfig.cmake makes from pkg-config's libdpdk: its include
# directories and its Libs (DPDK's own -Wl,--as-needed first, so a core-only
# consumer records only librte_rcu and what it pulls in), not its cflags. The
# pkg-config file vxlate.pc carries the same -I flags and Libs, not
# `Requires: libdpdk`, for the same reason. A DPDK application that wants
# DPDK's full flags adds libdpdk itself, as it does anyway.
#
# VXLATE_DEBUG_CHECKS is a PUBLIC definition of vxlate::common, so the exported
# target carries it; vxlate.pc adds -DVXLATE_DEBUG_CHECKS to its Cflags when the
# package was built with it. Header-only xxHash (iotlb.h includes xxhash.h with
# XXH_INLINE_ALL) comes through PkgConfig::XXHASH, as in the build.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(VXLATE_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/vxlate
    CACHE STRING "where vxlateConfig.cmake is installed, relative to the prefix")
set(_vxlate_products common pagetable iotlb engine dataplane)

foreach(lib IN LISTS _vxlate_products)
  set_target_properties(vxlate_${lib} PROPERTIES EXPORT_NAME ${lib})
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${lib}/include/ DESTINATION include
          FILES_MATCHING PATTERN "*.h")
endforeach()
set_target_properties(vxlate_dpdk PROPERTIES EXPORT_NAME dpdk)
# Consumers compile vxlate's headers as C++20 (std::span, <=>); a no-op for our
# own build, which sets CMAKE_CXX_STANDARD 20.
target_compile_features(vxlate_common INTERFACE cxx_std_20)
list(TRANSFORM _vxlate_products PREPEND vxlate_ OUTPUT_VARIABLE _vxlate_targets)
# The vhost-user back end: its own target in dataplane/ (headers installed with dataplane's).
set_target_properties(vxlate_vhost_user PROPERTIES EXPORT_NAME vhost_user)
install(TARGETS ${_vxlate_targets} vxlate_vhost_user vxlate_dpdk
        EXPORT vxlateTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(EXPORT vxlateTargets NAMESPACE vxlate:: DESTINATION ${VXLATE_INSTALL_CMAKEDIR})

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/vxlateConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/vxlateConfig.cmake
                              INSTALL_DESTINATION ${VXLATE_INSTALL_CMAKEDIR})
# 0.x: a minor version may change the API; 1.x on: SameMajorVersion.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/vxlateConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/vxlateConfig.cmake ${PROJECT_BINARY_DIR}/vxlateConfigVersion.cmake
        DESTINATION ${VXLATE_INSTALL_CMAKEDIR})

# pkg-config: the DPDK part is what pkg-config printed for libdpdk at configure
# time, less the non -I cflags (see above).
list(TRANSFORM DPDK_INCLUDE_DIRS PREPEND -I OUTPUT_VARIABLE _vxlate_pc_dpdk_cflags)
list(JOIN _vxlate_pc_dpdk_cflags " " VXLATE_PC_DPDK_CFLAGS)
list(JOIN DPDK_LDFLAGS " " VXLATE_PC_DPDK_LIBS)
set(VXLATE_PC_DEFINES "")
if(VXLATE_DEBUG_CHECKS)
  set(VXLATE_PC_DEFINES " -DVXLATE_DEBUG_CHECKS")
endif()
# Two passes: everything but the prefix now; the prefix at install time, so that
# `cmake --install --prefix P` writes P into the files.
set(VXLATE_PC_PREFIX "@CMAKE_INSTALL_PREFIX@")
foreach(pc vxlate vxlate-dataplane)
  configure_file(${CMAKE_CURRENT_LIST_DIR}/${pc}.pc.in ${PROJECT_BINARY_DIR}/pkgconfig/${pc}.pc.in @ONLY)
  install(CODE "configure_file(\"${PROJECT_BINARY_DIR}/pkgconfig/${pc}.pc.in\"
                               \"${PROJECT_BINARY_DIR}/pkgconfig/${pc}.pc\" @ONLY)")
  install(FILES ${PROJECT_BINARY_DIR}/pkgconfig/${pc}.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endforeach()
