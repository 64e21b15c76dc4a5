// Batched training augmentation (the paper's): horizontal flip, rotation,
// zoom (one affine grid + bilinear sampling), brightness and contrast.
// All work happens on the device that holds the batch.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "fer/config/config.h"
#include "fer/data/input_normalization.h"

namespace fer {

struct AugmentOptions {
  double flip_prob = 0.5;
  double rotation_deg = 10.0;  // uniform in [-r, r]
  double zoom = 0.1;           // scale uniform in [1-z, 1+z]
  double brightness = 0.2;     // factor uniform in [1-b, 1+b]
  double contrast = 0.2;       // factor uniform in [1-c, 1+c] around each image's mean
  double gamma = 0.0;          // x^gamma, gamma log-uniform in [1/(1+g), 1+g]
  double low_light = 0.0;      // share of faces passed through simulate_low_light
  InputNormalization normalize = InputNormalization::none;  // the model's (data.normalize), after the light changes
  int64_t crop_size = 48;      // random crop of this size (centre crop when augmentation is off)
  int64_t crop_padding = 0;    // edge padding before the crop
  double erase_prob = 0.0;     // random erasing
  bool random_crops = true;    // false: centre crops of crop_size

  // Augmentation off (augment.enabled false) keeps crop_size: the model's input size.
  // normalize is data.normalize's, set by the trainer (it applies with augmentation off too).
  static AugmentOptions from_config(const AugmentConfig& c);
};

// The regularisers that mix pairs of images and their labels.
struct MixOptions {
  double mixup_alpha = 0.0;
  double cutmix_alpha = 0.0;
  bool enabled() const { return mixup_alpha > 0 || cutmix_alpha > 0; }
  static MixOptions from_config(const AugmentConfig& c);
};

// Flip, rotation and zoom, brightness and contrast, gamma, low light, the input
// normalisation, then the crop (random or centre, when crop_size < W or
// crop_padding > 0), then random erasing.
// Requires x: [B,C,H,W] floating point with values in [0,1].
// Ensures: [B,C,crop_size,crop_size] (or H,W without a crop), same dtype and device, values in [0,1].
// Random draws come from `generator` (CPU) so results do not depend on the device.
at::Tensor augment_batch(const at::Tensor& x, const AugmentOptions& options, at::Generator& generator);

// A CPU random generator seeded with `seed` (public ATen API: the same on
// LibTorch 1.13 and 2.x). Every random draw of training comes from one.
at::Generator make_cpu_generator(uint64_t seed);

// Mirrors left-right the images whose `mask` entry is true ([B] bool).
at::Tensor flip_where(const at::Tensor& x, const at::Tensor& mask);

// Rotation (degrees, counter-clockwise) and zoom (>1 enlarges) per image,
// sampled bilinearly with edge replication ([B] float tensors).
at::Tensor rotate_zoom(const at::Tensor& x, const at::Tensor& degrees, const at::Tensor& scale);

// x * brightness, then (x - mean) * contrast + mean, clamped to [0,1] ([B] factors).
at::Tensor adjust_brightness_contrast(const at::Tensor& x, const at::Tensor& brightness,
                                         const at::Tensor& contrast);

// x^gamma per image ([B] factors); x in [0,1] stays in [0,1].
at::Tensor adjust_gamma(const at::Tensor& x, const at::Tensor& gamma);

// A dim camera's face: x * darkening + noise_levels * N(0,1) / 255, rounded to
// 8-bit levels and clamped to [0,1] ([B] factors, [B,C,H,W] standard normal noise).
// Ensures every value is a multiple of 1/255.
at::Tensor simulate_low_light(const at::Tensor& x, const at::Tensor& darkening, const at::Tensor& noise_levels,
                              const at::Tensor& noise);

// Random crops of `size` after padding each side by `padding` pixels (edge
// replication), one offset per image drawn from `generator`. Requires
// size <= H + 2*padding. Ensures [B,C,size,size].
at::Tensor random_crop(const at::Tensor& x, int64_t size, int64_t padding, at::Generator& generator);

// The centred size x size window (floor of the margin on the top/left, as torchvision).
at::Tensor center_crop(const at::Tensor& x, int64_t size);

// Random erasing (Zhong et al.; torchvision's RandomErasing with value 0): with
// probability p per image, one box of area share in [0.02, 0.33] and aspect in
// [0.3, 3.3] (log-uniform) set to 0. A box that does not fit after 10 tries is skipped.
at::Tensor random_erase(const at::Tensor& x, double p, at::Generator& generator);

// A mixed batch: x = lam * x + (1 - lam) * x[perm] (mixup) or x with a box of
// x[perm] pasted in (CutMix, lam = the share of pixels kept from x). The loss is
// lam * loss(target_a) + (1 - lam) * loss(target_b).
struct MixedBatch {
  at::Tensor x, target_a, target_b;
  double lam = 1.0;
};
// Requires options.enabled(). One draw of lam (and box) per batch, as in the
// papers' reference code. With both alphas set, each batch uses one at random.
MixedBatch mix_batch(const at::Tensor& x, const at::Tensor& labels, const MixOptions& options,
                     at::Generator& generator);

// uint8 images [N,48,48] (contiguous, as in Dataset::pixels) -> float [B,1,48,48]
// in [0,1] on `device`, for the rows in `indices`.
at::Tensor to_model_input(const at::Tensor& images_u8, const at::Tensor& indices, const c10::Device& device);

}  // namespace fer
