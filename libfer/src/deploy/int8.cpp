// Post-training static quantization of the layer chain, written as TorchScript
// that calls LibTorch's quantized CPU kernels (quantized::conv2d, linear,
// batch_norm): LibTorch's C++ API has no prepare/convert workflow (it lives in
// Python's torch.ao), but the kernels and their packed weights are operators
// any TorchScript program can call, and they serialize with the module.
//
// Weights: int8, per output channel, symmetric (zero point 0: oneDNN and
// QNNPACK both take it). Activations: uint8, per tensor, affine, covering the
// range observed on the calibration images (PyTorch's MinMaxObserver rule).
// The input's parameters are exact: pixels / 255 are the uint8 pixels.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/jit/frontend/resolver.h>
#include <torch/csrc/jit/frontend/sugared_value.h>
#include <torch/script.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <tuple>
#include <stdexcept>

#include "fer/common/precision.h"
#include "fer/data/augment.h"
#include "fer/deploy/export.h"
#include "layer_chain.h"

namespace fer {
namespace {

using deploy::ChainLayer;
using deploy::LayerKind;
using deploy::script_ints;
using deploy::script_real;

// One step of the quantized graph: a chain layer with the batch norm right
// after a conv/linear folded into it and the ReLU after that fused.
struct Int8Step {
  ChainLayer layer;
  bool relu = false;
  // The output's observed range over the calibration images (steps that requantize).
  float lo = std::numeric_limits<float>::infinity(), hi = -std::numeric_limits<float>::infinity();
};

bool is_weighted(LayerKind kind) { return kind == LayerKind::conv || kind == LayerKind::linear; }
// Steps whose output gets new quantization parameters (pooling, flatten and ReLU keep their input's).
bool requantizes(const Int8Step& s) { return is_weighted(s.layer.kind) || s.layer.kind == LayerKind::batch_norm; }

// conv/linear then batch norm as one conv/linear: w' = w * g / sqrt(var + eps), b' = (b - mean) * g / sqrt(var + eps) + beta.
ChainLayer fold_batch_norm(ChainLayer layer, const ChainLayer& bn) {
  const auto factor = bn.weight / (bn.var + bn.eps).sqrt();
  std::vector<int64_t> shape(static_cast<std::size_t>(layer.weight.dim()), 1);
  shape[0] = -1;
  const auto bias = layer.bias.defined() ? layer.bias : torch::zeros_like(bn.mean);
  layer.weight = layer.weight * factor.view(shape);
  layer.bias = (bias - bn.mean) * factor + bn.bias;
  return layer;
}

// A batch norm channel whose input was constant in training (running variance
// ~0: a ReLU that zeroed it on every image) multiplies any later input by
// gamma / sqrt(eps), ~300x. In float that is a rare spike; in uint8 it sets
// the scale of the whole tensor and rounds every other channel away. Such a
// channel outputs its training-time constant, beta, instead.
constexpr double kConstantChannelVariance = 1e-8;

ChainLayer settle_constant_channels(ChainLayer bn) {
  const auto constant = bn.var < kConstantChannelVariance;
  bn.weight = bn.weight.masked_fill(constant, 0.0);
  return bn;
}

std::vector<Int8Step> int8_steps(const std::vector<ChainLayer>& chain) {
  std::vector<Int8Step> steps;
  for (std::size_t i = 0; i < chain.size(); ++i) {
    Int8Step s;
    s.layer = chain[i];
    const bool weighted = is_weighted(s.layer.kind);
    if (weighted && i + 1 < chain.size() && chain[i + 1].kind == LayerKind::batch_norm)
      s.layer = fold_batch_norm(s.layer, chain[++i]);
    if (s.layer.kind == LayerKind::batch_norm) s.layer = settle_constant_channels(s.layer);
    if (weighted && i + 1 < chain.size() && chain[i + 1].kind == LayerKind::relu) {
      s.relu = true;
      ++i;
    }
    if (s.layer.kind == LayerKind::conv && (s.layer.pads[0] != s.layer.pads[2] || s.layer.pads[1] != s.layer.pads[3]))
      throw std::invalid_argument("cannot quantize layer '" + s.layer.name + "': asymmetric padding");
    steps.push_back(std::move(s));
  }
  return steps;
}

// The step in float: what the observers watch during calibration.
at::Tensor float_step(const Int8Step& s, const at::Tensor& x) {
  const auto& l = s.layer;
  at::Tensor y;
  switch (l.kind) {
    case LayerKind::conv: y = torch::conv2d(x, l.weight, l.bias, l.stride, {l.pads[0], l.pads[1]}, l.dilation, l.groups); break;
    case LayerKind::linear: y = torch::linear(x, l.weight, l.bias); break;
    case LayerKind::batch_norm: y = torch::batch_norm(x, l.weight, l.bias, l.mean, l.var, false, 0.0, l.eps, false); break;
    case LayerKind::relu: y = torch::relu(x); break;
    case LayerKind::max_pool: y = torch::max_pool2d(x, l.kernel, l.stride, {l.pads[0], l.pads[1]}, l.dilation); break;
    case LayerKind::flatten: y = torch::flatten(x, 1); break;
  }
  return s.relu ? torch::relu(y) : y;
}

// Runs the float steps over `images_u8` [N,S,S] in batches, calling
// observe(step, output) for each requantizing step.
template <typename Observe>
void for_each_output(std::vector<Int8Step>& steps, const at::Tensor& images_u8, int64_t input_size, Observe observe) {
  torch::NoGradGuard no_grad;
  for (int64_t start = 0; start < images_u8.size(0); start += 256) {
    auto x = images_u8.slice(0, start, start + 256).unsqueeze(1).to(torch::kFloat32).div(255.0);
    x = center_crop(x, input_size);
    for (auto& s : steps) {
      x = float_step(s, x);
      if (requantizes(s)) observe(s, x);
    }
  }
}

constexpr int64_t kHistogramBins = 4096;
// The share of calibration values left outside the range at each end.
constexpr double kClippedShare = 1e-4;

// The range holding all but kClippedShare of the histogram's values at each
// end. Min/max would let one extreme value in 10^7 set the scale (paper_cnn_long
// fell to 13% with it); a least-squared-error range (PyTorch's
// HistogramObserver criterion) clipped the large activations that carry the
// signal (21%); this keeps 99.98% of values exact to a step and costs the
// shipped models under a point (docs/deploy.md).
std::pair<float, float> percentile_range(const at::Tensor& histogram, float lo, float hi) {
  const auto cumulative = histogram.to(torch::kFloat64).cumsum(0);
  const double total = cumulative[-1].item<double>(), width = (static_cast<double>(hi) - lo) / kHistogramBins;
  const auto below = [&](double share) {  // bins whose cumulative count stays under share * total
    return (cumulative < share * total).sum().item<int64_t>();
  };
  return {static_cast<float>(lo + below(kClippedShare) * width),
          static_cast<float>(lo + (below(1.0 - kClippedShare) + 1) * width)};
}

// Each requantizing step's output range: the observed min/max, then the
// histogram over it and percentile_range.
void calibrate(std::vector<Int8Step>& steps, const at::Tensor& images_u8, int64_t input_size) {
  for_each_output(steps, images_u8, input_size, [](Int8Step& s, const at::Tensor& x) {
    s.lo = std::min(s.lo, x.min().item<float>());
    s.hi = std::max(s.hi, x.max().item<float>());
  });
  std::vector<at::Tensor> histograms(steps.size());
  for_each_output(steps, images_u8, input_size, [&](Int8Step& s, const at::Tensor& x) {
    auto& h = histograms[static_cast<std::size_t>(&s - steps.data())];
    const auto counts = torch::histc(x, kHistogramBins, s.lo, s.hi);
    h = h.defined() ? h + counts : counts;
  });
  for (std::size_t i = 0; i < steps.size(); ++i)
    if (histograms[i].defined() && steps[i].hi > steps[i].lo)
      std::tie(steps[i].lo, steps[i].hi) = percentile_range(histograms[i], steps[i].lo, steps[i].hi);
}

struct Affine {
  double scale;
  int64_t zero_point;
};

// uint8 parameters covering [lo, hi] and 0 (PyTorch's MinMaxObserver rule).
Affine affine_uint8(float lo, float hi) {
  const double low = std::min(lo, 0.0f), high = std::max(hi, 0.0f);
  const double scale = std::max((high - low) / 255.0, static_cast<double>(std::numeric_limits<float>::epsilon()));
  const auto zero_point = static_cast<int64_t>(std::clamp(std::nearbyint(-low / scale), 0.0, 255.0));
  return {scale, zero_point};
}

// int8 per output channel, symmetric: scale = max |w| / 127.5 (PyTorch's per-channel symmetric observer).
at::Tensor quantize_weight(const at::Tensor& w) {
  const auto scales = (w.abs().flatten(1).amax(1) / 127.5).clamp_min(std::numeric_limits<float>::epsilon());
  return torch::quantize_per_channel(w, scales.to(torch::kFloat64), torch::zeros({w.size(0)}, torch::kLong), 0,
                                     torch::kQInt8);
}

// Calls a LibTorch operator by name through the dispatcher and returns its one result.
c10::IValue call_operator(const char* name, torch::jit::Stack stack) {
  const auto op = c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
  op.callBoxed(&stack);
  return stack.at(0);
}

// The layer's weights packed for the quantized kernels, registered on `module` as "<name>_packed".
std::string register_packed(torch::jit::Module& module, const ChainLayer& l) {
  const auto weight = quantize_weight(l.weight);
  const c10::optional<at::Tensor> bias = l.bias.defined() ? c10::optional<at::Tensor>(l.bias) : c10::nullopt;
  const c10::IValue packed =
      l.kind == LayerKind::conv
          ? call_operator("quantized::conv2d_prepack",
                          {weight, bias, l.stride, std::vector<int64_t>{l.pads[0], l.pads[1]}, l.dilation, l.groups})
          : call_operator("quantized::linear_prepack", {weight, bias});
  const std::string name = l.name + "_packed";
  module.register_attribute(name, packed.type(), packed);
  return "self." + name;
}

// TorchScript names for Module::define: torch.* (aten, as the native resolver
// has it) and quantized.* (the quantized kernels; Python spells them torch.ops.quantized).
struct QuantizedOpsResolver : torch::jit::Resolver {
  std::shared_ptr<torch::jit::SugaredValue> resolveValue(const std::string& name, torch::jit::GraphFunction& function,
                                                         const torch::jit::SourceRange& location) override {
    if (name == "quantized") return std::make_shared<torch::jit::BuiltinModule>("quantized");
    return torch::jit::nativeResolver()->resolveValue(name, function, location);
  }
};

// The batch norm's tensors as buffers of `module`, named "<name>_<tensor>".
std::string batch_norm_arguments(torch::jit::Module& module, const ChainLayer& l) {
  const std::pair<const char*, const at::Tensor*> tensors[] = {
      {"weight", &l.weight}, {"bias", &l.bias}, {"running_mean", &l.mean}, {"running_var", &l.var}};
  std::string args;
  for (const auto& [suffix, tensor] : tensors) {
    module.register_buffer(l.name + "_" + suffix, *tensor);
    args += "self." + l.name + "_" + suffix + ", ";
  }
  return args + script_real(l.eps);
}

// One line of forward(): x = <the quantized step applied to x>.
std::string int8_statement(torch::jit::Module& module, const Int8Step& s, bool flattened) {
  const auto& l = s.layer;
  const Affine out = affine_uint8(s.lo, s.hi);
  const std::string requantize = script_real(out.scale) + ", " + std::to_string(out.zero_point) + ")";
  switch (l.kind) {
    case LayerKind::conv:
      return "x = quantized.conv2d" + std::string(s.relu ? "_relu" : "") + "(x, " + register_packed(module, l) +
             ", " + requantize;
    case LayerKind::linear:
      return "x = quantized.linear" + std::string(s.relu ? "_relu" : "") + "(x, " + register_packed(module, l) +
             ", " + requantize;
    case LayerKind::batch_norm:
      return "x = quantized.batch_norm" + std::string(flattened ? "1d" : "2d") + "(x, " +
             batch_norm_arguments(module, l) + ", " + requantize;
    case LayerKind::relu: return "x = torch.relu(x)";
    case LayerKind::max_pool: return deploy::max_pool_statement(l);
    case LayerKind::flatten: return "x = torch.flatten(x, 1)";
  }
  throw std::logic_error("unhandled layer kind");
}

}  // namespace

void save_int8(const std::string& path, const LoadedCheckpoint& checkpoint, const at::Tensor& calibration_u8,
               const ExportOptions& options) {
  const int64_t side = checkpoint.meta.model.image_size;
  if (!calibration_u8.defined() || calibration_u8.dim() != 3 || calibration_u8.size(0) == 0 ||
      calibration_u8.scalar_type() != torch::kUInt8 || calibration_u8.size(1) != side || calibration_u8.size(2) != side)
    throw std::invalid_argument(fmt::format("int8 export: the calibration images must be a non-empty uint8 [N,{},{}] tensor "
                                            "(the model's image_size)", side, side));
  const std::string engine = use_quantized_engine();
  auto steps = int8_steps(deploy::layer_chain(*checkpoint.model));
  // Calibrated on what the model sees: its normalised inputs.
  const auto normalize = parse_input_normalization(checkpoint.meta.model.normalize);
  calibrate(steps, normalize_input(calibration_u8.to(torch::kCPU), normalize), checkpoint.meta.model.input_size);

  torch::jit::Module module("__torch__.libfer.Int8Classifier");
  std::ostringstream code;
  code << "def forward(self, image):\n    x = " << deploy::crop_expression(checkpoint, options, "image") << "\n"
       << "    x = torch.quantize_per_tensor(x, " << script_real(1.0 / 255.0) << ", 0, "
       << static_cast<int>(at::kQUInt8) << ")  # quint8 (TorchScript 1.13 takes dtypes as ints)\n";
  bool flattened = false;
  for (const auto& s : steps) {
    code << "    " << int8_statement(module, s, flattened) << "\n";
    flattened = flattened || s.layer.kind == LayerKind::flatten;
  }
  code << "    x = x.dequantize()\n";
  if (options.output == ExportOutput::probabilities) code << "    x = torch.softmax(x, 1)\n";
  code << "    return x\n";
  module.define(code.str(), std::make_shared<QuantizedOpsResolver>());
  module.eval();

  auto meta = deploy::export_metadata(checkpoint, options);
  meta["export"]["quantization"] = {
      {"weights", "int8 per output channel, symmetric"},
      {"activations", "uint8 per tensor, affine, min/max over the calibration images"},
      {"calibration_images", calibration_u8.size(0)},
      {"engine", engine}};
  deploy::save_script_module(path, module, meta);
}

at::Tensor calibration_images(const Dataset& split, int64_t count) {
  if (split.size() == 0 || count < 1)
    throw std::invalid_argument("calibration needs at least one image (the split has " + std::to_string(split.size()) +
                                ", " + std::to_string(count) + " asked for)");
  const auto n = static_cast<int64_t>(split.size());
  const auto all = torch::from_blob(const_cast<std::uint8_t*>(split.pixels.data()), {n, split.image_size, split.image_size},
                                   torch::kUInt8);
  return all.index_select(0, torch::linspace(0, static_cast<double>(n - 1), std::min(count, n)).to(torch::kLong));
}

}  // namespace fer
