#include "fer/faces/faces.h"

#include "fer/faces/yunet.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/objdetect.hpp>
#include <stdexcept>

namespace fer {
namespace fs = std::filesystem;

namespace {
constexpr const char* kDefaultCascade = "haarcascade_frontalface_default.xml";
}

std::string find_haar_cascade(const std::string& configured) {
  if (!configured.empty()) {
    if (!fs::is_regular_file(configured))
      throw std::runtime_error("faces.cascade: '" + configured + "' does not exist");
    return configured;
  }
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("FER_HAAR_DIR"); env && *env) dirs.emplace_back(env);
  for (const char* d : {"/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades",
                        "/usr/local/share/opencv4/haarcascades", "/usr/local/share/opencv/haarcascades",
                        "/opt/homebrew/share/opencv4/haarcascades"})
    dirs.emplace_back(d);
  std::string looked;
  for (const auto& d : dirs) {
    const fs::path candidate = fs::path(d) / kDefaultCascade;
    if (fs::is_regular_file(candidate)) return candidate.string();
    looked += (looked.empty() ? "" : ", ") + d;
  }
  throw std::runtime_error(std::string("cannot find ") + kDefaultCascade + " (looked in " + looked +
                           "); install opencv-data, set $FER_HAAR_DIR or the faces.cascade key");
}

cv::Mat to_gray(const cv::Mat& image) {
  if (image.empty()) throw std::invalid_argument("to_gray: empty image");
  if (image.channels() == 1) return image;
  cv::Mat gray;
  cv::cvtColor(image, gray, image.channels() == 4 ? cv::COLOR_BGRA2GRAY : cv::COLOR_BGR2GRAY);
  return gray;
}

// One detector behind FaceDetector; both take the image as the caller has it.
class FaceDetector::Backend {
 public:
  virtual ~Backend() = default;
  virtual std::vector<Face> detect(const cv::Mat& image) = 0;
  virtual std::vector<Face> detect_near(const cv::Mat& image, const cv::Rect& region, const cv::Rect& previous) = 0;
};

namespace {

std::vector<Face> as_faces(const std::vector<cv::Rect>& boxes) {
  std::vector<Face> faces(boxes.size());
  for (std::size_t i = 0; i < boxes.size(); ++i) faces[i].box = boxes[i];
  return faces;
}

class HaarBackend final : public FaceDetector::Backend {
 public:
  HaarBackend(const FacesConfig& config, const std::string& path) : config_(config) {
    if (!cascade_.load(path)) throw std::runtime_error("cannot load Haar cascade '" + path + "' (not a cascade XML?)");
  }

  std::vector<Face> detect(const cv::Mat& image) override {
    const cv::Mat gray = to_gray(image);
    const double s = config_.detect_scale;
    cv::Mat scaled = gray;
    if (s < 1.0) cv::resize(gray, scaled, cv::Size(), s, s, cv::INTER_AREA);
    // The cascade window is 24x24: at a reduced scale the smallest face is bounded by it.
    const int min_side = std::max(1, static_cast<int>(config_.min_size * s));
    std::vector<cv::Rect> boxes;
    cascade_.detectMultiScale(scaled, boxes, config_.scale_factor, config_.min_neighbors, 0, cv::Size(min_side, min_side));
    if (s < 1.0)
      for (auto& b : boxes)
        b = cv::Rect(cvRound(b.x / s), cvRound(b.y / s), cvRound(b.width / s), cvRound(b.height / s)) &
            cv::Rect(0, 0, gray.cols, gray.rows);
    return as_faces(boxes);
  }

