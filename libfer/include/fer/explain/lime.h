// LIME for images (as in the lime library's LimeImageExplainer): superpixels,
// random on/off perturbations, an exponential kernel on the cosine distance to
// the unperturbed image, and a weighted ridge regression fitted in closed form.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "fer/inference/predictor.h"

namespace cv {
class Mat;
}

namespace fer {

struct LimeOptions {
  int num_samples = 1000;        // perturbations; the first has every superpixel on
  int batch_size = 128;          // images per model call
  // Superpixels: OpenCV ximgproc SLIC. LIME's default quickshift collapses a
  // 48x48 face into one segment; SLICO with region 7 gives ~40-50 segments.
  std::string segmentation = "slico";  // slic | slico | mslic
  int region_size = 7;
  float ruler = 10.0f;           // compactness (slic/mslic)
  int iterations = 10;
  std::optional<float> fill_value;  // switched-off superpixels: their mean (default) or this value
  double kernel_width = 0.25;
  double ridge_alpha = 1.0;
  uint64_t seed = 0;
};

struct LimeExplanation {
  std::vector<int32_t> segments;  // h*w superpixel id per pixel, ids 0..num_segments-1
  int num_segments = 0;
  int label = 0;                  // the class explained
  std::vector<double> weights;    // one per superpixel
  double intercept = 0;
  double score = 0;               // weighted R^2 of the local model
  double local_prediction = 0;    // the local model at the unperturbed image
  double model_prediction = 0;    // the model at the unperturbed image

  // Superpixel ids of the k largest positive (negative) weights, largest |w| first.
  std::vector<int> top_positive(int k) const;
  std::vector<int> top_negative(int k) const;
};

// Superpixels of a grayscale image (values in [0,1], h*w floats). Throws
// std::invalid_argument for an unknown method.
std::vector<int32_t> segment_superpixels(const std::vector<float>& image, int height, int width,
                                         const LimeOptions& options, int* num_segments);

// Explains `label` (or the model's top class when label < 0) for one image.
// `segments` may be given (size h*w, ids 0..n-1) to skip segmentation.
LimeExplanation explain_lime(const std::vector<float>& image, int height, int width, const BatchPredictor& predict,
                             int label, const LimeOptions& options, const std::vector<int32_t>* segments = nullptr);

struct RidgeFit {
  std::vector<double> coef;
  double intercept = 0;
  double score = 0;  // weighted R^2 on the training data
};

// Weighted ridge regression with intercept (scikit-learn's Ridge with
// sample_weight): minimises sum w_i (y_i - b - x_i.beta)^2 + alpha |beta|^2.
// X is n x d row-major. Throws std::invalid_argument on mismatched sizes.
RidgeFit weighted_ridge(const std::vector<double>& X, int n, int d, const std::vector<double>& y,
                        const std::vector<double>& w, double alpha);

}  // namespace fer
