// Attribution methods (fer/explain/attribution.h) against closed forms on
// small hand-built networks, and against Python PyTorch computing each method
// from its definition (attribution_reference.py) on the paper CNN.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>

#include "fer/explain/attribution.h"
#include "fer/models/checkpoint.h"
#include "fer/models/model.h"
#include "test_util.h"

namespace {

// y = W flatten(x) + b over 1x4x4 images: every gradient method has a closed form.
class LinearNet : public fer::SequentialClassifierImpl {
 public:
  LinearNet() {
    add("flatten", torch::nn::Flatten());
    fc = torch::nn::Linear(16, 3);
    add("fc", fc);
  }
  torch::nn::Linear fc{nullptr};
};

// conv (1 -> 2 channels, 3x3, same) -> flatten -> linear: y is linear in the
// conv's output A, so dy/dA is the linear layer's weights, reshaped.
class ConvNet : public fer::SequentialClassifierImpl {
 public:
  ConvNet() {
    conv = torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 2, 3).padding(1));
    add("conv", conv);
    add("flatten", torch::nn::Flatten());
    fc = torch::nn::Linear(32, 3);
    add("fc", fc);
  }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::Linear fc{nullptr};
};

// ConvNet with a ReLU after the convolution: y is piecewise linear in x.
class ReluNet : public fer::SequentialClassifierImpl {
 public:
  ReluNet() {
    add("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 3).padding(1)));
    add("relu", torch::nn::ReLU());
    add("flatten", torch::nn::Flatten());
    add("fc", torch::nn::Linear(64, 3));
  }
};

torch::Tensor test_images(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::rand({n, 1, 4, 4});
}

}  // namespace

TEST(Attribution, QuadratureRulesIntegratePolynomialsExactly) {
  const auto two = fer::integration_rule(fer::IntegrationRule::gauss_legendre, 2);
  ASSERT_EQ(two.nodes.size(), 2u);
  EXPECT_NEAR(std::min(two.nodes[0], two.nodes[1]), 0.5 - 0.5 / std::sqrt(3.0), 1e-12);
  EXPECT_NEAR(two.weights[0], 0.5, 1e-12);
  // n nodes: exact to degree 2n - 1; the integral of x^9 over [0, 1] is 1/10.
  const auto five = fer::integration_rule(fer::IntegrationRule::gauss_legendre, 5);
  double integral = 0, weights = 0;
  for (std::size_t k = 0; k < five.nodes.size(); ++k) {
    integral += five.weights[k] * std::pow(five.nodes[k], 9);
    weights += five.weights[k];
  }
  EXPECT_NEAR(integral, 0.1, 1e-12);
  EXPECT_NEAR(weights, 1.0, 1e-12);
  const auto trapezoid = fer::integration_rule(fer::IntegrationRule::trapezoid, 4);
  EXPECT_EQ(trapezoid.nodes, (std::vector<double>{0, 0.25, 0.5, 0.75, 1}));
  EXPECT_EQ(trapezoid.weights, (std::vector<double>{0.125, 0.25, 0.25, 0.25, 0.125}));
  EXPECT_THROW(fer::integration_rule(fer::IntegrationRule::trapezoid, 0), std::invalid_argument);
}

