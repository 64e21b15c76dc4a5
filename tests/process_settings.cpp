// The test binary is a program like the apps: it makes the process-wide CPU
// settings once, at start (the library never does; fer/report/runtime.h), including
// the oneDNN gradient check, so the tests train with correct gradients.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "fer/report/runtime.h"

namespace {
// All cores, or OMP_NUM_THREADS as the apps take it: CTest sets it for the
// suites it runs side by side (tests/add_suites.cmake), where two processes of
// all cores' threads each ran ~20% slower (busy-waiting OpenMP threads).
int configure() {
  const int threads = fer::configure_cpu_runtime(fer::threads_or_omp(0));
  const std::string warning = fer::turn_off_onednn_if_its_gradients_are_wrong();
  if (!warning.empty()) std::fprintf(stderr, "warning: %s\n", warning.c_str());
  return threads;
}
const int kThreads = configure();
}  // namespace
