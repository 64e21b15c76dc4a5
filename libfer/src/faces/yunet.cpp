#include "fer/common/io.h"
#include "fer/faces/yunet.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <opencv2/imgproc.hpp>
#include <stdexcept>

namespace fer {
namespace fs = std::filesystem;

namespace {

constexpr int kStrides[] = {8, 16, 32};
constexpr int kLandmarks = 5;

std::string model_file_name(int input_size) {
  return "yunet_s_" + std::to_string(input_size) + "_" + std::to_string(input_size) + ".onnx";
}

// <bin>/../share/libfer/yunet for the running program.
std::string beside_program() {
  const std::string share = program_share_dir();
  return share.empty() ? "" : (fs::path(share) / "yunet").string();
}

// Checks one output's shape [1, anchors, width] and returns its data.
const float* output_data(const cv::Mat& m, const std::string& name, int anchors, int width) {
  const bool ok = m.type() == CV_32F && m.isContinuous() &&
                  ((m.dims == 3 && m.size[0] == 1 && m.size[1] == anchors && m.size[2] == width) ||
                   (m.dims == 2 && m.size[0] == anchors && m.size[1] == width));
  if (!ok)
    throw std::invalid_argument("decode_yunet: output " + name + " is not a float [1, " + std::to_string(anchors) + ", " +
                                std::to_string(width) + "] tensor");
  return m.ptr<float>();
}

float clamp01(float v) { return std::min(1.0f, std::max(0.0f, v)); }

// The faces of one stride above the threshold, before NMS.
void decode_stride(const std::vector<cv::Mat>& outputs, std::size_t first, int stride, int input_size,
                   float score_threshold, std::vector<Face>& faces) {
  const int side = input_size / stride;
  const int anchors = side * side;
  const auto& names = yunet_output_names();
  const float* cls = output_data(outputs[first], names[first], anchors, 1);
  const float* obj = output_data(outputs[first + 1], names[first + 1], anchors, 1);
  const float* bbox = output_data(outputs[first + 2], names[first + 2], anchors, 4);
  const float* kps = output_data(outputs[first + 3], names[first + 3], anchors, 2 * kLandmarks);
  for (int row = 0; row < side; ++row) {
    for (int col = 0; col < side; ++col) {
      const int i = row * side + col;
      const float score = std::sqrt(clamp01(cls[i]) * clamp01(obj[i]));
      if (score < score_threshold) continue;
      const float* b = bbox + 4 * i;
      const float cx = (col + b[0]) * stride, cy = (row + b[1]) * stride;
      const float w = std::exp(b[2]) * stride, h = std::exp(b[3]) * stride;
      Face face;
      face.box = cv::Rect(cvRound(cx - w / 2), cvRound(cy - h / 2), cvRound(w), cvRound(h));
      face.score = score;
      for (int k = 0; k < kLandmarks; ++k)
        face.landmarks.emplace_back((col + kps[10 * i + 2 * k]) * stride, (row + kps[10 * i + 2 * k + 1]) * stride);
      faces.push_back(std::move(face));
    }
  }
}

// Maps faces found in a letterboxed input back to the image: divide by the
// scale, add the region's origin, clip to the image.
void to_image_pixels(std::vector<Face>& faces, double scale, const cv::Point& origin, const cv::Size& image) {
  const cv::Rect bounds(0, 0, image.width, image.height);
  std::vector<Face> kept;
  for (auto& f : faces) {
    f.box = cv::Rect(cvRound(f.box.x / scale) + origin.x, cvRound(f.box.y / scale) + origin.y,
                     cvRound(f.box.width / scale), cvRound(f.box.height / scale)) &
            bounds;
    for (auto& p : f.landmarks) p = cv::Point2f(static_cast<float>(p.x / scale + origin.x), static_cast<float>(p.y / scale + origin.y));
    if (f.box.area() > 0) kept.push_back(std::move(f));
  }
  faces = std::move(kept);
}

}  // namespace

std::string find_yunet_model(const std::string& configured, int input_size) {
  if (!configured.empty()) {
    if (!fs::is_regular_file(configured)) throw std::runtime_error("faces.yunet_model: '" + configured + "' does not exist");
    return configured;
  }
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("FER_YUNET_DIR"); env && *env) dirs.emplace_back(env);
  if (auto d = beside_program(); !d.empty()) dirs.push_back(d);
  const std::string name = model_file_name(input_size);
  std::string looked;
  for (const auto& d : dirs) {
    const fs::path candidate = fs::path(d) / name;
    if (fs::is_regular_file(candidate)) return candidate.string();
    looked += (looked.empty() ? "" : ", ") + d;
  }
  throw std::runtime_error("cannot find " + name + " (looked in " + looked +
                           "); set $FER_YUNET_DIR or the faces.yunet_model key");
}

