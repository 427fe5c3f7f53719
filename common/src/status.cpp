#include "vxlate/common/status.h"

namespace vxlate {

const char* to_string(Status s) noexcept {
  switch (s) {
    case Status::kOk: return "OK";
    case Status::kIoErr: return "IOERR";
    case Status::kUnsupp: return "UNSUPP";
    case Status::kDevErr: return "DEVERR";
    case Status::kInval: return "INVAL";
    case Status::kRange: return "RANGE";
    case Status::kNoEnt: return "NOENT";
    case Status::kFault: return "FAULT";
    case Status::kNoMem: return "NOMEM";
  }
  return "?";
}

}  // namespace vxlate
