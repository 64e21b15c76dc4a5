#include "fer/explain/sanity.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "fer/common/emotions.h"
#include "fer/data/augment.h"

namespace fer {

namespace {

bool has_weights(const std::shared_ptr<torch::nn::Module>& layer) {
  return layer->as<torch::nn::Conv2d>() != nullptr || layer->as<torch::nn::Linear>() != nullptr;
}

std::vector<float> ranks(const std::vector<float>& values) {
  std::vector<std::size_t> order(values.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t i, std::size_t j) { return values[i] < values[j]; });
  std::vector<float> r(values.size());
  for (std::size_t first = 0; first < order.size();) {
    std::size_t last = first;  // a run of ties shares the mean of its ranks (1-based)
    while (last + 1 < order.size() && values[order[last + 1]] == values[order[first]]) ++last;
    const float mean_rank = static_cast<float>(first + last) / 2.0f + 1.0f;
    for (std::size_t k = first; k <= last; ++k) r[order[k]] = mean_rank;
    first = last + 1;
  }
  return r;
}

at::Tensor unit_range(const at::Tensor& map) {
  const auto m = map.to(torch::kCPU, torch::kFloat64);
  const auto lo = m.min(), span = m.max() - lo;
  if (span.item<double>() <= 0) return torch::zeros_like(m);
  return (m - lo) / span;
}

}  // namespace

std::vector<std::string> randomisable_layers(ClassifierImpl& model) {
  auto* sequential = dynamic_cast<SequentialClassifierImpl*>(&model);
  if (sequential == nullptr) return {};
  std::vector<std::string> names;
  const auto& layers = sequential->sequential_layers();
  for (std::size_t i = layers.size(); i-- > 0;)
    if (has_weights(layers[i])) names.push_back(sequential->layer_names()[i]);
  return names;
}

void randomise_layer(ClassifierImpl& model, const std::string& layer, std::uint64_t seed) {
  const auto allowed = randomisable_layers(model);  // empty unless sequential
  if (std::find(allowed.begin(), allowed.end(), layer) == allowed.end())
    throw std::invalid_argument("randomise_layer: '" + layer + "' is not a layer with weights of this model (" +
                                class_name_list(allowed) + ")");
  auto& sequential = dynamic_cast<SequentialClassifierImpl&>(model);
  const auto& names = sequential.layer_names();
  const auto module = sequential.sequential_layers()[static_cast<std::size_t>(  // a copy: the list is returned by value
      std::find(names.begin(), names.end(), layer) - names.begin())];
  auto generator = make_cpu_generator(seed);
  torch::NoGradGuard no_grad;
  const auto weight = module->named_parameters(false)["weight"];
  const double bound = 1.0 / std::sqrt(static_cast<double>(weight[0].numel()));  // fan_in: one output's inputs
  for (auto& p : module->parameters(false))
    p.copy_((torch::rand(p.sizes(), generator, torch::dtype(torch::kFloat32)) * 2 - 1).mul(bound).to(p.device(), p.dtype()));
}

double spearman_correlation(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size() || a.size() < 2)
    throw std::invalid_argument("spearman_correlation: two maps of one size >= 2, not " + std::to_string(a.size()) +
                                " and " + std::to_string(b.size()) + " values");
  const auto ra = ranks(a), rb = ranks(b);
  const double mean = (static_cast<double>(a.size()) + 1) / 2;  // the mean rank, ties or not
  double cov = 0, va = 0, vb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    cov += (ra[i] - mean) * (rb[i] - mean);
    va += (ra[i] - mean) * (ra[i] - mean);
    vb += (rb[i] - mean) * (rb[i] - mean);
  }
  return va > 0 && vb > 0 ? cov / std::sqrt(va * vb) : 0.0;
}

double map_ssim(const at::Tensor& a, const at::Tensor& b) {
  constexpr int64_t kWindow = 11;
  constexpr double kSigma = 1.5, kC1 = 0.01 * 0.01, kC2 = 0.03 * 0.03;
  if (a.dim() != 2 || a.sizes() != b.sizes() || a.size(0) < kWindow || a.size(1) < kWindow)
    throw std::invalid_argument("map_ssim: two maps [H,W] of one size, H and W >= 11");
  auto g = torch::arange(kWindow, torch::kFloat64).sub((kWindow - 1) / 2.0).pow(2).div(-2 * kSigma * kSigma).exp();
  g = g / g.sum();
  const auto window = (g.view({-1, 1}) * g.view({1, -1})).view({1, 1, kWindow, kWindow});
  const auto x = unit_range(a).view({1, 1, a.size(0), a.size(1)}), y = unit_range(b).view({1, 1, b.size(0), b.size(1)});
  const auto mean = [&](const at::Tensor& t) { return torch::conv2d(t, window); };
  const auto mx = mean(x), my = mean(y);
  const auto vx = mean(x * x) - mx * mx, vy = mean(y * y) - my * my, cov = mean(x * y) - mx * my;
  const auto ssim = ((2 * mx * my + kC1) * (2 * cov + kC2)) / ((mx * mx + my * my + kC1) * (vx + vy + kC2));
  return ssim.mean().item<double>();
}

}  // namespace fer
