#include "fer/augment.h"

#include <cmath>

namespace fer {

AugmentOptions AugmentOptions::from_config(const AugmentConfig& c) {
  AugmentOptions o;
  if (!c.enabled) {
    o.flip_prob = o.rotation_deg = o.zoom = o.brightness = o.contrast = 0.0;
    return o;
  }
  o.flip_prob = c.flip_prob;
  o.rotation_deg = c.rotation_deg;
  o.zoom = c.zoom;
  o.brightness = c.brightness;
  o.contrast = c.contrast;
  return o;
}

torch::Tensor flip_where(const torch::Tensor& x, const torch::Tensor& mask) {
  const auto m = mask.to(x.device()).view({-1, 1, 1, 1});
  return torch::where(m, x.flip({3}), x);
}

torch::Tensor rotate_zoom(const torch::Tensor& x, const torch::Tensor& degrees, const torch::Tensor& scale) {
  namespace F = torch::nn::functional;
  const auto opts = x.options();
  const auto rad = degrees.to(opts) * (M_PI / 180.0);
  const auto inv_scale = 1.0 / scale.to(opts);
  const auto c = torch::cos(rad) * inv_scale;
  const auto s = torch::sin(rad) * inv_scale;
  const auto zero = torch::zeros_like(c);
  // theta maps output coordinates to input coordinates: rotate by -angle, shrink by 1/scale.
  const auto theta = torch::stack({torch::stack({c, -s, zero}, 1), torch::stack({s, c, zero}, 1)}, 1);
  const auto grid = F::affine_grid(theta, x.sizes(), /*align_corners=*/false);
  return F::grid_sample(x, grid,
                        F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kBorder).align_corners(false));
}

torch::Tensor adjust_brightness_contrast(const torch::Tensor& x, const torch::Tensor& brightness,
                                         const torch::Tensor& contrast) {
  const auto b = brightness.to(x.options()).view({-1, 1, 1, 1});
  const auto k = contrast.to(x.options()).view({-1, 1, 1, 1});
  auto y = x * b;
  const auto mean = y.mean({1, 2, 3}, /*keepdim=*/true);
  return ((y - mean) * k + mean).clamp(0.0, 1.0);
}

torch::Tensor augment_batch(const torch::Tensor& x, const AugmentOptions& o, torch::Generator& gen) {
  TORCH_CHECK(x.dim() == 4 && x.is_floating_point(), "augment_batch expects a float [B,C,H,W] batch, got ",
              x.sizes());
  const int64_t n = x.size(0);
  const auto cpu = torch::TensorOptions().dtype(torch::kFloat32);
  // Draw every random number up front, on the CPU generator, in a fixed order,
  // so a seed gives the same augmentation on any device.
  const auto u_flip = torch::rand({n}, gen, cpu);
  const auto u_rot = torch::rand({n}, gen, cpu);
  const auto u_zoom = torch::rand({n}, gen, cpu);
  const auto u_bright = torch::rand({n}, gen, cpu);
  const auto u_contrast = torch::rand({n}, gen, cpu);

  torch::Tensor y = x;
  if (o.flip_prob > 0) y = flip_where(y, u_flip < o.flip_prob);
  if (o.rotation_deg > 0 || o.zoom > 0) {
    const auto degrees = (u_rot * 2 - 1) * o.rotation_deg;
    const auto scale = 1.0 + (u_zoom * 2 - 1) * o.zoom;
    y = rotate_zoom(y, degrees, scale);
  }
  if (o.brightness > 0 || o.contrast > 0) {
    const auto brightness = 1.0 + (u_bright * 2 - 1) * o.brightness;
    const auto contrast = 1.0 + (u_contrast * 2 - 1) * o.contrast;
    y = adjust_brightness_contrast(y, brightness, contrast);
  }
  return y;
}

torch::Tensor to_model_input(const torch::Tensor& images_u8, const torch::Tensor& indices, const torch::Device& device) {
  auto batch = images_u8.index_select(0, indices);
  return batch.to(device, /*non_blocking=*/false).unsqueeze(1).to(torch::kFloat32).div_(255.0);
}

}  // namespace fer
