// Faithfulness of an attribution map: deletion and insertion curves (Petsiuk
// et al., RISE, 2018). Pixels are ranked by their attribution; deletion
// replaces the top-ranked fraction of pixels with a baseline image (the
// background mean) and tracks the explained class's probability, insertion
// starts from the baseline and puts the top-ranked pixels back. A faithful map
// makes the deletion curve fall fast (low AUC) and the insertion curve rise
// fast (high AUC); a random ranking is the reference to beat.
//
//   auto c = fer::deletion_insertion_curves(image, baseline, shap_map, predicted, predictor);
//   // c.deletion_auc, c.insertion_auc in [0,1]
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fer/explain/lime.h"

namespace fer {

struct FaithfulnessCurves {
  std::vector<double> fractions;  // steps+1 values from 0 to 1: the share of pixels deleted / inserted
  std::vector<double> deletion;   // p(label) with the top fraction replaced by the baseline
  std::vector<double> insertion;  // p(label) of the baseline with the top fraction put back
  double deletion_auc = 0;        // trapezoid area under each curve over [0,1]
  double insertion_auc = 0;
};

// Requires image, baseline and scores of one size n > 0, steps >= 1 and a
// predictor returning at least label+1 probabilities per image. Pixels are
// ranked by score, highest first (ties in pixel order, so a superpixel's
// pixels move together); step s changes the first round(s*n/steps) of them.
// All 2*(steps+1) images go to the predictor in one call.
// Throws std::invalid_argument when a requirement fails.
FaithfulnessCurves deletion_insertion_curves(const std::vector<float>& image, const std::vector<float>& baseline,
                                             const std::vector<float>& scores, int label,
                                             const BatchPredictor& predict, int steps = 20);

// Area under y sampled at equally spaced x over [0,1] (trapezoid rule).
// Requires y.size() >= 2.
double trapezoid_auc(const std::vector<double>& y);

// A LIME explanation as a pixel map: each pixel scores its superpixel's weight.
std::vector<float> lime_pixel_scores(const LimeExplanation& explanation);

// The random-attribution baseline: n scores from a seeded uniform draw.
std::vector<float> random_pixel_scores(std::size_t n, std::uint64_t seed);

// Running statistics of many images' curves, per method, in constant memory.
class FaithfulnessReport {
 public:
  struct AucStats {
    double mean = 0, std = 0;  // std: sample standard deviation (0 when n < 2)
    std::int64_t n = 0;
  };
  struct MethodSummary {
    AucStats deletion, insertion;
    std::vector<double> mean_deletion, mean_insertion;  // mean curve over the images
  };

  // Requires every call to use curves with the same fractions.
  // Throws std::invalid_argument when the step count changes.
  void add(const std::string& method, const FaithfulnessCurves& curves);
  bool empty() const { return methods_.empty(); }
  const std::vector<double>& fractions() const { return fractions_; }
  // Methods in first-added order.
  std::vector<std::string> methods() const { return order_; }
  MethodSummary summary(const std::string& method) const;

  // One method's place: score = mean insertion AUC - mean deletion AUC (higher
  // is more faithful; "random" is the score to beat).
  struct Rank {
    std::string method;
    double deletion_auc = 0, insertion_auc = 0, score = 0;
    std::int64_t n = 0;
  };
  // Every method, best score first (ties in first-added order).
  std::vector<Rank> ranking() const;

  // {"steps", "fractions", "baseline", "class", "methods": {m: {"deletion_auc": {mean, std, n},
  // "insertion_auc": {...}, "mean_deletion_curve": [...], "mean_insertion_curve": [...]}},
  // "ranking": [{"method", "score", "deletion_auc", "insertion_auc", "n"}, ...] (ranking())}
  std::string to_json(const std::string& baseline_description) const;

  // The running sums, so that reports of several processes (sharded
  // explanations) combine into the report of all their images.
  nlohmann::json state_json() const;
  // Adds a state_json() of another report. Throws std::invalid_argument when
  // its curves have other fractions.
  void merge_state(const nlohmann::json& state);

 private:
  struct Sums {
    double deletion_sum = 0, deletion_sq = 0, insertion_sum = 0, insertion_sq = 0;
    std::int64_t n = 0;
    std::vector<double> deletion_curve, insertion_curve;
  };
  std::vector<double> fractions_;
  std::vector<std::string> order_;
  std::map<std::string, Sums> methods_;
};

}  // namespace fer
