// vxlate/load/cli.h: command-line helpers shared by the load tools
// (vxlate-netperf, vxlate-vuload).
//
// Thread safety: pure functions; any thread.
#pragma once

#include <cerrno>
#include <cstdlib>
#include <string>

namespace vxlate::load {

// The value of option `opt`: a whole number in [1, max]. Anything else calls
// usage("bad value for OPT"), which must not return.
inline unsigned long parse_uint(const char* opt, const char* v, unsigned long max, void (*usage)(const char*)) {
  char* end = nullptr;
  errno = 0;
  const unsigned long x = std::strtoul(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0' || x == 0 || x > max) {
    usage((std::string("bad value for ") + opt).c_str());
    std::abort();  // usage() returned
  }
  return x;
}

}  // namespace vxlate::load
