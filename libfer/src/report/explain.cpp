#include "fer/report/explain.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <sstream>

#include "fer/common/io.h"
#include "fer/data/sampler.h"
#include "fer/explain/background.h"
#include "fer/explain/deepshap.h"
#include "fer/explain/faithfulness.h"
#include "fer/explain/lime.h"
#include "fer/inference/inference.h"
#include "fer/models/checkpoint.h"
#include "fer/report/gallery.h"
#include "fer/report/plot.h"
#include "fer/report/progress.h"
#include "fer/report/run_record.h"

namespace fer {
namespace fs = std::filesystem;

namespace {

constexpr int kScale = 4;  // 48 px faces are drawn at 192 px
constexpr int kSide = kImageSize * kScale;
constexpr int kTitle = 26;  // title band height

bool is_csv(const fs::path& p) {
  std::string name = p.filename().string();
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return name.size() > 4 && (name.rfind(".csv") == name.size() - 4 || name.rfind(".csv.gz") == name.size() - 7);
}

ExplainItem read_image_item(const fs::path& path, const FaceDetector* detector) {
  ExplainItem item;
  item.source = path.string();
  try {
    if (detector) {
      const auto face = detect_largest_face(*detector, item.source);
      if (!face.found) item.error = item.source + ": no face detected";
      item.pixels = face.pixels;
    } else {
      item.pixels = read_face_image(item.source);
    }
  } catch (const DataError& e) {
    item.error = e.what();
    return item;
  }
  item.label = emotion_index(path.parent_path().filename().string());
  return item;
}

// ---- drawing -------------------------------------------------------------

cv::Mat face_bgr(const std::uint8_t* pixels) {
  cv::Mat gray(kImageSize, kImageSize, CV_8U, const_cast<std::uint8_t*>(pixels));
  cv::Mat big, bgr;
  cv::resize(gray, big, {kSide, kSide}, 0, 0, cv::INTER_CUBIC);
  cv::cvtColor(big, bgr, cv::COLOR_GRAY2BGR);
  return bgr;
}

cv::Mat with_title(const cv::Mat& panel, const std::string& title) {
  cv::Mat out(panel.rows + kTitle, panel.cols, CV_8UC3, cv::Scalar(255, 255, 255));
  panel.copyTo(out(cv::Rect(0, kTitle, panel.cols, panel.rows)));
  cv::putText(out, title, {4, kTitle - 8}, cv::FONT_HERSHEY_SIMPLEX, 0.45, cv::Scalar(20, 20, 20), 1, cv::LINE_AA);
  return out;
}

cv::Mat hconcat_padded(const std::vector<cv::Mat>& panels) {
  int height = 0, width = 0;
  for (const auto& p : panels) {
    height = std::max(height, p.rows);
    width += p.cols + 8;
  }
  cv::Mat out(height, width, CV_8UC3, cv::Scalar(255, 255, 255));
  int x = 0;
  for (const auto& p : panels) {
    p.copyTo(out(cv::Rect(x, 0, p.cols, p.rows)));
    x += p.cols + 8;
  }
  return out;
}

// Diverging red (positive) / blue (negative) colour for t in [-1, 1].
cv::Vec3b diverging(double t) {
  t = std::clamp(t, -1.0, 1.0);
  const double a = std::abs(t);
  const cv::Vec3d white(255, 255, 255);
  const cv::Vec3d end = t >= 0 ? cv::Vec3d(40, 40, 214) : cv::Vec3d(214, 100, 30);  // BGR
  const cv::Vec3d c = white * (1 - a) + end * a;
  return cv::Vec3b(static_cast<uchar>(c[0]), static_cast<uchar>(c[1]), static_cast<uchar>(c[2]));
}

cv::Mat colour_bar(double vmax, int height, bool diverging_scale) {
  cv::Mat bar(height, 100, CV_8UC3, cv::Scalar(255, 255, 255));
  for (int r = 0; r < height; ++r) {
    const double t = 1.0 - 2.0 * r / (height - 1);  // +1 at the top
    cv::Vec3b colour;
    if (diverging_scale) {
      colour = diverging(t);
    } else {
      cv::Mat v(1, 1, CV_8U, cv::Scalar(static_cast<int>((t + 1) / 2 * 255))), c;
      cv::applyColorMap(v, c, cv::COLORMAP_INFERNO);
      colour = c.at<cv::Vec3b>(0, 0);
    }
    bar(cv::Rect(2, r, 14, 1)).setTo(cv::Scalar(colour[0], colour[1], colour[2]));
  }
  cv::rectangle(bar, cv::Rect(2, 0, 14, height), cv::Scalar(80, 80, 80));
  char buf[32];
  auto label = [&](double v, int y) {
    std::snprintf(buf, sizeof buf, "%+.2g", v);
    cv::putText(bar, buf, {19, y}, cv::FONT_HERSHEY_SIMPLEX, 0.38, cv::Scalar(20, 20, 20), 1, cv::LINE_AA);
  };
  label(vmax, 11);
  label(diverging_scale ? 0.0 : vmax / 2, height / 2 + 4);
  label(diverging_scale ? -vmax : 0.0, height - 3);
  return bar;
}

// The face faded under a red/blue attribution map (nearest upscaling: one block per pixel).
cv::Mat shap_panel(const std::uint8_t* pixels, const float* attribution, double vmax) {
  cv::Mat out(kSide, kSide, CV_8UC3);
  for (int r = 0; r < kSide; ++r)
    for (int c = 0; c < kSide; ++c) {
      const int p = (r / kScale) * kImageSize + c / kScale;
      const double t = vmax > 0 ? attribution[p] / vmax : 0.0;
      const double a = std::min(1.0, std::abs(t)) * 0.85;
      const double face = 255 - 0.35 * (255 - pixels[p]);  // faint face on white
      const cv::Vec3b col = diverging(t);
      out.at<cv::Vec3b>(r, c) =
          cv::Vec3b(static_cast<uchar>(face * (1 - a) + col[0] * a), static_cast<uchar>(face * (1 - a) + col[1] * a),
                    static_cast<uchar>(face * (1 - a) + col[2] * a));
    }
  return hconcat_padded({out, colour_bar(vmax, kSide, true)});
}

// Top positive superpixels tinted green, top negative red, every boundary yellow.
cv::Mat lime_panel(const std::uint8_t* pixels, const LimeExplanation& e, int top) {
  cv::Mat out = face_bgr(pixels);
  const auto pos = e.top_positive(top), neg = e.top_negative(top);
  auto seg_at = [&](int r, int c) { return e.segments[(r / kScale) * kImageSize + c / kScale]; };
  for (int r = 0; r < kSide; ++r)
    for (int c = 0; c < kSide; ++c) {
      const int s = seg_at(r, c);
      auto& px = out.at<cv::Vec3b>(r, c);
      if (std::find(pos.begin(), pos.end(), s) != pos.end()) px = px * 0.55 + cv::Vec3b(0, 200, 0) * 0.45;
      else if (std::find(neg.begin(), neg.end(), s) != neg.end()) px = px * 0.55 + cv::Vec3b(0, 0, 220) * 0.45;
      const bool edge = (r + 1 < kSide && seg_at(r + 1, c) != s) || (c + 1 < kSide && seg_at(r, c + 1) != s);
      if (edge) px = cv::Vec3b(0, 230, 255);
    }
  return out;
}

double percentile_abs(const float* values, std::size_t n, double q) {
  std::vector<float> a(values, values + n);
  for (auto& v : a) v = std::abs(v);
  if (a.empty()) return 0;
  const auto k = static_cast<std::size_t>(std::min<double>(a.size() - 1, std::floor(q * (a.size() - 1))));
  std::nth_element(a.begin(), a.begin() + k, a.end());
  return a[k];
}

void write_png(const std::string& path, const cv::Mat& img) {
  if (!cv::imwrite(path, img)) throw std::runtime_error("cannot write '" + path + "'");
}

// A short file-system-safe name: "line123" for CSV rows, the file stem for images.
std::string safe_stem(const std::string& source) {
  const auto colon = source.rfind(':');
  std::string stem = (colon != std::string::npos && colon + 1 < source.size() &&
                      source.find_first_not_of("0123456789", colon + 1) == std::string::npos)
                         ? "line" + source.substr(colon + 1)
                         : fs::path(source).stem().string();
  for (auto& ch : stem)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_') ch = '_';
  return stem.substr(0, 40);
}

}  // namespace

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
      throw std::invalid_argument("--classes " + text + ": K must be in 1.." + std::to_string(num_classes));
  } else {
    throw std::invalid_argument("--classes '" + text + "' (expected all, pred or top:K)");
  }
  return s;
}


