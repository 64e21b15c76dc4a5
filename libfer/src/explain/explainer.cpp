// FaceExplainer: a face's prediction, DeepSHAP maps, LIME and faithfulness
// curves, as data (the files are fer/report/explain's).
#include "fer/explain/explainer.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <numeric>

#include "fer/common/emotions.h"
#include "fer/data/augment.h"
#include "fer/inference/inference.h"

namespace fer {

namespace {

// A model of input size s sees the centre s x s crop of the 48 x 48 face (as
// fer-eval predicts): DeepSHAP explains that crop, and the pixels outside it,
// which cannot change the output, get attribution exactly 0.
at::Tensor face_sized(const at::Tensor& crop_attributions) {
  const int64_t s = crop_attributions.size(-1), before = (kImageSize - s) / 2, after = kImageSize - s - before;
  if (s == kImageSize) return crop_attributions;
  return torch::constant_pad_nd(crop_attributions, {before, after, before, after}, 0);
}

// The (weighted) mean reference image, else mid-grey.
std::vector<float> mean_reference(const BackgroundSummary& background, std::string* description) {
  if (!(background.centroids.defined() && background.centroids.size(0) > 0)) {
    *description = "mid-grey (0.5): no background";
    return std::vector<float>(kImagePixels, 0.5f);
  }
  const auto refs = background.centroids.to(torch::kCPU, torch::kFloat32).reshape({-1, kImagePixels});
  const auto mean = background.weights.defined()
                        ? (refs * background.weights.to(torch::kCPU, torch::kFloat32).view({-1, 1})).sum(0) /
                              background.weights.sum().to(torch::kCPU)
                        : refs.mean(0);
  *description = fmt::format("mean of the {} background references", refs.size(0));
  const auto m = mean.contiguous();
  return std::vector<float>(m.data_ptr<float>(), m.data_ptr<float>() + kImagePixels);
}

// Runs `work`; an exception becomes the face's error (and clears what it had).
template <typename Work>
void keep_failure(FaceExplanation& e, Work&& work) {
  try {
    work();
  } catch (const std::exception& ex) {
    e = FaceExplanation{};
    e.error = ex.what();
  }
}

}  // namespace

const EnumNames<ExplainMethod>& explain_method_names() {
  static const EnumNames<ExplainMethod> names{
      "explanation method",
      {{"shap", ExplainMethod::shap}, {"lime", ExplainMethod::lime}, {"both", ExplainMethod::both}}};
  return names;
}

ExplainMethod parse_explain_method(const std::string& name) { return explain_method_names().parse(name); }

std::string explain_method_name(ExplainMethod method) { return explain_method_names().name(method); }

ClassSelection parse_class_selection(const std::string& text, int num_classes) {
  ClassSelection s;
  if (text == "all") s.kind = ClassSelection::all;
  else if (text == "pred") s.kind = ClassSelection::pred;
  else if (text.rfind("top:", 0) == 0) {
    s.kind = ClassSelection::top;
    try {
      s.k = std::stoi(text.substr(4));
    } catch (const std::exception&) {
      s.k = 0;
    }
    if (s.k < 1 || s.k > num_classes)
      throw std::invalid_argument("class selection '" + text + "': K must be in 1.." + std::to_string(num_classes));
  } else {
    throw std::invalid_argument("class selection '" + text + "' (expected all, pred or top:K)");
  }
  return s;
}

FaceExplainer::FaceExplainer(const std::string& checkpoint, const BackgroundSummary& background,
                             const ExplainerOptions& options)
    : options_(options) {
  const bool do_shap = options.method != ExplainMethod::lime;
  if (do_shap && !(background.centroids.defined() && background.centroids.size(0) > 0))
    throw std::invalid_argument("DeepSHAP needs a non-empty background set");
  if (do_shap && options.shap_precision == Precision::fp16)
    throw std::invalid_argument("DeepSHAP's precision must be fp32 or bf16, not fp16");
  const auto device = resolve_device(options.device);
  loaded_ = load_checkpoint(checkpoint, device);
  const int64_t input_size = loaded_.meta.model.input_size;
  selection_ = parse_class_selection(options.classes, static_cast<int>(class_names().size()));
  if (do_shap) {
    DeepShapOptions shap_options;
    shap_options.explain_probabilities = options.probabilities;
    shap_options.background_weights = background.weights;
    shap_options.bf16_convs = options.shap_precision == Precision::bf16;
    shap_options.max_rows_per_pass = options.shap_pass_rows;
    shap_ = std::make_unique<DeepShapExplainer>(loaded_.model, center_crop(background.centroids, input_size).contiguous(),
                                                device, shap_options);
  }
  const auto precision = options.precision.value_or(default_inference_precision(device));
  precision_ = precision_name(precision);
  check_precision_supported(precision, device);
  if (explains_lime() || options.faithfulness) {
    // The many model calls of LIME and the curves run on a channels-last copy:
    // measured 2.2x (bf16) and 1.35x (fp32) the forward rate on this CPU.
    // DeepSHAP and the reported prediction keep the plain model.
    fast_model_ = load_checkpoint(checkpoint, device).model;
    if (device.is_cpu() || precision != Precision::fp32) use_channels_last(*fast_model_);
    predictor_ = probability_predictor(*fast_model_, device, precision, input_size);
  }
  // The reported prediction (and so the class explained) is fer-eval's: fp32.
  classifier_ = probability_predictor(*loaded_.model, device, Precision::fp32, input_size);
  baseline_ = mean_reference(background, &baseline_description_);
}

std::size_t FaceExplainer::group_size() const {
  if (!shap_) return 1;
  const int64_t k = static_cast<int64_t>(class_names().size());
  const int64_t classes = selection_.kind == ClassSelection::all ? k : selection_.kind == ClassSelection::pred ? 1 : selection_.k;
  return static_cast<std::size_t>(shap_->images_per_pass(classes));
}

namespace {
// The faces as the model sees them (its input normalisation): what the maps explain.
std::vector<std::vector<float>> model_inputs(const std::vector<std::vector<float>>& faces, InputNormalization mode) {
  if (mode == InputNormalization::none) return faces;
  std::vector<std::vector<float>> out;
  out.reserve(faces.size());
  for (const auto& face : faces) {
    const auto n = static_cast<int64_t>(face.size());
    const auto x = torch::from_blob(const_cast<float*>(face.data()), {1, 1, 1, n}, torch::kFloat32);
    const auto y = normalize_input(x, mode).contiguous();
    out.emplace_back(y.data_ptr<float>(), y.data_ptr<float>() + n);
  }
  return out;
}
}  // namespace

std::vector<FaceExplanation> FaceExplainer::explain(const std::vector<std::vector<float>>& faces,
                                                    const std::vector<std::uint64_t>& seeds) {
  const auto images = model_inputs(faces, loaded_.model->input_normalization());
  if (seeds.size() != images.size())
    throw std::invalid_argument(fmt::format("{} seeds for {} images", seeds.size(), images.size()));
  std::vector<FaceExplanation> out(images.size());
  std::vector<std::size_t> ready;  // the faces whose prediction succeeded
  for (std::size_t i = 0; i < images.size(); ++i) {
    keep_failure(out[i], [&] {
      if (images[i].size() != static_cast<std::size_t>(kImagePixels))
        throw std::invalid_argument(fmt::format("a face of {} values, not {}", images[i].size(), kImagePixels));
      predict(images[i], out[i]);
      ready.push_back(i);
    });
  }
  if (shap_ && !ready.empty()) {
    try {
      add_shap(images, ready, out);
    } catch (const std::exception& ex) {
      for (const auto i : ready) {
        out[i] = FaceExplanation{};
        out[i].error = ex.what();
      }
      ready.clear();
    }
  }
  for (const auto i : ready) keep_failure(out[i], [&] { add_lime_and_curves(images[i], seeds[i], out[i]); });
  return out;
}

void FaceExplainer::predict(const std::vector<float>& image, FaceExplanation& e) const {
  e.probs = classifier_(image, 1);
  const int64_t k = static_cast<int64_t>(e.probs.size());
  std::vector<int64_t> order(k);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return e.probs[a] > e.probs[b]; });
  e.predicted = static_cast<int>(order[0]);
  if (selection_.kind == ClassSelection::all) {
    e.classes.resize(k);
    std::iota(e.classes.begin(), e.classes.end(), 0);
  } else {
    e.classes.assign(order.begin(), order.begin() + (selection_.kind == ClassSelection::pred ? 1 : selection_.k));
  }
}

