#include "fer/data/input_normalization.h"

#include <torch/torch.h>

#include <stdexcept>

namespace fer {

InputNormalization parse_input_normalization(const std::string& name) {
  if (name == "none") return InputNormalization::none;
  if (name == "equalize") return InputNormalization::equalize;
  throw std::invalid_argument("unknown input normalisation '" + name + "' (none or equalize)");
}

std::string input_normalization_name(InputNormalization mode) {
  return mode == InputNormalization::equalize ? "equalize" : "none";
}

torch::Tensor equalize_histogram(const torch::Tensor& images) {
  TORCH_CHECK(images.dim() == 3 || images.dim() == 4, "equalize_histogram expects [N,H,W] or [N,C,H,W], got ",
              images.sizes());
  const bool is_u8 = images.scalar_type() == torch::kUInt8;
  TORCH_CHECK(is_u8 || images.is_floating_point(), "equalize_histogram expects uint8 or float images");
  const int64_t pixels = images.size(-1) * images.size(-2);
  if (images.numel() == 0) return images.clone();
  // One row of levels per image channel.
  const auto levels = (is_u8 ? images.to(torch::kInt64) : images.mul(255.0).round().clamp(0, 255).to(torch::kInt64))
                          .reshape({-1, pixels});
  const int64_t rows = levels.size(0);
  const auto counts = torch::zeros({rows, 256}, levels.options()).scatter_add_(1, levels, torch::ones_like(levels));
  const auto cdf = counts.cumsum(1);
  // cdf at the darkest present level = the count of that level.
  const auto darkest = levels.amin(1, /*keepdim=*/true);
  const auto cdf_min = cdf.gather(1, darkest);
  const auto spread = pixels - cdf_min;
  // As OpenCV: a float scale 255 / (pixels - cdf_min), times the count in float, rounded half to even.
  const auto scale = torch::full_like(spread, 255, torch::kFloat32) / spread.clamp_min(1).to(torch::kFloat32);
  const auto scaled = (cdf - cdf_min).to(torch::kFloat32) * scale;
  auto lut = scaled.round().clamp(0, 255).to(torch::kInt64);
  // A single-level image keeps its level (OpenCV fills its table with it).
  const auto flat = (spread == 0).expand({rows, 256});
  lut = torch::where(flat, darkest.expand({rows, 256}), lut);
  const auto mapped = lut.gather(1, levels).reshape(images.sizes());
  return is_u8 ? mapped.to(torch::kUInt8) : mapped.to(images.scalar_type()).div_(255.0);
}

torch::Tensor normalize_input(const torch::Tensor& x, InputNormalization mode) {
  return mode == InputNormalization::equalize ? equalize_histogram(x) : x;
}

}  // namespace fer
