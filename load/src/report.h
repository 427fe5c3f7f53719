// load/src/report.h: the figures of a netperf run, read out of its RunState
// on the main lcore. Internal to vxlate::load; to_json() (netperf.h) formats
// them.
//
// Thread-safety contract: progress() while the run goes (it reads only the
// guests' relaxed progress counters); collect() once every lcore stopped and
// the main lcore acquired guests_running == 0 and device_done.
#pragma once

#include <cstdint>

#include "run_state.h"
#include "vxlate/load/netperf.h"

namespace vxlate::load::detail {

// Packets and payload bytes so far over all queue pairs, `seconds` in.
NetperfProgress progress(const RunState& run, double seconds);

// The result of a finished run measured from TSC t0 to t1; setup_maps: the
// MAP requests of the setup, not counted as load. Drains the device's fault
// events.
NetperfResult collect(RunState& run, uint64_t t0, uint64_t t1, uint64_t setup_maps);

}  // namespace vxlate::load::detail
