// explain_batch: DeepSHAP and LIME for every item, its panels and files, the
// manifest and the batch report (BatchExplainer holds the per-batch state).
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>

#include "files.h"
#include "fer/common/io.h"
#include "fer/data/augment.h"
#include "fer/data/sampler.h"
#include "fer/explain/deepshap.h"
#include "fer/inference/inference.h"
#include "fer/models/checkpoint.h"
#include "fer/report/environment.h"
#include "fer/report/progress.h"

namespace fer {
namespace fs = std::filesystem;
using namespace explain_detail;

namespace {

// A model of input size s sees the centre s x s crop of the 48 x 48 face (as
// fer-eval predicts): DeepSHAP explains that crop, and the pixels outside it,
// which cannot change the output, get attribution exactly 0.
torch::Tensor face_sized(const torch::Tensor& crop_attributions) {
  const int64_t s = crop_attributions.size(-1), before = (kImageSize - s) / 2, after = kImageSize - s - before;
  if (s == kImageSize) return crop_attributions;
  return torch::constant_pad_nd(crop_attributions, {before, after, before, after}, 0);
}

class BatchExplainer {
 public:
  BatchExplainer(const std::string& checkpoint, const BackgroundSummary& background, std::string out_dir,
                 const ExplainOptions& options)
      : out_dir_(std::move(out_dir)), options_(options) {
    do_shap_ = options.method != ExplainMethod::lime;
    do_lime_ = options.method != ExplainMethod::shap;
    if (do_shap_ && !(background.centroids.defined() && background.centroids.size(0) > 0))
      throw std::invalid_argument("DeepSHAP needs a non-empty background set");
    const auto device = resolve_device(options.device);
    loaded_ = load_checkpoint(checkpoint, device);
    k_ = static_cast<int>(loaded_.meta.class_names.size());
    selection_ = parse_class_selection(options.classes, k_);
    if (do_shap_) {
      DeepShapOptions shap_options;
      shap_options.explain_probabilities = options.probabilities;
      shap_options.background_weights = background.weights;
      if (options.shap_precision == Precision::fp16)
        throw std::invalid_argument("DeepSHAP's precision must be fp32 or bf16, not fp16");
      shap_options.bf16_convs = options.shap_precision == Precision::bf16;
      shap_options.max_rows_per_pass = options.shap_pass_rows;
      shap_ = std::make_unique<DeepShapExplainer>(
          loaded_.model, center_crop(background.centroids, loaded_.meta.model.input_size).contiguous(), device,
          shap_options);
    }
    lime_options_.num_samples = options.lime_samples;
    const auto precision = options.precision.value_or(default_inference_precision(device));
    precision_ = precision_name(precision);
    check_precision_supported(precision, device);
    if (do_lime_ || options.faithfulness) {
      // The many model calls of LIME and the curves run on a channels-last copy:
      // measured 2.2x (bf16) and 1.35x (fp32) the forward rate on this CPU.
      // DeepSHAP and the reported prediction keep the plain model.
      fast_model_ = load_checkpoint(checkpoint, device).model;
      if (device.is_cpu() || precision != Precision::fp32) use_channels_last(*fast_model_);
      predictor_ = probability_predictor(*fast_model_, device, precision, loaded_.meta.model.input_size);
    }
    // The reported prediction (and so the class explained) is fer-eval's: fp32.
    classifier_ = probability_predictor(*loaded_.model, device, Precision::fp32, loaded_.meta.model.input_size);
    baseline_ = baseline_image(background, &report_.baseline_description);
    report_.class_names = loaded_.meta.class_names;
    report_.shap = do_shap_;
    report_.save_raw = options.save_raw;
    report_.faithfulness_method = !options.faithfulness ? "" : do_shap_ ? "shap" : "lime";
    report_.global_sum.assign(static_cast<std::size_t>(k_) * kImagePixels, 0.0);
    report_.global_count.assign(k_, 0);
  }

  const std::vector<std::string>& names() const { return loaded_.meta.class_names; }
  const std::string& precision() const { return precision_; }

