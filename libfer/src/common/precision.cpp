#include "fer/common/precision.h"

#include <torch/torch.h>

#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <algorithm>
#include <stdexcept>

namespace fer {
namespace {

// LibTorch 2.4 moved autocast to per-device-type functions; 1.13 has one per device.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
bool autocast_enabled(bool cuda) { return at::autocast::is_autocast_enabled(cuda ? at::kCUDA : at::kCPU); }
at::ScalarType autocast_dtype(bool cuda) { return at::autocast::get_autocast_dtype(cuda ? at::kCUDA : at::kCPU); }
void set_autocast(bool cuda, bool enabled, at::ScalarType dtype) {
  at::autocast::set_autocast_enabled(cuda ? at::kCUDA : at::kCPU, enabled);
  at::autocast::set_autocast_dtype(cuda ? at::kCUDA : at::kCPU, dtype);
}
#else
bool autocast_enabled(bool cuda) { return cuda ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled(); }
at::ScalarType autocast_dtype(bool cuda) {
  return cuda ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
}
void set_autocast(bool cuda, bool enabled, at::ScalarType dtype) {
  if (cuda) {
    at::autocast::set_enabled(enabled);
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_cpu_enabled(enabled);
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
}
#endif

}  // namespace

const EnumNames<Precision>& precision_names() {
  static const EnumNames<Precision> names{
      "precision", {{"fp32", Precision::fp32}, {"bf16", Precision::bf16}, {"fp16", Precision::fp16}}};
  return names;
}

Precision parse_precision(const std::string& name) { return precision_names().parse(name); }

Precision resolve_inference_precision(const std::string& name, const torch::Device& device) {
  return name == "auto" ? default_inference_precision(device) : parse_precision(name);
}

Precision default_inference_precision(const torch::Device& device) {
  return device.is_cpu() && cpu_has_native_bf16() ? Precision::bf16 : Precision::fp32;
}

std::string precision_name(Precision p) { return precision_names().name(p); }

bool cpu_has_native_bf16() {
#if defined(__x86_64__) && defined(__GNUC__)
  // CPUID leaf 7 sub-leaf 1, EAX bit 5: AVX512_BF16; leaf 7 sub-leaf 0, EDX bit 22: AMX-BF16.
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  __asm__("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(7), "c"(1));
  const bool avx512_bf16 = eax & (1u << 5);
  __asm__("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(7), "c"(0));
  const bool amx_bf16 = edx & (1u << 22);
  return avx512_bf16 || amx_bf16;
#else
  return false;
#endif
}

void check_precision_supported(Precision p, const torch::Device& device) {
  if (p == Precision::fp32 || device.is_cuda()) return;
  if (p == Precision::fp16)
    throw std::runtime_error("precision fp16 needs a CUDA device (LibTorch's CPU autocast is bf16 only); device is " +
                             device.str() + ": use bf16 or fp32");
  if (!cpu_has_native_bf16())
    throw std::runtime_error("precision bf16 on " + device.str() +
                             ": this CPU has neither AVX512-BF16 nor AMX-BF16, so bf16 would run slower than fp32; "
                             "use fp32");
}

AutocastScope::AutocastScope(const torch::Device& device, Precision p) {
  if (p == Precision::fp32) return;
  active_ = true;
  cuda_ = device.is_cuda();
  previous_enabled_ = autocast_enabled(cuda_);
  previous_dtype_ = autocast_dtype(cuda_);
  set_autocast(cuda_, true, p == Precision::bf16 ? at::kBFloat16 : at::kHalf);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast(cuda_, previous_enabled_, previous_dtype_);
}

GradScaler::GradScaler(bool enabled, double init_scale, int growth_interval)
    : enabled_(enabled), scale_(enabled ? init_scale : 1.0), growth_interval_(growth_interval) {}

torch::Tensor GradScaler::scale_loss(const torch::Tensor& loss) const { return enabled_ ? loss * scale_ : loss; }

bool gradients_finite(const std::vector<torch::Tensor>& parameters) {
  std::vector<torch::Tensor> norms;
  for (const auto& p : parameters)
    if (p.grad().defined()) norms.push_back(p.grad().detach().abs().sum().to(torch::kFloat32));
  if (norms.empty()) return true;
  return torch::isfinite(torch::stack(norms).sum()).item<bool>();
}

bool GradScaler::unscale(torch::optim::Optimizer& optimizer) {
  found_inf_ = false;
  if (!enabled_) return true;
  std::vector<torch::Tensor> params;
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params())
      if (p.grad().defined()) {
        p.mutable_grad().mul_(1.0 / scale_);
        params.push_back(p);
      }
  found_inf_ = !gradients_finite(params);
  return !found_inf_;
}

bool GradScaler::recheck(torch::optim::Optimizer& optimizer) {
  if (!enabled_) return true;
  std::vector<torch::Tensor> params;
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params())
      if (p.grad().defined()) params.push_back(p);
  found_inf_ = !gradients_finite(params);
  return !found_inf_;
}

bool GradScaler::step(torch::optim::Optimizer& optimizer) {
  if (found_inf_) return false;
  optimizer.step();
  return true;
}

void GradScaler::update() {
  if (!enabled_) return;
  if (found_inf_) {
    scale_ *= 0.5;
    growth_tracker_ = 0;
  } else if (++growth_tracker_ >= growth_interval_) {
    scale_ *= 2.0;
    growth_tracker_ = 0;
  }
  found_inf_ = false;
}

nlohmann::json GradScaler::state_dict() const {
  return {{"enabled", enabled_}, {"scale", scale_}, {"growth_tracker", growth_tracker_}};
}

void GradScaler::load_state_dict(const nlohmann::json& s) {
  scale_ = s.at("scale").get<double>();
  growth_tracker_ = s.at("growth_tracker").get<int>();
}

void use_channels_last(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters())
    if (p.dim() == 4) p.set_data(p.data().contiguous(torch::MemoryFormat::ChannelsLast));
}

void configure_determinism(bool deterministic) {
  at::globalContext().setDeterministicCuDNN(deterministic);
  at::globalContext().setBenchmarkCuDNN(!deterministic);
}

std::string use_quantized_engine() {
  const auto& supported = at::globalContext().supportedQEngines();
  for (const auto engine : {at::QEngine::ONEDNN, at::QEngine::QNNPACK, at::QEngine::X86, at::QEngine::FBGEMM}) {
    if (std::find(supported.begin(), supported.end(), engine) == supported.end()) continue;
    at::globalContext().setQEngine(engine);
    return c10::toString(engine);
  }
  throw std::runtime_error("this LibTorch has no quantized engine (oneDNN, QNNPACK, x86 or FBGEMM): int8 models cannot run");
}

}  // namespace fer
