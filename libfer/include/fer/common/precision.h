// Numerics of training and inference: mixed precision (autocast) written once
// for LibTorch 1.13 and 2.x, a gradient scaler for fp16, channels-last, and
// cuDNN determinism.
//
//   fer::Precision p = fer::parse_precision("bf16");
//   fer::check_precision_supported(p, device);        // throws with the reason
//   { fer::AutocastScope autocast(device, p); logits = model->forward(x); }
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <torch/optim/optimizer.h>

#include <nlohmann/json.hpp>
#include <string>

#include "fer/common/enum_names.h"

namespace torch::nn {
class Module;
}  // namespace torch::nn

namespace fer {

enum class Precision { fp32, bf16, fp16 };

// "fp32" | "bf16" | "fp16"; throws std::invalid_argument otherwise.
const EnumNames<Precision>& precision_names();  // fp32, bf16, fp16
Precision parse_precision(const std::string& name);
std::string precision_name(Precision precision);

// Inference precision from a name: "auto" is bf16 on a CPU with native bf16
// (about 1.6x the fp32 forward rate here) and fp32 elsewhere (on CUDA, ask for
// bf16 or fp16 by name); other names as parse_precision.
Precision resolve_inference_precision(const std::string& name, const c10::Device& device);
// What "auto" resolves to on `device`.
Precision default_inference_precision(const c10::Device& device);

// True when this CPU runs bf16 convolutions and matrix products natively
// (AVX512-BF16 or AMX-BF16); without them oneDNN emulates bf16 slower than fp32.
bool cpu_has_native_bf16();

// Throws std::runtime_error naming the device and the reason when `precision`
// cannot run there: fp16 on a CPU (LibTorch's CPU autocast is bf16 only), bf16
// on a CPU without native bf16 (chosen as an error, not a silent fp32 run, so a
// recorded precision is always the one that ran).
void check_precision_supported(Precision precision, const c10::Device& device);

// Autocast for the lifetime of the scope on `device` (no-op for fp32). Ops
// inside run in the lower precision where LibTorch's autocast lists say so;
// the cast weights are cached until the outermost scope ends, as in PyTorch.
class AutocastScope {
 public:
  AutocastScope(const c10::Device& device, Precision precision);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  bool cuda_ = false;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
};

// Dynamic loss scaling for fp16 (PyTorch's GradScaler rule): the loss is
// multiplied by `scale` before backward; unscale() divides the gradients back
// and reports non-finite ones; step() skips the optimizer step for those;
// update() halves the scale after an overflow and doubles it after
// `growth_interval` clean steps. Disabled (scale 1, never skips) for fp32/bf16.
class GradScaler {
 public:
  explicit GradScaler(bool enabled, double init_scale = 65536.0, int growth_interval = 2000);
  bool enabled() const { return enabled_; }
  double scale() const { return scale_; }
  at::Tensor scale_loss(const at::Tensor& loss) const;
  // Returns true when every gradient is finite after unscaling.
  bool unscale(torch::optim::Optimizer& optimizer);
  // After the gradients changed since unscale() (averaged across ranks): checks
  // them again, so every rank skips or takes the same step. Returns whether all are finite.
  bool recheck(torch::optim::Optimizer& optimizer);
  // Steps unless the last unscale() found a non-finite gradient; returns whether it stepped.
  bool step(torch::optim::Optimizer& optimizer);
  void update();
  nlohmann::json state_dict() const;
  void load_state_dict(const nlohmann::json& state);

 private:
  bool enabled_;
  double scale_;
  int growth_interval_;
  int growth_tracker_ = 0;
  bool found_inf_ = false;
};

// True when every gradient of `parameters` is finite (those without a gradient are skipped).
bool gradients_finite(const std::vector<at::Tensor>& parameters);

// Selects LibTorch's quantized engine for int8 models (a process-wide setting,
// needed before an int8 module is built or loaded): oneDNN where LibTorch has
// it, else QNNPACK, else x86/FBGEMM. Returns the engine's name. Throws
// std::runtime_error when LibTorch has none.
std::string use_quantized_engine();

// Stores the 4-d weights of `module` in channels-last order (inputs must be
// converted too: x.contiguous(torch::MemoryFormat::ChannelsLast)).
void use_channels_last(torch::nn::Module& module);

// On CUDA, asks cuDNN for deterministic algorithms and turns benchmark mode off
// (deterministic = true) or lets it pick the fastest kernels (false). CPU runs
// are deterministic either way.
void configure_determinism(bool deterministic);

}  // namespace fer
