// FaceExplainer: a face's prediction, DeepSHAP maps, LIME and faithfulness
// curves, as data (the files are fer/report/explain's).
#include "fer/explain/explainer.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <numeric>
#include <sstream>

#include "fer/common/emotions.h"
#include "fer/data/augment.h"
#include "fer/inference/inference.h"

namespace fer {

namespace {

// A model of input size s sees the centre s x s crop of the side x side face
// (as fer-eval predicts): DeepSHAP explains that crop, and the pixels outside
// it, which cannot change the output, get attribution exactly 0.
at::Tensor face_sized(const at::Tensor& crop_attributions, int64_t side) {
  const int64_t s = crop_attributions.size(-1), before = (side - s) / 2, after = side - s - before;
  if (s == side) return crop_attributions;
  return torch::constant_pad_nd(crop_attributions, {before, after, before, after}, 0);
}

// The (weighted) mean reference image, else mid-grey.
std::vector<float> mean_reference(const BackgroundSummary& background, int64_t side, std::string* description) {
  if (!(background.centroids.defined() && background.centroids.size(0) > 0)) {
    *description = "mid-grey (0.5): no background";
    return std::vector<float>(side * side, 0.5f);
  }
  const auto refs = background.centroids.to(torch::kCPU, torch::kFloat32).reshape({-1, side * side});
  const auto mean = background.weights.defined()
                        ? (refs * background.weights.to(torch::kCPU, torch::kFloat32).view({-1, 1})).sum(0) /
                              background.weights.sum().to(torch::kCPU)
                        : refs.mean(0);
  *description = fmt::format("mean of the {} background references", refs.size(0));
  const auto m = mean.contiguous();
  return std::vector<float>(m.data_ptr<float>(), m.data_ptr<float>() + m.numel());
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

// The images of one call of the attribution maps when DeepSHAP does not set
// the group (gradients of a batch cost little more than of one image).
constexpr std::size_t kMapImagesPerCall = 16;

// Fails early, naming the setting, rather than at every face: an unknown
// method or CAM layer, a CAM on a model that is not sequential.
void check_map_methods(const ExplainerOptions& o, ClassifierImpl& model, const ModelOptions& meta) {
  std::string cam;  // the first CAM method asked for
  for (const auto& name : o.methods.maps)
    if (name != "smoothgrad" && is_cam_method(attribution_method_names().parse(name)) && cam.empty()) cam = name;
  if (cam.empty()) return;
  if (dynamic_cast<SequentialClassifierImpl*>(&model) == nullptr)
    throw std::invalid_argument(cam + " needs a model whose layers run in sequence (paper_cnn, vgg_fer); this "
                                "checkpoint's network is not one");
  const auto layers = cam_layer_names(model, meta.in_channels, meta.input_size);
  const auto& layer = o.attribution.cam_layer;
  if (!layer.empty() && std::find(layers.begin(), layers.end(), layer) == layers.end())
    throw std::invalid_argument("explain.cam_layer '" + layer + "' is not a feature-map layer of this model (" +
                                class_name_list(layers) + ")");
}

// The face blurred by a Gaussian of sigma 4 pixels (edges replicated):
// integrated gradients' "blur" baseline, which keeps the face's mean light.
at::Tensor blurred(const at::Tensor& images) {
  constexpr double kSigma = 4.0;
  constexpr int64_t kRadius = 12;
  auto kernel = torch::arange(-kRadius, kRadius + 1, torch::kFloat32).pow(2).div(-2 * kSigma * kSigma).exp();
  kernel = (kernel / kernel.sum()).to(images.device());
  namespace F = torch::nn::functional;
  const int64_t c = images.size(1);
  auto x = F::pad(images, F::PadFuncOptions({kRadius, kRadius, kRadius, kRadius}).mode(torch::kReplicate));
  x = F::conv2d(x, kernel.view({1, 1, 1, -1}).repeat({c, 1, 1, 1}), F::Conv2dFuncOptions().groups(c));
  return F::conv2d(x, kernel.view({1, 1, -1, 1}).repeat({c, 1, 1, 1}), F::Conv2dFuncOptions().groups(c));
}

}  // namespace

const std::vector<std::string>& explain_method_list() {
  static const std::vector<std::string> names{"shap",     "lime",    "saliency", "input_x_gradient", "integrated_gradients",
                                              "smoothgrad", "gradcam", "gradcam++", "hirescam",        "occlusion"};
  return names;
}

ExplainMethods parse_explain_methods(const std::string& text) {
  if (text == "both") return {};
  const auto& known = explain_method_list();
  std::vector<std::string> names;
  if (text == "all") {
    names = known;
  } else {
    std::stringstream list(text);
    for (std::string name; std::getline(list, name, ',');) {
      if (std::find(known.begin(), known.end(), name) == known.end())
        throw std::invalid_argument("explanation method '" + name + "' (expected a comma-separated list of " +
                                    class_name_list(known) + ", or both, or all)");
      if (std::find(names.begin(), names.end(), name) != names.end())
        throw std::invalid_argument("explanation method '" + name + "' is given twice in '" + text + "'");
      names.push_back(name);
    }
  }
  if (names.empty()) throw std::invalid_argument("no explanation method in '" + text + "'");
  ExplainMethods m;
  m.shap = std::find(names.begin(), names.end(), "shap") != names.end();
  m.lime = std::find(names.begin(), names.end(), "lime") != names.end();
  for (const auto& name : known)  // the run order, whatever the order given
    if (name != "shap" && name != "lime" && std::find(names.begin(), names.end(), name) != names.end())
      m.maps.push_back(name);
  return m;
}

std::vector<std::string> explain_method_names(const ExplainMethods& m) {
  std::vector<std::string> names;
  if (m.shap) names.push_back("shap");
  if (m.lime) names.push_back("lime");
  names.insert(names.end(), m.maps.begin(), m.maps.end());
  return names;
}

std::string explain_methods_text(const ExplainMethods& m) {
  std::string text;
  for (const auto& name : explain_method_names(m)) text += (text.empty() ? "" : ",") + name;
  return text;
}

const EnumNames<IgBaseline>& ig_baseline_names() {
  static const EnumNames<IgBaseline> names{
      "integrated gradients baseline", {{"black", IgBaseline::black}, {"mean", IgBaseline::mean}, {"blur", IgBaseline::blur}}};
  return names;
}

ExplainerOptions with_explain_config(ExplainerOptions o, const ExplainConfig& c) {
  auto& a = o.attribution;
  a.cam_layer = c.cam_layer;
  a.ig_steps = c.ig_steps;
  a.ig_rule = integration_rule_names().parse(c.ig_rule);
  a.smoothgrad_samples = c.smoothgrad_samples;
  a.smoothgrad_sigma = c.smoothgrad_sigma;
  a.occlusion_patch = c.occlusion_patch;
  a.occlusion_stride = c.occlusion_stride;
  a.occlusion_fill = c.occlusion_fill;
  o.ig_baseline = ig_baseline_names().parse(c.ig_baseline);
  o.smoothgrad_base = attribution_method_names().parse(c.smoothgrad_base);
  if (!is_gradient_method(o.smoothgrad_base))
    throw std::invalid_argument("explain.smoothgrad_base '" + c.smoothgrad_base + "' is not a gradient method");
  return o;
}

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
  const bool do_shap = options.methods.shap;
  if (!options.methods.shap && !options.methods.lime && options.methods.maps.empty())
    throw std::invalid_argument("no explanation method chosen");
  if (do_shap && !(background.centroids.defined() && background.centroids.size(0) > 0))
    throw std::invalid_argument("DeepSHAP needs a non-empty background set");
  if (do_shap && options.shap_precision == Precision::fp16)
    throw std::invalid_argument("DeepSHAP's precision must be fp32 or bf16, not fp16");
  const auto device = resolve_device(options.device);
  device_ = device;
  loaded_ = load_checkpoint(checkpoint, device);
  check_map_methods(options, *loaded_.model, loaded_.meta.model);
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
  baseline_ = mean_reference(background, side(), &baseline_description_);
}

std::size_t FaceExplainer::group_size() const {
  // DeepSHAP splits a call into its passes itself: the maps set the size then.
  const std::size_t maps = options_.methods.maps.empty() ? 1 : kMapImagesPerCall;
  if (!shap_) return maps;
  const int64_t k = static_cast<int64_t>(class_names().size());
  const int64_t classes = selection_.kind == ClassSelection::all ? k : selection_.kind == ClassSelection::pred ? 1 : selection_.k;
  return std::max(maps, static_cast<std::size_t>(shap_->images_per_pass(classes)));
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

// The faces at `ready` as one [n,1,side,side] batch (the explainer's checks passed: side*side values each).
at::Tensor face_batch(const std::vector<std::vector<float>>& images, const std::vector<std::size_t>& ready, int64_t side) {
  auto batch = torch::empty({static_cast<int64_t>(ready.size()), 1, side, side});
  for (std::size_t j = 0; j < ready.size(); ++j)
    batch[static_cast<int64_t>(j)].copy_(torch::tensor(images[ready[j]]).view({1, side, side}));
  return batch;
}
}  // namespace

std::vector<FaceExplanation> FaceExplainer::explain(const std::vector<std::vector<float>>& faces,
                                                    const std::vector<std::uint64_t>& seeds,
                                                    const std::vector<int>& targets) {
  const auto images = model_inputs(faces, loaded_.model->input_normalization());
  if (seeds.size() != images.size())
    throw std::invalid_argument(fmt::format("{} seeds for {} images", seeds.size(), images.size()));
  if (!targets.empty() && targets.size() != images.size())
    throw std::invalid_argument(fmt::format("{} target classes for {} images", targets.size(), images.size()));
  for (const int t : targets)
    if (t < 0 || t >= static_cast<int>(class_names().size()))
      throw std::invalid_argument(fmt::format("target class {} of a model with {} classes", t, class_names().size()));
  std::vector<FaceExplanation> out(images.size());
  std::vector<std::size_t> ready;  // the faces whose prediction succeeded
  for (std::size_t i = 0; i < images.size(); ++i) {
    keep_failure(out[i], [&] {
      if (images[i].size() != static_cast<std::size_t>(side() * side()))
        throw std::invalid_argument(fmt::format("a face of {} values, not {} ({}x{})", images[i].size(), side() * side(),
                                                side(), side()));
      predict(images[i], targets.empty() ? -1 : targets[i], out[i]);
      ready.push_back(i);
    });
  }
  // A failed batch (a DeepSHAP pass, a map) fails every face in it.
  const auto for_all_ready = [&](auto&& work) {
    if (ready.empty()) return;
    try {
      work();
    } catch (const std::exception& ex) {
      for (const auto i : ready) {
        out[i] = FaceExplanation{};
        out[i].error = ex.what();
      }
      ready.clear();
    }
  };
  if (shap_) for_all_ready([&] { add_shap(images, ready, out); });
  if (!options_.methods.maps.empty()) for_all_ready([&] { add_maps(images, ready, seeds, out); });
  for (const auto i : ready) keep_failure(out[i], [&] { add_lime_and_curves(images[i], seeds[i], out[i]); });
  return out;
}

void FaceExplainer::predict(const std::vector<float>& image, int target, FaceExplanation& e) const {
  e.probs = classifier_(image, 1);
  const int64_t k = static_cast<int64_t>(e.probs.size());
  std::vector<int64_t> order(k);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return e.probs[a] > e.probs[b]; });
  e.predicted = static_cast<int>(order[0]);
  e.explained = target >= 0 ? target : e.predicted;
  // The explained class first: top:K's are then it and the K - 1 most probable others.
  std::stable_partition(order.begin(), order.end(), [&](int64_t c) { return c == e.explained; });
  if (selection_.kind == ClassSelection::all) {
    e.classes.resize(k);
    std::iota(e.classes.begin(), e.classes.end(), 0);
  } else {
    e.classes.assign(order.begin(), order.begin() + (selection_.kind == ClassSelection::pred ? 1 : selection_.k));
  }
}

