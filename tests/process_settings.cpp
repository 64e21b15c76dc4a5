// The test binary is a program like the apps: it makes the process-wide CPU
// settings once, at start (the library never does; fer/report/runtime.h), including
// the oneDNN gradient check, so the tests train with correct gradients.
#include <cstdio>
#include <string>

#include "fer/report/runtime.h"

namespace {
int configure() {
  const int threads = fer::configure_cpu_runtime(0);
  const std::string warning = fer::turn_off_onednn_if_its_gradients_are_wrong();
  if (!warning.empty()) std::fprintf(stderr, "warning: %s\n", warning.c_str());
  return threads;
}
const int kThreads = configure();
}  // namespace