  std::vector<Face> detect_near(const cv::Mat& image, const cv::Rect& roi, const cv::Rect& previous) override {
    if (roi.width < 24 || roi.height < 24) return {};
    const cv::Mat gray = to_gray(image);
    const int min_side = std::max({24, config_.min_size, static_cast<int>(previous.width * 0.8)});
    const int max_side = std::max(min_side, static_cast<int>(previous.width * 1.25));
    // A face was here a frame ago, so fewer overlapping hits confirm it: on the
    // real clip this keeps 187 of 189 tracked faces instead of 174, and is faster.
    const int min_neighbors = std::max(1, config_.min_neighbors - 2);
    std::vector<cv::Rect> boxes;
    cascade_.detectMultiScale(gray(roi), boxes, config_.scale_factor, min_neighbors, 0, cv::Size(min_side, min_side),
                              cv::Size(max_side, max_side));
    for (auto& b : boxes) b += roi.tl();
    return as_faces(boxes);
  }

 private:
  FacesConfig config_;
  cv::CascadeClassifier cascade_;
};

class YunetBackend final : public FaceDetector::Backend {
 public:
  explicit YunetBackend(const YunetOptions& options) : yunet_(options) {}
  std::vector<Face> detect(const cv::Mat& image) override { return yunet_.detect(image); }
  std::vector<Face> detect_near(const cv::Mat& image, const cv::Rect& roi, const cv::Rect&) override {
    return yunet_.detect_in(image, roi);
  }

 private:
  YunetDetector yunet_;
};

YunetOptions yunet_options(const FacesConfig& config) {
  YunetOptions o;
  o.input_size = config.yunet_input_size;
  o.model = find_yunet_model(config.yunet_model, o.input_size);
  o.score_threshold = static_cast<float>(config.score_threshold);
  o.nms_threshold = static_cast<float>(config.nms_threshold);
  return o;
}

void largest_first(std::vector<Face>& faces) {
  std::stable_sort(faces.begin(), faces.end(), [](const Face& a, const Face& b) { return a.box.area() > b.box.area(); });
}

std::vector<cv::Rect> boxes_of(const std::vector<Face>& faces) {
  std::vector<cv::Rect> boxes;
  boxes.reserve(faces.size());
  for (const auto& f : faces) boxes.push_back(f.box);
  return boxes;
}

void require_image(const cv::Mat& image, const char* what) {
  if (image.empty() || image.depth() != CV_8U || (image.channels() != 1 && image.channels() != 3 && image.channels() != 4))
    throw std::invalid_argument(std::string("FaceDetector::") + what + " expects a gray, BGR or BGRA CV_8U image");
}

}  // namespace

FaceDetector::FaceDetector(const FacesConfig& config) : config_(config) {
  if (config.detector == "haar") {
    model_path_ = find_haar_cascade(config.cascade);
    backend_ = std::make_shared<HaarBackend>(config, model_path_);
  } else if (config.detector == "yunet") {
    const YunetOptions options = yunet_options(config);
    model_path_ = options.model;
    backend_ = std::make_shared<YunetBackend>(options);
  } else {
    throw std::runtime_error("faces.detector: unknown detector '" + config.detector + "' (haar or yunet)");
  }
}

std::vector<Face> FaceDetector::detect_faces(const cv::Mat& image) const {
  require_image(image, "detect");
  auto faces = backend_->detect(image);
  largest_first(faces);
  return faces;
}

std::vector<cv::Rect> FaceDetector::detect(const cv::Mat& image) const { return boxes_of(detect_faces(image)); }

std::vector<Face> FaceDetector::detect_faces_near(const cv::Mat& image, const cv::Rect& previous, double search_margin) const {
  require_image(image, "detect_near");
  const cv::Rect roi = grow_box(previous, search_margin, image.size());
  if (roi.area() == 0) return {};
  auto faces = backend_->detect_near(image, roi, previous);
  if (faces.empty()) return {};
  const auto best = std::max_element(faces.begin(), faces.end(), [&](const Face& a, const Face& b) {
    return box_iou(a.box, previous) < box_iou(b.box, previous);
  });
  return {*best};
}

std::vector<cv::Rect> FaceDetector::detect_near(const cv::Mat& image, const cv::Rect& previous, double search_margin) const {
  return boxes_of(detect_faces_near(image, previous, search_margin));
}

double box_iou(const cv::Rect& a, const cv::Rect& b) {
  const double inter = (a & b).area();
  const double uni = static_cast<double>(a.area()) + b.area() - inter;
  return uni > 0 ? inter / uni : 0.0;
}

