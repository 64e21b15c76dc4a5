// YuNet-s, a small CNN face detector (ShiqiYu/libfacedetection.train, 2023mar,
// Apache-2.0), run through OpenCV's DNN module from its fixed-size ONNX files.
// OpenCV 4.6's FaceDetectorYN expects an older output layout, so the twelve
// outputs are decoded here. Most users reach it through fer::FaceDetector with
// faces.detector = yunet; this header is for tests and direct use.
//
//   fer::YunetDetector yunet({fer::find_yunet_model("", 320), 320, 0.9f, 0.3f});
//   for (const fer::Face& f : yunet.detect(cv::imread("photo.jpg"))) { f.box; f.landmarks[0]; }
#pragma once

#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>
#include <string>
#include <vector>

#include "fer/faces/faces.h"

namespace fer {

// The file for an input size: `configured` when non-empty (it must exist), else
// yunet_s_<size>_<size>.onnx from $FER_YUNET_DIR, then share/libfer/yunet beside
// the running program (<bin>/../share/libfer/yunet: the build tree and an install).
// Throws std::runtime_error listing where it looked.
std::string find_yunet_model(const std::string& configured, int input_size);

// Output names in the order decode_yunet takes them: for strides 8, 16, 32,
// cls_S, obj_S, bbox_S, kps_S.
const std::vector<std::string>& yunet_output_names();

// Faces from the model's outputs for one input_size x input_size image, in that
// image's pixels, highest score first. For the anchor at (row, col) of stride S:
// score = sqrt(clamp(cls) * clamp(obj)); centre = ((col, row) + (dx, dy)) * S;
// size = exp(dw, dh) * S; landmark k = ((col, row) + kps[2k, 2k+1]) * S. Faces
// under score_threshold are dropped, then non-maximum suppression at nms_threshold.
// Requires 12 outputs shaped [1, N_S, 1|1|4|10] with N_S = (input_size / S)^2;
// throws std::invalid_argument naming the output otherwise.
std::vector<Face> decode_yunet(const std::vector<cv::Mat>& outputs, int input_size, float score_threshold,
                               float nms_threshold);

struct YunetOptions {
  std::string model;  // the ONNX file (find_yunet_model)
  int input_size = 320;
  float score_threshold = 0.9f;
  float nms_threshold = 0.3f;
};

class YunetDetector {
 public:
  // Throws std::runtime_error naming the file when it does not load or its
  // outputs do not match input_size.
  explicit YunetDetector(const YunetOptions& options);

  // Faces in a BGR (or gray) image, highest score first, in the image's pixels.
  // The image is scaled to fit input_size x input_size (aspect kept) and padded
  // at the right and bottom.
  std::vector<Face> detect(const cv::Mat& image) const;

  // Faces within `roi` of the image (the ROI letterboxed into the input alone,
  // so a small face is seen larger), in the image's pixels.
  std::vector<Face> detect_in(const cv::Mat& image, const cv::Rect& roi) const;

  const YunetOptions& options() const { return options_; }

 private:
  YunetOptions options_;
  mutable cv::dnn::Net net_;  // forward() is not const
};

}  // namespace fer
