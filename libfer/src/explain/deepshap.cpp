#include "fer/explain/deepshap.h"

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
namespace {

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

// The fast path's layout for images: channels-last on CPU, where the conv
// backward runs 1.3x faster in it (fp32, the paper CNN's shapes, measured).
torch::Tensor fast_layout(const torch::Tensor& t) {
  return t.dim() == 4 && t.is_cpu() ? t.contiguous(torch::MemoryFormat::ChannelsLast) : t;
}

// [B,...] (the images' side) and [K,...] (the references') as broadcastable
// [B,1,...] and [1,K,...]; pair_rows turns the result into [B*K,...] rows.
torch::Tensor image_side(const torch::Tensor& t) { return t.unsqueeze(1); }
torch::Tensor reference_side(const torch::Tensor& t) { return t.unsqueeze(0); }
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

// DeepLIFT rescale rule for an elementwise nonlinearity y = f(x): the
// multiplier is dy/dx = (f(x) - f(r)) / (x - r), or the ordinary derivative
// where |x - r| < 1e-6. Rows of x may be 1 (broadcast) or paired with ref rows.
torch::Tensor rescale_multiplier(const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& x_ref,
                                 const torch::Tensor& y_ref, const torch::Tensor& derivative) {
  const auto dx = x - x_ref;
  const auto small = dx.abs() < 1e-6;
  return torch::where(small, derivative.expand_as(dx), (y - y_ref) / torch::where(small, torch::ones_like(dx), dx));
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

// The multipliers flowing back through the fast path: rows are (image, class,
// reference) triples; what a rule saved per (image, reference) pair has rows
// (image, reference). BatchNorm's per-channel scale waits in `pending` to be
// folded into the next weight matrix or multiplier instead of a pass over g.
struct DeepShapExplainer::Backward {
  torch::Tensor g;        // [n_img*n_cls*K, ...]
  torch::Tensor pending;  // per-channel scale not yet applied to g
  int64_t n_img = 0, n_cls = 0, k = 0;

  static torch::Tensor channel_view(const torch::Tensor& scale, int64_t dims) {
    std::vector<int64_t> shape(static_cast<std::size_t>(dims), 1);
    shape[1] = -1;
    return scale.view(shape);
  }
  // The pending scale, cleared; undefined when none.
  torch::Tensor take_pending() { return std::exchange(pending, torch::Tensor()); }
  void apply_pending() {
    if (const auto scale = take_pending(); scale.defined()) g = g * channel_view(scale, g.dim());
  }
  torch::Tensor per_triple(const torch::Tensor& t) const {  // [rows, ...] -> [n_img, n_cls, K, ...]
    return t.view(leading({n_img, n_cls, k}, t));
  }
  torch::Tensor per_pair(const torch::Tensor& t) const {  // [n_img*K, ...] -> [n_img, 1, K, ...]
    return t.view(leading({n_img, 1, k}, t));
  }
  torch::Tensor rows(const torch::Tensor& t) const {  // [n_img, n_cls, K, ...] -> [rows, ...]
    auto shape = t.sizes().vec();
    shape.erase(shape.begin(), shape.begin() + 2);
    shape[0] = n_img * n_cls * k;
    return t.reshape(shape);
  }
  // g times a per-pair multiplier [n_img*K, ...] (the same for every class).
  // (In place: g is never shared with what the rules saved.)
  void multiply(const torch::Tensor& per_pair_multiplier) { per_triple(g).mul_(per_pair(per_pair_multiplier)); }
  int64_t pair_of_row(int64_t row) const { return (row / (n_cls * k)) * k + row % k; }
  // A per-pair tensor repeated for every class: [n_img*K, ...] -> [rows, ...].
  torch::Tensor repeat_per_class(const torch::Tensor& t) const {
    auto shape = per_pair(t).sizes().vec();
    shape[1] = n_cls;
    return rows(per_pair(t).expand(shape));
  }

 private:
  static std::vector<int64_t> leading(std::initializer_list<int64_t> dims, const torch::Tensor& t) {
    std::vector<int64_t> shape(dims);
    shape.insert(shape.end(), t.sizes().begin() + 1, t.sizes().end());
    return shape;
  }
};

// What DeepSHAP does at one layer type: its plain forward pass (the
// references), the rule as autograd functions (the reference path), and the
// fast path's forward (saving what its backward needs) and backward.
class DeepShapExplainer::LayerRule {
 public:
  struct Saved {
    std::vector<int64_t> in_shape;     // the layer's input shape (one row)
    std::vector<torch::Tensor> tensors;  // rule-specific, from forward_fast
  };
  virtual ~LayerRule() = default;
  virtual torch::Tensor forward(const torch::Tensor& x) const = 0;
  // x [K,...] paired row by row with ref; linear layers need no rule.
  virtual torch::Tensor forward_autograd(const torch::Tensor& x, const torch::Tensor& ref) const;
  // x: the single input [1,...]; ref: the references' input to this layer [K,...].
  virtual torch::Tensor forward_fast(const torch::Tensor& x, const torch::Tensor& ref, Saved& saved) const;
  // Turns the multipliers of the layer's output into those of its input.
  virtual void backward(Backward& b, const Saved& saved) const = 0;

  // Fused CPU kernels in forward_fast (default); off, the tensor-op version that other devices run.
  bool fused_cpu_kernels = true;
  // Stride-1 conv backward in bf16 (DeepShapOptions::bf16_convs).
  bool bf16_convs = false;
};

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

std::unique_ptr<DeepShapExplainer::LayerRule> make_rule(const std::shared_ptr<torch::nn::Module>& m) {
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

}  // namespace

torch::Tensor DeepShapExplainer::LayerRule::forward_autograd(const torch::Tensor& x, const torch::Tensor&) const {
  return forward(x);
}

torch::Tensor DeepShapExplainer::LayerRule::forward_fast(const torch::Tensor& x, const torch::Tensor&, Saved&) const {
  return forward(x);
}

DeepShapExplainer::DeepShapExplainer(Classifier model, const torch::Tensor& background, const torch::Device& device,
                                     DeepShapOptions options)
    : model_(std::move(model)), device_(device), options_(options) {
  const auto layers = model_->sequential_layers();
  if (layers.empty())
    throw std::invalid_argument("DeepSHAP: the model '" + model_->name() + "' exposes no sequential layer list");
  for (const auto& layer : layers) {
    rules_.push_back(make_rule(layer));
    rules_.back()->fused_cpu_kernels = options_.fused_cpu_kernels;
    rules_.back()->bf16_convs = options_.bf16_convs;
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
  for (const auto& rule : rules_) {
    ref_inputs_.push_back(fast_layout(x));  // once here, not per image in the fused loops
    x = rule->forward(x);
  }
  ref_logits_ = x;
  ref_outputs_ = options_.explain_probabilities ? torch::softmax(x, 1) : x;
}

DeepShapExplainer::~DeepShapExplainer() = default;
DeepShapExplainer::DeepShapExplainer(DeepShapExplainer&&) noexcept = default;
DeepShapExplainer& DeepShapExplainer::operator=(DeepShapExplainer&&) noexcept = default;

torch::Tensor DeepShapExplainer::forward_with_rules(const torch::Tensor& input) {
  torch::Tensor x = input;
  for (std::size_t i = 0; i < rules_.size(); ++i) x = rules_[i]->forward_autograd(x, ref_inputs_[i]);
  if (options_.explain_probabilities) {
    // shap applies the rescale rule to softmax elementwise (each output against its own logit).
    torch::Tensor p, derivative;
    {
      torch::NoGradGuard no_grad;
      p = torch::softmax(x, 1);
      derivative = p * (1 - p);
    }
    x = RescaleFunction::apply(x, p, ref_logits_, ref_outputs_, derivative);
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
  return explain_pass(image.unsqueeze(0), {classes}).front();
}

int64_t DeepShapExplainer::images_per_pass(int64_t classes_per_image) const {
  // On CPU one image per pass is fastest (measured: larger passes only add memory traffic).
  const int64_t rows = options_.max_rows_per_pass > 0 ? options_.max_rows_per_pass : device_.is_cpu() ? 1 : 8192;
  return std::max<int64_t>(1, rows / (std::max<int64_t>(1, classes_per_image) * background_.size(0)));
}

std::vector<DeepShapResult> DeepShapExplainer::explain_batch(const torch::Tensor& images,
                                                             const std::vector<std::vector<int64_t>>& classes) {
  if (images.dim() != 4 || images.size(0) != static_cast<int64_t>(classes.size()))
    throw std::invalid_argument(fmt::format("DeepSHAP: explain_batch expects images [B,C,H,W] and B class lists, got {} "
                                            "and {} lists", fmt::join(images.sizes(), "x"), classes.size()));
  for (const auto& c : classes)
    if (c.size() != classes.front().size())
      throw std::invalid_argument(fmt::format("DeepSHAP: explain_batch needs the same number of classes for every image "
                                              "({} and {})", classes.front().size(), c.size()));
  std::vector<DeepShapResult> results;
  if (classes.empty()) return results;
  const int64_t step = images_per_pass(static_cast<int64_t>(classes.front().size()));
  for (int64_t begin = 0; begin < images.size(0); begin += step) {
    const int64_t end = std::min(images.size(0), begin + step);
    auto pass = explain_pass(images.slice(0, begin, end), {classes.begin() + begin, classes.begin() + end});
    std::move(pass.begin(), pass.end(), std::back_inserter(results));
  }
  return results;
}

std::vector<DeepShapResult> DeepShapExplainer::explain_pass(const torch::Tensor& images,
                                                            const std::vector<std::vector<int64_t>>& classes) {
  torch::NoGradGuard no_grad;
  // Forward: each image's activations are computed once (one row); each rule
  // keeps what its backward needs against the K references.
  std::vector<LayerRule::Saved> saved(rules_.size());
  const auto inputs = images.to(device_, torch::kFloat32);
  torch::Tensor x = inputs;
  for (std::size_t i = 0; i < rules_.size(); ++i) {
    saved[i].in_shape = x.sizes().vec();
    x = rules_[i]->forward_fast(x, ref_inputs_[i], saved[i]);
  }
  const auto& logits = x;  // [B, outputs]
  const int64_t num_outputs = logits.size(1);
  for (const auto& c : classes) check_classes(c, num_outputs);

  // Backward: rows are (image, class, reference) triples, seeded with one-hot output gradients.
  Backward b;
  b.n_img = inputs.size(0);
  b.n_cls = static_cast<int64_t>(classes.front().size());
  b.k = background_.size(0);
  auto one_hot = torch::zeros({b.n_img, b.n_cls, 1, num_outputs});  // built on the host: no kernel per entry
  auto seeds = one_hot.accessor<float, 4>();
  for (int64_t i = 0; i < b.n_img; ++i)
    for (int64_t c = 0; c < b.n_cls; ++c) seeds[i][c][0][classes[i][c]] = 1.0f;
  auto g = one_hot.to(device_).expand({b.n_img, b.n_cls, b.k, num_outputs}).contiguous();
  torch::Tensor outputs = logits;
  if (options_.explain_probabilities) {
    const auto p = torch::softmax(logits, 1);
    g = g * rescale_multiplier(image_side(logits), image_side(p), reference_side(ref_logits_),
                               reference_side(ref_outputs_), image_side(p * (1 - p)))
                .unsqueeze(1);
    outputs = p;
  }
  b.g = g.reshape({-1, num_outputs});
  for (std::size_t i = rules_.size(); i-- > 0;) rules_[i]->backward(b, saved[i]);
  b.apply_pending();
  const auto delta = image_side(inputs) - reference_side(background_);                         // [B,K,C,H,W]
  const auto attributions = reference_mean(b.per_triple(b.g) * delta.unsqueeze(1), 2).sum(2);  // [B,n_cls,H,W]
  std::vector<DeepShapResult> results;
  for (int64_t i = 0; i < b.n_img; ++i) results.push_back(finish(outputs[i], classes[i], attributions[i].unbind(0)));
  return results;
}

}  // namespace fer
