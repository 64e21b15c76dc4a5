// Photometric normalisation of a model's input (data.normalize): part of the
// model's contract with its images, stored in its checkpoint (ModelOptions::
// normalize) and applied by every path that feeds it (training after
// augmentation, validation, evaluation, explanation, export calibration, live).
//
//   at::Tensor x = to_model_input(images_u8, rows, device);   // [B,1,48,48] in [0,1]
//   x = fer::normalize_input(x, fer::InputNormalization::equalize);
//
// equalize is OpenCV's cv::equalizeHist on each image's 256 grey levels, so a
// face in stage light and a well-lit one reach the network with the same spread
// of grey levels (it is unchanged by any increasing map of the levels: gamma,
// brightness, contrast). It is not differentiable: explainers explain the
// network on the normalised image.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace fer {

enum class InputNormalization { none, equalize };

// "none" | "equalize"; throws std::invalid_argument naming the valid names.
InputNormalization parse_input_normalization(const std::string& name);
std::string input_normalization_name(InputNormalization mode);

// Histogram equalisation of each image, exactly cv::equalizeHist's mapping:
// levels below an image's darkest are absent, the darkest maps to 0 and level v
// to round(255 * (cdf(v) - cdf(darkest)) / (pixels - cdf(darkest))); an image of
// one level is returned unchanged.
// Requires uint8 [N,H,W] or [N,C,H,W] (levels 0..255), or floating point [N,C,H,W]
// in [0,1] (levels round(255 x)). Ensures the same shape, dtype and device; float
// results are level / 255. Each channel of an image is equalised on its own.
at::Tensor equalize_histogram(const at::Tensor& images);

// `x` as the model expects it: equalize_histogram(x) or x itself (none).
at::Tensor normalize_input(const at::Tensor& x, InputNormalization mode);

}  // namespace fer
