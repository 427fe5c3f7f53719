// tests/dataplane/eal_env.h: a GoogleTest environment that initialises the
// DPDK EAL once per test binary (no hugepages, no PCI, one lcore) and owns one
// mbuf pool for the tests. Register it with ::testing::AddGlobalTestEnvironment.
#pragma once

#include <gtest/gtest.h>
#include <iterator>
#include <rte_eal.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

namespace vxlate::dataplane::test {

class EalEnv : public ::testing::Environment {
 public:
  static rte_mempool* pool() { return pool_; }

  void SetUp() override {
    static char a0[] = "test", a1[] = "--no-huge", a2[] = "--no-pci", a3[] = "--no-shconf", a4[] = "-m",
                a5[] = "64", a6[] = "--no-telemetry", a7[] = "--log-level", a8[] = "lib.eal:error", a9[] = "-l",
                a10[] = "0";
    char* argv[] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10};
    ASSERT_GE(rte_eal_init(static_cast<int>(std::size(argv)), argv), 0) << "rte_eal_init failed";
    pool_ = rte_pktmbuf_pool_create("test_pool", 4095, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    ASSERT_NE(pool_, nullptr) << "rte_pktmbuf_pool_create failed";
  }

  void TearDown() override {
    rte_mempool_free(pool_);
    pool_ = nullptr;
    rte_eal_cleanup();
  }

 private:
  static inline rte_mempool* pool_ = nullptr;
};

}  // namespace vxlate::dataplane::test
