// Batched training augmentation (the paper's): horizontal flip, rotation,
// zoom (one affine grid + bilinear sampling), brightness and contrast.
// All work happens on the device that holds the batch.
#pragma once

#include <torch/torch.h>

#include "fer/config.h"

namespace fer {

struct AugmentOptions {
  double flip_prob = 0.5;
  double rotation_deg = 10.0;  // uniform in [-r, r]
  double zoom = 0.1;           // scale uniform in [1-z, 1+z]
  double brightness = 0.2;     // factor uniform in [1-b, 1+b]
  double contrast = 0.2;       // factor uniform in [1-c, 1+c] around each image's mean

  static AugmentOptions from_config(const AugmentConfig& c);
};

// Requires x: [B,C,H,W] floating point with values in [0,1].
// Ensures: same shape, dtype and device, values in [0,1].
// Random draws come from `generator` (CPU) so results do not depend on the device.
torch::Tensor augment_batch(const torch::Tensor& x, const AugmentOptions& options, torch::Generator& generator);

// Mirrors left-right the images whose `mask` entry is true ([B] bool).
torch::Tensor flip_where(const torch::Tensor& x, const torch::Tensor& mask);

// Rotation (degrees, counter-clockwise) and zoom (>1 enlarges) per image,
// sampled bilinearly with edge replication ([B] float tensors).
torch::Tensor rotate_zoom(const torch::Tensor& x, const torch::Tensor& degrees, const torch::Tensor& scale);

// x * brightness, then (x - mean) * contrast + mean, clamped to [0,1] ([B] factors).
torch::Tensor adjust_brightness_contrast(const torch::Tensor& x, const torch::Tensor& brightness,
                                         const torch::Tensor& contrast);

// uint8 images [N,48,48] (contiguous, as in Dataset::pixels) -> float [B,1,48,48]
// in [0,1] on `device`, for the rows in `indices`.
torch::Tensor to_model_input(const torch::Tensor& images_u8, const torch::Tensor& indices, const torch::Device& device);

}  // namespace fer