void FaceExplainer::add_shap(const std::vector<std::vector<float>>& images, const std::vector<std::size_t>& ready,
                             std::vector<FaceExplanation>& out) {
  std::vector<std::vector<int64_t>> classes;
  for (const auto i : ready) classes.push_back(out[i].classes);
  const auto batch = center_crop(face_batch(images, ready, side()), loaded_.meta.model.input_size).contiguous();
  auto results = shap_->explain_batch(batch, classes);
  for (std::size_t j = 0; j < ready.size(); ++j) {
    out[ready[j]].shap = face_sized(results[j].attributions, side()).contiguous();
    out[ready[j]].additivity = results[j].additivity_error;
  }
}

Attribution FaceExplainer::attribute_map(const std::string& method, const at::Tensor& batch, const at::Tensor& classes,
                                         std::uint64_t seed) {
  auto o = options_.attribution;
  const bool smoothgrad = method == "smoothgrad";
  const auto base = smoothgrad ? options_.smoothgrad_base : attribution_method_names().parse(method);
  if (!smoothgrad) o.smoothgrad_samples = 0;
  o.seed = seed;
  if (base == AttributionMethod::integrated_gradients) {
    if (options_.ig_baseline == IgBaseline::mean)
      o.baseline = center_crop(torch::tensor(baseline_).view({1, 1, side(), side()}), batch.size(-1)).to(device_);
    else if (options_.ig_baseline == IgBaseline::blur)
      o.baseline = blurred(batch);
  }
  return attribute(*loaded_.model, batch, classes, base, o);
}

