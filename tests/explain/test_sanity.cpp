// The sanity checks' pieces (fer/explain/sanity.h) against hand-computed values.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <map>

#include "fer/explain/sanity.h"
#include "fer/models/model.h"

TEST(Sanity, SpearmanMatchesHandComputedRanks) {
  // One swap of neighbours among four: 1 - 6 * 2 / (4 * 15) = 0.8.
  EXPECT_NEAR(fer::spearman_correlation({1, 2, 3, 4}, {10, 30, 20, 40}), 0.8, 1e-12);
  EXPECT_NEAR(fer::spearman_correlation({1, 2, 3, 4}, {4, 3, 2, 1}), -1.0, 1e-12);
  // Ties share their mean rank: ranks {1.5, 1.5, 3} and {1, 2, 3} correlate 1.5 / sqrt(1.5 * 2).
  EXPECT_NEAR(fer::spearman_correlation({5, 5, 9}, {1, 2, 3}), 1.5 / std::sqrt(3.0), 1e-6);
  EXPECT_NEAR(fer::spearman_correlation({0.1f, 7, 3}, {-5, 100, 8}), 1.0, 1e-12);  // monotone: 1
  EXPECT_EQ(fer::spearman_correlation({2, 2, 2}, {1, 2, 3}), 0.0);                 // constant map
  EXPECT_THROW(fer::spearman_correlation({1, 2}, {1, 2, 3}), std::invalid_argument);
}

// On an 11x11 map there is one window: SSIM is the formula of its
// Gaussian-weighted means, variances and covariance, computed here directly.
TEST(Sanity, SsimOfOneWindowIsWangsFormula) {
  torch::manual_seed(1);
  const auto a = torch::rand({11, 11}, torch::kFloat64), b = torch::rand({11, 11}, torch::kFloat64);
  const auto unit = [](const torch::Tensor& m) { return (m - m.min()) / (m.max() - m.min()); };
  const auto x = unit(a), y = unit(b);
  double w[11][11], total = 0;
  for (int i = 0; i < 11; ++i)
    for (int j = 0; j < 11; ++j) total += w[i][j] = std::exp(-((i - 5) * (i - 5) + (j - 5) * (j - 5)) / (2 * 1.5 * 1.5));
  double mx = 0, my = 0, sxx = 0, syy = 0, sxy = 0;
  for (int i = 0; i < 11; ++i)
    for (int j = 0; j < 11; ++j) {
      const double p = x[i][j].item<double>(), q = y[i][j].item<double>(), k = w[i][j] / total;
      mx += k * p, my += k * q, sxx += k * p * p, syy += k * q * q, sxy += k * p * q;
    }
  const double vx = sxx - mx * mx, vy = syy - my * my, cov = sxy - mx * my, c1 = 1e-4, c2 = 9e-4;
  const double expected = (2 * mx * my + c1) * (2 * cov + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2));
  EXPECT_NEAR(fer::map_ssim(a, b), expected, 1e-9);
}

TEST(Sanity, SsimIsOneForTheSameMapAtAnyScaleAndLowForItsNegative) {
  torch::manual_seed(2);
  const auto map = torch::rand({48, 48});
  EXPECT_NEAR(fer::map_ssim(map, map * 3 + 1), 1.0, 1e-6);  // each map is scaled to [0,1] first
  EXPECT_LT(fer::map_ssim(map, -map), 0.0);
  EXPECT_THROW(fer::map_ssim(torch::rand({8, 8}), torch::rand({8, 8})), std::invalid_argument);
}

TEST(Sanity, RandomisingALayerChangesOnlyItsWeightsAndRepeatsWithItsSeed) {
  torch::manual_seed(3);
  auto model = fer::make_model(fer::ModelOptions{});
  const auto layers = fer::randomisable_layers(*model);
  ASSERT_EQ(layers.size(), 8u);  // six convolutions and two linear layers, output first
  EXPECT_EQ(layers.front(), "fc2");
  EXPECT_EQ(layers.back(), "block1_conv_1");
  auto params = [&] {
    std::map<std::string, torch::Tensor> p;
    for (const auto& item : model->named_parameters()) p[item.key()] = item.value().detach().clone();
    return p;
  };
  const auto before = params();
  fer::randomise_layer(*model, "block3_conv_2", 7);
  const auto after = params();
  for (const auto& [name, t] : before) {
    const bool in_layer = name.rfind("block3_conv_2.", 0) == 0;
    EXPECT_EQ(torch::equal(t, after.at(name)), !in_layer) << name;
  }
  const auto& weight = after.at("block3_conv_2.weight");
  EXPECT_LE(weight.abs().max().item<double>(), 1.0 / std::sqrt(128.0 * 9));  // +-1/sqrt(fan_in)
  fer::randomise_layer(*model, "block3_conv_2", 7);
  EXPECT_TRUE(torch::equal(params().at("block3_conv_2.weight"), weight));
  try {
    fer::randomise_layer(*model, "block3_bn_2", 7);
    FAIL() << "a layer without weights to randomise was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("fc1"), std::string::npos) << e.what();
  }
}
