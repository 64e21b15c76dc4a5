// explain_batch: every item's explanation (fer::FaceExplainer), its panels and
// files, the manifest and the batch report.
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <opencv2/core.hpp>

#include "files.h"
#include "fer/common/io.h"
#include "fer/data/sampler.h"
#include "fer/report/environment.h"
#include "fer/report/progress.h"

namespace fer {
namespace fs = std::filesystem;
using namespace explain_detail;

namespace {

// Writes each explained face's files and gathers what the batch-level files
// are made of; the explanations themselves are FaceExplainer's.
class BatchWriter {
 public:
  BatchWriter(const FaceExplainer& explainer, std::string out_dir, const ExplainOptions& options)
      : names_(explainer.class_names()), out_dir_(std::move(out_dir)), options_(options) {
    report_.class_names = names_;
    report_.shap = explainer.explains_shap();
    report_.methods = explainer.methods();
    report_.save_raw = options.save_raw;
    report_.baseline_description = explainer.baseline_description();
    // The gallery's sort: the first method that ran.
    report_.faithfulness_method = options.faithfulness ? explain_method_names(explainer.methods()).front() : "";
    report_.global_sum.assign(names_.size() * static_cast<std::size_t>(explainer.side() * explainer.side()), 0.0);
    report_.global_count.assign(names_.size(), 0);
  }

  // The item's files (face, SHAP panels, LIME panel, summary sheet); a write
  // failure becomes the item's error.
  void write_item(std::size_t index, const ExplainItem& item, ItemRecord& r) {
    if (!r.error.empty()) return;
    try {
      write_files(index, item, r);
    } catch (const std::exception& e) {
      static_cast<FaceExplanation&>(r) = FaceExplanation{};
      r.files.clear();
      r.summary_png.clear();
      r.error = e.what();
    }
  }

  BatchReport& report() { return report_; }

 private:
  void write_files(std::size_t index, const ExplainItem& item, ItemRecord& r) {
    const fs::path dir = fs::path(out_dir_) / (fmt::format("{:05d}_", index) + safe_stem(item.source));
    fs::create_directories(dir);
    const cv::Mat face = face_bgr(item.pixels);
    add_file(r, dir / "face.png", face);
    std::vector<cv::Mat> sheet{with_title(face, fmt::format("true: {}  pred: {} {:.2f}",
                                                            item.label >= 0 ? names_[item.label] : "?",
                                                            names_[r.predicted], r.probs[r.predicted]))};
    if (r.shap.defined()) sheet.push_back(shap_panels(dir, item, r));
    if (r.lime) {
      const cv::Mat panel = with_title(lime_panel(item.pixels, *r.lime, options_.top_superpixels),
                                       fmt::format("LIME {} (R2={:.2f})", names_[r.lime->label], r.lime->score));
      add_file(r, dir / "lime.png", panel);
      sheet.push_back(panel);
    }
    for (const auto& method : report_.methods.maps) sheet.push_back(map_panels(dir, item, r, method));
    add_file(r, dir / "summary.png", sheet_grid(sheet));
    r.summary_png = fs::relative(dir / "summary.png", out_dir_).generic_string();
    report_.worst_additivity = std::max(report_.worst_additivity, std::isnan(r.additivity) ? 0.0 : r.additivity);
    if (!std::isnan(r.ig_completeness))
      report_.worst_ig_completeness = std::max(report_.worst_ig_completeness, r.ig_completeness);
    for (const auto& method : faithfulness_methods(report_.methods))  // the plot's order
      if (const auto it = r.faithfulness.find(method); it != r.faithfulness.end()) report_.faithfulness.add(method, it->second);
  }

  void add_file(ItemRecord& r, const fs::path& p, const cv::Mat& img) const {
    write_png(p.string(), img);
    r.files += (r.files.empty() ? "" : ";") + fs::relative(p, out_dir_).string();
  }

  // One panel per explained class; returns the predicted class's panel.
  cv::Mat shap_panels(const fs::path& dir, const ExplainItem& item, ItemRecord& r) {
    const float* a = r.shap.data_ptr<float>();
    const double vmax = std::max(1e-12, percentile_abs(a, r.shap.numel(), 0.999));
    const auto side = static_cast<std::size_t>(r.shap.size(-1)), pixels = side * side;
    cv::Mat predicted_panel;
    for (std::size_t c = 0; c < r.classes.size(); ++c) {
      const float* map = a + c * pixels;
      const auto cls = r.classes[c];
      const cv::Mat panel = with_title(shap_panel(item.pixels, map, vmax),
                                       fmt::format("SHAP {} (p={:.2f})", names_[cls], r.probs[cls]));
      add_file(r, dir / ("shap_" + names_[cls] + ".png"), panel);
      if (cls == r.predicted) predicted_panel = panel;
      for (std::size_t p = 0; p < pixels; ++p) report_.global_sum[cls * pixels + p] += std::abs(map[p]);
      ++report_.global_count[cls];
    }
    if (options_.save_raw) {
      const fs::path npy = dir / "shap.npy";
      write_npy(npy.string(), std::vector<float>(a, a + r.shap.numel()), {r.classes.size(), side, side});
      r.files += ";" + fs::relative(npy, out_dir_).string();
    }
    return predicted_panel;
  }

