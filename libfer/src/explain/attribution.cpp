#include "fer/explain/attribution.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "fer/common/emotions.h"
#include "fer/data/augment.h"

namespace fer {

const EnumNames<AttributionMethod>& attribution_method_names() {
  static const EnumNames<AttributionMethod> names{"attribution method",
                                                  {{"saliency", AttributionMethod::saliency},
                                                   {"input_x_gradient", AttributionMethod::input_x_gradient},
                                                   {"integrated_gradients", AttributionMethod::integrated_gradients},
                                                   {"gradcam", AttributionMethod::gradcam},
                                                   {"gradcam++", AttributionMethod::gradcam_plus_plus},
                                                   {"hirescam", AttributionMethod::hirescam},
                                                   {"occlusion", AttributionMethod::occlusion}},
                                                  {{"ig", AttributionMethod::integrated_gradients},
                                                   {"gradcam_plus_plus", AttributionMethod::gradcam_plus_plus}}};
  return names;
}

bool is_cam_method(AttributionMethod m) {
  return m == AttributionMethod::gradcam || m == AttributionMethod::gradcam_plus_plus || m == AttributionMethod::hirescam;
}

bool is_gradient_method(AttributionMethod m) {
  return m == AttributionMethod::saliency || m == AttributionMethod::input_x_gradient ||
         m == AttributionMethod::integrated_gradients;
}

const EnumNames<IntegrationRule>& integration_rule_names() {
  static const EnumNames<IntegrationRule> names{
      "integration rule", {{"gauss_legendre", IntegrationRule::gauss_legendre}, {"trapezoid", IntegrationRule::trapezoid}}};
  return names;
}

Quadrature integration_rule(IntegrationRule rule, int n) {
  if (n < 1) throw std::invalid_argument("integration_rule: needs at least 1 step, got " + std::to_string(n));
  Quadrature q;
  if (rule == IntegrationRule::trapezoid) {
    for (int k = 0; k <= n; ++k) {
      q.nodes.push_back(static_cast<double>(k) / n);
      q.weights.push_back((k == 0 || k == n ? 0.5 : 1.0) / n);
    }
    return q;
  }
  // Newton's method on the Legendre polynomial P_n from Chebyshev's guesses,
  // then mapped from [-1, 1] to [0, 1] (weights halved).
  const double pi = std::acos(-1.0);
  for (int i = 0; i < n; ++i) {
    double x = std::cos(pi * (i + 0.75) / (n + 0.5)), derivative = 0;
    for (int iteration = 0; iteration < 100; ++iteration) {
      double p0 = 1, p1 = x;  // P_0, P_1, then the recurrence up to P_n
      for (int k = 2; k <= n; ++k) {
        const double p2 = ((2.0 * k - 1) * x * p1 - (k - 1.0) * p0) / k;
        p0 = p1;
        p1 = p2;
      }
      const double pn = n == 1 ? x : p1, pn_1 = n == 1 ? 1.0 : p0;
      derivative = n * (x * pn - pn_1) / (x * x - 1);
      const double step = pn / derivative;
      x -= step;
      if (std::abs(step) < 1e-15) break;
    }
    q.nodes.push_back((1 - x) / 2);
    q.weights.push_back(1.0 / ((1 - x * x) * derivative * derivative));
  }
  return q;
}

namespace {

at::Tensor class_scores(const at::Tensor& logits, const at::Tensor& classes) {
  return logits.gather(1, classes.view({-1, 1})).squeeze(1);
}

// d y_c / d x per image at x: each image's score depends on its own input
// alone (eval mode), so the gradient of their sum is every image's.
at::Tensor input_gradients(ClassifierImpl& model, const at::Tensor& x, const at::Tensor& classes) {
  torch::AutoGradMode enable(true);
  auto input = x.detach().clone().requires_grad_(true);
  const auto scores = class_scores(model.forward(input), classes);
  return torch::autograd::grad({scores.sum()}, {input})[0];
}

at::Tensor scores_of(ClassifierImpl& model, const at::Tensor& x, const at::Tensor& classes) {
  torch::NoGradGuard no_grad;
  return class_scores(model.forward(x), classes);
}

at::Tensor broadcast_baseline(const at::Tensor& baseline, const at::Tensor& images) {
  if (!baseline.defined()) return torch::zeros_like(images);
  const auto b = baseline.to(images.device(), torch::kFloat32);
  if (b.dim() != 4 || (b.size(0) != 1 && b.size(0) != images.size(0)) || b.sizes().slice(1) != images.sizes().slice(1))
    throw std::invalid_argument("attribute: the baseline must be [1 or N, C, H, W] like the images");
  return b.expand_as(images);
}

struct GradientResult {
  at::Tensor maps, completeness_error;
};

GradientResult gradient_attribution(ClassifierImpl& model, const at::Tensor& x, const at::Tensor& classes,
                                    AttributionMethod method, const AttributionOptions& o) {
  if (method == AttributionMethod::saliency) return {input_gradients(model, x, classes).abs().sum(1), {}};
  if (method == AttributionMethod::input_x_gradient) return {(x * input_gradients(model, x, classes)).sum(1), {}};
  const auto b = broadcast_baseline(o.baseline, x);
  const auto rule = integration_rule(o.ig_rule, o.ig_steps);
  auto mean_gradient = torch::zeros_like(x);
  for (std::size_t k = 0; k < rule.nodes.size(); ++k)
    mean_gradient += rule.weights[k] * input_gradients(model, b + rule.nodes[k] * (x - b), classes);
  const auto maps = ((x - b) * mean_gradient).sum(1);
  const auto difference = scores_of(model, x, classes) - scores_of(model, b.contiguous(), classes);
  return {maps, maps.sum({1, 2}) - difference};
}

// Noise of sigma x (max - min) of each image, from the seeded CPU generator.
at::Tensor noisy_copy(const at::Tensor& x, double sigma, at::Generator& generator) {
  const auto flat = x.flatten(1);
  const auto range = (std::get<0>(flat.max(1)) - std::get<0>(flat.min(1))).view({-1, 1, 1, 1});
  const auto noise = torch::randn(x.sizes(), generator, torch::dtype(torch::kFloat32)).to(x.device());
  return x + noise * sigma * range;
}

// The error for a CAM layer without a feature map: only then are the model's
// feature-map layers listed (that takes a forward pass, layer by layer).
[[noreturn]] void refuse_cam_layer(ClassifierImpl& model, const std::string& name, const at::Tensor& x) {
  throw std::invalid_argument("explain.cam_layer '" + name + "' is not a feature-map layer of this model (" +
                              class_name_list(cam_layer_names(model, x.size(1), x.size(2))) + ")");
}

std::string last_convolution(const SequentialClassifierImpl& model) {
  const auto& layers = model.sequential_layers();
  for (std::size_t i = layers.size(); i-- > 0;)
    if (layers[i]->as<torch::nn::Conv2d>() != nullptr) return model.layer_names()[i];
  throw std::invalid_argument("CAM: the model has no convolution");
}

at::Tensor class_activation_map(SequentialClassifierImpl& model, const at::Tensor& x, const at::Tensor& classes,
                                AttributionMethod method, std::size_t layer) {
  torch::AutoGradMode enable(true);
  const auto count = model.layer_names().size();
  const auto activations = model.forward_layers(x.detach(), 0, layer + 1).detach().requires_grad_(true);
  if (activations.dim() != 4) return {};  // not a feature map: the caller refuses the layer
  const auto scores = class_scores(model.forward_layers(activations, layer + 1, count), classes);
  const auto g = torch::autograd::grad({scores.sum()}, {activations})[0];
  const auto a = activations.detach();
  at::Tensor cam;
  if (method == AttributionMethod::gradcam) {
    cam = (g.mean({2, 3}, true) * a).sum(1);
  } else if (method == AttributionMethod::hirescam) {
    cam = (g * a).sum(1);
  } else {  // Grad-CAM++ (Chattopadhay et al. 2018), with exp(score)'s derivatives as pytorch-grad-cam takes them
    const auto g2 = g.pow(2), g3 = g.pow(3);
    const auto alpha = g2 / (2 * g2 + a.sum({2, 3}, true) * g3 + 1e-7);
    const auto weights = (torch::where(g != 0, alpha, torch::zeros_like(alpha)) * torch::relu(g)).sum({2, 3}, true);
    cam = (weights * a).sum(1);
  }
  cam = torch::relu(cam).unsqueeze(1);
  return torch::nn::functional::interpolate(
             cam, torch::nn::functional::InterpolateFuncOptions()
                      .size(std::vector<int64_t>{x.size(2), x.size(3)})
                      .mode(torch::kBilinear)
                      .align_corners(false))
      .squeeze(1);
}

std::vector<int64_t> patch_starts(int64_t side, int patch, int stride) {
  std::vector<int64_t> starts;
  for (int64_t s = 0; s + patch <= side; s += stride) starts.push_back(s);
  if (starts.empty() || starts.back() + patch < side) starts.push_back(std::max<int64_t>(0, side - patch));
  return starts;
}

// The occluded copies go through the model in batches of about
// kOcclusionImagesPerCall images (a face at batch 1 otherwise pays one small
// forward per patch).
constexpr int64_t kOcclusionImagesPerCall = 512;

at::Tensor occlusion_map(ClassifierImpl& model, const at::Tensor& x, const at::Tensor& classes,
                         const AttributionOptions& o) {
  torch::NoGradGuard no_grad;
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  const auto full = class_scores(model.forward(x), classes);
  std::vector<std::pair<int64_t, int64_t>> patches;  // top, left
  for (const auto top : patch_starts(h, o.occlusion_patch, o.occlusion_stride))
    for (const auto left : patch_starts(w, o.occlusion_patch, o.occlusion_stride)) patches.emplace_back(top, left);
  const auto per_call = static_cast<std::size_t>(std::max<int64_t>(1, kOcclusionImagesPerCall / n));
  auto sum = torch::zeros({n, h, w}, x.options());
  auto covered = torch::zeros({h, w}, x.options());
  using torch::indexing::Slice;
  for (std::size_t first = 0; first < patches.size(); first += per_call) {
    const auto count = std::min(per_call, patches.size() - first);
    auto occluded = x.repeat({static_cast<int64_t>(count), 1, 1, 1});  // patch-major: copy j*n + i
    for (std::size_t j = 0; j < count; ++j) {
      const auto [top, left] = patches[first + j];
      occluded.index_put_({Slice(static_cast<int64_t>(j) * n, static_cast<int64_t>(j + 1) * n), Slice(),
                           Slice(top, std::min(h, top + o.occlusion_patch)), Slice(left, std::min(w, left + o.occlusion_patch))},
                          o.occlusion_fill);
    }
    const auto drops = (full.repeat({static_cast<int64_t>(count)}) -
                        class_scores(model.forward(occluded), classes.repeat({static_cast<int64_t>(count)})))
                           .view({static_cast<int64_t>(count), n, 1, 1});
    for (std::size_t j = 0; j < count; ++j) {
      const auto [top, left] = patches[first + j];
      const auto rows = Slice(top, std::min(h, top + o.occlusion_patch));
      const auto cols = Slice(left, std::min(w, left + o.occlusion_patch));
      sum.index({Slice(), rows, cols}).add_(drops[static_cast<int64_t>(j)]);
      covered.index({rows, cols}).add_(1);
    }
  }
  return sum / covered;
}

void check_request(ClassifierImpl& model, const at::Tensor& images, const at::Tensor& classes,
                   const AttributionOptions& o) {
  if (model.is_training()) throw std::invalid_argument("attribute: the model must be in eval mode");
  if (images.dim() != 4 || images.size(0) < 1) throw std::invalid_argument("attribute: images must be [N,C,H,W], N >= 1");
  if (classes.dim() != 1 || classes.size(0) != images.size(0))
    throw std::invalid_argument("attribute: one class per image");
  if (o.ig_steps < 1 || o.smoothgrad_samples < 0 || o.occlusion_patch < 1 || o.occlusion_stride < 1 ||
      !(o.smoothgrad_sigma >= 0))
    throw std::invalid_argument("attribute: ig_steps, occlusion_patch and occlusion_stride must be >= 1, "
                                "smoothgrad_samples and smoothgrad_sigma >= 0");
}

}  // namespace

std::vector<std::string> cam_layer_names(ClassifierImpl& model, int64_t channels, int64_t size) {
  auto* sequential = dynamic_cast<SequentialClassifierImpl*>(&model);
  if (sequential == nullptr) return {};
  torch::NoGradGuard no_grad;
  const auto device = model.parameters().empty() ? torch::Device(torch::kCPU) : model.parameters().front().device();
  auto x = torch::zeros({1, channels, size, size}, torch::TensorOptions(device));
  std::vector<std::string> names;
  for (std::size_t i = 0; i < sequential->layer_names().size(); ++i) {
    x = sequential->forward_layers(x, i, i + 1);
    if (x.dim() == 4) names.push_back(sequential->layer_names()[i]);
  }
  return names;
}

Attribution attribute(ClassifierImpl& model, const at::Tensor& images, const at::Tensor& classes,
                      AttributionMethod method, const AttributionOptions& o) {
  check_request(model, images, classes, o);
  const auto x = images.to(torch::kFloat32);
  const auto labels = classes.to(x.device(), torch::kLong);
  if (labels.min().item<int64_t>() < 0) throw std::invalid_argument("attribute: a class below 0");
  Attribution result;
  if (is_cam_method(method)) {
    auto* sequential = dynamic_cast<SequentialClassifierImpl*>(&model);
    if (sequential == nullptr) throw std::invalid_argument("CAM needs a sequential model (its layers in forward order)");
    result.layer = o.cam_layer.empty() ? last_convolution(*sequential) : o.cam_layer;
    const auto& names = sequential->layer_names();
    const auto at = std::find(names.begin(), names.end(), result.layer);
    if (at == names.end()) refuse_cam_layer(model, result.layer, x);
    result.maps = class_activation_map(*sequential, x, labels, method, static_cast<std::size_t>(at - names.begin()));
    if (!result.maps.defined()) refuse_cam_layer(model, result.layer, x);
  } else if (method == AttributionMethod::occlusion) {
    result.maps = occlusion_map(model, x, labels, o);
  } else if (o.smoothgrad_samples == 0) {
    auto r = gradient_attribution(model, x, labels, method, o);
    result.maps = r.maps;
    result.completeness_error = r.completeness_error;
  } else {
    auto generator = make_cpu_generator(o.seed);
    auto sum = torch::zeros({x.size(0), x.size(2), x.size(3)}, x.options());
    for (int s = 0; s < o.smoothgrad_samples; ++s)
      sum += gradient_attribution(model, noisy_copy(x, o.smoothgrad_sigma, generator), labels, method, o).maps;
    result.maps = sum / o.smoothgrad_samples;
  }
  result.maps = result.maps.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  if (result.completeness_error.defined()) result.completeness_error = result.completeness_error.detach().cpu();
  return result;
}

}  // namespace fer
