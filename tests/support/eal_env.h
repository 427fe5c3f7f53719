// tests/support/eal_env.h: the one GoogleTest environment that brings DPDK's
// EAL up for a test binary, through the same bootstrap as the load tools
// (vxlate::load::init_eal: --no-huge --no-pci --no-shconf, 256 MiB, lcores
// floating over this process's CPUs), and owns an mbuf pool for the tests.
//
// Register it once per binary, with the lcores the binary needs (the main
// lcore plus a worker per lcore its tests launch):
//
//   [[maybe_unused]] ::testing::Environment* const kEal =
//       ::testing::AddGlobalTestEnvironment(new vxlate::test::EalEnv(3));
//
// The EAL comes up once per process and cannot come up again after
// rte_eal_cleanup(), hence one environment per binary (gtest runs SetUp once,
// before the first test, and TearDown after the last).
//
// Thread-safety contract: Setup only: SetUp/TearDown run on the gtest main
// thread, which becomes the EAL main lcore. Any thread: pool() between them.
#pragma once

#include <gtest/gtest.h>
#include <rte_eal.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "vxlate/load/eal.h"

namespace vxlate::test {

class EalEnv : public ::testing::Environment {
 public:
  // lcores: how many EAL lcores (>= 1) the binary's tests use.
  explicit EalEnv(unsigned lcores = 1) : lcores_(lcores) {}

  // The tests' mbuf pool (4095 mbufs of RTE_MBUF_DEFAULT_BUF_SIZE).
  static rte_mempool* pool() { return pool_; }

  void SetUp() override {
    ASSERT_TRUE(load::init_eal("vxlate-test", lcores_)) << "rte_eal_init failed";
    pool_ = rte_pktmbuf_pool_create("test_pool", 4095, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    ASSERT_NE(pool_, nullptr) << "rte_pktmbuf_pool_create failed";
  }

  void TearDown() override {
    rte_mempool_free(pool_);
    pool_ = nullptr;
    rte_eal_cleanup();
  }

 private:
  unsigned lcores_;
  static inline rte_mempool* pool_ = nullptr;
};

}  // namespace vxlate::test
