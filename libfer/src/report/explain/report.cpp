// An explanation batch's manifest.csv rows, its batch report (global SHAP maps,
// faithfulness, the gallery) and how shards' reports add up.
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <opencv2/imgproc.hpp>

#include "files.h"
#include "fer/common/io.h"
#include "fer/data/dataset.h"
#include "fer/report/plot.h"

namespace fer::explain_detail {
namespace fs = std::filesystem;

std::vector<std::string> faithfulness_methods(const ExplainMethods& methods) {
  auto names = explain_method_names(methods);
  names.push_back("random");
  return names;
}

nlohmann::json attribution_settings_json(const ExplainerOptions& o) {
  const auto& a = o.attribution;
  return {{"cam_layer", a.cam_layer},
          {"ig_steps", a.ig_steps},
          {"ig_rule", integration_rule_names().name(a.ig_rule)},
          {"ig_baseline", ig_baseline_names().name(o.ig_baseline)},
          {"smoothgrad_samples", a.smoothgrad_samples},
          {"smoothgrad_sigma", a.smoothgrad_sigma},
          {"smoothgrad_base", attribution_method_names().name(o.smoothgrad_base)},
          {"occlusion_patch", a.occlusion_patch},
          {"occlusion_stride", a.occlusion_stride},
          {"occlusion_fill", a.occlusion_fill}};
}

std::string manifest_header(const std::vector<std::string>& names, const ExplainMethods& methods) {
  std::vector<std::string> h = {"index", "source", "status", "error", "true", "predicted"};
  for (const auto& n : names) h.push_back("p_" + n);
  for (const char* c : {"shap_classes", "shap_additivity_error", "lime_label", "lime_score", "lime_segments",
                        "ig_completeness_error"})
    h.push_back(c);
  for (const auto& m : faithfulness_methods(methods)) {
    h.push_back(m + "_deletion_auc");
    h.push_back(m + "_insertion_auc");
  }
  h.push_back("files");
  return csv_row(h) + "\n";
}

namespace {
std::string optional_number(double v, const char* format) {
  return std::isnan(v) ? std::string() : fmt::format(fmt::runtime(format), v);
}
}  // namespace

std::string manifest_row(std::size_t index, const ExplainItem& item, const ItemRecord& r,
                         const std::vector<std::string>& names, const ExplainMethods& methods) {
  const auto name_of = [&](int c) { return c >= 0 ? names[c] : std::string(); };
  std::vector<std::string> row = {std::to_string(index), item.source, r.error.empty() ? "ok" : "error", r.error,
                                  name_of(static_cast<int>(item.label)), name_of(r.predicted)};
  for (std::size_t c = 0; c < names.size(); ++c) row.push_back(r.probs.empty() ? "" : fmt::format("{:.6f}", r.probs[c]));
  std::string class_list;
  for (auto c : r.classes) class_list += (class_list.empty() ? "" : ";") + names[c];
  row.insert(row.end(), {class_list, optional_number(r.additivity, "{:.3g}"), name_of(r.lime ? r.lime->label : -1),
                         optional_number(r.lime ? r.lime->score : NAN, "{:.4f}"),
                         r.lime ? std::to_string(r.lime->num_segments) : "",
                         optional_number(r.ig_completeness, "{:.3g}")});
  for (const auto& m : faithfulness_methods(methods)) {
    const auto it = r.faithfulness.find(m);
    const bool has = it != r.faithfulness.end();
    row.push_back(has ? fmt::format("{:.4f}", it->second.deletion_auc) : "");
    row.push_back(has ? fmt::format("{:.4f}", it->second.insertion_auc) : "");
  }
  row.push_back(r.files);
  return csv_row(row) + "\n";
}

namespace {
nlohmann::json manifest_card_json(const GalleryCard& c) {
  return {{"index", c.index},         {"source", c.source},       {"image", c.image},
          {"true_label", c.true_label}, {"predicted", c.predicted}, {"confidence", c.confidence},
          {"faithfulness", std::isnan(c.faithfulness) ? nlohmann::json(nullptr) : nlohmann::json(c.faithfulness)},
          {"error", c.error}};
}

GalleryCard card_from_json(const nlohmann::json& j) {
  GalleryCard c;
  c.index = j.at("index").get<int>();
  c.source = j.at("source").get<std::string>();
  c.image = j.at("image").get<std::string>();
  c.true_label = j.at("true_label").get<std::string>();
  c.predicted = j.at("predicted").get<std::string>();
  c.confidence = j.at("confidence").get<double>();
  c.faithfulness = j.at("faithfulness").is_null() ? NAN : j.at("faithfulness").get<double>();
  c.error = j.at("error").get<std::string>();
  return c;
}
}  // namespace

nlohmann::json report_json(const BatchReport& r) {
  nlohmann::json cards = nlohmann::json::array();
  for (const auto& c : r.cards) cards.push_back(manifest_card_json(c));
  return {{"class_names", r.class_names},  {"shap", r.shap}, {"methods", explain_methods_text(r.methods)},
          {"worst_ig_completeness", r.worst_ig_completeness},
          {"save_raw", r.save_raw},        {"global_sum", r.global_sum},
          {"global_count", r.global_count}, {"faithfulness", r.faithfulness.state_json()},
          {"baseline", r.baseline_description}, {"faithfulness_method", r.faithfulness_method},
          {"cards", cards},                {"explained", r.explained},
          {"failed", r.failed},            {"worst_additivity", r.worst_additivity}};
}

void add_report(BatchReport& total, const nlohmann::json& part) {
  if (total.class_names.empty()) {
    total.class_names = part.at("class_names").get<std::vector<std::string>>();
    total.shap = part.at("shap").get<bool>();
    total.methods = parse_explain_methods(part.at("methods").get<std::string>());
    total.save_raw = part.at("save_raw").get<bool>();
    total.baseline_description = part.at("baseline").get<std::string>();
    total.faithfulness_method = part.at("faithfulness_method").get<std::string>();
    total.global_sum.assign(part.at("global_sum").size(), 0.0);
    total.global_count.assign(total.class_names.size(), 0);
  }
  const auto sum = part.at("global_sum").get<std::vector<double>>();
  const auto count = part.at("global_count").get<std::vector<int>>();
  for (std::size_t i = 0; i < sum.size(); ++i) total.global_sum.at(i) += sum[i];
  for (std::size_t c = 0; c < count.size(); ++c) total.global_count.at(c) += count[c];
  total.faithfulness.merge_state(part.at("faithfulness"));
  for (const auto& c : part.at("cards")) total.cards.push_back(card_from_json(c));
  total.explained += part.at("explained").get<int>();
  total.failed += part.at("failed").get<int>();
  total.worst_additivity = std::max(total.worst_additivity, part.at("worst_additivity").get<double>());
  total.worst_ig_completeness = std::max(total.worst_ig_completeness, part.at("worst_ig_completeness").get<double>());
}

namespace {
// Which regions matter for each emotion: mean |SHAP| over the images explained for it.
std::string write_global_shap(const std::string& out_dir, const BatchReport& r) {
  const int k = static_cast<int>(r.class_names.size());
  const int pixels = static_cast<int>(r.global_sum.size()) / k;  // one face's, per class
  const int side = square_side(static_cast<std::size_t>(pixels), "global mean |SHAP|");
  std::vector<float> global(r.global_sum.size(), 0.0f);
  for (int c = 0; c < k; ++c)
    for (int p = 0; p < pixels; ++p)
      if (r.global_count[c])
        global[c * pixels + p] = static_cast<float>(r.global_sum[c * pixels + p] / r.global_count[c]);
  const double vmax = std::max(1e-12, percentile_abs(global.data(), global.size(), 0.999));
  std::vector<cv::Mat> panels;
  for (int c = 0; c < k; ++c) {
    cv::Mat heat(side, side, CV_8U);
    for (int p = 0; p < pixels; ++p)
      heat.data[p] = static_cast<uchar>(std::clamp(global[c * pixels + p] / vmax, 0.0, 1.0) * 255);
    cv::Mat big, colour;
    cv::resize(heat, big, {kSide, kSide}, 0, 0, cv::INTER_NEAREST);
    cv::applyColorMap(big, colour, cv::COLORMAP_INFERNO);
    if (!r.global_count[c]) colour.setTo(cv::Scalar(235, 235, 235));
    panels.push_back(with_title(colour, fmt::format("{} (n={})", r.class_names[c], r.global_count[c])));
  }
  panels.push_back(with_title(colour_bar(vmax, kSide, false), "mean |SHAP|"));
  write_png((fs::path(out_dir) / "global_mean_abs_shap.png").string(), hconcat_padded(panels));
  if (r.save_raw)
    write_npy((fs::path(out_dir) / "global_mean_abs_shap.npy").string(), global,
              {static_cast<std::size_t>(k), static_cast<std::size_t>(side), static_cast<std::size_t>(side)});
  return "global_mean_abs_shap.png";
}
}  // namespace

void write_batch_reports(const std::string& out_dir, const BatchReport& r) {
  std::vector<std::string> header_images;
  if (r.shap && r.explained > 0) header_images.push_back(write_global_shap(out_dir, r));
  if (!r.faithfulness.empty()) {
    write_text_atomic((fs::path(out_dir) / "faithfulness.json").string(), r.faithfulness.to_json(r.baseline_description));
    if (gnuplot_available()) {
      plot_faithfulness_curves(r.faithfulness, fmt::format("Faithfulness of the explanations ({})", r.baseline_description),
                               (fs::path(out_dir) / "faithfulness.png").string());
      header_images.push_back("faithfulness.png");
    } else {
      spdlog::warn("gnuplot (pngcairo) not found: faithfulness.png skipped; install gnuplot-nox");
    }
  }
  GalleryPage page;
  page.title = fmt::format("Explanations: {} images ({} failed)", r.explained, r.failed);
  page.class_names = r.class_names;
  page.header_images = header_images;
  page.faithfulness_method = r.faithfulness_method;
  page.panels = static_cast<int>(1 + r.methods.shap + r.methods.lime + r.methods.maps.size());
  if (!r.faithfulness.empty()) page.ranking = r.faithfulness.ranking();
  page.cards = r.cards;
  write_text_atomic((fs::path(out_dir) / "index.html").string(), gallery_html(page));
  if (r.worst_additivity > 1e-3)
    spdlog::warn("DeepSHAP additivity: worst relative error {:.3g} exceeds 1e-3", r.worst_additivity);
  // Sundararajan et al. (2017) ask for completeness within 5%.
  if (r.worst_ig_completeness > 0.05)
    spdlog::warn("integrated gradients: worst completeness error {:.3g} of |f(x) - f(b)| exceeds 5% (manifest "
                 "column ig_completeness_error): raise explain.ig_steps", r.worst_ig_completeness);
}

GalleryCard gallery_card(std::size_t index, const ExplainItem& item, const ItemRecord& r,
                         const std::vector<std::string>& names, const std::string& faithfulness_method) {
  GalleryCard card;
  card.index = static_cast<int>(index);
  card.source = item.source;
  card.image = r.summary_png;
  card.true_label = item.label >= 0 ? names[item.label] : "";
  card.predicted = r.predicted >= 0 && r.error.empty() ? names[r.predicted] : "";
  card.confidence = card.predicted.empty() ? -1.0 : r.probs[r.predicted];
  const auto it = r.faithfulness.find(faithfulness_method);
  card.faithfulness = it == r.faithfulness.end() ? NAN : it->second.insertion_auc - it->second.deletion_auc;
  card.error = r.error;
  return card;
}

}  // namespace fer::explain_detail