std::vector<ExplainItem> collect_explain_inputs(const std::vector<std::string>& inputs, const std::string& split,
                                                std::size_t limit, const FaceDetector* detector) {
  std::vector<ExplainItem> items;
  auto full = [&] { return limit > 0 && items.size() >= limit; };
  for (const auto& input : inputs) {
    if (full()) break;
    const fs::path path(input);
    if (!fs::exists(path)) throw DataError("input '" + input + "' does not exist");
    if (fs::is_directory(path)) {
      std::vector<fs::path> files;
      for (const auto& e : fs::recursive_directory_iterator(path))
        if (e.is_regular_file() && is_image_file(e.path().string())) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (const auto& f : files) {
        if (full()) break;
        items.push_back(read_image_item(f, detector));
      }
    } else if (is_csv(path)) {
      const auto splits = load_fer2013_csv(input);
      const Dataset& d = split_of(splits, parse_split_name(split));
      if (d.size() == 0) throw DataError(input + ": the " + split + " split is empty");
      for (std::size_t i = 0; i < d.size() && !full(); ++i)
        items.push_back({d.sources[i], std::vector<std::uint8_t>(d.image(i), d.image(i) + kImagePixels),
                         static_cast<int>(d.labels[i]), ""});
    } else {
      items.push_back(read_image_item(path, detector));
    }
  }
  return items;
}