const std::vector<std::string>& yunet_output_names() {
  static const std::vector<std::string> names = {"cls_8",  "obj_8",  "bbox_8",  "kps_8",  "cls_16", "obj_16",
                                                 "bbox_16", "kps_16", "cls_32", "obj_32", "bbox_32", "kps_32"};
  return names;
}

std::vector<Face> decode_yunet(const std::vector<cv::Mat>& outputs, int input_size, float score_threshold,
                               float nms_threshold) {
  if (outputs.size() != yunet_output_names().size())
    throw std::invalid_argument("decode_yunet: expected 12 outputs, got " + std::to_string(outputs.size()));
  if (input_size <= 0 || input_size % 32 != 0)
    throw std::invalid_argument("decode_yunet: input size " + std::to_string(input_size) + " is not a multiple of 32");
  std::vector<Face> candidates;
  for (std::size_t s = 0; s < 3; ++s) decode_stride(outputs, 4 * s, kStrides[s], input_size, score_threshold, candidates);
  std::vector<cv::Rect> boxes;
  std::vector<float> scores;
  for (const auto& f : candidates) {
    boxes.push_back(f.box);
    scores.push_back(f.score);
  }
  std::vector<int> keep;
  cv::dnn::NMSBoxes(boxes, scores, score_threshold, nms_threshold, keep);
  std::vector<Face> faces;
  for (int i : keep) faces.push_back(candidates[static_cast<std::size_t>(i)]);
  std::stable_sort(faces.begin(), faces.end(), [](const Face& a, const Face& b) { return a.score > b.score; });
  return faces;
}

YunetDetector::YunetDetector(const YunetOptions& options) : options_(options) {
  try {
    net_ = cv::dnn::readNetFromONNX(options.model);
  } catch (const cv::Exception& e) {
    throw std::runtime_error("cannot load YuNet model '" + options.model + "': " + e.what());
  }
  if (net_.empty()) throw std::runtime_error("cannot load YuNet model '" + options.model + "'");
  // One blank run checks that the file's outputs fit the configured input size.
  try {
    detect(cv::Mat(options.input_size, options.input_size, CV_8UC3, cv::Scalar::all(0)));
  } catch (const std::exception& e) {
    throw std::runtime_error("YuNet model '" + options.model + "' does not run at input " +
                             std::to_string(options.input_size) + ": " + e.what());
  }
}

std::vector<Face> YunetDetector::detect(const cv::Mat& image) const {
  return detect_in(image, cv::Rect(0, 0, image.cols, image.rows));
}

std::vector<Face> YunetDetector::detect_in(const cv::Mat& image, const cv::Rect& roi) const {
  const cv::Rect region = roi & cv::Rect(0, 0, image.cols, image.rows);
  if (region.area() == 0) return {};
  cv::Mat bgr = image(region);
  if (bgr.channels() == 1) cv::cvtColor(bgr, bgr, cv::COLOR_GRAY2BGR);
  if (bgr.channels() == 4) cv::cvtColor(bgr, bgr, cv::COLOR_BGRA2BGR);
  // Letterbox: scale to fit, pad right and bottom with black.
  const int side = options_.input_size;
  const double scale = std::min(static_cast<double>(side) / region.width, static_cast<double>(side) / region.height);
  const cv::Size fitted(std::max(1, std::min(side, cvRound(region.width * scale))),
                        std::max(1, std::min(side, cvRound(region.height * scale))));
  cv::Mat input(side, side, CV_8UC3, cv::Scalar::all(0));
  cv::resize(bgr, input(cv::Rect(cv::Point(0, 0), fitted)), fitted, 0, 0, scale < 1 ? cv::INTER_AREA : cv::INTER_LINEAR);
  net_.setInput(cv::dnn::blobFromImage(input));  // BGR, unscaled: as the model was trained
  std::vector<cv::Mat> outputs;
  net_.forward(outputs, yunet_output_names());
  auto faces = decode_yunet(outputs, side, options_.score_threshold, options_.nms_threshold);
  to_image_pixels(faces, scale, region.tl(), image.size());
  return faces;
}

}  // namespace fer