int largest_box(const std::vector<cv::Rect>& boxes) {
  int best = -1;
  for (int i = 0; i < static_cast<int>(boxes.size()); ++i)
    if (best < 0 || boxes[i].area() > boxes[best].area()) best = i;
  return best;
}

cv::Rect grow_box(const cv::Rect& box, double margin, const cv::Size& bounds) {
  const int dx = cvRound(box.width * margin), dy = cvRound(box.height * margin);
  return cv::Rect(box.x - dx, box.y - dy, box.width + 2 * dx, box.height + 2 * dy) & cv::Rect(0, 0, bounds.width, bounds.height);
}

void face_input(const cv::Mat& gray, const cv::Rect& box, double margin, std::uint8_t* out, int side) {
  if (gray.empty() || gray.type() != CV_8UC1) throw std::invalid_argument("face_input expects a gray CV_8U image");
  const cv::Rect crop = grow_box(box, margin, gray.size());
  if (crop.area() == 0) throw std::invalid_argument("face_input: the box does not overlap the image");
  cv::Mat dst(side, side, CV_8U, out);
  const bool shrinking = crop.width >= side && crop.height >= side;
  cv::resize(gray(crop), dst, dst.size(), 0, 0, shrinking ? cv::INTER_AREA : cv::INTER_LINEAR);
}

std::vector<std::uint8_t> face_input(const cv::Mat& gray, const cv::Rect& box, double margin, int side) {
  std::vector<std::uint8_t> out(static_cast<std::size_t>(side) * side);
  face_input(gray, box, margin, out.data(), side);
  return out;
}

double eye_roll_degrees(const Face& face) {
  if (face.landmarks.size() < 2) return 0.0;
  const cv::Point2f d = face.landmarks[1] - face.landmarks[0];  // right eye (image left) to left eye
  return std::atan2(static_cast<double>(d.y), static_cast<double>(d.x)) * 180.0 / CV_PI;
}

BoxFraming fer2013_box_framing(const std::string& detector) {
  // fer-detect --framing --data fer2013.csv.gz --split train --count 3000 [--set faces.detector=yunet]
  if (detector == "haar") return {{23.99f, 23.60f}, 46.23f};  // 2,214 of 3,000 found
  if (detector == "yunet") return {{23.68f, 25.11f}, 44.46f};  // 2,754 of 3,000 found (boxes 39.7 x 49.9)
  throw std::invalid_argument("no FER-2013 framing measured for the detector '" + detector + "'");
}

const std::vector<cv::Point2f>& fer2013_landmarks() {
  // YuNet on 4x Training faces (the same command with yunet): right eye, left eye, nose tip, mouth corners.
  static const std::vector<cv::Point2f> points{
      {14.62f, 17.47f}, {32.62f, 17.74f}, {22.75f, 27.54f}, {16.02f, 36.30f}, {30.82f, 36.47f}};
  return points;
}

cv::Matx23d similarity_transform(const std::vector<cv::Point2f>& from, const std::vector<cv::Point2f>& to) {
  if (from.size() != to.size() || from.size() < 2)
    throw std::invalid_argument("similarity_transform needs two or more point pairs, got " + std::to_string(from.size()) +
                                " and " + std::to_string(to.size()) + " points");
  const double n = static_cast<double>(from.size());
  cv::Point2d mean_from, mean_to;
  for (std::size_t i = 0; i < from.size(); ++i) mean_from += cv::Point2d(from[i]) / n, mean_to += cv::Point2d(to[i]) / n;
  // With both point sets centred, a = cos * scale and b = sin * scale minimise the squared error in closed form.
  double dot = 0, cross = 0, norm = 0;
  for (std::size_t i = 0; i < from.size(); ++i) {
    const cv::Point2d p = cv::Point2d(from[i]) - mean_from, q = cv::Point2d(to[i]) - mean_to;
    dot += p.x * q.x + p.y * q.y;
    cross += p.x * q.y - p.y * q.x;
    norm += p.x * p.x + p.y * p.y;
  }
  if (norm <= 0) throw std::invalid_argument("similarity_transform: the points to map are all one point");
  const double a = dot / norm, b = cross / norm;
  return cv::Matx23d(a, -b, mean_to.x - (a * mean_from.x - b * mean_from.y),  //
                     b, a, mean_to.y - (b * mean_from.x + a * mean_from.y));
}

