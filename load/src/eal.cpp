#include "vxlate/load/eal.h"

#include <sched.h>

#include <cstdio>
#include <string>
#include <vector>

#include <rte_eal.h>
#include <rte_errno.h>

#include "backoff.h"

namespace vxlate::load {

bool init_eal(const char* argv0, unsigned lcores, bool pin) {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  if (cpus.empty()) cpus.push_back(0);
  char map[512];
  const bool pinned = pin && cpus.size() >= lcores;
  // relaxed: before any lcore runs (backoff.h: pinned lcores must not yield).
  detail::idle_yield.store(!pinned, std::memory_order_relaxed);
  if (pinned) {
    // Lcore i on the i-th CPU of the mask, alone.
    std::string m;
    for (unsigned i = 0; i < lcores; ++i) {
      if (i != 0) m.push_back(',');
      m.append(std::to_string(i)).push_back('@');
      m.append(std::to_string(cpus[i]));
    }
    std::snprintf(map, sizeof map, "%s", m.c_str());
  } else {
    // Lcores 0..n-1 float over every CPU we may use: with more lcores than
    // CPUs (2-core machines) the polling loops yield when idle.
    std::string list;
    for (int c : cpus) {
      if (!list.empty()) list.push_back(',');
      list.append(std::to_string(c));
    }
    std::snprintf(map, sizeof map, "(0-%u)@(%s)", lcores - 1, list.c_str());
  }
  std::vector<std::string> args = {argv0, "--no-huge", "--no-pci", "--no-shconf", "-m", "256", "--no-telemetry",
                                   "--log-level", "lib.eal:error", "--lcores", map};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0) {
    std::fprintf(stderr, "vxlate: rte_eal_init failed: %s\n", rte_strerror(rte_errno));
    return false;
  }
  return true;
}

}  // namespace vxlate::load
