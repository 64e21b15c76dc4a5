#include "fer/data/augment.h"

#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>

namespace fer {

AugmentOptions AugmentOptions::from_config(const AugmentConfig& c) {
  AugmentOptions o;
  o.crop_size = c.crop_size;
  if (!c.enabled) {
    o.flip_prob = o.rotation_deg = o.zoom = o.brightness = o.contrast = 0.0;
    o.random_crops = false;
    return o;
  }
  o.flip_prob = c.flip_prob;
  o.rotation_deg = c.rotation_deg;
  o.zoom = c.zoom;
  o.brightness = c.brightness;
  o.contrast = c.contrast;
  o.gamma = c.gamma;
  o.low_light = c.low_light;
  o.crop_padding = c.crop_padding;
  o.erase_prob = c.erase_prob;
  return o;
}

MixOptions MixOptions::from_config(const AugmentConfig& c) {
  MixOptions o;
  if (c.enabled) {
    o.mixup_alpha = c.mixup_alpha;
    o.cutmix_alpha = c.cutmix_alpha;
  }
  return o;
}

torch::Generator make_cpu_generator(uint64_t seed) {
  return at::make_generator<at::CPUGeneratorImpl>(seed);
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

torch::Tensor adjust_gamma(const torch::Tensor& x, const torch::Tensor& gamma) {
  return x.clamp_min(0).pow(gamma.to(x.options()).view({-1, 1, 1, 1}));
}

torch::Tensor simulate_low_light(const torch::Tensor& x, const torch::Tensor& darkening,
                                 const torch::Tensor& noise_levels, const torch::Tensor& noise) {
  const auto k = darkening.to(x.options()).view({-1, 1, 1, 1});
  const auto sigma = noise_levels.to(x.options()).view({-1, 1, 1, 1});
  return ((x * k * 255 + sigma * noise.to(x.options())).round().clamp(0, 255)) / 255;
}

namespace {
// Darkening x1/25 to x1/3 leaves a face 10 to 85 grey levels, as the clip's
// stage-lit audience (docs/live.md); up to 2 levels of sensor noise.
constexpr double kDimmest = 1.0 / 25, kMildest = 1.0 / 3, kMaxNoiseLevels = 2.0;

torch::Tensor low_light_where(const torch::Tensor& x, double share, torch::Generator& gen) {
  const int64_t n = x.size(0);
  const auto cpu = torch::TensorOptions().dtype(torch::kFloat32);
  const auto u_apply = torch::rand({n}, gen, cpu);
  const auto u_dark = torch::rand({n}, gen, cpu);
  const auto u_noise = torch::rand({n}, gen, cpu);
  const auto noise = torch::randn(x.sizes(), gen, cpu);
  const auto darkening = (std::log(kDimmest) + u_dark * (std::log(kMildest) - std::log(kDimmest))).exp();
  const auto dim = simulate_low_light(x, darkening, u_noise * kMaxNoiseLevels, noise);
  return torch::where((u_apply < share).to(x.device()).view({-1, 1, 1, 1}), dim, x);
}
}  // namespace

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
  if (o.gamma > 0) {
    const auto log_gamma = (torch::rand({n}, gen, cpu) * 2 - 1) * std::log1p(o.gamma);
    y = adjust_gamma(y, log_gamma.exp());
  }
  if (o.low_light > 0) y = low_light_where(y, o.low_light, gen);
  y = normalize_input(y, o.normalize);
  // Draws beyond the paper's five happen only when these are on, so the
  // paper's recipe sees the same random stream as before they existed.
  if (o.crop_padding > 0 || o.crop_size < x.size(3))
    y = o.random_crops ? random_crop(y, o.crop_size, o.crop_padding, gen) : center_crop(y, o.crop_size);
  if (o.erase_prob > 0) y = random_erase(y, o.erase_prob, gen);
  return y;
}

torch::Tensor random_crop(const torch::Tensor& x, int64_t size, int64_t padding, torch::Generator& gen) {
  namespace F = torch::nn::functional;
  const int64_t n = x.size(0), h = x.size(2) + 2 * padding, w = x.size(3) + 2 * padding;
  TORCH_CHECK(size <= h && size <= w, "random_crop: crop ", size, " exceeds the padded image ", h, "x", w);
  const auto padded =
      padding > 0 ? F::pad(x, F::PadFuncOptions({padding, padding, padding, padding}).mode(torch::kReplicate)) : x;
  // Offsets drawn on the CPU generator (device-independent), one per image.
  const auto top = torch::randint(h - size + 1, {n}, gen, torch::kInt64);
  const auto left = torch::randint(w - size + 1, {n}, gen, torch::kInt64);
  // Gather every crop at once: row index top+i, column index left+j.
  const auto steps = torch::arange(size, torch::kInt64);
  const auto rows = (top.view({n, 1}) + steps.view({1, size})).to(x.device());
  const auto cols = (left.view({n, 1}) + steps.view({1, size})).to(x.device());
  const int64_t c = x.size(1);
  const auto row_index = rows.view({n, 1, size, 1}).expand({n, c, size, w});
  const auto by_rows = padded.gather(2, row_index);
  const auto col_index = cols.view({n, 1, 1, size}).expand({n, c, size, size});
  return by_rows.gather(3, col_index);
}

torch::Tensor center_crop(const torch::Tensor& x, int64_t size) {
  const int64_t h = x.size(-2), w = x.size(-1);
  TORCH_CHECK(size <= h && size <= w, "center_crop: crop ", size, " exceeds the image ", h, "x", w);
  if (size == h && size == w) return x;
  const int64_t top = (h - size) / 2, left = (w - size) / 2;
  return x.narrow(-2, top, size).narrow(-1, left, size);
}

torch::Tensor random_erase(const torch::Tensor& x, double p, torch::Generator& gen) {
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  const auto cpu = torch::TensorOptions().dtype(torch::kFloat64);
  constexpr int kTries = 10;
  // Every number is drawn up front, in a fixed order, whatever the outcome.
  const auto u_apply = torch::rand({n}, gen, cpu);
  const auto u_area = torch::rand({n, kTries}, gen, cpu);
  const auto u_ratio = torch::rand({n, kTries}, gen, cpu);
  const auto u_top = torch::rand({n, kTries}, gen, cpu);
  const auto u_left = torch::rand({n, kTries}, gen, cpu);
  auto keep = torch::ones({n, 1, h, w}, cpu.dtype(torch::kFloat32));
  auto a = u_apply.accessor<double, 1>();
  auto ua = u_area.accessor<double, 2>(), ur = u_ratio.accessor<double, 2>();
  auto ut = u_top.accessor<double, 2>(), ul = u_left.accessor<double, 2>();
  const double log_lo = std::log(0.3), log_hi = std::log(1.0 / 0.3);
  for (int64_t i = 0; i < n; ++i) {
    if (a[i] >= p) continue;
    for (int t = 0; t < kTries; ++t) {
      const double area = (0.02 + ua[i][t] * (0.33 - 0.02)) * h * w;
      const double ratio = std::exp(log_lo + ur[i][t] * (log_hi - log_lo));
      const auto eh = static_cast<int64_t>(std::lround(std::sqrt(area * ratio)));
      const auto ew = static_cast<int64_t>(std::lround(std::sqrt(area / ratio)));
      if (eh < 1 || ew < 1 || eh >= h || ew >= w) continue;
      const auto top = static_cast<int64_t>(ut[i][t] * (h - eh + 1));
      const auto left = static_cast<int64_t>(ul[i][t] * (w - ew + 1));
      keep[i].narrow(1, top, eh).narrow(2, left, ew).zero_();
      break;
    }
  }
  return x * keep.to(x.device(), x.scalar_type());
}

namespace {
double uniform(torch::Generator& gen) { return torch::rand({1}, gen, torch::kFloat64).item<double>(); }

// A Gamma(a, 1) draw (Marsaglia & Tsang 2000) from the generator's normal and
// uniform draws; a < 1 through Gamma(a + 1) * U^(1/a).
double sample_gamma(double a, torch::Generator& gen) {
  if (a < 1) return sample_gamma(a + 1, gen) * std::pow(uniform(gen), 1.0 / a);
  const double d = a - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    const double x = torch::randn({1}, gen, torch::kFloat64).item<double>();
    const double v = std::pow(1 + c * x, 3);
    if (v <= 0) continue;
    if (std::log(uniform(gen)) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v;
  }
}

// A Beta(a, a) draw from two Gamma(a) draws.
double sample_beta(double alpha, torch::Generator& gen) {
  const double x = sample_gamma(alpha, gen), y = sample_gamma(alpha, gen);
  return (x + y) > 0 ? x / (x + y) : 0.5;
}
}  // namespace

MixedBatch mix_batch(const torch::Tensor& x, const torch::Tensor& labels, const MixOptions& o, torch::Generator& gen) {
  TORCH_CHECK(o.enabled(), "mix_batch: neither mixup nor cutmix is on");
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  const auto u = torch::rand({4}, gen, torch::kFloat64);  // which method, box centre y, x; spare
  const auto perm = torch::randperm(n, gen, torch::kInt64).to(x.device());
  const bool use_cutmix = o.cutmix_alpha > 0 && (o.mixup_alpha <= 0 || u[0].item<double>() < 0.5);
  const double drawn = sample_beta(use_cutmix ? o.cutmix_alpha : o.mixup_alpha, gen);
  MixedBatch m;
  m.target_a = labels;
  m.target_b = labels.index_select(0, perm.to(labels.device()));
  const auto other = x.index_select(0, perm);
  if (!use_cutmix) {
    m.lam = drawn;
    m.x = x * drawn + other * (1.0 - drawn);
    return m;
  }
  // CutMix box: side sqrt(1 - lam) of the image, centred at a uniform point, clipped.
  const double cut = std::sqrt(1.0 - drawn);
  const auto ch = static_cast<int64_t>(h * cut), cw = static_cast<int64_t>(w * cut);
  const auto cy = static_cast<int64_t>(u[1].item<double>() * h), cx = static_cast<int64_t>(u[2].item<double>() * w);
  const int64_t y0 = std::clamp<int64_t>(cy - ch / 2, 0, h), y1 = std::clamp<int64_t>(cy + ch / 2, 0, h);
  const int64_t x0 = std::clamp<int64_t>(cx - cw / 2, 0, w), x1 = std::clamp<int64_t>(cx + cw / 2, 0, w);
  m.x = x.clone();
  if (y1 > y0 && x1 > x0)
    m.x.narrow(2, y0, y1 - y0).narrow(3, x0, x1 - x0).copy_(other.narrow(2, y0, y1 - y0).narrow(3, x0, x1 - x0));
  m.lam = 1.0 - double((y1 - y0) * (x1 - x0)) / double(h * w);  // the share of pixels still from x
  return m;
}

torch::Tensor to_model_input(const torch::Tensor& images_u8, const torch::Tensor& indices, const torch::Device& device) {
  auto batch = images_u8.index_select(0, indices);
  return batch.to(device, /*non_blocking=*/false).unsqueeze(1).to(torch::kFloat32).div_(255.0);
}

}  // namespace fer
