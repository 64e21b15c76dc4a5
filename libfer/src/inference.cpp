#include "fer/inference.h"

#include <thread>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "fer/augment.h"
#include "fer/progress.h"

namespace fer {

torch::Device resolve_device(const std::string& spec) {
  if (spec == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  torch::Device device(torch::kCPU);
  try {
    device = torch::Device(spec);
  } catch (const c10::Error&) {
    throw std::runtime_error("invalid device '" + spec + "' (expected auto, cpu, cuda or cuda:N)");
  }
  if (device.is_cuda()) {
    if (!torch::cuda::is_available())
      throw std::runtime_error("device '" + spec + "' requested but this LibTorch build sees no CUDA device");
    const auto count = static_cast<int64_t>(torch::cuda::device_count());
    if (device.has_index() && device.index() >= count)
      throw std::runtime_error("device '" + spec + "' requested but only " + std::to_string(count) +
                               " CUDA device(s) are present");
  }
  return device;
}

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

torch::Tensor images_tensor(const Dataset& data) {
  const auto n = static_cast<int64_t>(data.size());
  if (n == 0) return torch::empty({0, kImageSize, kImageSize}, torch::kUInt8);
  return torch::from_blob(const_cast<std::uint8_t*>(data.pixels.data()), {n, kImageSize, kImageSize}, torch::kUInt8)
      .clone();
}

torch::Tensor labels_tensor(const Dataset& data) {
  return torch::tensor(data.labels, torch::kInt64);
}

torch::Tensor predict_probabilities(ClassifierImpl& model, const torch::Tensor& images_u8, const torch::Device& device,
                                    const PredictOptions& options) {
  TORCH_CHECK(images_u8.dim() == 3 && images_u8.scalar_type() == torch::kUInt8,
              "predict_probabilities expects uint8 images [N,H,W], got ", images_u8.sizes());
  TORCH_CHECK(options.batch_size > 0, "batch_size must be > 0");
  torch::NoGradGuard no_grad;
  model.eval();
  const int64_t n = images_u8.size(0);
  std::vector<torch::Tensor> chunks;
  std::unique_ptr<ProgressBar> bar;
  if (options.progress) bar = std::make_unique<ProgressBar>(n, options.progress_label);
  for (int64_t start = 0; start < n; start += options.batch_size) {
    const int64_t end = std::min(n, start + options.batch_size);
    const auto idx = torch::arange(start, end, torch::kInt64).to(images_u8.device());
    const auto x = to_model_input(images_u8, idx, device);
    auto probs = torch::softmax(model.forward(x), 1);
    if (options.tta) probs = (probs + torch::softmax(model.forward(x.flip({3})), 1)) / 2;
    chunks.push_back(probs.to(torch::kCPU, torch::kFloat32));
    if (bar) bar->advance(end - start, end - start);
  }
  if (bar) bar->finish();
  if (chunks.empty()) return torch::empty({0, 0}, torch::kFloat32);
  return torch::cat(chunks, 0);
}

BatchPredictor probability_predictor(ClassifierImpl& model, const torch::Device& device) {
  return [&model, device](const std::vector<float>& images, int n) {
    torch::NoGradGuard no_grad;
    model.eval();
    const auto x = torch::from_blob(const_cast<float*>(images.data()), {n, 1, kImageSize, kImageSize}, torch::kFloat32)
                       .to(device);
    const auto p = torch::softmax(model.forward(x), 1).to(torch::kCPU).contiguous();
    return std::vector<float>(p.data_ptr<float>(), p.data_ptr<float>() + p.numel());
  };
}

}  // namespace fer
