#include "fer/deepshap.h"

#include <stdexcept>
#include <variant>

namespace fer {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// DeepLIFT rescale rule for an elementwise nonlinearity y = f(x): the
// multiplier is dy/dx = (f(x) - f(r)) / (x - r), or the ordinary derivative
// where |x - r| < 1e-6. `x` rows are paired with `x_ref` rows.
struct RescaleRule : public torch::autograd::Function<RescaleRule> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x, torch::Tensor y, torch::Tensor x_ref,
                               torch::Tensor y_ref, torch::Tensor derivative) {
    const auto dx = x - x_ref;
    const auto dy = y - y_ref;
    const auto small = dx.abs() < 1e-6;
    const auto multiplier = torch::where(small, derivative, dy / torch::where(small, torch::ones_like(dx), dx));
    ctx->save_for_backward({multiplier});
    return y.clone();
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto multiplier = ctx->get_saved_variables()[0];
    return {grad[0] * multiplier, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

// DeepLIFT max-pool rule as in shap/Captum: the output difference is split into
// the part from the input's own max (cross_max - y_ref) and the part from the
// reference's max (y - cross_max), each routed back to its argmax position,
// then divided by the input difference there.
struct MaxPoolRule : public torch::autograd::Function<MaxPoolRule> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x, torch::Tensor x_ref, int64_t kernel,
                               int64_t stride, int64_t padding) {
    auto [y, idx] = torch::max_pool2d_with_indices(x, {kernel, kernel}, {stride, stride}, {padding, padding});
    auto [y_ref, idx_ref] =
        torch::max_pool2d_with_indices(x_ref, {kernel, kernel}, {stride, stride}, {padding, padding});
    ctx->save_for_backward({x - x_ref, y, y_ref, idx, idx_ref});
    ctx->saved_data["height"] = x.size(2);
    ctx->saved_data["width"] = x.size(3);
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const auto& delta_in = saved[0];
    const auto& y = saved[1];
    const auto& y_ref = saved[2];
    const std::vector<int64_t> size{ctx->saved_data["height"].toInt(), ctx->saved_data["width"].toInt()};
    const auto cross_max = torch::max(y, y_ref);
    const auto from_input = torch::max_unpool2d(grad[0] * (cross_max - y_ref), saved[3], size);
    const auto from_ref = torch::max_unpool2d(grad[0] * (y - cross_max), saved[4], size);
    const auto small = delta_in.abs() < 1e-7;
    const auto g = torch::where(small, torch::zeros_like(delta_in),
                                (from_input + from_ref) / torch::where(small, torch::ones_like(delta_in), delta_in));
    return {g, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

enum class LayerKind { linear, relu, maxpool };

LayerKind classify(const std::shared_ptr<torch::nn::Module>& m) {
  if (std::dynamic_pointer_cast<torch::nn::ReLUImpl>(m)) return LayerKind::relu;
  if (std::dynamic_pointer_cast<torch::nn::MaxPool2dImpl>(m)) return LayerKind::maxpool;
  if (std::dynamic_pointer_cast<torch::nn::Conv2dImpl>(m) || std::dynamic_pointer_cast<torch::nn::LinearImpl>(m) ||
      std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(m) ||
      std::dynamic_pointer_cast<torch::nn::BatchNorm1dImpl>(m) || std::dynamic_pointer_cast<torch::nn::DropoutImpl>(m) ||
      std::dynamic_pointer_cast<torch::nn::FlattenImpl>(m))
    return LayerKind::linear;
  throw std::invalid_argument("DeepSHAP: unsupported layer '" + m->name() +
                              "' (supported: Conv2d, Linear, BatchNorm1d/2d, Dropout, Flatten, ReLU, MaxPool2d)");
}

// Plain forward of one layer (the linear kinds, and the others for references).
torch::Tensor apply_layer(const std::shared_ptr<torch::nn::Module>& m, const torch::Tensor& x) {
  if (auto l = std::dynamic_pointer_cast<torch::nn::Conv2dImpl>(m)) return l->forward(x);
  if (auto l = std::dynamic_pointer_cast<torch::nn::LinearImpl>(m)) return l->forward(x);
  if (auto l = std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(m)) return l->forward(x);
  if (auto l = std::dynamic_pointer_cast<torch::nn::BatchNorm1dImpl>(m)) return l->forward(x);
  if (auto l = std::dynamic_pointer_cast<torch::nn::DropoutImpl>(m)) return l->forward(x);
  if (auto l = std::dynamic_pointer_cast<torch::nn::FlattenImpl>(m)) return l->forward(x);
  if (auto l = std::dynamic_pointer_cast<torch::nn::ReLUImpl>(m)) return l->forward(x);
  if (auto l = std::dynamic_pointer_cast<torch::nn::MaxPool2dImpl>(m)) return l->forward(x);
  throw std::invalid_argument("DeepSHAP: unsupported layer '" + m->name() + "'");
}

int64_t single(const torch::ExpandingArray<2>& a, const char* what) {
  if ((*a)[0] != (*a)[1]) throw std::invalid_argument(std::string("DeepSHAP: non-square max-pool ") + what);
  return (*a)[0];
}

}  // namespace

DeepShapExplainer::DeepShapExplainer(Classifier model, const torch::Tensor& background, const torch::Device& device,
                                     DeepShapOptions options)
    : model_(std::move(model)), layers_(model_->sequential_layers()), device_(device), options_(options) {
  if (layers_.empty())
    throw std::invalid_argument("DeepSHAP: the model '" + model_->name() + "' exposes no sequential layer list");
  for (const auto& layer : layers_) {
    classify(layer);
    if (auto pool = std::dynamic_pointer_cast<torch::nn::MaxPool2dImpl>(layer)) {
      const auto& dilation = *pool->options.dilation();
      if (dilation[0] != 1 || dilation[1] != 1 || pool->options.ceil_mode())
        throw std::invalid_argument("DeepSHAP: max-pool with dilation or ceil_mode is not supported");
    }
  }
  TORCH_CHECK(background.dim() == 4 && background.size(0) >= 1, "DeepSHAP background must be [K,C,H,W], got ",
              background.sizes());
  model_->to(device_);
  model_->eval();
  for (auto& p : model_->parameters()) p.requires_grad_(false);

  torch::NoGradGuard no_grad;
  background_ = background.to(device_, torch::kFloat32);
  if (options_.background_weights.defined()) {
    const auto& w = options_.background_weights;
    if (w.dim() != 1 || w.size(0) != background.size(0) || !(w.min().item<double>() > 0))
      throw std::invalid_argument("DeepSHAP: background_weights must be " + std::to_string(background.size(0)) +
                                  " positive numbers, one per reference");
    weights_ = (w.to(device_, torch::kFloat64) / w.to(torch::kFloat64).sum().item<double>()).to(torch::kFloat32);
  }
  torch::Tensor x = background_;
  for (const auto& layer : layers_) {
    ref_inputs_.push_back(x);
    x = apply_layer(layer, x);
  }
  ref_logits_ = x;
  ref_outputs_ = options_.explain_probabilities ? torch::softmax(x, 1) : x;
}

torch::Tensor DeepShapExplainer::forward_with_rules(const torch::Tensor& input) {
  torch::Tensor x = input;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const auto& layer = layers_[i];
    const auto& ref = ref_inputs_[i];
    switch (classify(layer)) {
      case LayerKind::relu: {
        torch::Tensor y, derivative;
        {
          torch::NoGradGuard no_grad;
          y = torch::relu(x);
          derivative = (x > 0).to(x.dtype());
        }
        x = RescaleRule::apply(x, y, ref, torch::relu(ref), derivative);
        break;
      }
      case LayerKind::maxpool: {
        auto pool = std::dynamic_pointer_cast<torch::nn::MaxPool2dImpl>(layer);
        x = MaxPoolRule::apply(x, ref, single(pool->options.kernel_size(), "kernel"),
                               single(pool->options.stride(), "stride"), single(pool->options.padding(), "padding"));
        break;
      }
      case LayerKind::linear:
        x = apply_layer(layer, x);
        break;
    }
  }
  if (options_.explain_probabilities) {
    // shap applies the rescale rule to softmax elementwise (each output against its own logit).
    torch::Tensor p, derivative;
    {
      torch::NoGradGuard no_grad;
      p = torch::softmax(x, 1);
      derivative = p * (1 - p);
    }
    x = RescaleRule::apply(x, p, ref_logits_, ref_outputs_, derivative);
  }
  return x;
}

DeepShapResult DeepShapExplainer::finish(const torch::Tensor& outputs, const std::vector<int64_t>& classes,
                                         std::vector<torch::Tensor> maps) const {
  DeepShapResult result;
  result.classes = classes;
  result.outputs = outputs.detach().to(torch::kCPU);
  result.expected = reference_mean(ref_outputs_, 0).to(torch::kCPU);
  result.attributions = torch::stack(maps).to(torch::kCPU);
  for (std::size_t i = 0; i < classes.size(); ++i) {
    const double f = result.outputs[classes[i]].item<double>();
    const double target = f - result.expected[classes[i]].item<double>();
    const double total = result.attributions[i].sum().item<double>();
    result.additivity_error = std::max(result.additivity_error, std::abs(total - target) / std::max(1.0, std::abs(f)));
  }
  return result;
}

torch::Tensor DeepShapExplainer::reference_mean(const torch::Tensor& x, int64_t dim) const {
  if (!weights_.defined()) return x.mean(dim);
  std::vector<int64_t> shape(static_cast<std::size_t>(x.dim()), 1);
  shape[static_cast<std::size_t>(dim)] = weights_.size(0);
  return (x * weights_.view(shape)).sum(dim);
}

static void check_classes(const std::vector<int64_t>& classes, int64_t num_outputs) {
  if (classes.empty()) throw std::invalid_argument("DeepSHAP: no classes to explain");
  for (auto c : classes)
    if (c < 0 || c >= num_outputs) throw std::invalid_argument("DeepSHAP: class " + std::to_string(c) + " out of range");
}

DeepShapResult DeepShapExplainer::explain_reference(const torch::Tensor& image, const std::vector<int64_t>& classes) {
  TORCH_CHECK(image.dim() == 3, "DeepSHAP expects one image [C,H,W], got ", image.sizes());
  const int64_t k = background_.size(0);
  // The input repeated once per reference: row j is paired with reference j.
  auto x = image.to(device_, torch::kFloat32).unsqueeze(0).expand({k, -1, -1, -1}).contiguous();
  x.requires_grad_(true);
  const auto out = forward_with_rules(x);
  check_classes(classes, out.size(1));
  const auto delta = x.detach() - background_;  // [K,C,H,W]
  std::vector<torch::Tensor> maps;
  for (std::size_t i = 0; i < classes.size(); ++i) {
    const auto grad =
        torch::autograd::grad({out.select(1, classes[i]).sum()}, {x}, {}, /*retain_graph=*/i + 1 < classes.size())[0];
    maps.push_back(reference_mean(grad * delta, 0).sum(0));  // mean over references, sum over channels
  }
  return finish(out[0], classes, std::move(maps));
}

DeepShapResult DeepShapExplainer::explain(const torch::Tensor& image, const std::vector<int64_t>& classes) {
  TORCH_CHECK(image.dim() == 3, "DeepSHAP expects one image [C,H,W], got ", image.sizes());
  torch::NoGradGuard no_grad;
  const int64_t k = background_.size(0);

  // Forward: the input's activations are computed once (row 0); everything a
  // rule needs per reference is kept for the backward pass.
  struct Saved {
    std::vector<int64_t> in_shape;  // per-row input shape of the layer
    torch::Tensor multiplier;       // ReLU: [K,...]
    torch::Tensor delta_in, y, y_ref, idx, idx_ref, cross;  // MaxPool
  };
  std::vector<Saved> saved(layers_.size());
  torch::Tensor x = image.to(device_, torch::kFloat32).unsqueeze(0);
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const auto& layer = layers_[i];
    const auto& ref = ref_inputs_[i];
    Saved& s = saved[i];
    s.in_shape = x.sizes().vec();
    switch (classify(layer)) {
      case LayerKind::relu: {
        const auto y = torch::relu(x);
        const auto dx = x - ref;
        const auto small = dx.abs() < 1e-6;
        s.multiplier = torch::where(small, (x > 0).to(x.dtype()).expand_as(dx),
                                    (y - torch::relu(ref)) / torch::where(small, torch::ones_like(dx), dx));
        x = y;
        break;
      }
      case LayerKind::maxpool: {
        auto pool = std::dynamic_pointer_cast<torch::nn::MaxPool2dImpl>(layer);
        const int64_t kernel = single(pool->options.kernel_size(), "kernel");
        const int64_t stride = single(pool->options.stride(), "stride");
        const int64_t padding = single(pool->options.padding(), "padding");
        auto [y, idx] = torch::max_pool2d_with_indices(x, {kernel, kernel}, {stride, stride}, {padding, padding});
        auto [y_ref, idx_ref] = torch::max_pool2d_with_indices(ref, {kernel, kernel}, {stride, stride}, {padding, padding});
        s.delta_in = x - ref;
        s.cross = torch::max(y, y_ref);
        s.y = y;
        s.y_ref = y_ref;
        s.idx = idx;
        s.idx_ref = idx_ref;
        x = y;
        break;
      }
      case LayerKind::linear:
        x = apply_layer(layer, x);
        break;
    }
  }
  const auto logits = x[0];
  const int64_t num_outputs = logits.size(0);
  check_classes(classes, num_outputs);
  const auto n_cls = static_cast<int64_t>(classes.size());

  // Backward: rows are (class, reference) pairs, seeded with one-hot output gradients.
  auto g = torch::zeros({n_cls, k, num_outputs}, x.options());
  for (int64_t c = 0; c < n_cls; ++c) g[c].select(1, classes[c]).fill_(1.0);
  torch::Tensor outputs = logits;
  if (options_.explain_probabilities) {
    const auto p = torch::softmax(logits, 0);
    const auto dz = logits.unsqueeze(0) - ref_logits_;
    const auto small = dz.abs() < 1e-6;
    const auto m = torch::where(small, (p * (1 - p)).expand_as(dz),
                                (p.unsqueeze(0) - ref_outputs_) / torch::where(small, torch::ones_like(dz), dz));
    g = g * m.unsqueeze(0);
    outputs = p;
  }
  g = g.reshape({n_cls * k, num_outputs});
  auto per_pair = [&](const torch::Tensor& t) {  // [n_cls*K, ...] -> [n_cls, K, ...]
    auto shape = t.sizes().vec();
    shape[0] = k;
    shape.insert(shape.begin(), n_cls);
    return t.view(shape);
  };
  auto rows = [&](const torch::Tensor& t) {  // [n_cls, K, ...] -> [n_cls*K, ...]
    auto shape = t.sizes().vec();
    shape.erase(shape.begin());
    shape[0] = n_cls * k;
    return t.reshape(shape);
  };
  // BatchNorm (eval) scales channels; the scale is carried back and folded into
  // the next ReLU multiplier or weight matrix instead of a pass over g.
  torch::Tensor pending;  // per-channel scale not yet applied to g
  auto channel_view = [](const torch::Tensor& scale, int64_t dims) {
    std::vector<int64_t> shape(dims, 1);
    shape[1] = -1;
    return scale.view(shape);
  };
  auto apply_pending = [&] {
    if (pending.defined()) g = g * channel_view(pending, g.dim());
    pending = torch::Tensor();
  };
  for (std::size_t i = layers_.size(); i-- > 0;) {
    const auto& layer = layers_[i];
    const Saved& s = saved[i];
    if (auto l = std::dynamic_pointer_cast<torch::nn::LinearImpl>(layer)) {
      auto w = l->weight;
      if (pending.defined()) w = w * pending.view({-1, 1});
      pending = torch::Tensor();
      g = g.matmul(w);
    } else if (auto l = std::dynamic_pointer_cast<torch::nn::Conv2dImpl>(layer)) {
      const auto& o = l->options;
      auto w = l->weight;
      if (pending.defined()) w = w * pending.view({-1, 1, 1, 1});
      pending = torch::Tensor();
      // LibTorch 1.13 holds the padding in a c10::variant, 2.x in a std::variant:
      // an unqualified get_if finds the right one by argument-dependent lookup.
      using std::get_if;
      const auto* pad = get_if<torch::ExpandingArray<2>>(&o.padding());
      if (!pad) throw std::invalid_argument("DeepSHAP: Conv2d with 'same'/'valid' string padding is not supported");
      const std::vector<int64_t> padding{(**pad)[0], (**pad)[1]};
      const auto& stride = *o.stride();
      const auto& dilation = *o.dilation();
      const auto& kernel = *o.kernel_size();
      if (stride[0] == 1 && stride[1] == 1 && dilation[0] == 1 && dilation[1] == 1 && o.groups() == 1 &&
          padding[0] < kernel[0] && padding[1] < kernel[1]) {
        // Input gradient of a stride-1 conv = a conv with the flipped, transposed kernel
        // (the regular conv path is much faster than the transposed one on CPU).
        g = torch::conv2d(g, w.transpose(0, 1).flip({2, 3}), {}, 1, {kernel[0] - 1 - padding[0], kernel[1] - 1 - padding[1]});
      } else {
        std::vector<int64_t> output_padding(2);
        for (int d = 0; d < 2; ++d) {
          const int64_t produced = (g.size(2 + d) - 1) * stride[d] - 2 * padding[d] + dilation[d] * (kernel[d] - 1) + 1;
          output_padding[d] = s.in_shape[2 + d] - produced;
        }
        g = torch::conv_transpose2d(g, w, {}, stride, padding, output_padding, o.groups(), dilation);
      }
    } else if (auto l = std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(layer)) {
      const auto scale = l->weight / torch::sqrt(l->running_var + l->options.eps());
      pending = pending.defined() ? pending * scale : scale;
    } else if (auto l = std::dynamic_pointer_cast<torch::nn::BatchNorm1dImpl>(layer)) {
      const auto scale = l->weight / torch::sqrt(l->running_var + l->options.eps());
      pending = pending.defined() ? pending * scale : scale;
    } else if (std::dynamic_pointer_cast<torch::nn::FlattenImpl>(layer)) {
      apply_pending();
      auto shape = s.in_shape;
      shape[0] = g.size(0);
      g = g.reshape(shape);
    } else if (std::dynamic_pointer_cast<torch::nn::ReLUImpl>(layer)) {
      auto m = s.multiplier;
      if (pending.defined()) m = m * channel_view(pending, m.dim());
      pending = torch::Tensor();
      g = rows(per_pair(g) * m.unsqueeze(0));
    } else if (std::dynamic_pointer_cast<torch::nn::MaxPool2dImpl>(layer)) {
      apply_pending();
      const auto gp = per_pair(g);
      const std::vector<int64_t> size{s.in_shape[2], s.in_shape[3]};
      const auto idx = s.idx.expand({n_cls * k, -1, -1, -1}).contiguous();
      const auto idx_ref = s.idx_ref.repeat({n_cls, 1, 1, 1});
      const auto from_input = torch::max_unpool2d(rows(gp * (s.cross - s.y_ref).unsqueeze(0)), idx, size);
      const auto from_ref = torch::max_unpool2d(rows(gp * (s.y - s.cross).unsqueeze(0)), idx_ref, size);
      const auto small = s.delta_in.abs() < 1e-7;
      const auto inv = torch::where(small, torch::zeros_like(s.delta_in),
                                    1.0 / torch::where(small, torch::ones_like(s.delta_in), s.delta_in));
      g = rows(per_pair(from_input + from_ref) * inv.unsqueeze(0));
    }
    // Dropout (eval) passes the gradient through unchanged.
  }
  apply_pending();
  const auto delta = image.to(device_, torch::kFloat32).unsqueeze(0) - background_;  // [K,C,H,W]
  const auto attributions = reference_mean(per_pair(g) * delta.unsqueeze(0), 1).sum(1);  // [n_cls,H,W]
  return finish(outputs, classes, attributions.unbind(0));
}

}  // namespace fer