// Each map explains the explained class on the model's input (the centre crop
// of its size); the pixels cropped away get 0, as DeepSHAP's do.
void FaceExplainer::add_maps(const std::vector<std::vector<float>>& images, const std::vector<std::size_t>& ready,
                             const std::vector<std::uint64_t>& seeds, std::vector<FaceExplanation>& out) {
  const auto n = static_cast<int64_t>(ready.size());
  auto classes = torch::empty({n}, torch::kLong);
  for (int64_t j = 0; j < n; ++j) classes[j] = static_cast<int64_t>(out[ready[j]].explained);
  const auto batch = center_crop(face_batch(images, ready, side()), loaded_.meta.model.input_size).contiguous().to(device_);
  classes = classes.to(device_);
  for (const auto& method : options_.methods.maps) {
    // SmoothGrad's noise is each face's own (its seed), so a face's map does
    // not depend on the faces explained beside it.
    const bool per_face = method == "smoothgrad";
    for (int64_t first = 0; first < n; first += per_face ? 1 : n) {
      const int64_t count = per_face ? 1 : n;
      const auto a = attribute_map(method, batch.narrow(0, first, count), classes.narrow(0, first, count),
                                   seeds[ready[first]]);
      for (int64_t j = 0; j < count; ++j) {
        auto& e = out[ready[first + j]];
        e.maps[method] = face_sized(a.maps[j], side()).contiguous();
        if (method == "integrated_gradients") {
          const double error = a.completeness_error[j].item<double>();
          const double difference = a.maps[j].sum().item<double>() - error;  // y(x) - y(b)
          e.ig_completeness = std::abs(error) / std::max(std::abs(difference), 1e-12);
        }
      }
    }
  }
}

