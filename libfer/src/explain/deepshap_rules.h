// Private to DeepSHAP (deepshap.cpp, deepshap_rules.cpp): what a layer rule is,
// the multipliers its backward passes on, and the rule of each layer type.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "fer/explain/deepshap.h"

namespace fer {

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

namespace deepshap_detail {

// [B,...] (the images' side) and [K,...] (the references') as broadcastable
// [B,1,...] and [1,K,...].
torch::Tensor image_side(const torch::Tensor& t);
torch::Tensor reference_side(const torch::Tensor& t);

// DeepLIFT rescale rule for an elementwise nonlinearity y = f(x): the
// multiplier is dy/dx = (f(x) - f(r)) / (x - r), or the ordinary derivative
// where |x - r| < 1e-6.
torch::Tensor rescale_multiplier(const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& x_ref,
                                 const torch::Tensor& y_ref, const torch::Tensor& derivative);

// The fast path's layout for images: channels-last on CPU, where the conv
// backward runs 1.3x faster in it (fp32, the paper CNN's shapes, measured).
torch::Tensor fast_layout(const torch::Tensor& t);

// The rescale rule applied to y = f(x) as an autograd function (the reference
// path): the gradient through it is (y - y_ref) / (x - x_ref), or `derivative`
// where x is within 1e-6 of x_ref.
torch::Tensor rescale(const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& x_ref,
                      const torch::Tensor& y_ref, const torch::Tensor& derivative);

// The rule for one layer of a model's sequential_layers(); throws
// std::invalid_argument naming a layer type DeepSHAP has no rule for.
std::unique_ptr<DeepShapExplainer::LayerRule> make_rule(const std::shared_ptr<torch::nn::Module>& m);

}  // namespace deepshap_detail
}  // namespace fer