  // The predicted class's map of `method`: its panel (returned) and raw array.
  cv::Mat map_panels(const fs::path& dir, const ExplainItem& item, ItemRecord& r, const std::string& method) {
    const auto& map = r.maps.at(method);
    const cv::Mat panel = with_title(map_panel(item.pixels, map),
                                     fmt::format("{} {}", method, names_[r.explained]));
    add_file(r, dir / (method_file_stem(method) + ".png"), panel);
    if (options_.save_raw) {
      const fs::path npy = dir / (method_file_stem(method) + ".npy");
      write_npy(npy.string(), std::vector<float>(map.data_ptr<float>(), map.data_ptr<float>() + map.numel()),
                {static_cast<std::size_t>(map.size(0)), static_cast<std::size_t>(map.size(1))});
      r.files += ";" + fs::relative(npy, out_dir_).string();
    }
    return panel;
  }

  std::vector<std::string> names_;
  std::string out_dir_;
  ExplainOptions options_;
  BatchReport report_;
};

std::vector<float> scaled_pixels(const ExplainItem& item) {
  std::vector<float> image(item.pixels.size());
  for (std::size_t p = 0; p < image.size(); ++p) image[p] = item.pixels[p] / 255.0f;
  return image;
}

// Items [begin, end) explained together (DeepSHAP shares its passes); an item
// that could not be read keeps its error and is not explained.
std::vector<ItemRecord> explain_items(FaceExplainer& explainer, const std::vector<ExplainItem>& items,
                                      std::size_t begin, std::size_t end, std::size_t first_index,
                                      std::uint64_t seed) {
  std::vector<ItemRecord> records(end - begin);
  std::vector<std::vector<float>> images;
  std::vector<std::uint64_t> seeds;
  std::vector<std::size_t> readable;
  for (std::size_t i = begin; i < end; ++i) {
    records[i - begin].error = items[i].error;
    if (!items[i].error.empty()) continue;
    images.push_back(scaled_pixels(items[i]));
    seeds.push_back(seed + first_index + i);
    readable.push_back(i - begin);
  }
  auto explanations = explainer.explain(images, seeds);
  for (std::size_t j = 0; j < readable.size(); ++j)
    static_cast<FaceExplanation&>(records[readable[j]]) = std::move(explanations[j]);
  return records;
}

}  // namespace

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
  FaceExplainer explainer(checkpoint, background, options);
  BatchWriter writer(explainer, out_dir, options);
  const auto& names = explainer.class_names();
  auto& report = writer.report();
  ExplainSummary summary;
  summary.precision = explainer.precision();
  summary.manifest = (fs::path(out_dir) / "manifest.csv").string();
  AppendFile manifest(summary.manifest, AppendFile::Mode::truncate);  // a row per item as it ends
  manifest.write(manifest_header(names, explainer.methods()));

  std::unique_ptr<ProgressBar> bar;
  if (options.progress) bar = std::make_unique<ProgressBar>(static_cast<std::int64_t>(items.size()), "explain");
  const std::size_t group = explainer.group_size();
  for (std::size_t begin = 0; begin < items.size(); begin += group) {
    const std::size_t end = std::min(items.size(), begin + group);
    auto records = explain_items(explainer, items, begin, end, static_cast<std::size_t>(first), options.seed);
    for (std::size_t i = begin; i < end; ++i) {
      const std::size_t index = static_cast<std::size_t>(first) + i;  // the item's number in the whole batch
      ItemRecord& r = records[i - begin];
      writer.write_item(index, items[i], r);
      if (r.error.empty()) {
        ++report.explained;
      } else {
        ++report.failed;
        spdlog::warn("explain: {}: {}", items[i].source, r.error);
      }
      manifest.write(manifest_row(index, items[i], r, names, explainer.methods()));
      // a few strings per image: 10,000 images stay well under 10 MB
      report.cards.push_back(gallery_card(index, items[i], r, names, report.faithfulness_method));
      if (bar) bar->advance(1, 1, report.failed ? fmt::format("{} failed", report.failed) : "");
    }
  }
  if (bar) bar->finish();
  manifest.close();
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
