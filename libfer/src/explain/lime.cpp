#include "fer/explain/lime.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <opencv2/core.hpp>
#include <opencv2/ximgproc/slic.hpp>
#include <random>
#include <stdexcept>

namespace fer {

std::vector<int> LimeExplanation::top_positive(int k) const {
  std::vector<int> ids(weights.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [&](int a, int b) { return weights[a] > weights[b]; });
  std::vector<int> out;
  for (int id : ids)
    if (static_cast<int>(out.size()) < k && weights[id] > 0) out.push_back(id);
  return out;
}

std::vector<int> LimeExplanation::top_negative(int k) const {
  std::vector<int> ids(weights.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [&](int a, int b) { return weights[a] < weights[b]; });
  std::vector<int> out;
  for (int id : ids)
    if (static_cast<int>(out.size()) < k && weights[id] < 0) out.push_back(id);
  return out;
}

std::vector<int32_t> segment_superpixels(const std::vector<float>& image, int height, int width,
                                         const LimeOptions& options, int* num_segments) {
  if (static_cast<int>(image.size()) != height * width)
    throw std::invalid_argument("segment_superpixels: image size does not match height*width");
  int algorithm;
  if (options.segmentation == "slic") algorithm = cv::ximgproc::SLIC;
  else if (options.segmentation == "slico") algorithm = cv::ximgproc::SLICO;
  else if (options.segmentation == "mslic") algorithm = cv::ximgproc::MSLIC;
  else throw std::invalid_argument("unknown segmentation '" + options.segmentation + "' (slic, slico, mslic)");
  cv::Mat img(height, width, CV_32F, const_cast<float*>(image.data()));
  cv::Mat img8;
  img.convertTo(img8, CV_8U, 255.0);
  auto slic = cv::ximgproc::createSuperpixelSLIC(img8, algorithm, options.region_size, options.ruler);
  slic->iterate(options.iterations);
  slic->enforceLabelConnectivity(25);
  cv::Mat labels;
  slic->getLabels(labels);
  // Renumber so ids are dense 0..n-1 in raster order.
  std::map<int, int32_t> dense;
  std::vector<int32_t> out(static_cast<std::size_t>(height) * width);
  for (int r = 0; r < height; ++r)
    for (int c = 0; c < width; ++c) {
      const int l = labels.at<int>(r, c);
      auto it = dense.find(l);
      if (it == dense.end()) it = dense.emplace(l, static_cast<int32_t>(dense.size())).first;
      out[static_cast<std::size_t>(r) * width + c] = it->second;
    }
  *num_segments = static_cast<int>(dense.size());
  return out;
}

RidgeFit weighted_ridge(const std::vector<double>& X, int n, int d, const std::vector<double>& y,
                        const std::vector<double>& w, double alpha) {
  if (static_cast<int>(X.size()) != n * d || static_cast<int>(y.size()) != n || static_cast<int>(w.size()) != n)
    throw std::invalid_argument("weighted_ridge: sizes do not match n x d");
  const double wsum = std::accumulate(w.begin(), w.end(), 0.0);
  if (!(wsum > 0)) throw std::invalid_argument("weighted_ridge: weights must have a positive sum");
  // Centre by the weighted means; the intercept is then not penalised.
  std::vector<double> xm(d, 0.0);
  double ym = 0;
  for (int i = 0; i < n; ++i) {
    ym += w[i] * y[i];
    for (int j = 0; j < d; ++j) xm[j] += w[i] * X[i * d + j];
  }
  ym /= wsum;
  for (auto& v : xm) v /= wsum;
  // A = Xc' W Xc + alpha I ; b = Xc' W yc
  std::vector<double> A(static_cast<std::size_t>(d) * d, 0.0), b(d, 0.0), xc(d);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < d; ++j) xc[j] = X[i * d + j] - xm[j];
    const double yc = y[i] - ym;
    for (int j = 0; j < d; ++j) {
      const double wx = w[i] * xc[j];
      b[j] += wx * yc;
      for (int k = 0; k <= j; ++k) A[j * d + k] += wx * xc[k];
    }
  }
  for (int j = 0; j < d; ++j) {
    A[j * d + j] += alpha;
    for (int k = 0; k < j; ++k) A[k * d + j] = A[j * d + k];
  }
  // Cholesky A = L L' (A is symmetric positive definite for alpha > 0).
  std::vector<double> L(static_cast<std::size_t>(d) * d, 0.0);
  for (int j = 0; j < d; ++j) {
    double s = A[j * d + j];
    for (int k = 0; k < j; ++k) s -= L[j * d + k] * L[j * d + k];
    if (!(s > 0)) throw std::runtime_error("weighted_ridge: system is not positive definite (alpha must be > 0)");
    L[j * d + j] = std::sqrt(s);
    for (int i = j + 1; i < d; ++i) {
      double t = A[i * d + j];
      for (int k = 0; k < j; ++k) t -= L[i * d + k] * L[j * d + k];
      L[i * d + j] = t / L[j * d + j];
    }
  }
  std::vector<double> z(d), beta(d);
  for (int i = 0; i < d; ++i) {
    double t = b[i];
    for (int k = 0; k < i; ++k) t -= L[i * d + k] * z[k];
    z[i] = t / L[i * d + i];
  }
  for (int i = d - 1; i >= 0; --i) {
    double t = z[i];
    for (int k = i + 1; k < d; ++k) t -= L[k * d + i] * beta[k];
    beta[i] = t / L[i * d + i];
  }
  RidgeFit fit;
  fit.coef = beta;
  fit.intercept = ym;
  for (int j = 0; j < d; ++j) fit.intercept -= xm[j] * beta[j];
  double ss_res = 0, ss_tot = 0;
  for (int i = 0; i < n; ++i) {
    double pred = fit.intercept;
    for (int j = 0; j < d; ++j) pred += X[i * d + j] * beta[j];
    ss_res += w[i] * (y[i] - pred) * (y[i] - pred);
    ss_tot += w[i] * (y[i] - ym) * (y[i] - ym);
  }
  fit.score = ss_tot > 0 ? 1.0 - ss_res / ss_tot : (ss_res == 0 ? 1.0 : 0.0);
  return fit;
}