Dataset sample_background(const Dataset& pool, std::size_t count, std::uint64_t seed) {
  std::vector<std::size_t> order(pool.size());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  Dataset out;
  for (std::size_t i = 0; i < std::min(count, order.size()); ++i)
    out.add(pool.image(order[i]), pool.labels[order[i]], pool.sources[order[i]]);
  return out;
}

namespace {

// The methods whose deletion/insertion AUCs the manifest carries, in column order.
const std::vector<std::string> kFaithfulnessMethods{"shap", "lime", "random"};

// What one item produced: a manifest row and a gallery card.
struct ItemRecord {
  std::string error, files, summary_png;
  int predicted = -1;
  std::vector<float> probs;
  std::vector<int64_t> classes;
  double additivity = NAN, lime_score = NAN;
  int lime_label = -1, lime_segments = 0;
  std::map<std::string, FaithfulnessCurves> faithfulness;
};

std::string manifest_header(const std::vector<std::string>& names) {
  std::vector<std::string> h = {"index", "source", "status", "error", "true", "predicted"};
  for (const auto& n : names) h.push_back("p_" + n);
  for (const char* c : {"shap_classes", "shap_additivity_error", "lime_label", "lime_score", "lime_segments"}) h.push_back(c);
  for (const auto& m : kFaithfulnessMethods) {
    h.push_back(m + "_deletion_auc");
    h.push_back(m + "_insertion_auc");
  }
  h.push_back("files");
  return csv_row(h) + "\n";
}

std::string optional_number(double v, const char* format) {
  return std::isnan(v) ? std::string() : fmt::format(fmt::runtime(format), v);
}

std::string manifest_row(std::size_t index, const ExplainItem& item, const ItemRecord& r,
                         const std::vector<std::string>& names) {
  const auto name_of = [&](int c) { return c >= 0 ? names[c] : std::string(); };
  std::vector<std::string> row = {std::to_string(index), item.source, r.error.empty() ? "ok" : "error", r.error,
                                  name_of(static_cast<int>(item.label)), name_of(r.predicted)};
  for (std::size_t c = 0; c < names.size(); ++c) row.push_back(r.probs.empty() ? "" : fmt::format("{:.6f}", r.probs[c]));
  std::string class_list;
  for (auto c : r.classes) class_list += (class_list.empty() ? "" : ";") + names[c];
  row.insert(row.end(), {class_list, optional_number(r.additivity, "{:.3g}"), name_of(r.lime_label),
                         optional_number(r.lime_score, "{:.4f}"), r.lime_segments ? std::to_string(r.lime_segments) : ""});
  for (const auto& m : kFaithfulnessMethods) {
    const auto it = r.faithfulness.find(m);
    const bool has = it != r.faithfulness.end();
    row.push_back(has ? fmt::format("{:.4f}", it->second.deletion_auc) : "");
    row.push_back(has ? fmt::format("{:.4f}", it->second.insertion_auc) : "");
  }
  row.push_back(r.files);
  return csv_row(row) + "\n";
}

// The faithfulness baseline: the (weighted) mean reference image, else mid-grey.
std::vector<float> baseline_image(const BackgroundSummary& background, std::string* description) {
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

// What the batch-level files (global SHAP maps, faithfulness, gallery) are made
// of. A shard stores its part in shard.json; the merge adds the parts up.
struct BatchReport {
  std::vector<std::string> class_names;
  bool shap = false, save_raw = false;
  std::vector<double> global_sum;  // [classes * pixels]: sum of |SHAP| over the images explained for the class
  std::vector<int> global_count;
  FaithfulnessReport faithfulness;
  std::string baseline_description, faithfulness_method;
  std::vector<GalleryCard> cards;
  int explained = 0, failed = 0;
  double worst_additivity = 0;
};

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

nlohmann::json report_json(const BatchReport& r) {
  nlohmann::json cards = nlohmann::json::array();
  for (const auto& c : r.cards) cards.push_back(manifest_card_json(c));
  return {{"class_names", r.class_names},  {"shap", r.shap},
          {"save_raw", r.save_raw},        {"global_sum", r.global_sum},
          {"global_count", r.global_count}, {"faithfulness", r.faithfulness.state_json()},
          {"baseline", r.baseline_description}, {"faithfulness_method", r.faithfulness_method},
          {"cards", cards},                {"explained", r.explained},
          {"failed", r.failed},            {"worst_additivity", r.worst_additivity}};
}

// Adds a shard's report (report_json) to `total`; the first one sets the class names and flags.
void add_report(BatchReport& total, const nlohmann::json& part) {
  if (total.class_names.empty()) {
    total.class_names = part.at("class_names").get<std::vector<std::string>>();
    total.shap = part.at("shap").get<bool>();
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
}

// Which regions matter for each emotion: mean |SHAP| over the images explained for it.
std::string write_global_shap(const std::string& out_dir, const BatchReport& r) {
  const int k = static_cast<int>(r.class_names.size());
  std::vector<float> global(r.global_sum.size(), 0.0f);
  for (int c = 0; c < k; ++c)
    for (int p = 0; p < kImagePixels; ++p)
      if (r.global_count[c])
        global[c * kImagePixels + p] = static_cast<float>(r.global_sum[c * kImagePixels + p] / r.global_count[c]);
  const double vmax = std::max(1e-12, percentile_abs(global.data(), global.size(), 0.999));
  std::vector<cv::Mat> panels;
  for (int c = 0; c < k; ++c) {
    cv::Mat heat(kImageSize, kImageSize, CV_8U);
    for (int p = 0; p < kImagePixels; ++p)
      heat.data[p] = static_cast<uchar>(std::clamp(global[c * kImagePixels + p] / vmax, 0.0, 1.0) * 255);
    cv::Mat big, colour;
    cv::resize(heat, big, {kSide, kSide}, 0, 0, cv::INTER_NEAREST);
    cv::applyColorMap(big, colour, cv::COLORMAP_INFERNO);
    if (!r.global_count[c]) colour.setTo(cv::Scalar(235, 235, 235));
    panels.push_back(with_title(colour, fmt::format("{} (n={})", r.class_names[c], r.global_count[c])));
  }
  panels.push_back(with_title(colour_bar(vmax, kSide, false), "mean |SHAP|"));
  write_png((fs::path(out_dir) / "global_mean_abs_shap.png").string(), hconcat_padded(panels));
  if (r.save_raw)
    write_npy((fs::path(out_dir) / "global_mean_abs_shap.npy").string(), global, {static_cast<std::size_t>(k), 48, 48});
  return "global_mean_abs_shap.png";
}

// The batch-level files: global SHAP maps, faithfulness.json and its plot, index.html.
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
  page.cards = r.cards;
  write_text_atomic((fs::path(out_dir) / "index.html").string(), gallery_html(page));
  if (r.worst_additivity > 1e-3)
    spdlog::warn("DeepSHAP additivity: worst relative error {:.3g} exceeds 1e-3", r.worst_additivity);
}

class BatchExplainer {
 public:
  BatchExplainer(const std::string& checkpoint, const BackgroundSummary& background, std::string out_dir,
                 const ExplainOptions& options)
      : out_dir_(std::move(out_dir)), options_(options) {
    do_shap_ = options.method == "shap" || options.method == "both";
    do_lime_ = options.method == "lime" || options.method == "both";
    if (!do_shap_ && !do_lime_)
      throw std::invalid_argument("--method '" + options.method + "' (expected shap, lime or both)");
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
      if (options.shap_precision != "fp32" && options.shap_precision != "bf16")
        throw std::invalid_argument("--shap-precision '" + options.shap_precision + "' (expected fp32 or bf16)");
      shap_options.bf16_convs = options.shap_precision == "bf16";
      shap_options.max_rows_per_pass = options.shap_pass_rows;
      shap_ = std::make_unique<DeepShapExplainer>(loaded_.model, background.centroids, device, shap_options);
    }
    lime_options_.num_samples = options.lime_samples;
    const auto precision = resolve_inference_precision(options.precision, device);
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
        auto results = shap_->explain_batch(batch, classes);
        for (std::size_t j = 0; j < ready.size(); ++j) shap_results[ready[j]] = std::move(results[j]);
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

}  // namespace

// A shard's own files plus shard.json: which items it holds, the options that
// must agree across shards, and its part of the batch report.
void write_explain_shard(const std::string& out_dir, const std::string& checkpoint, const ExplainOptions& o,
                         const std::string& precision, std::size_t first, std::size_t count, const BatchReport& report) {
  const nlohmann::json identity = {{"checkpoint", checkpoint},   {"shards", o.shard.count},  {"total_items", o.total_items},
                                   {"method", o.method},         {"classes", o.classes},     {"probabilities", o.probabilities},
                                   {"lime_samples", o.lime_samples}, {"top_superpixels", o.top_superpixels},
                                   {"seed", o.seed},             {"save_raw", o.save_raw},   {"faithfulness", o.faithfulness},
                                   {"faithfulness_steps", o.faithfulness_steps}, {"precision", precision},
                                   {"shap_precision", o.shap_precision}};
  const nlohmann::json record = {{"shard", o.shard.index}, {"begin", first}, {"end", first + count},
                                 {"identity", identity},   {"report", report_json(report)}};
  write_text_atomic((fs::path(out_dir) / "shard.json").string(), record.dump() + "\n");
}

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

namespace {

struct ExplainShard {
  std::string dir;
  nlohmann::json record;
};

// Shards 0..N-1 of one batch, sorted, each once, with the same identity and contiguous items.
std::vector<ExplainShard> load_explain_shards(const std::vector<std::string>& dirs) {
  std::vector<ExplainShard> shards;
  for (const auto& dir : dirs) {
    const fs::path path = fs::path(dir) / "shard.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error(dir + " is not an explanation shard (no shard.json; write one with fer-explain --shard K/N)");
    try {
      shards.push_back({dir, nlohmann::json::parse(in)});
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error(path.string() + ": " + e.what());
    }
  }
  std::sort(shards.begin(), shards.end(), [](const ExplainShard& a, const ExplainShard& b) {
    return a.record.at("shard").get<int>() < b.record.at("shard").get<int>();
  });
  const auto& identity = shards.front().record.at("identity");
  std::vector<ShardExtent> extents;
  for (const auto& shard : shards) {
    if (shard.record.at("identity") != identity)
      throw std::runtime_error(shard.dir + " belongs to another batch than " + shards.front().dir +
                               " (checkpoint, shard count, item count or options differ)");
    extents.push_back({shard.dir, shard.record.at("shard").get<int>(), shard.record.at("begin").get<std::size_t>(),
                       shard.record.at("end").get<std::size_t>()});
  }
  check_shard_sequence(extents, identity.at("shards").get<int>(), identity.at("total_items").get<std::size_t>(), "items");
  return shards;
}

// Hard links (same file system) or copies of a shard's per-item folders.
void link_item_folders(const fs::path& shard_dir, const fs::path& out_dir) {
  for (const auto& entry : fs::directory_iterator(shard_dir)) {
    if (!entry.is_directory()) continue;
    const fs::path target = out_dir / entry.path().filename();
    fs::create_directories(target);
    for (const auto& file : fs::directory_iterator(entry.path())) {
      const fs::path to = target / file.path().filename();
      std::error_code ec;
      fs::remove(to);
      fs::create_hard_link(file.path(), to, ec);
      if (ec) fs::copy_file(file.path(), to, fs::copy_options::overwrite_existing);
    }
  }
}

}  // namespace

ExplainSummary merge_explanation_shards(const std::vector<std::string>& shard_dirs, const std::string& out_dir) {
  if (shard_dirs.empty()) throw std::invalid_argument("--merge needs the shard directories");
  const auto started = std::chrono::steady_clock::now();
  const auto shards = load_explain_shards(shard_dirs);
  fs::create_directories(out_dir);
  BatchReport report;
  std::string manifest_text;
  for (const auto& shard : shards) {
    add_report(report, shard.record.at("report"));
    std::ifstream in(fs::path(shard.dir) / "manifest.csv");
    std::string line;
    std::getline(in, line);  // the header, once
    if (manifest_text.empty()) manifest_text = line + "\n";
    std::ostringstream rest;
    rest << in.rdbuf();
    manifest_text += rest.str();
    if (fs::weakly_canonical(shard.dir) != fs::weakly_canonical(out_dir)) link_item_folders(shard.dir, out_dir);
  }
  ExplainSummary summary;
  summary.manifest = (fs::path(out_dir) / "manifest.csv").string();
  write_text_atomic(summary.manifest, manifest_text);
  write_batch_reports(out_dir, report);
  summary.explained = report.explained;
  summary.failed = report.failed;
  summary.worst_additivity_error = report.worst_additivity;
  summary.precision = shards.front().record.at("identity").at("precision").get<std::string>();
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return summary;
}

}  // namespace fer
