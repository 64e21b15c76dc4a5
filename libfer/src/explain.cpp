#include "fer/explain.h"

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

#include "fer/background.h"
#include "fer/checkpoint.h"
#include "fer/deepshap.h"
#include "fer/faithfulness.h"
#include "fer/gallery.h"
#include "fer/inference.h"
#include "fer/io.h"
#include "fer/lime.h"
#include "fer/plot.h"
#include "fer/progress.h"
#include "fer/run_record.h"

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
    baseline_ = baseline_image(background, &baseline_description_);
    global_sum_.assign(static_cast<std::size_t>(k_) * kImagePixels, 0.0);
    global_count_.assign(k_, 0);
  }

  const std::vector<std::string>& names() const { return loaded_.meta.class_names; }
  const std::string& precision() const { return precision_; }

  ItemRecord explain(std::size_t index, const ExplainItem& item) {
    ItemRecord r;
    const fs::path dir = fs::path(out_dir_) / (fmt::format("{:05d}_", index) + safe_stem(item.source));
    fs::create_directories(dir);
    std::vector<float> image(kImagePixels);
    for (int p = 0; p < kImagePixels; ++p) image[p] = item.pixels[p] / 255.0f;
    predict(image, r);
    const cv::Mat face = face_bgr(item.pixels.data());
    add_file(r, dir / "face.png", face);
    std::vector<cv::Mat> sheet{with_title(face, fmt::format("true: {}  pred: {} {:.2f}",
                                                            item.label >= 0 ? names()[item.label] : "?",
                                                            names()[r.predicted], r.probs[r.predicted]))};
    std::vector<float> shap_map, lime_scores;
    if (shap_) sheet.push_back(explain_shap(item, image, dir, r, &shap_map));
    if (do_lime_) sheet.push_back(explain_lime(index, item, image, dir, r, &lime_scores));
    if (options_.faithfulness) {
      if (!shap_map.empty()) measure_faithfulness("shap", image, shap_map, r);
      if (!lime_scores.empty()) measure_faithfulness("lime", image, lime_scores, r);
      measure_faithfulness("random", image, random_pixel_scores(kImagePixels, options_.seed + index), r);
    }
    add_file(r, dir / "summary.png", hconcat_padded(sheet));
    r.summary_png = fs::relative(dir / "summary.png", out_dir_).generic_string();
    return r;
  }

  // The batch-level files: global SHAP maps, faithfulness.json and its plot, index.html.
  void write_reports(const std::vector<GalleryCard>& cards, ExplainSummary& summary) {
    summary.worst_additivity_error = worst_additivity_;
    std::vector<std::string> header_images;
    if (shap_ && summary.explained > 0) header_images.push_back(write_global_shap());
    if (!faithfulness_.empty()) {
      write_text_atomic((fs::path(out_dir_) / "faithfulness.json").string(), faithfulness_.to_json(baseline_description_));
      if (gnuplot_available()) {
        plot_faithfulness_curves(faithfulness_, fmt::format("Faithfulness of the explanations ({})", baseline_description_),
                                 (fs::path(out_dir_) / "faithfulness.png").string());
        header_images.push_back("faithfulness.png");
      } else {
        spdlog::warn("gnuplot (pngcairo) not found: faithfulness.png skipped; install gnuplot-nox");
      }
    }
    GalleryPage page;
    page.title = fmt::format("Explanations: {} images ({} failed)", summary.explained, summary.failed);
    page.class_names = names();
    page.header_images = header_images;
    page.faithfulness_method = faithfulness_method();
    page.cards = cards;
    write_text_atomic((fs::path(out_dir_) / "index.html").string(), gallery_html(page));
    if (worst_additivity_ > 1e-3)
      spdlog::warn("DeepSHAP additivity: worst relative error {:.3g} exceeds 1e-3", worst_additivity_);
  }

  // The method a gallery card's faithfulness score comes from.
  std::string faithfulness_method() const {
    if (!options_.faithfulness) return "";
    return shap_ ? "shap" : "lime";
  }

 private:
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
  cv::Mat explain_shap(const ExplainItem& item, const std::vector<float>& image, const fs::path& dir, ItemRecord& r,
                       std::vector<float>* predicted_map) {
    const auto result = shap_->explain(torch::tensor(image).view({1, kImageSize, kImageSize}), r.classes);
    r.additivity = result.additivity_error;
    worst_additivity_ = std::max(worst_additivity_, r.additivity);
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
      for (int p = 0; p < kImagePixels; ++p) global_sum_[cls * kImagePixels + p] += std::abs(map[p]);
      ++global_count_[cls];
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
    faithfulness_.add(method, curves);
    r.faithfulness[method] = std::move(curves);
  }

  // Which regions matter for each emotion: mean |SHAP| over the images explained for it.
  std::string write_global_shap() const {
    std::vector<float> global(global_sum_.size(), 0.0f);
    for (int c = 0; c < k_; ++c)
      for (int p = 0; p < kImagePixels; ++p)
        if (global_count_[c])
          global[c * kImagePixels + p] = static_cast<float>(global_sum_[c * kImagePixels + p] / global_count_[c]);
    const double vmax = std::max(1e-12, percentile_abs(global.data(), global.size(), 0.999));
    std::vector<cv::Mat> panels;
    for (int c = 0; c < k_; ++c) {
      cv::Mat heat(kImageSize, kImageSize, CV_8U);
      for (int p = 0; p < kImagePixels; ++p)
        heat.data[p] = static_cast<uchar>(std::clamp(global[c * kImagePixels + p] / vmax, 0.0, 1.0) * 255);
      cv::Mat big, colour;
      cv::resize(heat, big, {kSide, kSide}, 0, 0, cv::INTER_NEAREST);
      cv::applyColorMap(big, colour, cv::COLORMAP_INFERNO);
      if (!global_count_[c]) colour.setTo(cv::Scalar(235, 235, 235));
      panels.push_back(with_title(colour, fmt::format("{} (n={})", names()[c], global_count_[c])));
    }
    panels.push_back(with_title(colour_bar(vmax, kSide, false), "mean |SHAP|"));
    write_png((fs::path(out_dir_) / "global_mean_abs_shap.png").string(), hconcat_padded(panels));
    if (options_.save_raw)
      write_npy((fs::path(out_dir_) / "global_mean_abs_shap.npy").string(), global,
                {static_cast<std::size_t>(k_), 48, 48});
    return "global_mean_abs_shap.png";
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
  std::string baseline_description_;
  std::string precision_;  // of predictor_
  FaithfulnessReport faithfulness_;
  std::vector<double> global_sum_;
  std::vector<int> global_count_;
  double worst_additivity_ = 0;
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

ExplainSummary explain_batch(const std::string& checkpoint, const std::vector<ExplainItem>& items,
                             const BackgroundSummary& background, const std::string& out_dir,
                             const ExplainOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  fs::create_directories(out_dir);
  BatchExplainer explainer(checkpoint, background, out_dir, options);
  const auto& names = explainer.names();
  ExplainSummary summary;
  summary.precision = explainer.precision();
  summary.manifest = (fs::path(out_dir) / "manifest.csv").string();
  std::ofstream manifest(summary.manifest);
  manifest << manifest_header(names);
  std::vector<GalleryCard> cards;  // a few strings per image: 10,000 images stay well under 10 MB

  std::unique_ptr<ProgressBar> bar;
  if (options.progress) bar = std::make_unique<ProgressBar>(static_cast<std::int64_t>(items.size()), "explain");
  for (std::size_t i = 0; i < items.size(); ++i) {
    ItemRecord r;
    r.error = items[i].error;
    if (r.error.empty()) {
      try {
        r = explainer.explain(i, items[i]);
        ++summary.explained;
      } catch (const std::exception& e) {
        r = ItemRecord{};
        r.error = e.what();
      }
    }
    if (!r.error.empty()) {
      ++summary.failed;
      spdlog::warn("explain: {}: {}", items[i].source, r.error);
    }
    manifest << manifest_row(i, items[i], r, names) << std::flush;
    cards.push_back(gallery_card(i, items[i], r, names, explainer.faithfulness_method()));
    if (bar) bar->advance(1, 1, summary.failed ? fmt::format("{} failed", summary.failed) : "");
  }
  if (bar) bar->finish();
  if (!manifest) throw std::runtime_error("cannot write '" + summary.manifest + "'");
  explainer.write_reports(cards, summary);
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return summary;
}

}  // namespace fer
