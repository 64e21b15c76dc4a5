#include "fer/explain.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>

#include "fer/background.h"
#include "fer/checkpoint.h"
#include "fer/deepshap.h"
#include "fer/inference.h"
#include "fer/lime.h"
#include "fer/progress.h"

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

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
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

void write_npy(const std::string& path, const std::vector<float>& data, const std::vector<std::size_t>& shape) {
  std::vector<int64_t> sizes(shape.begin(), shape.end());
  std::size_t count = 1;
  for (auto d : shape) count *= d;
  if (count != data.size()) throw std::invalid_argument("write_npy: shape does not match the data size");
  const auto values = torch::from_blob(const_cast<float*>(data.data()), sizes, torch::kFloat32);
  std::ofstream out(path, std::ios::binary);
  const std::string bytes = npy_bytes(values);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write '" + path + "'");
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

ExplainSummary explain_batch(const std::string& checkpoint, const std::vector<ExplainItem>& items,
                             const BackgroundSummary& background, const std::string& out_dir,
                             const ExplainOptions& options) {
  const bool do_shap = options.method == "shap" || options.method == "both";
  const bool do_lime = options.method == "lime" || options.method == "both";
  if (!do_shap && !do_lime) throw std::invalid_argument("--method '" + options.method + "' (expected shap, lime or both)");
  if (do_shap && !(background.centroids.defined() && background.centroids.size(0) > 0))
    throw std::invalid_argument("DeepSHAP needs a non-empty background set");
  const auto started = std::chrono::steady_clock::now();
  configure_cpu_runtime(options.threads);
  const auto device = resolve_device(options.device);
  auto loaded = load_checkpoint(checkpoint, device);
  const auto& names = loaded.meta.class_names;
  const int k = static_cast<int>(names.size());
  const auto selection = parse_class_selection(options.classes, k);
  fs::create_directories(out_dir);

  std::unique_ptr<DeepShapExplainer> shap;
  if (do_shap) {
    DeepShapOptions shap_options;
    shap_options.explain_probabilities = options.probabilities;
    shap_options.background_weights = background.weights;
    shap = std::make_unique<DeepShapExplainer>(loaded.model, background.centroids, device, shap_options);
  }
  LimeOptions lime_options;
  lime_options.num_samples = options.lime_samples;
  const auto lime_precision = parse_precision(options.precision);
  check_precision_supported(lime_precision, device);
  const BatchPredictor predictor =
      probability_predictor(*loaded.model, device, lime_precision, loaded.meta.model.input_size);

  std::vector<double> global_sum(static_cast<std::size_t>(k) * kImagePixels, 0.0);
  std::vector<int> global_count(k, 0);
  std::vector<double> mean_face(kImagePixels, 0.0);
  ExplainSummary summary;
  const std::string manifest_path = (fs::path(out_dir) / "manifest.csv").string();
  std::ofstream manifest(manifest_path);
  manifest << "index,source,status,error,true,predicted";
  for (const auto& n : names) manifest << ",p_" << n;
  manifest << ",shap_classes,shap_additivity_error,lime_label,lime_score,lime_segments,files\n";

  std::unique_ptr<ProgressBar> bar;
  if (options.progress) bar = std::make_unique<ProgressBar>(static_cast<std::int64_t>(items.size()), "explain");
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto& item = items[i];
    std::string status = "ok", error = item.error, files;
    std::vector<float> probs;
    std::vector<int64_t> classes;
    double additivity = NAN, lime_score = NAN;
    int lime_label = -1, lime_segments = 0, predicted = -1;
    if (error.empty()) {
      try {
        const fs::path dir = fs::path(out_dir) / (fmt::format("{:05d}_", i) + safe_stem(item.source));
        fs::create_directories(dir);
        std::vector<float> image(kImagePixels);
        for (int p = 0; p < kImagePixels; ++p) image[p] = item.pixels[p] / 255.0f;
        probs = predictor(image, 1);
        std::vector<int64_t> order(k);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return probs[a] > probs[b]; });
        predicted = static_cast<int>(order[0]);
        if (selection.kind == ClassSelection::all) {
          classes.resize(k);
          std::iota(classes.begin(), classes.end(), 0);
        } else {
          classes.assign(order.begin(), order.begin() + (selection.kind == ClassSelection::pred ? 1 : selection.k));
        }

        auto add_file = [&](const fs::path& p, const cv::Mat& img) {
          write_png(p.string(), img);
          files += (files.empty() ? "" : ";") + fs::relative(p, out_dir).string();
        };
        const cv::Mat face = face_bgr(item.pixels.data());
        add_file(dir / "face.png", face);
        for (int p = 0; p < kImagePixels; ++p) mean_face[p] += item.pixels[p];

        cv::Mat shap_pred_panel, lime_img;
        if (shap) {
          const auto r = shap->explain(torch::tensor(image).view({1, kImageSize, kImageSize}), classes);
          additivity = r.additivity_error;
          summary.worst_additivity_error = std::max(summary.worst_additivity_error, additivity);
          const auto attr = r.attributions.contiguous();
          const float* a = attr.data_ptr<float>();
          const double vmax = std::max(1e-12, percentile_abs(a, attr.numel(), 0.999));
          for (std::size_t c = 0; c < classes.size(); ++c) {
            const float* map = a + c * kImagePixels;
            const auto cls = classes[c];
            const cv::Mat panel = with_title(shap_panel(item.pixels.data(), map, vmax),
                                             fmt::format("SHAP {} (p={:.2f})", names[cls], probs[cls]));
            add_file(dir / ("shap_" + names[cls] + ".png"), panel);
            if (cls == predicted) shap_pred_panel = panel;
            for (int p = 0; p < kImagePixels; ++p) global_sum[cls * kImagePixels + p] += std::abs(map[p]);
            ++global_count[cls];
          }
          if (options.save_raw) {
            const fs::path npy = dir / "shap.npy";
            write_npy(npy.string(), std::vector<float>(a, a + attr.numel()), {classes.size(), 48, 48});
            files += ";" + fs::relative(npy, out_dir).string();
          }
        }
        if (do_lime) {
          lime_options.seed = options.seed + i;
          const auto e = explain_lime(image, kImageSize, kImageSize, predictor, predicted, lime_options);
          lime_score = e.score;
          lime_label = e.label;
          lime_segments = e.num_segments;
          lime_img = with_title(lime_panel(item.pixels.data(), e, options.top_superpixels),
                                fmt::format("LIME {} (R2={:.2f})", names[e.label], e.score));
          add_file(dir / "lime.png", lime_img);
        }
        std::vector<cv::Mat> sheet{with_title(face, fmt::format("true: {}  pred: {} {:.2f}",
                                                                item.label >= 0 ? names[item.label] : "?",
                                                                names[predicted], probs[predicted]))};
        if (!shap_pred_panel.empty()) sheet.push_back(shap_pred_panel);
        if (!lime_img.empty()) sheet.push_back(lime_img);
        add_file(dir / "summary.png", hconcat_padded(sheet));
        ++summary.explained;
      } catch (const std::exception& e) {
        error = e.what();
      }
    }
    if (!error.empty()) {
      status = "error";
      ++summary.failed;
      spdlog::warn("explain: {}: {}", item.source, error);
    }
    manifest << i << "," << csv_field(item.source) << "," << status << "," << csv_field(error) << ","
             << (item.label >= 0 ? names[item.label] : "") << "," << (predicted >= 0 ? names[predicted] : "");
    for (int c = 0; c < k; ++c) manifest << "," << (probs.empty() ? "" : fmt::format("{:.6f}", probs[c]));
    std::string class_list;
    for (auto c : classes) class_list += (class_list.empty() ? "" : ";") + names[c];
    manifest << "," << class_list << "," << (std::isnan(additivity) ? "" : fmt::format("{:.3g}", additivity)) << ","
             << (lime_label >= 0 ? names[lime_label] : "") << ","
             << (std::isnan(lime_score) ? "" : fmt::format("{:.4f}", lime_score)) << ","
             << (lime_segments ? std::to_string(lime_segments) : "") << "," << csv_field(files) << "\n";
    manifest.flush();
    if (bar) bar->advance(1, 1, summary.failed ? fmt::format("{} failed", summary.failed) : "");
  }
  if (bar) bar->finish();

  if (shap && summary.explained > 0) {
    // Which regions matter for each emotion: mean |SHAP| over the images explained for it.
    std::vector<float> global(global_sum.size(), 0.0f);
    for (int c = 0; c < k; ++c)
      for (int p = 0; p < kImagePixels; ++p)
        if (global_count[c]) global[c * kImagePixels + p] = static_cast<float>(global_sum[c * kImagePixels + p] / global_count[c]);
    const double vmax = std::max(1e-12, percentile_abs(global.data(), global.size(), 0.999));
    std::vector<cv::Mat> panels;
    for (int c = 0; c < k; ++c) {
      cv::Mat heat(kImageSize, kImageSize, CV_8U);
      for (int p = 0; p < kImagePixels; ++p)
        heat.data[p] = static_cast<uchar>(std::clamp(global[c * kImagePixels + p] / vmax, 0.0, 1.0) * 255);
      cv::Mat big, colour;
      cv::resize(heat, big, {kSide, kSide}, 0, 0, cv::INTER_NEAREST);
      cv::applyColorMap(big, colour, cv::COLORMAP_INFERNO);
      if (!global_count[c]) colour.setTo(cv::Scalar(235, 235, 235));
      panels.push_back(with_title(colour, fmt::format("{} (n={})", names[c], global_count[c])));
    }
    panels.push_back(with_title(colour_bar(vmax, kSide, false), "mean |SHAP|"));
    const auto grid_path = (fs::path(out_dir) / "global_mean_abs_shap.png").string();
    write_png(grid_path, hconcat_padded(panels));
    if (options.save_raw)
      write_npy((fs::path(out_dir) / "global_mean_abs_shap.npy").string(), global, {static_cast<std::size_t>(k), 48, 48});
    if (summary.worst_additivity_error > 1e-3)
      spdlog::warn("DeepSHAP additivity: worst relative error {:.3g} exceeds 1e-3", summary.worst_additivity_error);
  }
  summary.manifest = manifest_path;
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return summary;
}

}  // namespace fer
