#include "vxlate/common/check.h"

#include <cstdio>
#include <cstdlib>

namespace vxlate::detail {

void dcheck_failed(const char* file, int line, const char* cond, const char* msg) noexcept {
  std::fprintf(stderr, "%s:%d: VXLATE_DCHECK(%s) failed: %s\n", file, line, cond, msg);
  std::fflush(stderr);
  std::abort();
}

}  // namespace vxlate::detail
