// Attribution maps beyond SHAP and LIME, for one class per image: gradients
// (saliency, input x gradient, integrated gradients, each optionally through
// SmoothGrad's noise tunnel), class activation maps (Grad-CAM, Grad-CAM++,
// HiResCAM) on a chosen layer, and occlusion as a model-agnostic baseline.
//
//   fer::AttributionOptions o;                   // Grad-CAM on the last convolution
//   auto a = fer::attribute(*model, images, classes, fer::AttributionMethod::gradcam, o);
//   a.maps;                                      // [N,H,W], the input's size
//
// The model must be in eval mode (the caller's choice: BatchNorm statistics
// and dropout change every method's answer). Images are the model's input,
// [N,C,H,W] float; classes int64 [N].
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "fer/common/enum_names.h"
#include "fer/models/model.h"

namespace fer {

enum class AttributionMethod {
  saliency,              // |dy/dx| (summed over channels)
  input_x_gradient,      // x * dy/dx
  integrated_gradients,  // (x - b) * the mean gradient on the straight path from b to x
  gradcam,               // ReLU(sum_k mean(dy/dA_k) A_k) at the layer, upsampled
  gradcam_plus_plus,     // Grad-CAM with Chattopadhay et al.'s pixel weights
  hirescam,              // ReLU(sum_k dy/dA_k * A_k): element-wise, no averaging
  occlusion,             // y(x) - y(x with a patch filled), averaged over the patches covering a pixel
};
const EnumNames<AttributionMethod>& attribution_method_names();  // saliency, input_x_gradient, integrated_gradients, gradcam, gradcam++, hirescam, occlusion
bool is_cam_method(AttributionMethod method);
bool is_gradient_method(AttributionMethod method);  // saliency, input_x_gradient, integrated_gradients: SmoothGrad applies

// Integrated gradients' quadrature over the path parameter in [0, 1].
enum class IntegrationRule { gauss_legendre, trapezoid };
const EnumNames<IntegrationRule>& integration_rule_names();  // gauss_legendre, trapezoid

struct AttributionOptions {
  // CAM: the layer whose output is weighted (a layer name of the model,
  // cam_layer_names); empty: the last convolution.
  std::string cam_layer;
  // Integrated gradients: steps of the rule, and the baseline b, broadcast to
  // the images ([1,C,H,W] or [N,C,H,W]); undefined: black (zeros).
  int ig_steps = 64;
  IntegrationRule ig_rule = IntegrationRule::gauss_legendre;
  at::Tensor baseline;
  // SmoothGrad (gradient methods): the mean map over `smoothgrad_samples`
  // copies with Gaussian noise of sigma = smoothgrad_sigma x (max - min of the
  // image); 0 samples: off. Seeded: the same seed gives the same noise.
  int smoothgrad_samples = 0;
  double smoothgrad_sigma = 0.15;
  std::uint64_t seed = 0;
  // Occlusion: a square patch of `occlusion_patch` pixels moved by
  // `occlusion_stride`, filled with `occlusion_fill`.
  int occlusion_patch = 8;
  int occlusion_stride = 4;
  double occlusion_fill = 0.5;
};

struct Attribution {
  at::Tensor maps;  // [N,H,W] float32 on the CPU
  // Integrated gradients: sum(maps) - (y(x) - y(b)) per image, the completeness
  // error (0 for an exact integral); undefined for the other methods.
  at::Tensor completeness_error;
  std::string layer;  // CAM: the layer used
};

// Requires images [N,C,H,W] (N >= 1), classes [N] in range, a sequential model
// for CAM (else std::invalid_argument), positive steps, samples >= 0, a patch
// and stride >= 1. The score y is the class's logit. Throws
// std::invalid_argument naming a CAM layer that is not one of the model's
// (listing those it has).
Attribution attribute(ClassifierImpl& model, const at::Tensor& images, const at::Tensor& classes,
                      AttributionMethod method, const AttributionOptions& options);

// The layers CAM may use on inputs of `channels` x `size` x `size`: every
// layer with a [N,K,h,w] output (convolutions, their activations and norms,
// pooling), in forward order. Empty for a model that is not sequential.
std::vector<std::string> cam_layer_names(ClassifierImpl& model, int64_t channels, int64_t size);

// Gauss-Legendre nodes and weights on [0, 1] (n >= 1): exact for polynomials
// of degree up to 2n - 1. Trapezoid: n + 1 equally spaced nodes.
struct Quadrature {
  std::vector<double> nodes, weights;
};
Quadrature integration_rule(IntegrationRule rule, int n);

}  // namespace fer
