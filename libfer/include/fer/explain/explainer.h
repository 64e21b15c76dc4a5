// FaceExplainer: everything a checkpoint's explanation of a face computes —
// the prediction, DeepSHAP maps, LIME and the deletion/insertion curves —
// returned as data; fer/report/explain/batch.h turns it into files.
//
//   fer::ExplainerOptions o;                       // method both, class pred
//   fer::FaceExplainer explainer("best.pt", background, o);
//   auto e = explainer.explain({face}, {seed});    // face: 48*48 floats in [0,1]
//   // e[0].predicted, e[0].shap [classes,48,48], e[0].lime, e[0].faithfulness["shap"]
#pragma once

#include <ATen/core/Tensor.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fer/common/enum_names.h"
#include "fer/common/precision.h"
#include "fer/explain/background.h"
#include "fer/explain/deepshap.h"
#include "fer/explain/faithfulness.h"
#include "fer/explain/lime.h"
#include "fer/models/checkpoint.h"

namespace fer {

enum class ExplainMethod { shap, lime, both };
const EnumNames<ExplainMethod>& explain_method_names();  // shap, lime, both
// "shap" | "lime" | "both"; throws std::invalid_argument otherwise.
ExplainMethod parse_explain_method(const std::string& name);
std::string explain_method_name(ExplainMethod method);

// Which classes get a DeepSHAP map: "all", "pred" (the predicted one) or
// "top:K" (the K most probable, K in 1..classes). Throws std::invalid_argument.
struct ClassSelection {
  enum Kind { all, pred, top } kind = pred;
  int k = 1;
};
ClassSelection parse_class_selection(const std::string& text, int num_classes);

struct ExplainerOptions {
  ExplainMethod method = ExplainMethod::both;
  std::string classes = "pred";   // all | pred | top:K
  bool probabilities = false;     // DeepSHAP on softmax outputs instead of logits
  int lime_samples = 1000;
  std::string device = "auto";
  // The model calls of LIME and the faithfulness curves (the prediction itself
  // is fp32); empty: default_inference_precision (bf16 on a CPU with native
  // bf16, else fp32). DeepSHAP's own: shap_precision.
  std::optional<Precision> precision;
  // DeepSHAP's backward pass through the convs: fp32 (exact to float rounding)
  // or bf16 (faster on AMX/AVX512-BF16 CPUs; maps within a few 1e-3 of fp32's).
  Precision shap_precision = Precision::fp32;
  // Rows (image x class x reference) of one DeepSHAP backward pass: several
  // images share a pass when they fit. 0: the device's default (one image per
  // pass on CPU, where larger passes measured slower; 8192 rows elsewhere).
  std::int64_t shap_pass_rows = 0;
  // Deletion/insertion curves for SHAP, LIME and a random ranking of each image's
  // predicted class (2*(steps+1) forward passes per method and image).
  bool faithfulness = true;
  int faithfulness_steps = 20;
};

// One face's explanation. A face that failed keeps only its error.
struct FaceExplanation {
  std::string error;
  std::vector<float> probs;      // the model's fp32 probabilities, one per class
  int predicted = -1;            // argmax of probs (the first on ties)
  std::vector<int64_t> classes;  // the explained classes, in ClassSelection's order
  at::Tensor shap;            // [classes, 48, 48] on the CPU (pixels a smaller input crops away: 0); undefined without SHAP
  double additivity = NAN;       // DeepSHAP's additivity error (DeepShapResult::additivity_error)
  std::optional<LimeExplanation> lime;  // of the predicted class
  std::map<std::string, FaithfulnessCurves> faithfulness;  // "shap", "lime", "random": the predicted class's curves
};

class FaceExplainer {
 public:
  // Requires a non-empty background for SHAP (the DeepSHAP references, weighted
  // when background.weights is set). Throws std::runtime_error for an unusable
  // checkpoint, std::invalid_argument for bad options.
  FaceExplainer(const std::string& checkpoint, const BackgroundSummary& background, const ExplainerOptions& options);

  const std::vector<std::string>& class_names() const { return loaded_.meta.class_names; }
  const std::string& precision() const { return precision_; }  // of LIME's and the curves' model calls
  bool explains_shap() const { return shap_ != nullptr; }
  bool explains_lime() const { return options_.method != ExplainMethod::shap; }
  // The images explain() handles in one call best: DeepSHAP's images per backward pass.
  std::size_t group_size() const;
  // The faithfulness curves' baseline (the weighted mean reference image; mid-grey without a background).
  const std::vector<float>& baseline() const { return baseline_; }
  const std::string& baseline_description() const { return baseline_description_; }

  // The maps explain the network on each image as the checkpoint's input
  // normalisation leaves it (ModelOptions::normalize; as given for "none").
  // Requires images of 48*48 values in [0,1] and one seed per image (LIME's
  // sampling and the random ranking; else std::invalid_argument). A failure
  // stays with its face (a failed DeepSHAP pass, with every face of the call).
  std::vector<FaceExplanation> explain(const std::vector<std::vector<float>>& images,
                                       const std::vector<std::uint64_t>& seeds);

 private:
  void predict(const std::vector<float>& image, FaceExplanation& e) const;
  void add_shap(const std::vector<std::vector<float>>& images, const std::vector<std::size_t>& ready,
                std::vector<FaceExplanation>& out);
  void add_lime_and_curves(const std::vector<float>& image, std::uint64_t seed, FaceExplanation& e) const;

  ExplainerOptions options_;
  LoadedCheckpoint loaded_;  // DeepSHAP's model and the reported prediction's (fp32)
  Classifier fast_model_{nullptr};  // LIME's and the curves' model: channels-last where that is faster
  BatchPredictor predictor_;   // fast_model_'s calls (none when neither LIME nor the curves run)
  BatchPredictor classifier_;  // the prediction of each image, in fp32
  ClassSelection selection_;
  std::unique_ptr<DeepShapExplainer> shap_;
  std::vector<float> baseline_;
  std::string baseline_description_, precision_;
};

}  // namespace fer