LimeExplanation explain_lime(const std::vector<float>& image, int height, int width, const BatchPredictor& predict,
                             int label, const LimeOptions& options, const std::vector<int32_t>* given_segments) {
  const int pixels = height * width;
  if (static_cast<int>(image.size()) != pixels) throw std::invalid_argument("explain_lime: image size mismatch");
  if (options.num_samples < 2) throw std::invalid_argument("explain_lime: num_samples must be >= 2");
  LimeExplanation e;
  if (given_segments) {
    if (static_cast<int>(given_segments->size()) != pixels)
      throw std::invalid_argument("explain_lime: segments size mismatch");
    e.segments = *given_segments;
    e.num_segments = *std::max_element(e.segments.begin(), e.segments.end()) + 1;
  } else {
    e.segments = segment_superpixels(image, height, width, options, &e.num_segments);
  }
  const int d = e.num_segments;

  // What a switched-off superpixel shows: its own mean, or the fill value.
  std::vector<double> seg_sum(d, 0.0);
  std::vector<int> seg_count(d, 0);
  for (int p = 0; p < pixels; ++p) {
    seg_sum[e.segments[p]] += image[p];
    ++seg_count[e.segments[p]];
  }
  std::vector<float> fill(d);
  for (int s = 0; s < d; ++s)
    fill[s] = options.fill_value ? *options.fill_value : static_cast<float>(seg_sum[s] / std::max(1, seg_count[s]));

  // Binary design matrix: row 0 all on, the rest uniform on/off (seeded).
  const int n = options.num_samples;
  std::vector<double> Z(static_cast<std::size_t>(n) * d, 1.0);
  std::mt19937_64 rng(options.seed);
  std::bernoulli_distribution coin(0.5);
  for (int i = 1; i < n; ++i)
    for (int s = 0; s < d; ++s) Z[static_cast<std::size_t>(i) * d + s] = coin(rng) ? 1.0 : 0.0;

  // Model scores of every perturbed image, in batches.
  std::vector<float> scores;
  int classes = 0;
  for (int start = 0; start < n; start += options.batch_size) {
    const int count = std::min(options.batch_size, n - start);
    std::vector<float> batch(static_cast<std::size_t>(count) * pixels);
    for (int b = 0; b < count; ++b) {
      const double* z = &Z[static_cast<std::size_t>(start + b) * d];
      float* out = &batch[static_cast<std::size_t>(b) * pixels];
      for (int p = 0; p < pixels; ++p) out[p] = z[e.segments[p]] > 0 ? image[p] : fill[e.segments[p]];
    }
    const auto result = predict(batch, count);
    if (result.size() % count != 0) throw std::runtime_error("explain_lime: predictor returned a ragged result");
    classes = static_cast<int>(result.size() / count);
    scores.insert(scores.end(), result.begin(), result.end());
  }
  if (label < 0) label = static_cast<int>(std::max_element(scores.begin(), scores.begin() + classes) - scores.begin());
  if (label >= classes) throw std::invalid_argument("explain_lime: label out of range");
  e.label = label;

  // Cosine distance to the all-on row, exponential kernel (lime: sqrt(exp(-d^2/width^2))).
  std::vector<double> y(n), w(n);
  const double norm_all = std::sqrt(static_cast<double>(d));
  for (int i = 0; i < n; ++i) {
    double on = 0;
    for (int s = 0; s < d; ++s) on += Z[static_cast<std::size_t>(i) * d + s];
    const double cosine = on > 0 ? on / (std::sqrt(on) * norm_all) : 0.0;
    const double distance = 1.0 - cosine;
    w[i] = std::sqrt(std::exp(-(distance * distance) / (options.kernel_width * options.kernel_width)));
    y[i] = scores[static_cast<std::size_t>(i) * classes + label];
  }
  const auto fit = weighted_ridge(Z, n, d, y, w, options.ridge_alpha);
  e.weights = fit.coef;
  e.intercept = fit.intercept;
  e.score = fit.score;
  e.local_prediction = fit.intercept + std::accumulate(fit.coef.begin(), fit.coef.end(), 0.0);
  e.model_prediction = y[0];
  return e;
}

}  // namespace fer