  // How many items explain_group takes at once: DeepSHAP's images per backward pass.
  std::size_t group_size() const {
    if (!shap_) return 1;
    const int64_t classes = selection_.kind == ClassSelection::all ? k_ : selection_.kind == ClassSelection::pred ? 1 : selection_.k;
    return static_cast<std::size_t>(shap_->images_per_pass(classes));
  }

  // Items [begin, end) of `items`, numbered from `first_index`: each one's
  // prediction, then DeepSHAP for all of them in batched passes, then each
  // one's files, LIME and faithfulness. A failure stays with its item (a
  // failed DeepSHAP pass, with every item of the pass).
  std::vector<ItemRecord> explain_group(std::size_t first_index, const std::vector<ExplainItem>& items,
                                        std::size_t begin, std::size_t end) {
    std::vector<ItemRecord> records(end - begin);
    std::vector<std::vector<float>> images(end - begin);
    std::vector<std::size_t> ready;  // positions in records whose prediction succeeded
    for (std::size_t i = begin; i < end; ++i) {
      auto& r = records[i - begin];
      r.error = items[i].error;
      if (!r.error.empty()) continue;
      run_for_item(r, [&] {
        images[i - begin] = scaled_pixels(items[i]);
        predict(images[i - begin], r);
        ready.push_back(i - begin);
      });
    }
    std::vector<DeepShapResult> shap_results(records.size());
    if (shap_ && !ready.empty()) {
      try {
        auto batch = torch::empty({static_cast<int64_t>(ready.size()), 1, kImageSize, kImageSize});
        std::vector<std::vector<int64_t>> classes;
        for (std::size_t j = 0; j < ready.size(); ++j) {
          batch[static_cast<int64_t>(j)].copy_(torch::tensor(images[ready[j]]).view({1, kImageSize, kImageSize}));
          classes.push_back(records[ready[j]].classes);
        }
        auto results = shap_->explain_batch(center_crop(batch, loaded_.meta.model.input_size).contiguous(), classes);
        for (std::size_t j = 0; j < ready.size(); ++j) {
          results[j].attributions = face_sized(results[j].attributions);
          shap_results[ready[j]] = std::move(results[j]);
        }
      } catch (const std::exception& e) {
        for (const auto j : ready) {
          records[j] = ItemRecord{};
          records[j].error = e.what();
        }
        ready.clear();
      }
    }
    for (const auto j : ready)
      run_for_item(records[j], [&] { finish_item(first_index + j, items[begin + j], images[j], shap_results[j], records[j]); });
    return records;
  }

  // What the batch-level files are made of, filled as items are explained.
  BatchReport& report() { return report_; }
  const std::string& faithfulness_method() const { return report_.faithfulness_method; }

 private:
  // Runs `work`; an exception becomes the item's error (and clears what it had).
  template <typename Work>
  static void run_for_item(ItemRecord& r, Work&& work) {
    try {
      work();
    } catch (const std::exception& e) {
      r = ItemRecord{};
      r.error = e.what();
    }
  }

  static std::vector<float> scaled_pixels(const ExplainItem& item) {
    std::vector<float> image(kImagePixels);
    for (int p = 0; p < kImagePixels; ++p) image[p] = item.pixels[p] / 255.0f;
    return image;
  }

  // An item's files, LIME and faithfulness, once its prediction (in r) and DeepSHAP maps are known.
  void finish_item(std::size_t index, const ExplainItem& item, const std::vector<float>& image,
                   const DeepShapResult& shap, ItemRecord& r) {
    const fs::path dir = fs::path(out_dir_) / (fmt::format("{:05d}_", index) + safe_stem(item.source));
    fs::create_directories(dir);
    const cv::Mat face = face_bgr(item.pixels.data());
    add_file(r, dir / "face.png", face);
    std::vector<cv::Mat> sheet{with_title(face, fmt::format("true: {}  pred: {} {:.2f}",
                                                            item.label >= 0 ? names()[item.label] : "?",
                                                            names()[r.predicted], r.probs[r.predicted]))};
    std::vector<float> shap_map, lime_scores;
    if (shap_) sheet.push_back(shap_panels(item, shap, dir, r, &shap_map));
    if (do_lime_) sheet.push_back(explain_lime(index, item, image, dir, r, &lime_scores));
    if (options_.faithfulness) {
      if (!shap_map.empty()) measure_faithfulness("shap", image, shap_map, r);
      if (!lime_scores.empty()) measure_faithfulness("lime", image, lime_scores, r);
      measure_faithfulness("random", image, random_pixel_scores(kImagePixels, options_.seed + index), r);
    }
    add_file(r, dir / "summary.png", hconcat_padded(sheet));
    r.summary_png = fs::relative(dir / "summary.png", out_dir_).generic_string();
  }

