#include "deepshap_rules.h"

#include "deepshap_kernels.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <iterator>

#include <stdexcept>
#include <tuple>
#include <utility>
#include <variant>

namespace fer {
namespace deepshap_detail {

// [B,...] (the images' side) and [K,...] (the references') as broadcastable
// [B,1,...] and [1,K,...]; pair_rows turns the result into [B*K,...] rows.
torch::Tensor image_side(const torch::Tensor& t) { return t.unsqueeze(1); }
torch::Tensor reference_side(const torch::Tensor& t) { return t.unsqueeze(0); }

// DeepLIFT rescale rule for an elementwise nonlinearity y = f(x): the
// multiplier is dy/dx = (f(x) - f(r)) / (x - r), or the ordinary derivative
// where |x - r| < 1e-6. Rows of x may be 1 (broadcast) or paired with ref rows.
torch::Tensor rescale_multiplier(const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& x_ref,
                                 const torch::Tensor& y_ref, const torch::Tensor& derivative) {
  const auto dx = x - x_ref;
  const auto small = dx.abs() < 1e-6;
  return torch::where(small, derivative.expand_as(dx), (y - y_ref) / torch::where(small, torch::ones_like(dx), dx));
}

}  // namespace deepshap_detail

namespace {
using deepshap_detail::fast_layout;
using deepshap_detail::image_side;
using deepshap_detail::reference_side;
using deepshap_detail::rescale_multiplier;

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Adds values [N,C,h,w] into zeros [N,C,H,W] at the flat spatial indices `idx` [N,C,h,w]
// (max-pool argmaxes). Overlapping pooling windows can pick the same input
// position more than once: their shares accumulate (max_unpool2d would keep one).
torch::Tensor scatter_to_input(const torch::Tensor& values, const torch::Tensor& idx, int64_t height, int64_t width) {
  const int64_t n = values.size(0), c = values.size(1);
  auto out = torch::zeros({n, c, height * width}, values.options());
  out.scatter_add_(2, idx.reshape({n, c, -1}), values.reshape({n, c, -1}));
  return out.view({n, c, height, width});
}

// 1 / x, and 0 where |x| < eps (a position whose input did not change gets no share).
torch::Tensor safe_reciprocal(const torch::Tensor& x, double eps) {
  const auto small = x.abs() < eps;
  return torch::where(small, torch::zeros_like(x), 1.0 / torch::where(small, torch::ones_like(x), x));
}


torch::Tensor pair_rows(const torch::Tensor& t, int64_t images, int64_t references) {
  auto shape = t.sizes().vec();
  shape[0] = images;
  shape[1] = references;
  auto rows = shape;
  rows.erase(rows.begin());
  rows[0] = images * references;
  return fast_layout(t.expand(shape).reshape(rows));
}

// A float tensor's rows in the fast path's layout, contiguous, for the CPU kernels below.
torch::Tensor row_major(const torch::Tensor& t) {
  return t.contiguous(t.dim() == 4 ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous);
}

// ReLU's rescale multipliers of every (image, reference) pair in one pass over
// memory: the same floats as rescale_multiplier() below, without its
// temporaries and broadcasts. x [B,...], ref [K,...] -> [B*K,...]; CPU, float.
torch::Tensor relu_pair_multipliers_cpu(const torch::Tensor& x, const torch::Tensor& ref) {
  const auto xs = row_major(x), rs = row_major(ref);
  const int64_t n_img = x.size(0), k = ref.size(0), row = xs.numel() / n_img;
  auto shape = x.sizes().vec();
  shape[0] = n_img * k;
  auto out = torch::empty(shape, xs.options().memory_format(xs.suggest_memory_format()));
  const float* xd = xs.data_ptr<float>();
  const float* rd = rs.data_ptr<float>();
  float* od = out.data_ptr<float>();
  at::parallel_for(0, n_img * k, 1, [&](int64_t begin, int64_t end) {
    for (int64_t pair = begin; pair < end; ++pair)
      deepshap_kernels::relu_rescale_row(xd + (pair / k) * row, rd + (pair % k) * row, od + pair * row, row);
  });
  return out;
}

// The max-pool rule's multiplier per input position for windows that tile the
// input (kernel = stride, no padding), every (image, reference) pair in one
// pass: as max_pool_backward() of ones. x [B,C,H,W], ref [K,C,H,W] with their
// pools' values and argmaxes -> [B*K,C,H,W] channels-last; CPU, float.
torch::Tensor tiled_max_pool_pair_multipliers_cpu(const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& idx,
                                                  const torch::Tensor& ref, const torch::Tensor& y_ref,
                                                  const torch::Tensor& idx_ref) {
  const auto xs = row_major(x), rs = row_major(ref), ys = row_major(y), yrs = row_major(y_ref);
  const auto is = row_major(idx), irs = row_major(idx_ref);
  const int64_t n_img = x.size(0), k = ref.size(0), channels = x.size(1);
  const int64_t row = xs.numel() / n_img, windows = y.size(2) * y.size(3);
  // [N,H,W,C] seen as [N,C,H,W]: channels-last (zeros() takes no memory format).
  auto out = torch::zeros({n_img * k, x.size(2), x.size(3), channels}, xs.options()).permute({0, 3, 1, 2});
  const float *xd = xs.data_ptr<float>(), *rd = rs.data_ptr<float>(), *yd = ys.data_ptr<float>(), *yrd = yrs.data_ptr<float>();
  const int64_t *id = is.data_ptr<int64_t>(), *ird = irs.data_ptr<int64_t>();
  float* od = out.data_ptr<float>();
  const int64_t pooled = windows * channels;
  at::parallel_for(0, n_img * k, 1, [&](int64_t begin, int64_t end) {
    for (int64_t pair = begin; pair < end; ++pair) {
      const int64_t b = pair / k, r = pair % k;
      deepshap_kernels::tiled_max_pool_row(xd + b * row, rd + r * row, yd + b * pooled, yrd + r * pooled, id + b * pooled,
                                           ird + r * pooled, od + pair * row, windows, channels);
    }
  });
  return out;
}


// The rescale rule as an autograd function (the reference path).
struct RescaleFunction : public torch::autograd::Function<RescaleFunction> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x, torch::Tensor y, torch::Tensor x_ref,
                               torch::Tensor y_ref, torch::Tensor derivative) {
    ctx->save_for_backward({rescale_multiplier(x, y, x_ref, y_ref, derivative)});
    return y.clone();
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    return {grad[0] * ctx->get_saved_variables()[0], torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

struct PoolShape {
  int64_t kernel = 0, stride = 0, padding = 0;
};

std::tuple<torch::Tensor, torch::Tensor> max_pool(const torch::Tensor& x, const PoolShape& p) {
  return torch::max_pool2d_with_indices(x, {p.kernel, p.kernel}, {p.stride, p.stride}, {p.padding, p.padding});
}

// DeepLIFT max-pool rule as in shap/Captum: the output difference is split into
// the part from the input's own max (cross_max - y_ref) and the part from the
// reference's max (y - cross_max), each routed back to its argmax position,
// then divided by the input difference there. g: [N,C,h,w], paired with refs.
torch::Tensor max_pool_backward(const torch::Tensor& g, const torch::Tensor& delta_in, const torch::Tensor& y,
                                const torch::Tensor& y_ref, const torch::Tensor& idx, const torch::Tensor& idx_ref) {
  const auto cross = torch::max(y, y_ref);
  const int64_t height = delta_in.size(2), width = delta_in.size(3);
  const auto routed = scatter_to_input(g * (cross - y_ref), idx, height, width) +
                      scatter_to_input(g * (y - cross), idx_ref, height, width);
  return routed * safe_reciprocal(delta_in, 1e-7);
}

// The max-pool rule as an autograd function (the reference path).
struct MaxPoolFunction : public torch::autograd::Function<MaxPoolFunction> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x, torch::Tensor x_ref, int64_t kernel,
                               int64_t stride, int64_t padding) {
    const PoolShape shape{kernel, stride, padding};
    auto [y, idx] = max_pool(x, shape);
    auto [y_ref, idx_ref] = max_pool(x_ref, shape);
    ctx->save_for_backward({x - x_ref, y, y_ref, idx, idx_ref});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto s = ctx->get_saved_variables();
    return {max_pool_backward(grad[0], s[0], s[1], s[2], s[3], s[4]), torch::Tensor(), torch::Tensor(),
            torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

namespace deepshap_detail {


torch::Tensor fast_layout(const torch::Tensor& t) {
  return t.dim() == 4 && t.is_cpu() ? t.contiguous(torch::MemoryFormat::ChannelsLast) : t;
}

torch::Tensor rescale(const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& x_ref,
                      const torch::Tensor& y_ref, const torch::Tensor& derivative) {
  return RescaleFunction::apply(x, y, x_ref, y_ref, derivative);
}

}  // namespace deepshap_detail

namespace {

using Saved = DeepShapExplainer::LayerRule::Saved;
using Backward = DeepShapExplainer::Backward;

// The tiling max-pool's backward on CPU: each output multiplier spread over
// its window times the per-position multiplier [B*K,C,H,W], in one pass
// (upsample_nearest2d and a multiply, without the temporary between them).
torch::Tensor spread_times_multiplier_cpu(const Backward& b, const torch::Tensor& multiplier,
                                          int64_t kernel) {
  const auto g = row_major(b.g), m = row_major(multiplier);
  const int64_t rows = g.size(0), channels = m.size(1), height = m.size(2), width = m.size(3);
  auto out = torch::empty({rows, channels, height, width}, m.options().memory_format(torch::MemoryFormat::ChannelsLast));
  const int64_t in_row = channels * height * width, out_row = g.numel() / rows;
  const float *gd = g.data_ptr<float>(), *md = m.data_ptr<float>();
  float* od = out.data_ptr<float>();
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row)
      deepshap_kernels::spread_times_row(gd + row * out_row, md + b.pair_of_row(row) * in_row, od + row * in_row, height,
                                         width, channels, kernel);
  });
  return out;
}

// Conv2d: a linear map; multipliers go back as its input gradient.
class ConvRule : public DeepShapExplainer::LayerRule {
 public:
  explicit ConvRule(std::shared_ptr<torch::nn::Conv2dImpl> conv) : conv_(std::move(conv)) {
    // LibTorch 1.13 holds the padding in a c10::variant, 2.x in a std::variant:
    // an unqualified get_if finds the right one by argument-dependent lookup.
    using std::get_if;
    const auto* pad = get_if<torch::ExpandingArray<2>>(&conv_->options.padding());
    if (!pad) throw std::invalid_argument("DeepSHAP: Conv2d with 'same'/'valid' string padding is not supported");
    padding_ = {(**pad)[0], (**pad)[1]};
  }
  torch::Tensor forward(const torch::Tensor& x) const override { return conv_->forward(x); }
  void backward(Backward& b, const Saved& saved) const override {
    const auto& o = conv_->options;
    auto w = conv_->weight;
    if (const auto scale = b.take_pending(); scale.defined()) w = w * scale.view({-1, 1, 1, 1});
    const auto& stride = *o.stride();
    const auto& dilation = *o.dilation();
    const auto& kernel = *o.kernel_size();
    if (stride[0] == 1 && stride[1] == 1 && dilation[0] == 1 && dilation[1] == 1 && o.groups() == 1 &&
        padding_[0] < kernel[0] && padding_[1] < kernel[1]) {
      // Input gradient of a stride-1 conv = a conv with the flipped, transposed kernel
      // (the regular conv path is much faster than the transposed one on CPU).
      const auto dtype = bf16_convs ? torch::kBFloat16 : torch::kFloat32;
      b.g = torch::conv2d(fast_layout(b.g.to(dtype)), fast_layout(w.transpose(0, 1).flip({2, 3}).to(dtype)), {}, 1,
                          {kernel[0] - 1 - padding_[0], kernel[1] - 1 - padding_[1]})
                .to(torch::kFloat32);
      return;
    }
    std::vector<int64_t> output_padding(2);
    for (int d = 0; d < 2; ++d) {
      const int64_t produced = (b.g.size(2 + d) - 1) * stride[d] - 2 * padding_[d] + dilation[d] * (kernel[d] - 1) + 1;
      output_padding[d] = saved.in_shape[2 + d] - produced;
    }
    b.g = torch::conv_transpose2d(b.g, w, {}, stride, padding_, output_padding, o.groups(), dilation);
  }

 private:
  std::shared_ptr<torch::nn::Conv2dImpl> conv_;
  std::vector<int64_t> padding_;
};

class LinearRule : public DeepShapExplainer::LayerRule {
 public:
  explicit LinearRule(std::shared_ptr<torch::nn::LinearImpl> linear) : linear_(std::move(linear)) {}
  torch::Tensor forward(const torch::Tensor& x) const override { return linear_->forward(x); }
  void backward(Backward& b, const Saved&) const override {
    auto w = linear_->weight;
    if (const auto scale = b.take_pending(); scale.defined()) w = w * scale.view({-1, 1});
    b.g = b.g.matmul(w);
  }

 private:
  std::shared_ptr<torch::nn::LinearImpl> linear_;
};

// BatchNorm1d/2d in eval mode: a per-channel affine map; its scale is folded later.
template <typename BatchNormImpl>
class BatchNormRule : public DeepShapExplainer::LayerRule {
 public:
  explicit BatchNormRule(std::shared_ptr<BatchNormImpl> norm) : norm_(std::move(norm)) {}
  torch::Tensor forward(const torch::Tensor& x) const override { return norm_->forward(x); }
  void backward(Backward& b, const Saved&) const override {
    const auto scale = norm_->weight / torch::sqrt(norm_->running_var + norm_->options.eps());
    b.pending = b.pending.defined() ? b.pending * scale : scale;
  }

 private:
  std::shared_ptr<BatchNormImpl> norm_;
};

// Dropout in eval mode: the identity.
class DropoutRule : public DeepShapExplainer::LayerRule {
 public:
  explicit DropoutRule(std::shared_ptr<torch::nn::DropoutImpl> dropout) : dropout_(std::move(dropout)) {}
  torch::Tensor forward(const torch::Tensor& x) const override { return dropout_->forward(x); }
  void backward(Backward&, const Saved&) const override {}

 private:
  std::shared_ptr<torch::nn::DropoutImpl> dropout_;
};

class FlattenRule : public DeepShapExplainer::LayerRule {
 public:
  explicit FlattenRule(std::shared_ptr<torch::nn::FlattenImpl> flatten) : flatten_(std::move(flatten)) {}
  torch::Tensor forward(const torch::Tensor& x) const override { return flatten_->forward(x); }
  void backward(Backward& b, const Saved& saved) const override {
    b.apply_pending();
    auto shape = saved.in_shape;
    shape[0] = b.g.size(0);
    b.g = fast_layout(b.g.reshape(shape));
  }

 private:
  std::shared_ptr<torch::nn::FlattenImpl> flatten_;
};

class ReluRule : public DeepShapExplainer::LayerRule {
 public:
  explicit ReluRule(const std::shared_ptr<torch::nn::ReLUImpl>&) {}  // stateless: ReLU has no options that matter
  torch::Tensor forward(const torch::Tensor& x) const override { return torch::relu(x); }
  torch::Tensor forward_autograd(const torch::Tensor& x, const torch::Tensor& ref) const override {
    torch::Tensor y, derivative;
    {
      torch::NoGradGuard no_grad;
      y = torch::relu(x);
      derivative = (x > 0).to(x.dtype());
    }
    return RescaleFunction::apply(x, y, ref, torch::relu(ref), derivative);
  }
  torch::Tensor forward_fast(const torch::Tensor& x, const torch::Tensor& ref, Saved& saved) const override {
    const auto y = torch::relu(x);
    if (fused_cpu_kernels && x.is_cpu() && x.scalar_type() == torch::kFloat32) {
      saved.tensors = {relu_pair_multipliers_cpu(x, ref)};
      return y;
    }
    const auto multiplier = rescale_multiplier(image_side(x), image_side(y), reference_side(ref),
                                               reference_side(torch::relu(ref)), image_side((x > 0).to(x.dtype())));
    saved.tensors = {pair_rows(multiplier, x.size(0), ref.size(0))};  // [B*K,...]
    return y;
  }
  void backward(Backward& b, const Saved& saved) const override {
    auto m = saved.tensors[0];
    if (const auto scale = b.take_pending(); scale.defined()) m = m * Backward::channel_view(scale, m.dim());
    b.multiply(m);
  }
};

class MaxPoolRule : public DeepShapExplainer::LayerRule {
 public:
  explicit MaxPoolRule(const std::shared_ptr<torch::nn::MaxPool2dImpl>& pool) {
    const auto& o = pool->options;
    const auto& dilation = *o.dilation();
    if (dilation[0] != 1 || dilation[1] != 1 || o.ceil_mode())
      throw std::invalid_argument("DeepSHAP: max-pool with dilation or ceil_mode is not supported");
    shape_ = {square(o.kernel_size(), "kernel"), square(o.stride(), "stride"), square(o.padding(), "padding")};
  }
  torch::Tensor forward(const torch::Tensor& x) const override { return std::get<0>(max_pool(x, shape_)); }
  torch::Tensor forward_autograd(const torch::Tensor& x, const torch::Tensor& ref) const override {
    return MaxPoolFunction::apply(x, ref, shape_.kernel, shape_.stride, shape_.padding);
  }
  torch::Tensor forward_fast(const torch::Tensor& x, const torch::Tensor& ref, Saved& saved) const override {
    auto [y, idx] = max_pool(x, shape_);
    auto [y_ref, idx_ref] = max_pool(ref, shape_);
    if (tiled() && fused_cpu_kernels && x.is_cpu() && x.scalar_type() == torch::kFloat32) {
      saved.tensors = {tiled_max_pool_pair_multipliers_cpu(x, y, idx, ref, y_ref, idx_ref)};
      return y;
    }
    const int64_t n_img = x.size(0), k = ref.size(0);
    const auto image_pairs = [&](const torch::Tensor& t) { return pair_rows(image_side(t), n_img, k); };
    const auto reference_pairs = [&](const torch::Tensor& t) { return pair_rows(reference_side(t), n_img, k); };
    // Per (image, reference) pair: delta_in, y, y_ref, idx, idx_ref.
    std::vector<torch::Tensor> pairs = {pair_rows(image_side(x) - reference_side(ref), n_img, k), image_pairs(y),
                                        reference_pairs(y_ref), image_pairs(idx), reference_pairs(idx_ref)};
    if (!tiled()) {
      saved.tensors = std::move(pairs);
      return y;
    }
    // Windows that tile the input: each output's multiplier reaches at most two
    // input positions, so the whole rule is one multiplier per input position
    // against each reference, applied to the multipliers spread over their windows.
    saved.tensors = {fast_layout(
        max_pool_backward(torch::ones_like(pairs[2]), pairs[0], pairs[1], pairs[2], pairs[3], pairs[4]))};  // [B*K,C,H,W]
    return y;
  }
  void backward(Backward& b, const Saved& saved) const override {
    b.apply_pending();
    if (tiled() && fused_cpu_kernels && b.g.is_cpu() && b.g.scalar_type() == torch::kFloat32) {
      b.g = spread_times_multiplier_cpu(b, saved.tensors[0], shape_.kernel);
      return;
    }
    if (tiled()) {
      const auto& multiplier = saved.tensors[0];
      const int64_t height = multiplier.size(2), width = multiplier.size(3);
      const int64_t k = shape_.kernel;
      auto spread = torch::upsample_nearest2d(b.g, {b.g.size(2) * k, b.g.size(3) * k});
      if (spread.size(2) != height || spread.size(3) != width)  // rows/columns no window covers get nothing
        spread = torch::constant_pad_nd(spread, {0, width - spread.size(3), 0, height - spread.size(2)});
      b.g = spread;
      b.multiply(multiplier);
      return;
    }
    const auto& t = saved.tensors;  // delta_in, y, y_ref, idx, idx_ref per (image, reference) pair
    b.g = fast_layout(max_pool_backward(b.g, b.repeat_per_class(t[0]), b.repeat_per_class(t[1]),
                                        b.repeat_per_class(t[2]), b.repeat_per_class(t[3]), b.repeat_per_class(t[4])));
  }

 private:
  // Non-overlapping windows without padding (the paper CNN's 2x2 pools).
  bool tiled() const { return shape_.kernel == shape_.stride && shape_.padding == 0; }
  static int64_t square(const torch::ExpandingArray<2>& a, const char* what) {
    if ((*a)[0] != (*a)[1]) throw std::invalid_argument(std::string("DeepSHAP: non-square max-pool ") + what);
    return (*a)[0];
  }
  PoolShape shape_;
};

// One entry per supported layer type: adding a layer to DeepSHAP is a rule class and a line here.
template <typename Impl, typename Rule>
std::unique_ptr<DeepShapExplainer::LayerRule> rule_if(const std::shared_ptr<torch::nn::Module>& m) {
  if (auto typed = std::dynamic_pointer_cast<Impl>(m)) return std::make_unique<Rule>(typed);
  return nullptr;
}

}  // namespace

std::unique_ptr<DeepShapExplainer::LayerRule> deepshap_detail::make_rule(const std::shared_ptr<torch::nn::Module>& m) {
  using Maker = std::unique_ptr<DeepShapExplainer::LayerRule> (*)(const std::shared_ptr<torch::nn::Module>&);
  static const Maker makers[] = {
      rule_if<torch::nn::Conv2dImpl, ConvRule>,
      rule_if<torch::nn::LinearImpl, LinearRule>,
      rule_if<torch::nn::BatchNorm2dImpl, BatchNormRule<torch::nn::BatchNorm2dImpl>>,
      rule_if<torch::nn::BatchNorm1dImpl, BatchNormRule<torch::nn::BatchNorm1dImpl>>,
      rule_if<torch::nn::DropoutImpl, DropoutRule>,
      rule_if<torch::nn::FlattenImpl, FlattenRule>,
      rule_if<torch::nn::ReLUImpl, ReluRule>,
      rule_if<torch::nn::MaxPool2dImpl, MaxPoolRule>,
  };
  for (const auto make : makers)
    if (auto rule = make(m)) return rule;
  throw std::invalid_argument("DeepSHAP: unsupported layer '" + m->name() +
                              "' (supported: Conv2d, Linear, BatchNorm1d/2d, Dropout, Flatten, ReLU, MaxPool2d)");
}

torch::Tensor DeepShapExplainer::LayerRule::forward_autograd(const torch::Tensor& x, const torch::Tensor&) const {
  return forward(x);
}

torch::Tensor DeepShapExplainer::LayerRule::forward_fast(const torch::Tensor& x, const torch::Tensor&, Saved&) const {
  return forward(x);
}

}  // namespace fer