TEST(Attribution, GradientMethodsOfALinearModelAreItsWeights) {
  LinearNet net;
  net.eval();
  const auto x = test_images(3, 1);
  const auto classes = torch::tensor({0, 2, 1}, torch::kLong);
  const auto w = net.fc->weight.detach().index_select(0, classes).view({3, 4, 4});  // each image's row
  fer::AttributionOptions o;
  auto saliency = fer::attribute(net, x, classes, fer::AttributionMethod::saliency, o);
  EXPECT_TRUE(torch::allclose(saliency.maps, w.abs(), 1e-6, 1e-7));
  auto input_x_gradient = fer::attribute(net, x, classes, fer::AttributionMethod::input_x_gradient, o);
  EXPECT_TRUE(torch::allclose(input_x_gradient.maps, x.squeeze(1) * w, 1e-6, 1e-7));
  // Integrated gradients of a linear model: (x - b) w exactly, with either rule, complete.
  o.baseline = torch::full({1, 1, 4, 4}, 0.25);
  for (const auto rule : {fer::IntegrationRule::gauss_legendre, fer::IntegrationRule::trapezoid}) {
    o.ig_rule = rule;
    o.ig_steps = 3;
    const auto ig = fer::attribute(net, x, classes, fer::AttributionMethod::integrated_gradients, o);
    EXPECT_TRUE(torch::allclose(ig.maps, (x.squeeze(1) - 0.25) * w, 1e-5, 1e-6));
    ASSERT_TRUE(ig.completeness_error.defined());
    EXPECT_LT(ig.completeness_error.abs().max().item<float>(), 1e-5);
  }
  EXPECT_FALSE(saliency.completeness_error.defined());
}

// y_0 = relu(w . x - c): on the path a x (black baseline) the unit switches on
// at a* = c / (w . x), so integrated gradients are exactly x_i w_i (1 - a*) and
// sum to f(x) - f(0). A quadrature meets that up to its share of the path
// around the kink; the trapezoid rule's is at most one step.
class OneKinkNet : public fer::SequentialClassifierImpl {
 public:
  OneKinkNet(const torch::Tensor& w, double c) {
    add("flatten", torch::nn::Flatten());
    auto hidden = torch::nn::Linear(16, 1);
    auto out = torch::nn::Linear(1, 3);
    torch::NoGradGuard no_grad;
    hidden->weight.copy_(w.view({1, 16}));
    hidden->bias.fill_(-c);
    out->weight.copy_(torch::tensor({1.0f, 2.0f, -1.0f}).view({3, 1}));
    out->bias.zero_();
    add("hidden", hidden);
    add("relu", torch::nn::ReLU());
    add("out", out);
  }
};

TEST(Attribution, IntegratedGradientsThroughAReluKinkAreTheClosedForm) {
  const auto x = test_images(1, 2);
  const auto w = torch::linspace(0.1, 1.6, 16);
  const double wx = (x.flatten() * w).sum().item<double>(), kink = 0.37;  // the unit switches on at a* = 0.37
  OneKinkNet net(w, kink * wx);
  net.eval();
  const auto exact = x.flatten() * w * (1 - kink);
  for (const auto rule : {fer::IntegrationRule::trapezoid, fer::IntegrationRule::gauss_legendre}) {
    fer::AttributionOptions o;  // black baseline
    o.ig_rule = rule;
    o.ig_steps = 1000;
    const auto ig = fer::attribute(net, x, torch::tensor({0}, torch::kLong), fer::AttributionMethod::integrated_gradients, o);
    // The step around the kink is the only error: at most 1/steps (trapezoid) of the path's weight.
    EXPECT_LT((ig.maps[0].flatten() - exact).abs().max().item<double>(), 2e-3 * exact.abs().max().item<double>());
    EXPECT_LT(std::abs(ig.completeness_error[0].item<double>()), 2e-3 * wx);  // f(x) - f(0) = (1 - a*) w . x
  }
  // Class 1 scores twice the unit: twice the attributions.
  fer::AttributionOptions o;
  o.ig_steps = 1000;
  const auto two = fer::attribute(net, x, torch::tensor({1}, torch::kLong), fer::AttributionMethod::integrated_gradients, o);
  EXPECT_LT((two.maps[0].flatten() - 2 * exact).abs().max().item<double>(), 4e-3 * exact.abs().max().item<double>());
}

