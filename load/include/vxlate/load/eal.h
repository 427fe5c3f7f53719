// vxlate/load/eal.h: the EAL bootstrap of vxlate's load tools, benchmarks and
// tests: DPDK's EAL on an ordinary machine, without hugepages or devices.
//
// init_eal() passes --no-huge --no-pci (256 MiB of ordinary pages, no device
// probing), --no-shconf (no /var/run state, so parallel test binaries do not
// collide), no telemetry, EAL logs at error level, and maps lcores 0..n-1 as
// one floating set over every CPU in this process's affinity mask rather than
// pinning lcore i to CPU i: on a machine with fewer CPUs than lcores the
// busy-polling loops then share CPUs (and yield when idle) instead of failing
// to start. The trade-off is no CPU isolation, which a load tool for 2-core
// CI machines can afford and a product back end, which brings up EAL itself
// with its own arguments, cannot; hence it lives here, not in dataplane/.
// Measurements ask for pinning where the CPUs suffice (one lcore per CPU): a
// floating pair of pollers can be stacked on one CPU by the scheduler for a
// while, and a latency-bound run then crawls; pinned lcores also stop
// yielding when idle (load/src/backoff.h: on EEVDF kernels a yielding poller
// loses its CPU to any busy process beside it).
//
// Thread-safety contract: Setup only. Once per process, from the thread that
// becomes the EAL main lcore, before any other DPDK call; rte_eal_cleanup()
// undoes it.
#pragma once

namespace vxlate::load {

// Setup only. Initialises the EAL with `lcores` (>= 1) lcores; argv0 is the
// program name EAL logs under. pin: lcore i runs on the i-th CPU of the
// affinity mask alone, where the mask has at least `lcores` CPUs (else the
// lcores float as without it). Returns false (with a message on stderr) on
// failure.
bool init_eal(const char* argv0, unsigned lcores, bool pin = false);

}  // namespace vxlate::load
