// Sanity checks for attribution maps (Adebayo et al., "Sanity Checks for
// Saliency Maps", 2018): a map that explains the model must change when the
// model's weights are randomised. The pieces: which layers a check randomises,
// the randomisation itself, and the similarity of two maps (Spearman rank
// correlation, SSIM).
//
//   auto layers = fer::randomisable_layers(*model);   // output first: fc2, fc1, block3_conv_2, ...
//   fer::randomise_layer(*model, layers[0], seed);     // cascading: then layers[1], ... on the same model
//   double rho = fer::spearman_correlation(original, randomised);
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "fer/models/model.h"

namespace fer {

// The layers with weights (convolutions and linear layers), from the output
// down: the order of Adebayo et al.'s cascading randomisation. Empty for a
// model that is not sequential.
std::vector<std::string> randomisable_layers(ClassifierImpl& model);

// Replaces `layer`'s weight and bias with PyTorch's default initialisation
// (uniform in +-1/sqrt(fan_in)), drawn from a generator seeded with `seed`:
// the same seed gives the same weights. Requires a layer of
// randomisable_layers(model); else std::invalid_argument listing them.
void randomise_layer(ClassifierImpl& model, const std::string& layer, std::uint64_t seed);

// Spearman's rank correlation of two maps of one size (n >= 2): Pearson's
// correlation of their ranks, ties given their mean rank. 0 when either map is
// constant. Throws std::invalid_argument for sizes that differ or n < 2.
double spearman_correlation(const std::vector<float>& a, const std::vector<float>& b);

// The structural similarity (Wang et al. 2004) of two maps [H,W] (H, W >= 11),
// each first scaled to [0,1] by its own minimum and maximum (a constant map
// becomes 0): the mean over the valid 11x11 Gaussian windows (sigma 1.5) of
// (2 mu_a mu_b + C1)(2 cov + C2) / ((mu_a^2 + mu_b^2 + C1)(var_a + var_b + C2)),
// C1 = 0.01^2, C2 = 0.03^2. Throws std::invalid_argument otherwise.
double map_ssim(const at::Tensor& a, const at::Tensor& b);

}  // namespace fer