TEST(Attribution, CamMethodsOnALayerWhoseScoreIsLinear) {
  ConvNet net;
  net.eval();
  const auto x = test_images(2, 3);
  const auto classes = torch::tensor({2, 0}, torch::kLong);
  torch::NoGradGuard no_grad;
  const auto a = net.conv->forward(x);                                             // [2,2,4,4]
  const auto g = net.fc->weight.index_select(0, classes).view({2, 2, 4, 4});      // dy/dA
  fer::AttributionOptions o;  // the last convolution: "conv"
  const auto gradcam = fer::attribute(net, x, classes, fer::AttributionMethod::gradcam, o);
  EXPECT_EQ(gradcam.layer, "conv");
  // Grad-CAM's channel weights are the spatial means of the gradients.
  const auto expected = torch::relu((g.mean({2, 3}, true) * a).sum(1));
  EXPECT_TRUE(torch::allclose(gradcam.maps, expected, 1e-5, 1e-6));  // 4x4 layer, 4x4 input: no resampling
  const auto hires = fer::attribute(net, x, classes, fer::AttributionMethod::hirescam, o);
  EXPECT_TRUE(torch::allclose(hires.maps, torch::relu((g * a).sum(1)), 1e-5, 1e-6));
  const auto plus = fer::attribute(net, x, classes, fer::AttributionMethod::gradcam_plus_plus, o);
  EXPECT_EQ(plus.maps.sizes(), gradcam.maps.sizes());
  EXPECT_GE(plus.maps.min().item<float>(), 0.0f);

  o.cam_layer = "fc";
  try {
    fer::attribute(net, x, classes, fer::AttributionMethod::gradcam, o);
    ADD_FAILURE() << "a layer without a feature map accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'fc'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("conv"), std::string::npos) << e.what();
  }
  EXPECT_EQ(fer::cam_layer_names(net, 1, 4), (std::vector<std::string>{"conv"}));
}

TEST(Attribution, SmoothGradWithoutNoiseIsItsBaseMethodAndRepeatsWithItsSeed) {
  ConvNet net;
  net.eval();
  const auto x = test_images(2, 4);
  const auto classes = torch::tensor({0, 1}, torch::kLong);
  fer::AttributionOptions o;
  const auto base = fer::attribute(net, x, classes, fer::AttributionMethod::input_x_gradient, o);
  o.smoothgrad_samples = 4;
  o.smoothgrad_sigma = 0;
  EXPECT_TRUE(torch::allclose(fer::attribute(net, x, classes, fer::AttributionMethod::input_x_gradient, o).maps,
                              base.maps, 1e-6, 1e-7));
  o.smoothgrad_sigma = 0.2;
  o.seed = 7;
  const auto first = fer::attribute(net, x, classes, fer::AttributionMethod::input_x_gradient, o).maps;
  EXPECT_TRUE(torch::equal(first, fer::attribute(net, x, classes, fer::AttributionMethod::input_x_gradient, o).maps));
  o.seed = 8;
  EXPECT_FALSE(torch::equal(first, fer::attribute(net, x, classes, fer::AttributionMethod::input_x_gradient, o).maps));
}

TEST(Attribution, OcclusionOfALinearModelIsEachPatchsContribution) {
  LinearNet net;
  net.eval();
  const auto x = test_images(1, 5);
  const auto classes = torch::tensor({1}, torch::kLong);
  fer::AttributionOptions o;
  o.occlusion_patch = 2;
  o.occlusion_stride = 2;
  o.occlusion_fill = 0;
  const auto map = fer::attribute(net, x, classes, fer::AttributionMethod::occlusion, o).maps[0];
  const auto contribution = (x[0][0] * net.fc->weight[1].detach().view({4, 4}));  // what filling a pixel with 0 removes
  for (int r = 0; r < 4; r += 2)
    for (int c = 0; c < 4; c += 2) {
      const float patch = contribution.slice(0, r, r + 2).slice(1, c, c + 2).sum().item<float>();
      for (int i = r; i < r + 2; ++i)
        for (int j = c; j < c + 2; ++j) EXPECT_NEAR(map[i][j].item<float>(), patch, 1e-5) << i << "," << j;
    }
}