  void add_file(ItemRecord& r, const fs::path& p, const cv::Mat& img) const {
    write_png(p.string(), img);
    r.files += (r.files.empty() ? "" : ";") + fs::relative(p, out_dir_).string();
  }

  void predict(const std::vector<float>& image, ItemRecord& r) const {
    r.probs = classifier_(image, 1);
    std::vector<int64_t> order(k_);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return r.probs[a] > r.probs[b]; });
    r.predicted = static_cast<int>(order[0]);
    if (selection_.kind == ClassSelection::all) {
      r.classes.resize(k_);
      std::iota(r.classes.begin(), r.classes.end(), 0);
    } else {
      r.classes.assign(order.begin(), order.begin() + (selection_.kind == ClassSelection::pred ? 1 : selection_.k));
    }
  }

  // One panel per explained class; returns the predicted class's panel and its map.
  cv::Mat shap_panels(const ExplainItem& item, const DeepShapResult& result, const fs::path& dir, ItemRecord& r,
                      std::vector<float>* predicted_map) {
    r.additivity = result.additivity_error;
    report_.worst_additivity = std::max(report_.worst_additivity, r.additivity);
    const auto attr = result.attributions.contiguous();
    const float* a = attr.data_ptr<float>();
    const double vmax = std::max(1e-12, percentile_abs(a, attr.numel(), 0.999));
    cv::Mat predicted_panel;
    for (std::size_t c = 0; c < r.classes.size(); ++c) {
      const float* map = a + c * kImagePixels;
      const auto cls = r.classes[c];
      const cv::Mat panel = with_title(shap_panel(item.pixels.data(), map, vmax),
                                       fmt::format("SHAP {} (p={:.2f})", names()[cls], r.probs[cls]));
      add_file(r, dir / ("shap_" + names()[cls] + ".png"), panel);
      if (cls == r.predicted) {
        predicted_panel = panel;
        predicted_map->assign(map, map + kImagePixels);
      }
      for (int p = 0; p < kImagePixels; ++p) report_.global_sum[cls * kImagePixels + p] += std::abs(map[p]);
      ++report_.global_count[cls];
    }
    if (options_.save_raw) {
      const fs::path npy = dir / "shap.npy";
      write_npy(npy.string(), std::vector<float>(a, a + attr.numel()), {r.classes.size(), 48, 48});
      r.files += ";" + fs::relative(npy, out_dir_).string();
    }
    return predicted_panel;
  }

  cv::Mat explain_lime(std::size_t index, const ExplainItem& item, const std::vector<float>& image,
                       const fs::path& dir, ItemRecord& r, std::vector<float>* pixel_scores) {
    LimeOptions lime_options = lime_options_;
    lime_options.seed = options_.seed + index;
    const auto e = fer::explain_lime(image, kImageSize, kImageSize, predictor_, r.predicted, lime_options);
    r.lime_score = e.score;
    r.lime_label = e.label;
    r.lime_segments = e.num_segments;
    *pixel_scores = lime_pixel_scores(e);
    const cv::Mat panel = with_title(lime_panel(item.pixels.data(), e, options_.top_superpixels),
                                     fmt::format("LIME {} (R2={:.2f})", names()[e.label], e.score));
    add_file(r, dir / "lime.png", panel);
    return panel;
  }

  void measure_faithfulness(const std::string& method, const std::vector<float>& image,
                            const std::vector<float>& scores, ItemRecord& r) {
    auto curves = deletion_insertion_curves(image, baseline_, scores, r.predicted, predictor_,
                                            options_.faithfulness_steps);
    report_.faithfulness.add(method, curves);
    r.faithfulness[method] = std::move(curves);
  }

