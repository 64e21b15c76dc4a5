#include "fer/explain/deepshap.h"

#include "deepshap_rules.h"

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
using deepshap_detail::fast_layout;
using deepshap_detail::image_side;
using deepshap_detail::make_rule;
using deepshap_detail::reference_side;
using deepshap_detail::rescale_multiplier;

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
    x = deepshap_detail::rescale(x, p, ref_logits_, ref_outputs_, derivative);
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
