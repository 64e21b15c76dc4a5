// Faces in full images and video frames: detection (Haar cascade, the paper's,
// or YuNet, fer/faces/yunet.h) and the one crop/resize path from a detected face to
// the model's input (its image_size: 48x48 unless trained otherwise).
//
//   fer::FaceDetector detector(config.faces);
//   cv::Mat image = cv::imread("photo.jpg");
//   cv::Mat gray = fer::to_gray(image);
//   for (const fer::Face& face : detector.detect_faces(image)) {
//     std::vector<std::uint8_t> pixels = fer::face_input(gray, face, config.faces);  // 48*48 uint8 (or side*side)
//   }
#pragma once

#include <cstdint>
#include <memory>
#include <opencv2/core.hpp>
#include <opencv2/core/matx.hpp>
#include <string>
#include <vector>

#include "fer/config/config.h"
#include "fer/data/dataset.h"

namespace fer {

// The cascade file to use: `configured` when non-empty (it must exist), else
// haarcascade_frontalface_default.xml from $FER_HAAR_DIR, then OpenCV's data
// folders (/usr/share/opencv4/haarcascades, /usr/share/opencv/haarcascades,
// /usr/local/share/...). Throws std::runtime_error listing where it looked.
std::string find_haar_cascade(const std::string& configured = "");

// BGR, BGRA or gray -> gray (a view when already gray).
cv::Mat to_gray(const cv::Mat& image);

// A detected face. Landmarks (YuNet only) are the subject's right eye, left eye,
// nose tip, right and left mouth corners: the right eye is on the image's left.
struct Face {
  cv::Rect box;
  float score = 1.0f;                  // YuNet's sqrt(cls * obj); Haar: 1 (no calibrated score)
  std::vector<cv::Point2f> landmarks;  // 5 (YuNet) or none (Haar)
};

// The detector that FacesConfig names (faces.detector: haar | yunet). Copies
// share one underlying detector; use one per thread.
class FaceDetector {
 public:
  // Throws std::runtime_error when the cascade or model cannot be found or loaded.
  explicit FaceDetector(const FacesConfig& config);

  // Faces in a gray or BGR image, largest first, boxes in the image's pixels.
  // Haar runs on the gray image scaled by config.detect_scale; YuNet on the
  // BGR image letterboxed into its input (a gray image is repeated in 3 channels).
  std::vector<Face> detect_faces(const cv::Mat& image) const;
  std::vector<cv::Rect> detect(const cv::Mat& image) const;  // the boxes of detect_faces

  // Re-detects a face known to be near `previous` (a track's last box), within
  // `previous` grown by `search_margin` of its size on each side: the fast path
  // of fer-live between full scans. Returns the candidate overlapping `previous`
  // most (none: empty). Haar searches for faces 0.8x to 1.25x its width at full
  // resolution with min_neighbors lowered by 2 (at least 1); YuNet runs on the
  // region alone, letterboxed into its input.
  std::vector<Face> detect_faces_near(const cv::Mat& image, const cv::Rect& previous, double search_margin = 0.5) const;
  std::vector<cv::Rect> detect_near(const cv::Mat& image, const cv::Rect& previous, double search_margin = 0.5) const;

  const std::string& kind() const { return config_.detector; }
  bool wants_color() const { return config_.detector == "yunet"; }
  // True when a full scan costs no more than re-detecting near one track:
  // YuNet's fixed-size input makes every pass cost the same (about 5 ms on 2
  // cores), so fer-live scans whole frames; Haar's cost grows with the area.
  bool prefers_full_scans() const { return config_.detector == "yunet"; }
  // The cascade XML or the ONNX file in use.
  const std::string& model_path() const { return model_path_; }
  const FacesConfig& config() const { return config_; }

  class Backend;