  std::string out_dir_;
  ExplainOptions options_;
  bool do_shap_ = false, do_lime_ = false;
  LoadedCheckpoint loaded_;
  Classifier fast_model_{nullptr};  // predictor_'s model: channels-last where that is faster
  int k_ = 0;
  ClassSelection selection_;
  std::unique_ptr<DeepShapExplainer> shap_;
  LimeOptions lime_options_;
  BatchPredictor predictor_;   // LIME's and the faithfulness curves' model calls (none when neither runs)
  BatchPredictor classifier_;  // the prediction of each image, in fp32
  std::vector<float> baseline_;
  std::string precision_;  // of predictor_
  BatchReport report_;
};

}  // namespace

const EnumNames<ExplainMethod>& explain_method_names() {
  static const EnumNames<ExplainMethod> names{
      "explanation method",
      {{"shap", ExplainMethod::shap}, {"lime", ExplainMethod::lime}, {"both", ExplainMethod::both}}};
  return names;
}

ExplainMethod parse_explain_method(const std::string& name) { return explain_method_names().parse(name); }

std::string explain_method_name(ExplainMethod method) { return explain_method_names().name(method); }

ExplainSummary explain_batch(const std::string& checkpoint, const std::vector<ExplainItem>& items,
                             const BackgroundSummary& background, const std::string& out_dir,
                             const ExplainOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  const auto [first, end] = options.shard.sharded()
                                ? shard_range(static_cast<int64_t>(options.total_items), options.shard.index, options.shard.count)
                                : std::pair<int64_t, int64_t>{0, static_cast<int64_t>(items.size())};
  if (static_cast<std::size_t>(end - first) != items.size())
    throw std::invalid_argument(fmt::format("shard {} of {} holds items {}..{} of {}, but {} items were given",
                                            options.shard.index, options.shard.count, first, end, options.total_items,
                                            items.size()));
  fs::create_directories(out_dir);
  BatchExplainer explainer(checkpoint, background, out_dir, options);
  const auto& names = explainer.names();
  auto& report = explainer.report();
  ExplainSummary summary;
  summary.precision = explainer.precision();
  summary.manifest = (fs::path(out_dir) / "manifest.csv").string();
  std::ofstream manifest(summary.manifest);
  manifest << manifest_header(names);

  std::unique_ptr<ProgressBar> bar;
  if (options.progress) bar = std::make_unique<ProgressBar>(static_cast<std::int64_t>(items.size()), "explain");
  const std::size_t group = explainer.group_size();
  for (std::size_t begin = 0; begin < items.size(); begin += group) {
    const std::size_t end = std::min(items.size(), begin + group);
    const auto records = explainer.explain_group(static_cast<std::size_t>(first) + begin, items, begin, end);
    for (std::size_t i = begin; i < end; ++i) {
      const std::size_t index = static_cast<std::size_t>(first) + i;  // the item's number in the whole batch
      const ItemRecord& r = records[i - begin];
      if (r.error.empty()) {
        ++report.explained;
      } else {
        ++report.failed;
        spdlog::warn("explain: {}: {}", items[i].source, r.error);
      }
      manifest << manifest_row(index, items[i], r, names) << std::flush;
      // a few strings per image: 10,000 images stay well under 10 MB
      report.cards.push_back(gallery_card(index, items[i], r, names, explainer.faithfulness_method()));
      if (bar) bar->advance(1, 1, report.failed ? fmt::format("{} failed", report.failed) : "");
    }
  }
  if (bar) bar->finish();
  if (!manifest) throw std::runtime_error("cannot write '" + summary.manifest + "'");
  write_batch_reports(out_dir, report);
  if (options.shard.sharded())
    write_explain_shard(out_dir, checkpoint, options, summary.precision, first, items.size(), report);
  summary.explained = report.explained;
  summary.failed = report.failed;
  summary.worst_additivity_error = report.worst_additivity;
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return summary;
}

}  // namespace fer