void FaceExplainer::add_shap(const std::vector<std::vector<float>>& images, const std::vector<std::size_t>& ready,
                             std::vector<FaceExplanation>& out) {
  auto batch = torch::empty({static_cast<int64_t>(ready.size()), 1, kImageSize, kImageSize});
  std::vector<std::vector<int64_t>> classes;
  for (std::size_t j = 0; j < ready.size(); ++j) {
    batch[static_cast<int64_t>(j)].copy_(torch::tensor(images[ready[j]]).view({1, kImageSize, kImageSize}));
    classes.push_back(out[ready[j]].classes);
  }
  auto results = shap_->explain_batch(center_crop(batch, loaded_.meta.model.input_size).contiguous(), classes);
  for (std::size_t j = 0; j < ready.size(); ++j) {
    out[ready[j]].shap = face_sized(results[j].attributions).contiguous();
    out[ready[j]].additivity = results[j].additivity_error;
  }
}

void FaceExplainer::add_lime_and_curves(const std::vector<float>& image, std::uint64_t seed, FaceExplanation& e) const {
  if (explains_lime()) {
    LimeOptions lime_options;
    lime_options.num_samples = options_.lime_samples;
    lime_options.seed = seed;
    e.lime = explain_lime(image, kImageSize, kImageSize, predictor_, e.predicted, lime_options);
  }
  if (!options_.faithfulness) return;
  const auto curves = [&](const std::vector<float>& scores) {
    return deletion_insertion_curves(image, baseline_, scores, e.predicted, predictor_, options_.faithfulness_steps);
  };
  if (shap_) {
    // Every selection explains the predicted class (all, pred, top:K's first).
    const auto at = std::find(e.classes.begin(), e.classes.end(), e.predicted) - e.classes.begin();
    const float* map = e.shap.data_ptr<float>() + at * kImagePixels;
    e.faithfulness["shap"] = curves(std::vector<float>(map, map + kImagePixels));
  }
  if (e.lime) e.faithfulness["lime"] = curves(lime_pixel_scores(*e.lime));
  e.faithfulness["random"] = curves(random_pixel_scores(kImagePixels, seed));
}

}  // namespace fer