// A ReLU network of any input size: conv, ReLU, global average pool, linear.
class PooledNet : public fer::SequentialClassifierImpl {
 public:
  PooledNet() {
    add("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 3).padding(1)));
    add("relu", torch::nn::ReLU());
    add("pool", torch::nn::AdaptiveAvgPool2d(1));
    add("flatten", torch::nn::Flatten());
    add("fc", torch::nn::Linear(4, 3));
  }
};

// The batched occlusion (many patches per model call) against the plain
// loop: one image, one patch, one forward at a time.
TEST(Attribution, OcclusionInBatchesEqualsOnePatchAtATime) {
  torch::manual_seed(3);
  PooledNet net;
  net.eval();
  const int64_t n = 5, side = 24, patch = 3, stride = 2;  // 484 patches of 5 faces: several model calls
  const auto x = torch::rand({n, 1, side, side});
  const auto classes = torch::tensor({0, 1, 2, 0, 1}, torch::kLong);
  fer::AttributionOptions o;
  o.occlusion_patch = patch;
  o.occlusion_stride = stride;
  o.occlusion_fill = 0.3;
  const auto maps = fer::attribute(net, x, classes, fer::AttributionMethod::occlusion, o).maps;
  torch::NoGradGuard no_grad;
  for (int64_t i = 0; i < n; ++i) {
    const auto image = x.slice(0, i, i + 1);
    const int64_t c = classes[i].item<int64_t>();
    const float full = net.forward(image)[0][c].item<float>();
    auto sum = torch::zeros({side, side}), covered = torch::zeros({side, side});
    std::vector<int64_t> starts;  // every stride, and one more flush with the far edge
    for (int64_t s = 0; s + patch <= side; s += stride) starts.push_back(s);
    if (starts.back() + patch < side) starts.push_back(side - patch);
    for (const auto top : starts)
      for (const auto left : starts) {
        auto occluded = image.clone();
        occluded.slice(2, top, top + patch).slice(3, left, left + patch).fill_(0.3);
        const float drop = full - net.forward(occluded)[0][c].item<float>();
        sum.slice(0, top, top + patch).slice(1, left, left + patch).add_(drop);
        covered.slice(0, top, top + patch).slice(1, left, left + patch).add_(1);
      }
    EXPECT_LT((maps[i] - sum / covered).abs().max().item<float>(), 1e-5) << "image " << i;
  }
}

TEST(Attribution, RefusesWhatItCannotAnswer) {
  LinearNet net;
  const auto x = test_images(1, 6);
  const auto classes = torch::tensor({0}, torch::kLong);
  fer::AttributionOptions o;
  net.train();
  EXPECT_THROW(fer::attribute(net, x, classes, fer::AttributionMethod::saliency, o), std::invalid_argument);
  net.eval();
  EXPECT_THROW(fer::attribute(net, x, classes, fer::AttributionMethod::gradcam, o), std::invalid_argument);  // no convolution
  EXPECT_THROW(fer::attribute(net, x, torch::tensor({0, 1}, torch::kLong), fer::AttributionMethod::saliency, o),
               std::invalid_argument);
  o.ig_steps = 0;
  EXPECT_THROW(fer::attribute(net, x, classes, fer::AttributionMethod::integrated_gradients, o), std::invalid_argument);
  EXPECT_EQ(fer::attribution_method_names().parse("gradcam++"), fer::AttributionMethod::gradcam_plus_plus);
}

TEST(Attribution, EveryMethodExplainsBothArchitecturesAtTheInputsSize) {
  for (const char* architecture : {"paper_cnn", "vgg_fer"}) {
    SCOPED_TRACE(architecture);
    fer::ModelOptions options;
    options.architecture = architecture;
    options.filters = {4, 8, 8, 8};
    if (options.architecture == "paper_cnn") options.filters = {4, 8, 8};
    options.dense_units = 16;
    options.input_size = 40;
    auto model = fer::make_model(options);
    model->eval();
    torch::manual_seed(9);
    const auto x = torch::rand({2, 1, 40, 40});
    const auto classes = torch::tensor({3, 6}, torch::kLong);
    fer::AttributionOptions o;
    o.ig_steps = 4;
    for (const auto& [name, method] : fer::attribution_method_names().names) {
      const auto a = fer::attribute(*model, x, classes, method, o);
      EXPECT_EQ(a.maps.sizes(), (std::vector<int64_t>{2, 40, 40})) << name;
      EXPECT_TRUE(torch::isfinite(a.maps).all().item<bool>()) << name;
      if (fer::is_cam_method(method)) EXPECT_EQ(a.layer, options.architecture == "paper_cnn" ? "block3_conv_2" : "stage4_conv_2") << name;
    }
  }
}

namespace attribution_python_test {

std::vector<float> read_floats(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  std::vector<float> values(static_cast<std::size_t>(in.tellg()) / sizeof(float));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(values.data()), static_cast<std::streamsize>(values.size() * sizeof(float)));
  return values;
}

// A trained-looking paper CNN (BatchNorm statistics from a few batches), saved and loaded back.
fer::Classifier saved_paper_cnn(const std::string& path) {
  torch::manual_seed(11);
  auto model = fer::make_model(fer::ModelOptions{});
  model->train();
  {
    torch::NoGradGuard no_grad;
    for (int i = 0; i < 3; ++i) model->forward(torch::rand({16, 1, 48, 48}));
  }
  model->eval();
  fer::save_checkpoint(path, *model, {fer::ModelOptions{}, {"a", "b", "c", "d", "e", "f", "g"}, {}});
  return fer::load_checkpoint(path, torch::kCPU).model;
}

TEST(AttributionPython, EveryDeterministicMethodEqualsPythonPyTorchFromItsDefinition) {
  if (std::system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "Python PyTorch (python3-torch) not installed: no Python reference";
  fer_test::TempDir dir;
  auto model = saved_paper_cnn(dir / "m.pt");
  torch::manual_seed(12);
  const auto images = torch::rand({3, 1, 48, 48});
  const auto classes = torch::tensor({0, 3, 6}, torch::kLong);
  fer::AttributionOptions o;
  o.cam_layer = "block3_conv_2";
  o.ig_steps = 16;
  o.occlusion_patch = 8;
  o.occlusion_stride = 6;  // 0, 6, ..., 36, then 40 so the last window reaches the edge
  o.occlusion_fill = 0.25;
  {
    std::ofstream out(dir / "images.f32", std::ios::binary);
    out.write(reinterpret_cast<const char*>(images.data_ptr<float>()), images.numel() * sizeof(float));
  }
  const fer_test::fs::path scripts = fer_test::fs::path(fer_test::source_dir()) / "scripts";
  const auto reference = fer_test::fs::path(fer_test::source_dir()) / "tests/explain/attribution_reference.py";
  const std::string command = "/usr/bin/python3 " + reference.string() + " " + scripts.string() + " " + (dir / "m.pt") +
                              " " + (dir / "images.f32") + " 3 0,3,6 block3_conv_2 16 8 6 0.25 " + dir.path().string();
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  // Occlusion's values are differences of logits: each side rounds to a few
  // ulps of the logits, however small the difference (LibTorch 2.6's draw of
  // this network moves its logits by 3e-4 per patch).
  const double logit_ulps = 8 * std::numeric_limits<float>::epsilon() * [&] {
    torch::NoGradGuard no_grad;
    return model->forward(images).abs().max().item<double>();
  }();
  for (const char* name : {"saliency", "input_x_gradient", "integrated_gradients", "gradcam", "gradcam++", "hirescam",
                           "occlusion"}) {
    SCOPED_TRACE(name);
    const auto ours = fer::attribute(*model, images, classes, fer::attribution_method_names().parse(name), o).maps;
    const auto python = read_floats(dir / (std::string(name) + ".f32"));
    ASSERT_EQ(python.size(), static_cast<std::size_t>(ours.numel()));
    const auto theirs = torch::from_blob(const_cast<float*>(python.data()), ours.sizes(), torch::kFloat32);
    const double scale = theirs.abs().max().item<double>();
    ASSERT_GT(scale, 0);  // a map of zeros would agree with anything
    const double rounding = std::string(name) == "occlusion" ? logit_ulps : 0.0;
    EXPECT_LT((ours - theirs).abs().max().item<double>(), 1e-4 * scale + rounding);
  }
}

}  // namespace attribution_python_test
