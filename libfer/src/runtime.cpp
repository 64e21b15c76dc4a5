#include "fer/runtime.h"

#include <torch/torch.h>

#include <algorithm>
#include <thread>
#ifdef __GLIBC__
#include <malloc.h>
#endif

namespace fer {

int configure_cpu_runtime(int threads, bool keep_freed_memory) {
#ifdef __GLIBC__
  if (keep_freed_memory) {
    mallopt(M_MMAP_MAX, 0);                    // big blocks come from the heap...
    mallopt(M_TRIM_THRESHOLD, -1);       // ...and stay there once freed (-1: never trim)
  }
#endif
  const int n = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(n);
  return torch::get_num_threads();
}

}  // namespace fer
