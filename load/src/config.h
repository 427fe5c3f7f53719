// load/src/config.h: what a NetperfConfig must satisfy to run. Internal to
// vxlate::load; the names of workloads and modes (vxlate/load/netperf.h) are
// defined next to it in config.cpp.
//
// Thread safety: check_config() reads the EAL lcore count: after init_eal().
#pragma once

#include "vxlate/load/netperf.h"

namespace vxlate::load::detail {

// Throws std::runtime_error for a config that cannot run: a queue size that is
// not a power of two >= 16, a zero batch or queue-pair count, a strict batch
// over half the ring, a negative warm-up or clean length or either with a
// packet budget, a window that is not positive, or fewer EAL lcores than queue_pairs + 1.
void check_config(const NetperfConfig& cfg);

}  // namespace vxlate::load::detail
