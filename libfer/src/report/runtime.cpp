#include "fer/report/runtime.h"

#include <cstdlib>

#include <torch/torch.h>

#include <ATen/Context.h>

#include <algorithm>
#include <cstdio>
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

namespace {
// d(sum(conv2(conv1(x)) * r)) / d(conv1.weight): the gradient the bad oneDNN got wrong.
torch::Tensor two_conv_weight_gradient() {
  torch::manual_seed(0);
  torch::nn::Conv2d first(torch::nn::Conv2dOptions(1, 8, 3).padding(1));
  torch::nn::Conv2d second(torch::nn::Conv2dOptions(8, 8, 3).padding(1));
  // Small enough to cost ~70 ms a process; at this size the bad oneDNN was 79% off
  // on every one-thread run (and off on two threads more often than not).
  const auto x = torch::rand({8, 1, 24, 24});
  const auto r = torch::rand({8, 8, 24, 24});
  (second(first(x)) * r).sum().backward();
  return first->weight.grad().clone();
}
}  // namespace

std::string turn_off_onednn_if_its_gradients_are_wrong() {
  auto& context = at::globalContext();
  if (!at::hasMKLDNN() || !context.userEnabledMkldnn()) return "";
  const int threads = torch::get_num_threads();
  context.setUserEnabledMkldnn(false);
  torch::set_num_threads(1);
  const auto reference = two_conv_weight_gradient();
  context.setUserEnabledMkldnn(true);
  double worst = 0;
  for (const int n : {1, threads, threads}) {
    torch::set_num_threads(n);
    const auto g = two_conv_weight_gradient();
    worst = std::max(worst, ((g - reference).abs().max() / reference.abs().max()).item<double>());
  }
  torch::set_num_threads(threads);
  if (worst < 1e-3) return "";
  context.setUserEnabledMkldnn(false);
  char text[400];
  std::snprintf(text, sizeof text,
                "this LibTorch's oneDNN computes wrong convolution gradients on this CPU (%.0f%% off LibTorch's own "
                "kernels): oneDNN is off for this run (correct, 3-5x slower); ONEDNN_MAX_CPU_ISA=AVX2 in the "
                "environment may keep it on and right (it did on the AMD EPYC where this was seen)",
                100 * worst);
  return text;
}

int threads_or_omp(int configured) {
  if (configured > 0) return configured;
  const char* omp = std::getenv("OMP_NUM_THREADS");
  const int n = omp ? std::atoi(omp) : 0;
  return n > 0 ? n : 0;
}

}  // namespace fer
