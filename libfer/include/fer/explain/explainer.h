// FaceExplainer: everything a checkpoint's explanation of a face computes —
// the prediction, DeepSHAP maps, LIME, attribution maps (Grad-CAM, integrated
// gradients, ...: fer/explain/attribution.h) and the deletion/insertion curves —
// returned as data; fer/report/explain/batch.h turns it into files.
//
//   fer::ExplainerOptions o;                       // shap and lime, class pred
//   o.methods = fer::parse_explain_methods("shap,gradcam,integrated_gradients");
//   fer::FaceExplainer explainer("best.pt", background, o);
//   auto e = explainer.explain({face}, {seed});    // face: S*S floats in [0,1], S = explainer.side() (48)
//   // e[0].predicted, e[0].shap [classes,S,S], e[0].maps["gradcam"] [S,S],
//   // e[0].faithfulness["shap"], e[0].faithfulness["gradcam"]
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
#include "fer/config/config.h"
#include "fer/explain/attribution.h"
#include "fer/explain/background.h"
#include "fer/explain/deepshap.h"
#include "fer/explain/faithfulness.h"
#include "fer/explain/lime.h"
#include "fer/models/checkpoint.h"

namespace fer {

// Which explanations run: DeepSHAP, LIME and attribution maps of the
// predicted class, by name: saliency, input_x_gradient, integrated_gradients,
// smoothgrad (SmoothGrad over ExplainerOptions::smoothgrad_base), gradcam,
// gradcam++, hirescam, occlusion.
struct ExplainMethods {
  bool shap = true, lime = true;
  std::vector<std::string> maps;  // in explain_method_list's order, whatever the order given
  bool operator==(const ExplainMethods& other) const {
    return shap == other.shap && lime == other.lime && maps == other.maps;
  }
};
// Every method's name, in the order "all" runs them: shap, lime, then the maps.
const std::vector<std::string>& explain_method_list();
// A comma-separated list of method names, "both" (shap,lime) or "all". Throws
// std::invalid_argument naming an unknown or repeated method (listing the known
// ones) or an empty list.
ExplainMethods parse_explain_methods(const std::string& text);
// The canonical list: "shap,lime,gradcam".
std::string explain_methods_text(const ExplainMethods& methods);
// The method names of `methods` in the order they run (shap, lime, the maps).
std::vector<std::string> explain_method_names(const ExplainMethods& methods);

// Integrated gradients' baseline: zeros, the background's mean face (the
// faithfulness baseline) or the face blurred (Gaussian, sigma 4 pixels).
enum class IgBaseline { black, mean, blur };
const EnumNames<IgBaseline>& ig_baseline_names();  // black, mean, blur

// Which classes get a DeepSHAP map: "all", "pred" (the predicted one) or
// "top:K" (the K most probable, K in 1..classes). Throws std::invalid_argument.
struct ClassSelection {
  enum Kind { all, pred, top } kind = pred;
  int k = 1;
};
ClassSelection parse_class_selection(const std::string& text, int num_classes);

struct ExplainerOptions {
  ExplainMethods methods;
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
  // The attribution maps' settings (cam_layer, ig_steps, ig_rule, occlusion_*;
  // smoothgrad_samples and _sigma apply to the "smoothgrad" method alone, and
  // its seed is each face's) and the choices around them.
  AttributionOptions attribution;
  IgBaseline ig_baseline = IgBaseline::black;
  AttributionMethod smoothgrad_base = AttributionMethod::saliency;
};

// The explain.* keys of a config as ExplainerOptions' attribution settings
// (the other fields as `base` has them).
ExplainerOptions with_explain_config(ExplainerOptions base, const ExplainConfig& config);

// One face's explanation. A face that failed keeps only its error.
struct FaceExplanation {
  std::string error;
  std::vector<float> probs;      // the model's fp32 probabilities, one per class
  int predicted = -1;            // argmax of probs (the first on ties)
  int explained = -1;            // the class LIME, the maps and the curves explain: predicted unless explain() was given one
  std::vector<int64_t> classes;  // the explained classes, in ClassSelection's order
  at::Tensor shap;            // [classes, S, S] (S: the model's image_size) on the CPU (pixels a smaller input crops away: 0); undefined without SHAP
  double additivity = NAN;       // DeepSHAP's additivity error (DeepShapResult::additivity_error)
  std::optional<LimeExplanation> lime;  // of the predicted class
  // Attribution maps of the predicted class by method name, [S,S] on the CPU
  // (pixels a smaller input crops away: 0).
  std::map<std::string, at::Tensor> maps;
  // Integrated gradients: |sum(map) - (y(x) - y(b))| / |y(x) - y(b)|, the relative completeness error.
  double ig_completeness = NAN;
  // "shap", "lime", each map's name and "random": the predicted class's curves.
  std::map<std::string, FaithfulnessCurves> faithfulness;
};

class FaceExplainer {
 public:
  // Requires a non-empty background for SHAP (the DeepSHAP references, weighted
  // when background.weights is set). Throws std::runtime_error for an unusable
  // checkpoint, std::invalid_argument for bad options.
  FaceExplainer(const std::string& checkpoint, const BackgroundSummary& background, const ExplainerOptions& options);

  const std::vector<std::string>& class_names() const { return loaded_.meta.class_names; }
  // The side of the faces it takes (the model's image_size): side*side values each.
  int64_t side() const { return loaded_.meta.model.image_size; }
  const std::string& precision() const { return precision_; }  // of LIME's and the curves' model calls
  bool explains_shap() const { return shap_ != nullptr; }
  bool explains_lime() const { return options_.methods.lime; }
  const ExplainMethods& methods() const { return options_.methods; }
  // The images explain() handles in one call best: DeepSHAP's images per
  // backward pass, or more when attribution maps run (their batches).
  std::size_t group_size() const;
  // The faithfulness curves' baseline (the weighted mean reference image; mid-grey without a background).
  const std::vector<float>& baseline() const { return baseline_; }
  const std::string& baseline_description() const { return baseline_description_; }

  // The maps explain the network on each image as the checkpoint's input
  // normalisation leaves it (ModelOptions::normalize; as given for "none").
  // Requires images of side()*side() values in [0,1], one seed per image (LIME's
  // sampling, SmoothGrad's noise and the random ranking) and no targets or
  // one class per image to explain instead of the predicted one (a sanity
  // check explains a randomised model on the trained one's classes); else
  // std::invalid_argument. A failure stays with its face (a failed DeepSHAP
  // pass or map batch, with every face of the call).
  std::vector<FaceExplanation> explain(const std::vector<std::vector<float>>& images,
                                       const std::vector<std::uint64_t>& seeds, const std::vector<int>& targets = {});

 private:
  void predict(const std::vector<float>& image, int target, FaceExplanation& e) const;
  void add_shap(const std::vector<std::vector<float>>& images, const std::vector<std::size_t>& ready,
                std::vector<FaceExplanation>& out);
  void add_maps(const std::vector<std::vector<float>>& images, const std::vector<std::size_t>& ready,
                const std::vector<std::uint64_t>& seeds, std::vector<FaceExplanation>& out);
  Attribution attribute_map(const std::string& method, const at::Tensor& batch, const at::Tensor& classes,
                            std::uint64_t seed);
  void add_lime_and_curves(const std::vector<float>& image, std::uint64_t seed, FaceExplanation& e) const;

  ExplainerOptions options_;
  c10::Device device_{c10::kCPU};
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
