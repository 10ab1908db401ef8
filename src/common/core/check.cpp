#include "common/core/check.h"

namespace rlhf {

void fail_call(const char* file, int line, const char* call, const std::string& what,
               const char* hint) {
  throw Error(fmt::format("{}:{}: {} failed: {} (hint: {})", file, line, call, what, hint));
}

}  // namespace rlhf