namespace {
// The similarity taking the eyes' midpoint and the mouth corners' midpoint onto
// FER-2013's: a face turned aside brings its eyes closer, which a fit to all
// five points reads as a smaller face and zooms in (docs/live.md, "Framing").
cv::Matx23d template_transform(const std::vector<cv::Point2f>& l) {
  const auto& t = fer2013_landmarks();
  return similarity_transform({(l[0] + l[1]) * 0.5f, (l[3] + l[4]) * 0.5f}, {(t[0] + t[1]) * 0.5f, (t[3] + t[4]) * 0.5f});
}
}  // namespace

cv::Matx23d face_crop_transform(const Face& face, const FacesConfig& config) {
  const bool aligned = config.align && face.landmarks.size() == 5;
  if (aligned && config.align_to == "landmarks") return template_transform(face.landmarks);
  const BoxFraming frame = fer2013_box_framing(config.detector);
  const double side = std::sqrt(static_cast<double>(face.box.width) * face.box.height);
  if (side <= 0) throw std::invalid_argument("face_input: an empty face box");
  const double k = frame.side / side;
  // Upright: the template's rotation alone (its scale and shift follow the
  // mouth, which opens with the expressions being read).
  double c = 1, s = 0;
  if (aligned) {
    const cv::Matx23d m = template_transform(face.landmarks);
    const double norm = std::hypot(m(0, 0), m(1, 0));
    c = m(0, 0) / norm, s = m(1, 0) / norm;
  }
  const double cx = face.box.x + face.box.width / 2.0, cy = face.box.y + face.box.height / 2.0;
  return cv::Matx23d(k * c, -k * s, frame.centre.x - k * (c * cx - s * cy),  //
                     k * s, k * c, frame.centre.y - k * (s * cx + c * cy));
}

namespace {
// The side x side crop that `to_crop` maps the image to. A crop of a face
// larger than the side is first shrunk by area averaging to about its scale
// (bilinear sampling alone would alias), then sampled bilinearly; edges replicated.
void warp_face(const cv::Mat& gray, const cv::Matx23d& to_crop, int side, std::uint8_t* out) {
  const cv::Matx23d to_image = [&] {
    cv::Matx23d inverse;
    cv::invertAffineTransform(to_crop, inverse);
    return inverse;
  }();
  std::vector<cv::Point2f> corners;
  for (const auto& c : {cv::Point2d(0, 0), cv::Point2d(side, 0), cv::Point2d(0, side), cv::Point2d(side, side)})
    corners.emplace_back(to_image * cv::Vec3d(c.x, c.y, 1.0));
  const cv::Rect region = (cv::boundingRect(corners) + cv::Size(2, 2) - cv::Point(1, 1)) & cv::Rect(0, 0, gray.cols, gray.rows);
  if (region.area() == 0) throw std::invalid_argument("face_input: the face does not overlap the image");
  const double scale = std::sqrt(std::abs(cv::determinant(cv::Matx22d(to_crop(0, 0), to_crop(0, 1), to_crop(1, 0), to_crop(1, 1)))));
  cv::Mat source = gray(region);
  double rx = 1, ry = 1;
  if (scale < 1) {
    const cv::Size shrunk(std::max(1, cvRound(region.width * scale)), std::max(1, cvRound(region.height * scale)));
    cv::resize(source, source, shrunk, 0, 0, cv::INTER_AREA);
    rx = static_cast<double>(shrunk.width) / region.width, ry = static_cast<double>(shrunk.height) / region.height;
  }
  // Source pixel u maps to image pixel (u.x / rx + region.x, u.y / ry + region.y).
  const cv::Matx33d from_source(1 / rx, 0, region.x, 0, 1 / ry, region.y, 0, 0, 1);
  const cv::Matx33d crop3(to_crop(0, 0), to_crop(0, 1), to_crop(0, 2), to_crop(1, 0), to_crop(1, 1), to_crop(1, 2), 0, 0, 1);
  const cv::Matx33d m = crop3 * from_source;
  cv::Mat dst(side, side, CV_8U, out);
  cv::warpAffine(source, dst, cv::Matx23d(m(0, 0), m(0, 1), m(0, 2), m(1, 0), m(1, 1), m(1, 2)), dst.size(),
                 cv::INTER_LINEAR, cv::BORDER_REPLICATE);
}
}  // namespace

