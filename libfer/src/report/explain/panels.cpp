// The PNG panels of an explanation: the face, SHAP heat maps, LIME's
// superpixels, colour bars and titles.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <stdexcept>
#include <opencv2/imgproc.hpp>

#include "files.h"
#include "fer/data/dataset.h"
#include "fer/report/image_file.h"

namespace fer::explain_detail {
namespace fs = std::filesystem;

int face_side(const std::vector<std::uint8_t>& face) { return square_side(face.size(), "explanation panel face"); }

cv::Mat face_bgr(const std::vector<std::uint8_t>& face) {
  const int side = face_side(face);
  cv::Mat gray(side, side, CV_8U, const_cast<std::uint8_t*>(face.data()));
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

cv::Mat sheet_grid(const std::vector<cv::Mat>& panels) {
  if (panels.size() <= kSheetColumns) return hconcat_padded(panels);
  std::vector<cv::Mat> rows;
  for (std::size_t first = 0; first < panels.size(); first += kSheetColumns) {
    const auto last = std::min(panels.size(), first + kSheetColumns);
    rows.push_back(hconcat_padded(std::vector<cv::Mat>(panels.begin() + first, panels.begin() + last)));
  }
  return vconcat_padded(rows);
}

cv::Mat vconcat_padded(const std::vector<cv::Mat>& rows) {
  int width = 0, height = 0;
  for (const auto& row : rows) {
    width = std::max(width, row.cols);
    height += row.rows + 8;
  }
  cv::Mat out(height, width, CV_8UC3, cv::Scalar(255, 255, 255));
  int y = 0;
  for (const auto& row : rows) {
    row.copyTo(out(cv::Rect(0, y, row.cols, row.rows)));
    y += row.rows + 8;
  }
  return out;
}

// Diverging red (positive) / blue (negative) colour for t in [-1, 1].
namespace {

cv::Vec3b diverging(double t) {
  t = std::clamp(t, -1.0, 1.0);
  const double a = std::abs(t);
  const cv::Vec3d white(255, 255, 255);
  const cv::Vec3d end = t >= 0 ? cv::Vec3d(40, 40, 214) : cv::Vec3d(214, 100, 30);  // BGR
  const cv::Vec3d c = white * (1 - a) + end * a;
  return cv::Vec3b(static_cast<uchar>(c[0]), static_cast<uchar>(c[1]), static_cast<uchar>(c[2]));
}

}  // namespace

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
cv::Mat attribution_overlay(const std::vector<std::uint8_t>& face, const float* attribution, double vmax) {
  const int side = face_side(face);
  const std::uint8_t* pixels = face.data();
  cv::Mat out(kSide, kSide, CV_8UC3);
  for (int r = 0; r < kSide; ++r)
    for (int c = 0; c < kSide; ++c) {
      const int p = (r * side / kSide) * side + c * side / kSide;
      const double t = vmax > 0 ? attribution[p] / vmax : 0.0;
      const double a = std::min(1.0, std::abs(t)) * 0.85;
      const double face = 255 - 0.35 * (255 - pixels[p]);  // faint face on white
      const cv::Vec3b col = diverging(t);
      out.at<cv::Vec3b>(r, c) =
          cv::Vec3b(static_cast<uchar>(face * (1 - a) + col[0] * a), static_cast<uchar>(face * (1 - a) + col[1] * a),
                    static_cast<uchar>(face * (1 - a) + col[2] * a));
    }
  return out;
}

cv::Mat shap_panel(const std::vector<std::uint8_t>& face, const float* attribution, double vmax) {
  return hconcat_padded({attribution_overlay(face, attribution, vmax), colour_bar(vmax, kSide, true)});
}

cv::Mat map_panel(const std::vector<std::uint8_t>& face, const at::Tensor& map) {
  const float* values = map.data_ptr<float>();
  const double vmax = std::max(1e-12, percentile_abs(values, static_cast<std::size_t>(map.numel()), 0.999));
  return shap_panel(face, values, vmax);
}

std::string method_file_stem(const std::string& method) {
  std::string stem = method;
  for (std::size_t at = stem.find("++"); at != std::string::npos; at = stem.find("++")) stem.replace(at, 2, "_plus_plus");
  return stem;
}

// Top positive superpixels tinted green, top negative red, every boundary yellow.
cv::Mat lime_panel(const std::vector<std::uint8_t>& face, const LimeExplanation& e, int top) {
  cv::Mat out = face_bgr(face);
  const int side = face_side(face);
  const auto pos = e.top_positive(top), neg = e.top_negative(top);
  auto seg_at = [&](int r, int c) { return e.segments[(r * side / kSide) * side + c * side / kSide]; };
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
  write_image_file(path, img);
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

}  // namespace fer::explain_detail