void FaceExplainer::add_lime_and_curves(const std::vector<float>& image, std::uint64_t seed, FaceExplanation& e) const {
  if (explains_lime()) {
    LimeOptions lime_options;
    lime_options.num_samples = options_.lime_samples;
    lime_options.seed = seed;
    e.lime = explain_lime(image, side(), side(), predictor_, e.explained, lime_options);
  }
  if (!options_.faithfulness) return;
  const auto curves = [&](const std::vector<float>& scores) {
    return deletion_insertion_curves(image, baseline_, scores, e.explained, predictor_, options_.faithfulness_steps);
  };
  if (shap_) {
    // Every selection holds the explained class (all; pred and top:K first).
    const auto at = std::find(e.classes.begin(), e.classes.end(), e.explained) - e.classes.begin();
    const float* map = e.shap.data_ptr<float>() + at * image.size();
    e.faithfulness["shap"] = curves(std::vector<float>(map, map + image.size()));
  }
  if (e.lime) e.faithfulness["lime"] = curves(lime_pixel_scores(*e.lime));
  for (const auto& [method, map] : e.maps)
    e.faithfulness[method] = curves(std::vector<float>(map.data_ptr<float>(), map.data_ptr<float>() + map.numel()));
  e.faithfulness["random"] = curves(random_pixel_scores(image.size(), seed));
}

}  // namespace fer