void face_input(const cv::Mat& gray, const Face& face, const FacesConfig& config, std::uint8_t* out, int side) {
  if (config.framing == "fer2013") {
    if (gray.empty() || gray.type() != CV_8UC1) throw std::invalid_argument("face_input expects a gray CV_8U image");
    if ((face.box & cv::Rect(0, 0, gray.cols, gray.rows)).area() == 0)
      throw std::invalid_argument("face_input: the box does not overlap the image");
    const double scale = static_cast<double>(side) / kImageSize;  // FER-2013's framing, measured in 48x48, scaled
    return warp_face(gray, scale * face_crop_transform(face, config), side, out);
  }
  const double angle = config.align ? eye_roll_degrees(face) : 0.0;
  if (angle == 0.0) return face_input(gray, face.box, config.margin, out, side);
  if (gray.empty() || gray.type() != CV_8UC1) throw std::invalid_argument("face_input expects a gray CV_8U image");
  // Rotate only a patch around the box, large enough that the rotated crop's corners stay inside it.
  const cv::Rect patch = grow_box(face.box, config.margin + 0.5, gray.size());
  if ((patch & face.box).area() == 0) throw std::invalid_argument("face_input: the box does not overlap the image");
  const cv::Point2f centre(face.box.x + face.box.width / 2.0f - patch.x, face.box.y + face.box.height / 2.0f - patch.y);
  cv::Mat rotated;
  cv::warpAffine(gray(patch), rotated, cv::getRotationMatrix2D(centre, angle, 1.0), patch.size(), cv::INTER_LINEAR,
                 cv::BORDER_REPLICATE);
  face_input(rotated, face.box - patch.tl(), config.margin, out, side);
}

std::vector<std::uint8_t> face_input(const cv::Mat& gray, const Face& face, const FacesConfig& config, int side) {
  std::vector<std::uint8_t> out(static_cast<std::size_t>(side) * side);
  face_input(gray, face, config, out.data(), side);
  return out;
}

DetectedFace detect_largest_face(const FaceDetector& detector, const std::string& image_path, int side) {
  // Haar reads the file as gray (as it always has); YuNet wants colour.
  const cv::Mat image = read_image_file(image_path, detector.wants_color() ? cv::IMREAD_COLOR : cv::IMREAD_GRAYSCALE);
  DetectedFace found;
  const auto faces = detector.detect_faces(image);
  found.faces = static_cast<int>(faces.size());
  if (faces.empty()) return found;
  found.found = true;
  found.face = faces.front();  // largest first
  found.box = found.face.box;
  found.pixels = face_input(to_gray(image), found.face, detector.config(), side);
  return found;
}

DatasetSplits load_image_folder_with_faces(const std::string& root, const FaceDetector& detector, int side) {
  const auto listing = list_image_folder(root);
  DatasetSplits folder;
  set_class_names(folder, listing.class_names);
  for (Dataset* d : {&folder.train, &folder.val, &folder.test}) d->image_size = side;
  for (const auto& f : listing.files) {
    Dataset& split = split_of(folder, f.split);
    const auto face = detect_largest_face(detector, f.path, side);
    if (face.found) {
      split.add(face.pixels.data(), f.label, f.path);
    } else {
      split.no_face.push_back(f.path);
    }
  }
  return folder;
}

}  // namespace fer
