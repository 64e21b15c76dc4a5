// The test binary is a program like the apps: it makes the process-wide CPU
// settings once, at start (the library never does; fer/runtime.h).
#include "fer/runtime.h"

namespace {
const int kThreads = fer::configure_cpu_runtime(0);
}  // namespace