 private:
  FacesConfig config_;
  std::string model_path_;
  std::shared_ptr<Backend> backend_;
};

// Intersection over union of two boxes (0 when either is empty).
double box_iou(const cv::Rect& a, const cv::Rect& b);

// Index of the largest box by area, -1 when empty.
int largest_box(const std::vector<cv::Rect>& boxes);

// `box` grown by `margin` of its width/height on each side, clipped to `bounds`.
cv::Rect grow_box(const cv::Rect& box, double margin, const cv::Size& bounds);

// The model's input for a face: the box grown by `margin`, clipped to the
// image, resized to side x side (a model's image_size; area interpolation when
// shrinking, linear when enlarging), as side*side uint8. The model scales it to
// [0,1] (to_model_input). Requires a gray CV_8U image and a box overlapping it;
// throws std::invalid_argument.
std::vector<std::uint8_t> face_input(const cv::Mat& gray, const cv::Rect& box, double margin, int side = kImageSize);
void face_input(const cv::Mat& gray, const cv::Rect& box, double margin, std::uint8_t* out, int side = kImageSize);

// The model's input for a detected face under the faces.* settings.
// faces.framing fer2013 (the default): a square crop framed as FER-2013 frames
// its faces (face_crop_transform), sampled bilinearly after an area shrink to
// the crop's scale, edges replicated. faces.framing box (the crop of libfer
// before 2026-12; for older records): the box grown by faces.margin and
// stretched to the square (face_input above), with faces.align rotated about
// the box centre so the eyes are level. side x side pixels: FER-2013's framing
// scaled to the side.
// Requires a gray CV_8U image and a box overlapping it; throws std::invalid_argument.
std::vector<std::uint8_t> face_input(const cv::Mat& gray, const Face& face, const FacesConfig& config,
                                     int side = kImageSize);
void face_input(const cv::Mat& gray, const Face& face, const FacesConfig& config, std::uint8_t* out,
                int side = kImageSize);

// How FER-2013 frames its faces in 48x48, as a detector sees them: the mean
// centre and side (sqrt(width * height)) of its boxes on the faces, and
// YuNet's mean five landmarks (Face::landmarks' order). Measured by
// `fer-detect --framing` on 3,000 Training faces (docs/live.md, "Framing").
struct BoxFraming {
  cv::Point2f centre;
  float side = 0;
};
// "haar" or "yunet"; throws std::invalid_argument for another detector.
BoxFraming fer2013_box_framing(const std::string& detector);
const std::vector<cv::Point2f>& fer2013_landmarks();

// The least-squares similarity (rotation, uniform scale and shift; no
// reflection) taking the points `from` onto `to` (Umeyama's, in 2-D).
// Requires as many points in each, two or more, `from` not all one point;
// throws std::invalid_argument.
cv::Matx23d similarity_transform(const std::vector<cv::Point2f>& from, const std::vector<cv::Point2f>& to);

// Image pixels -> the 48x48 crop of faces.framing fer2013: a square crop that
// maps the box's centre and side (sqrt(width * height)) onto the detector's
// fer2013_box_framing; with faces.align and five landmarks, rotated about the
// box's centre so the face's vertical axis (eyes' midpoint to mouth corners'
// midpoint) lies as FER-2013's does. faces.align_to landmarks instead takes
// rotation, scale and shift from that axis: the similarity putting the two
// midpoints onto fer2013_landmarks()' (template alignment).
cv::Matx23d face_crop_transform(const Face& face, const FacesConfig& config);

// The angle in degrees (counter-clockwise, image y down) that levels the eyes:
// 0 for a face with fewer than two landmarks.
double eye_roll_degrees(const Face& face);

// An image file's largest face, as found by `detector`.
struct DetectedFace {
  bool found = false;
  cv::Rect box;
  Face face;
  int faces = 0;                     // how many were detected
  std::vector<std::uint8_t> pixels;  // side*side when found
};
// Throws DataError naming the file when it cannot be decoded. The crop follows
// detector.config() (margin, align), side x side (a model's image_size).
DetectedFace detect_largest_face(const FaceDetector& detector, const std::string& image_path, int side = kImageSize);

// An image folder of full photos (the layout of load_image_folder, any image
// size): each image becomes its largest face; images without one are listed
// in their split's Dataset::no_face.
// Throws DataError for unknown split/class folders and undecodable images.
// Crops follow detector.config() (margin, align), side x side.
DatasetSplits load_image_folder_with_faces(const std::string& root, const FaceDetector& detector, int side = kImageSize);

}  // namespace fer
