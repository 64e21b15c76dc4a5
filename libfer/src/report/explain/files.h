// Private to report/explain/*.cpp: the pieces of an explanation batch's files
// that the batch (batch.cpp), its report (report.cpp), its panels (panels.cpp),
// its shards (shards.cpp) and the sanity check's files (sanity.cpp) share.
#pragma once

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "fer/common/emotions.h"
#include "fer/explain/background.h"
#include "fer/explain/explainer.h"
#include "fer/explain/faithfulness.h"
#include "fer/explain/lime.h"
#include "fer/report/explain/batch.h"
#include "fer/report/explain/gallery.h"

namespace fer::explain_detail {

constexpr int kSide = 192;  // faces are drawn at 192 px (48 px faces: 4 px per pixel)
constexpr int kTitle = 26;  // title band height

// ---- panels (panels.cpp) ----
// Faces are square (side*side uint8, the side from their size); maps and
// attributions of a face have its side.
int face_side(const std::vector<std::uint8_t>& face);
cv::Mat face_bgr(const std::vector<std::uint8_t>& face);  // the face at kSide px, BGR
cv::Mat with_title(const cv::Mat& panel, const std::string& title);
cv::Mat hconcat_padded(const std::vector<cv::Mat>& panels);
// Panels in rows of at most kSheetColumns (a summary sheet of many methods stays readable).
constexpr std::size_t kSheetColumns = 4;
cv::Mat sheet_grid(const std::vector<cv::Mat>& panels);
cv::Mat vconcat_padded(const std::vector<cv::Mat>& rows);  // rows stacked, left-aligned
cv::Mat colour_bar(double vmax, int height, bool diverging_scale);
cv::Mat shap_panel(const std::vector<std::uint8_t>& face, const float* attribution, double vmax);  // overlay + colour bar
cv::Mat attribution_overlay(const std::vector<std::uint8_t>& face, const float* attribution, double vmax);  // kSide x kSide
cv::Mat lime_panel(const std::vector<std::uint8_t>& face, const LimeExplanation& e, int top);
double percentile_abs(const float* values, std::size_t n, double q);
void write_png(const std::string& path, const cv::Mat& img);  // throws naming the path
// A short file-system-safe name: "line123" for CSV rows, the file stem for images.
std::string safe_stem(const std::string& source);

cv::Mat map_panel(const std::vector<std::uint8_t>& face, const at::Tensor& map);  // an attribution map: shap_panel's colours
// A method's name as a file stem: "gradcam++" -> "gradcam_plus_plus".
std::string method_file_stem(const std::string& method);

// ---- manifest, batch report, gallery (report.cpp) ----
// The methods whose deletion/insertion AUCs the manifest carries, in column
// order: those that ran, then "random".
std::vector<std::string> faithfulness_methods(const ExplainMethods& methods);
// The attribution maps' settings, which shards of one batch must share.
nlohmann::json attribution_settings_json(const ExplainerOptions& o);

// What one item produced (its explanation and the files written from it): a
// manifest row and a gallery card.
struct ItemRecord : FaceExplanation {
  std::string files, summary_png;  // relative to the batch's folder
};

// What the batch-level files (global SHAP maps, faithfulness, gallery) are made
// of. A shard stores its part in shard.json; the merge adds the parts up.
struct BatchReport {
  std::vector<std::string> class_names;
  ExplainMethods methods;
  bool shap = false, save_raw = false;
  std::vector<double> global_sum;  // [classes * pixels]: sum of |SHAP| over the images explained for the class
  std::vector<int> global_count;
  FaithfulnessReport faithfulness;
  std::string baseline_description, faithfulness_method;
  std::vector<GalleryCard> cards;
  int explained = 0, failed = 0;
  double worst_additivity = 0;
  double worst_ig_completeness = 0;  // integrated gradients' relative completeness error
};

std::string manifest_header(const std::vector<std::string>& names, const ExplainMethods& methods);
std::string manifest_row(std::size_t index, const ExplainItem& item, const ItemRecord& r,
                         const std::vector<std::string>& names, const ExplainMethods& methods);
GalleryCard gallery_card(std::size_t index, const ExplainItem& item, const ItemRecord& r,
                         const std::vector<std::string>& names, const std::string& faithfulness_method);
nlohmann::json report_json(const BatchReport& r);
// Adds a shard's report (report_json) to `total`; the first one sets the class names and flags.
void add_report(BatchReport& total, const nlohmann::json& part);
// The batch-level files: global SHAP maps, faithfulness.json and its plot, index.html.
void write_batch_reports(const std::string& out_dir, const BatchReport& r);

// ---- shards (shards.cpp) ----
// A shard's own files plus shard.json: which items it holds, the options that
// must agree across shards, and its part of the batch report.
void write_explain_shard(const std::string& out_dir, const std::string& checkpoint, const ExplainOptions& o,
                         const std::string& precision, std::size_t first, std::size_t count, const BatchReport& report);

}  // namespace fer::explain_detail
