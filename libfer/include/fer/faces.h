// Faces in full images and video frames: Haar cascade detection and the one
// crop/resize path from a detected box to the model's 48x48 input.
//
//   fer::FaceDetector detector(config.faces);
//   cv::Mat gray = fer::to_gray(cv::imread("photo.jpg"));
//   for (const cv::Rect& box : detector.detect(gray)) {
//     std::vector<std::uint8_t> face = fer::face_input(gray, box, config.faces.margin);  // 48*48 uint8
//   }
#pragma once

#include <cstdint>
#include <opencv2/core.hpp>
#include <opencv2/objdetect.hpp>
#include <string>
#include <vector>

#include "fer/config.h"
#include "fer/dataset.h"

namespace fer {

// The cascade file to use: `configured` when non-empty (it must exist), else
// haarcascade_frontalface_default.xml from $FER_HAAR_DIR, then OpenCV's data
// folders (/usr/share/opencv4/haarcascades, /usr/share/opencv/haarcascades,
// /usr/local/share/...). Throws std::runtime_error listing where it looked.
std::string find_haar_cascade(const std::string& configured = "");

// BGR, BGRA or gray -> gray (a view when already gray).
cv::Mat to_gray(const cv::Mat& image);

class FaceDetector {
 public:
  // Throws std::runtime_error when the cascade cannot be found or loaded.
  explicit FaceDetector(const FacesConfig& config);

  // Faces in a gray image, largest first. Runs on the image scaled by
  // config.detect_scale; boxes are in the image's own pixels.
  std::vector<cv::Rect> detect(const cv::Mat& gray) const;

  // Re-detects a face known to be near `previous` (a track's last box): searches
  // `previous` grown by `search_margin` of its size on each side, for faces 0.8x
  // to 1.25x its width, at full resolution, with min_neighbors lowered by 2
  // (at least 1). The fast path of fer-live between full scans; returns the
  // candidate overlapping `previous` most (none: empty).
  std::vector<cv::Rect> detect_near(const cv::Mat& gray, const cv::Rect& previous, double search_margin = 0.5) const;

  const std::string& cascade_path() const { return cascade_path_; }

 private:
  FacesConfig config_;
  std::string cascade_path_;
  mutable cv::CascadeClassifier cascade_;  // detectMultiScale is not const
};

// Intersection over union of two boxes (0 when either is empty).
double box_iou(const cv::Rect& a, const cv::Rect& b);

// Index of the largest box by area, -1 when empty.
int largest_box(const std::vector<cv::Rect>& boxes);

// `box` grown by `margin` of its width/height on each side, clipped to `bounds`.
cv::Rect grow_box(const cv::Rect& box, double margin, const cv::Size& bounds);

// The model's input for a face: the box grown by `margin`, clipped to the
// image, resized to 48x48 (area interpolation when shrinking, linear when
// enlarging), as 48*48 uint8. The model scales it to [0,1] (to_model_input).
// Requires a gray CV_8U image and a box overlapping it; throws std::invalid_argument.
std::vector<std::uint8_t> face_input(const cv::Mat& gray, const cv::Rect& box, double margin);
void face_input(const cv::Mat& gray, const cv::Rect& box, double margin, std::uint8_t* out);

// An image file's largest face, as found by `detector`.
struct DetectedFace {
  bool found = false;
  cv::Rect box;
  int faces = 0;                     // how many were detected
  std::vector<std::uint8_t> pixels;  // 48*48 when found
};
// Throws DataError naming the file when it cannot be decoded.
DetectedFace detect_largest_face(const FaceDetector& detector, const std::string& image_path, double margin);

// An image folder of full photos (the layout of load_image_folder, any image
// size): each image becomes its largest face (FaceFolderSplit, fer/dataset.h);
// images without one are listed.
struct FaceFolder {
  FaceFolderSplit train, val, test;
};
// Throws DataError for unknown split/class folders and undecodable images.
FaceFolder load_image_folder_with_faces(const std::string& root, const FaceDetector& detector, double margin);

}  // namespace fer
