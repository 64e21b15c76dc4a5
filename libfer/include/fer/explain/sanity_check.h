// The model-randomisation sanity check (Adebayo et al. 2018) of every
// explanation method FaceExplainer runs: the trained model's maps against the
// maps of copies whose weights were randomised, layer by layer from the output
// down (cascading) and one layer at a time (independent). A method whose maps
// stay alike while the model is destroyed explains the image, not the model.
//
//   fer::SanityCheckOptions o;
//   o.explainer.methods = fer::parse_explain_methods("shap,gradcam,saliency");
//   o.work_dir = "/tmp/sanity";
//   auto check = fer::sanity_check("best.pt", background, faces, seeds, o);
//   check.cascading["gradcam"][k].spearman_abs;   // layers[0..k] randomised
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "fer/common/callbacks.h"
#include "fer/explain/explainer.h"

namespace fer {

struct SanityCheckOptions {
  ExplainerOptions explainer;  // the methods and their settings (no faithfulness curves: the check compares maps)
  bool independent = true;     // also randomise each layer alone
  std::uint64_t seed = 0;      // layer k's new weights come from seed + k
  std::string work_dir;        // the randomised checkpoints are written here, and removed
  int strip_faces = 4;         // faces whose maps are kept for a picture of the cascade
};

// Means over the faces of the similarity of the trained model's map and the
// randomised model's (fer/explain/sanity.h), on the part of the face the model
// sees (the centre crop of its input size).
struct SanityScores {
  double spearman_abs = NAN;  // Spearman of |map|
  double spearman = NAN;      // Spearman of the signed maps
  double ssim = NAN;          // SSIM of the maps, each scaled to [0,1]
  std::int64_t faces = 0;     // faces explained by both models
};

struct SanityCheck {
  std::vector<std::string> methods;  // in explain_method_names' order
  std::vector<std::string> layers;   // randomised, output first
  // Per method, step k: cascading has layers[0..k] randomised, independent layers[k] alone.
  std::map<std::string, std::vector<SanityScores>> cascading, independent;
  // Per method: the maps of the first strip_faces faces, [1 + layers] models
  // (the trained one, then each cascading step) x faces x S*S values (S: the model's image_size).
  std::map<std::string, std::vector<std::vector<std::vector<float>>>> strip;
};

// Every randomised model explains the classes the trained one predicted. Requires
// a sequential model (layers to randomise), faces and seeds as
// FaceExplainer::explain takes them, and a work_dir; throws
// std::invalid_argument otherwise, std::runtime_error when a checkpoint
// cannot be written. A face that fails with either model is left out of that
// step's means.
SanityCheck sanity_check(const std::string& checkpoint, const BackgroundSummary& background,
                         const std::vector<std::vector<float>>& faces, const std::vector<std::uint64_t>& seeds,
                         const SanityCheckOptions& options, const ProgressFactory& progress = {});

// Adebayo et al.'s criterion as a number: a method passes when the maps of the
// model with every layer randomised keep a mean Spearman correlation of |map|
// with the trained model's below `threshold` (its maps depend on the weights).
// Requires a method of the check.
struct SanityVerdict {
  double spearman_abs = NAN, ssim = NAN;  // every layer randomised
  bool passes = false;
};
SanityVerdict sanity_verdict(const SanityCheck& check, const std::string& method, double threshold);

// A method's map of the explained class as S*S values: SHAP's, LIME's pixel
// scores or an attribution map. Throws std::invalid_argument when the
// explanation lacks it.
std::vector<float> explained_map(const FaceExplanation& e, const std::string& method);

}  // namespace fer
