#include "fer/explain/sanity_check.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <stdexcept>

#include "fer/common/emotions.h"
#include "fer/data/augment.h"
#include "fer/data/dataset.h"
#include "fer/explain/sanity.h"

namespace fer {

namespace fs = std::filesystem;

std::vector<float> explained_map(const FaceExplanation& e, const std::string& method) {
  const auto values = [](const at::Tensor& map, int64_t offset) {
    const int64_t pixels = map.size(-1) * map.size(-2);
    const float* p = map.data_ptr<float>() + offset * pixels;
    return std::vector<float>(p, p + pixels);
  };
  if (method == "shap" && e.shap.defined()) {
    const auto at = std::find(e.classes.begin(), e.classes.end(), e.explained) - e.classes.begin();
    return values(e.shap, at);
  }
  if (method == "lime" && e.lime) return lime_pixel_scores(*e.lime);
  if (const auto it = e.maps.find(method); it != e.maps.end()) return values(it->second, 0);
  throw std::invalid_argument("the explanation has no " + method + " map");
}

namespace {

// The part of a square map the model sees: the centre crop of its input size.
// Outside it every map is 0 (or LIME's scores of pixels the model never
// read), and those shared ties would count as agreement.
at::Tensor seen_region(const std::vector<float>& map, int64_t input_size) {
  const int64_t side = square_side(map.size(), "sanity check map");
  const auto full = torch::from_blob(const_cast<float*>(map.data()), {side, side}, torch::kFloat32);
  return center_crop(full, input_size).contiguous().clone();
}

std::vector<float> values_of(const at::Tensor& t) { return {t.data_ptr<float>(), t.data_ptr<float>() + t.numel()}; }

// Running means of one step's scores.
struct ScoreSums {
  int64_t input_size = 0;
  double spearman_abs = 0, spearman = 0, ssim = 0;
  std::int64_t faces = 0;
  void add(const std::vector<float>& trained, const std::vector<float>& randomised) {
    const auto a = seen_region(trained, input_size), b = seen_region(randomised, input_size);
    spearman_abs += spearman_correlation(values_of(a.abs()), values_of(b.abs()));
    spearman += spearman_correlation(values_of(a), values_of(b));
    ssim += map_ssim(a, b);
    ++faces;
  }
  SanityScores means() const {
    SanityScores s;
    s.faces = faces;
    if (faces > 0) s.spearman_abs = spearman_abs / faces, s.spearman = spearman / faces, s.ssim = ssim / faces;
    return s;
  }
};

// The trained model with `layers` randomised (layer k from seed + k), saved to `path`.
void save_randomised(const std::string& checkpoint, const std::vector<std::size_t>& layers,
                     const std::vector<std::string>& names, std::uint64_t seed, const std::string& path) {
  auto loaded = load_checkpoint(checkpoint, torch::kCPU);
  for (const auto k : layers) randomise_layer(*loaded.model, names[k], seed + k);
  save_checkpoint(path, *loaded.model, loaded.meta);
}

}  // namespace

SanityCheck sanity_check(const std::string& checkpoint, const BackgroundSummary& background,
                         const std::vector<std::vector<float>>& faces, const std::vector<std::uint64_t>& seeds,
                         const SanityCheckOptions& options, const ProgressFactory& progress) {
  if (options.work_dir.empty()) throw std::invalid_argument("sanity_check: a work_dir for the randomised checkpoints");
  auto explainer_options = options.explainer;
  explainer_options.faithfulness = false;
  FaceExplainer trained(checkpoint, background, explainer_options);
  SanityCheck check;
  check.methods = explain_method_names(explainer_options.methods);
  const auto loaded = load_checkpoint(checkpoint, torch::kCPU);
  check.layers = randomisable_layers(*loaded.model);
  const int64_t input_size = loaded.meta.model.input_size;
  const auto face_pixels = static_cast<std::size_t>(trained.side() * trained.side());  // a failed face's blank map
  if (check.layers.empty()) throw std::invalid_argument("sanity_check: " + checkpoint + " has no layers to randomise in turn");
  const int steps = static_cast<int>(check.layers.size()), total = 1 + steps * (options.independent ? 2 : 1);
  auto bar = progress ? progress(total, "sanity check") : nullptr;
  const auto reference = trained.explain(faces, seeds);
  if (bar) bar->advance(1, static_cast<std::int64_t>(faces.size()), "the trained model");
  std::vector<int> targets;  // the trained model's classes; a failed face is explained as class 0 and left out
  for (const auto& e : reference) targets.push_back(e.error.empty() ? e.explained : 0);
  const auto strip_count = std::min<std::size_t>(faces.size(), static_cast<std::size_t>(std::max(0, options.strip_faces)));
  for (const auto& method : check.methods) {
    auto& first = check.strip[method].emplace_back();
    for (std::size_t i = 0; i < strip_count; ++i)
      first.push_back(reference[i].error.empty() ? explained_map(reference[i], method) : std::vector<float>(face_pixels, 0));
  }
  fs::create_directories(options.work_dir);
  const auto path = (fs::path(options.work_dir) / "randomised.pt").string();
  const auto run = [&](const std::vector<std::size_t>& randomised, bool cascading) {
    save_randomised(checkpoint, randomised, check.layers, options.seed, path);
    FaceExplainer model(path, background, explainer_options);
    const auto explained = model.explain(faces, seeds, targets);
    for (const auto& method : check.methods) {
      ScoreSums sums{input_size};
      for (std::size_t i = 0; i < faces.size(); ++i)
        if (reference[i].error.empty() && explained[i].error.empty())
          sums.add(explained_map(reference[i], method), explained_map(explained[i], method));
      (cascading ? check.cascading : check.independent)[method].push_back(sums.means());
      if (!cascading) continue;
      auto& maps = check.strip[method].emplace_back();
      for (std::size_t i = 0; i < strip_count; ++i)
        maps.push_back(explained[i].error.empty() ? explained_map(explained[i], method) : std::vector<float>(face_pixels, 0));
    }
    if (bar)
      bar->advance(1, static_cast<std::int64_t>(faces.size()),
                   (cascading ? "cascading to " : "independent ") + check.layers[randomised.back()]);
  };
  for (std::size_t k = 0; k < check.layers.size(); ++k) {
    std::vector<std::size_t> cascade(k + 1);
    std::iota(cascade.begin(), cascade.end(), 0);
    run(cascade, true);
  }
  if (options.independent)
    for (std::size_t k = 0; k < check.layers.size(); ++k) run({k}, false);
  fs::remove(path);
  if (bar) bar->finish();
  return check;
}

SanityVerdict sanity_verdict(const SanityCheck& check, const std::string& method, double threshold) {
  const auto it = check.cascading.find(method);
  if (it == check.cascading.end() || it->second.empty())
    throw std::invalid_argument("sanity_verdict: the check has no " + method + " scores");
  SanityVerdict v;
  v.spearman_abs = it->second.back().spearman_abs;
  v.ssim = it->second.back().ssim;
  v.passes = v.spearman_abs < threshold;  // NaN (no face explained by both) does not pass
  return v;
}

}  // namespace fer
