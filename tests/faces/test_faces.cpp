// Face detection: YuNet's decoding against hand-computed outputs, its model on
// the real clip against Haar, the letterbox and region mappings, the detector
// choice and its errors, and eye alignment.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "fer/config/config.h"
#include "fer/faces/faces.h"
#include "fer/faces/yunet.h"
#include "fer/report/live/session.h"
#include "test_util.h"

namespace {
namespace fs = std::filesystem;
using fer_test::TempDir;

using fer_test::real_clip;

// The twelve outputs of a 320 input, all zero (score 0 everywhere).
std::vector<cv::Mat> zero_outputs(int input_size) {
  std::vector<cv::Mat> out;
  for (int stride : {8, 16, 32}) {
    const int anchors = (input_size / stride) * (input_size / stride);
    for (int width : {1, 1, 4, 10}) {
      const int shape[] = {1, anchors, width};
      out.emplace_back(3, shape, CV_32F, cv::Scalar(0));
    }
  }
  return out;
}

// Plants one anchor: outputs 4s..4s+3 are stride index s's cls, obj, bbox, kps.
void plant(std::vector<cv::Mat>& out, int stride_index, int anchor, float cls, float obj, std::array<float, 4> bbox,
           std::array<float, 10> kps) {
  out[4 * stride_index].ptr<float>()[anchor] = cls;
  out[4 * stride_index + 1].ptr<float>()[anchor] = obj;
  for (int i = 0; i < 4; ++i) out[4 * stride_index + 2].ptr<float>()[4 * anchor + i] = bbox[i];
  for (int i = 0; i < 10; ++i) out[4 * stride_index + 3].ptr<float>()[10 * anchor + i] = kps[i];
}

TEST(Yunet, APlantedAnchorDecodesToTheHandComputedBoxAndLandmarks) {
  auto out = zero_outputs(320);
  // Stride 16, 20x20 anchors: row 5, col 7 is anchor 107. score = sqrt(0.81 * 1) = 0.9;
  // centre = (7 + 0.5, 5 + 0.25) * 16 = (120, 84); size = (4, 5) * 16 = (64, 80);
  // box = (120 - 32, 84 - 40, 64, 80); landmark 0 = (7 + 0.1, 5 + 0.2) * 16 = (113.6, 83.2).
  plant(out, 1, 107, 0.81f, 1.0f, {0.5f, 0.25f, std::log(4.0f), std::log(5.0f)},
        {0.1f, 0.2f, 0.9f, 0.2f, 0.5f, 0.5f, 0.2f, 0.8f, 0.8f, 0.8f});
  const auto faces = fer::decode_yunet(out, 320, 0.5f, 0.3f);
  ASSERT_EQ(faces.size(), 1u);
  EXPECT_EQ(faces[0].box, cv::Rect(88, 44, 64, 80));
  EXPECT_NEAR(faces[0].score, 0.9f, 1e-6);
  ASSERT_EQ(faces[0].landmarks.size(), 5u);
  EXPECT_NEAR(faces[0].landmarks[0].x, 113.6f, 1e-4);
  EXPECT_NEAR(faces[0].landmarks[0].y, 83.2f, 1e-4);
  EXPECT_NEAR(faces[0].landmarks[4].x, (7 + 0.8f) * 16, 1e-4);
  EXPECT_NEAR(faces[0].landmarks[4].y, (5 + 0.8f) * 16, 1e-4);
}

TEST(Yunet, ThresholdAndNmsKeepTheBestOfOverlappingBoxesHighestScoreFirst) {
  auto out = zero_outputs(320);
  const std::array<float, 10> no_kps{};
  // Stride 8 (40x40): anchor (10, 10) = 410 with score 0.8; its neighbour (10, 11) = 411 with
  // score 0.7, the same size one stride right: IoU of two 32-px boxes 8 px apart = 24/40 = 0.6 > 0.3.
  plant(out, 0, 410, 0.64f, 1.0f, {0, 0, std::log(4.0f), std::log(4.0f)}, no_kps);
  plant(out, 0, 411, 0.49f, 1.0f, {0, 0, std::log(4.0f), std::log(4.0f)}, no_kps);
  // Stride 32 (10x10): anchor (2, 8) = 28 far away, score sqrt(1.5 clamped to 1 * 0.81) = 0.9.
  plant(out, 2, 28, 1.5f, 0.81f, {0, 0, 0, 0}, no_kps);
  // Below the threshold: score sqrt(0.25) = 0.5 < 0.6.
  plant(out, 2, 0, 0.25f, 1.0f, {0, 0, 0, 0}, no_kps);
  const auto faces = fer::decode_yunet(out, 320, 0.6f, 0.3f);
  ASSERT_EQ(faces.size(), 2u);
  EXPECT_NEAR(faces[0].score, 0.9f, 1e-6);
  EXPECT_EQ(faces[0].box, cv::Rect(8 * 32 - 16, 2 * 32 - 16, 32, 32));
  EXPECT_NEAR(faces[1].score, 0.8f, 1e-6);
  EXPECT_EQ(faces[1].box, cv::Rect(10 * 8 - 16, 10 * 8 - 16, 32, 32));
  // Without suppression (threshold 1) the neighbour stays.
  EXPECT_EQ(fer::decode_yunet(out, 320, 0.6f, 1.0f).size(), 3u);
}

TEST(Yunet, MisshapenOutputsAreRejectedByName) {
  auto out = zero_outputs(320);
  const int shape[] = {1, 400, 3};
  out[6] = cv::Mat(3, shape, CV_32F, cv::Scalar(0));  // bbox_16 should be [1, 400, 4]
  try {
    fer::decode_yunet(out, 320, 0.5f, 0.3f);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("bbox_16"), std::string::npos) << e.what();
  }
  EXPECT_THROW(fer::decode_yunet(std::vector<cv::Mat>(11), 320, 0.5f, 0.3f), std::invalid_argument);
  EXPECT_THROW(fer::decode_yunet(zero_outputs(320), 640, 0.5f, 0.3f), std::invalid_argument);  // shapes of 320
}

TEST(Yunet, TheModelIsFoundBesideTheProgramOrWhereConfigured) {
  for (int size : {320, 640}) {
    const auto path = fer::find_yunet_model("", size);
    EXPECT_TRUE(fs::is_regular_file(path)) << path;
    EXPECT_NE(path.find("yunet_s_" + std::to_string(size)), std::string::npos) << path;
  }
  try {
    fer::find_yunet_model("/nonexistent/yunet.onnx", 320);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("faces.yunet_model"), std::string::npos) << e.what();
  }
  // A file that is not an ONNX model fails when the detector is built, naming the file.
  TempDir dir;
  fer_test::write_file(dir / "not_a_model.onnx", "this is text, not a network");
  fer::FacesConfig config;
  config.detector = "yunet";
  config.yunet_model = dir / "not_a_model.onnx";
  try {
    fer::FaceDetector detector(config);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("not_a_model.onnx"), std::string::npos) << e.what();
  }
}

TEST(FaceDetector, HaarWithAlignmentCropsSquareWithoutLandmarks) {
  fer::FacesConfig config;
  config.detector = "haar";
  config.align = true;  // the default: align where the detector gives landmarks
  EXPECT_NO_THROW(fer::FaceDetector{config});
  fer::Face face;
  face.box = cv::Rect(40, 50, 60, 60);
  const cv::Matx23d m = fer::face_crop_transform(face, config);
  const auto framing = fer::fer2013_box_framing("haar");
  EXPECT_NEAR(m(0, 0), framing.side / 60.0, 1e-9);  // square: one scale, no rotation
  EXPECT_NEAR(m(1, 1), framing.side / 60.0, 1e-9);
  EXPECT_EQ(m(0, 1), 0.0);
  EXPECT_NEAR(m(0, 0) * 70 + m(0, 2), framing.centre.x, 1e-6);  // the box centre lands on FER-2013's
  EXPECT_NEAR(m(1, 1) * 80 + m(1, 2), framing.centre.y, 1e-6);
  EXPECT_THROW(fer::fer2013_box_framing("mtcnn"), std::invalid_argument);
}

// Frames of the real clip, every `step`-th.
std::vector<cv::Mat> clip_frames(int step) {
  std::vector<cv::Mat> frames;
  cv::VideoCapture capture(real_clip());
  cv::Mat frame;
  for (int i = 0; capture.read(frame); ++i)
    if (i % step == 0) frames.push_back(frame.clone());
  return frames;
}

TEST(Yunet, OnTheRealClipItsFacesOverlapHaarsWhereBothFindOne) {
  if (real_clip().empty()) GTEST_SKIP() << "../shared/data/video/face_clip_640x360.mp4 not found";
  fer::FacesConfig haar_config, yunet_config;
  yunet_config.detector = "yunet";
  const fer::FaceDetector haar(haar_config), yunet(yunet_config);
  int both = 0, overlapping = 0, yunet_frames = 0;
  for (const auto& frame : clip_frames(3)) {
    const auto h = haar.detect(frame);
    const auto y = yunet.detect_faces(frame);
    if (!y.empty()) ++yunet_frames;
    for (const auto& f : y) {
      ASSERT_EQ(f.landmarks.size(), 5u);
      // Landmarks lie in or near their box; the eyes above the mouth corners.
      EXPECT_TRUE(fer::grow_box(f.box, 0.25, frame.size()).contains(f.landmarks[2]));
      EXPECT_LT(f.landmarks[0].y, f.landmarks[3].y);
      EXPECT_GE(f.score, yunet_config.score_threshold);
    }
    if (h.empty() || y.empty()) continue;
    ++both;
    double best = 0;
    for (const auto& f : y) best = std::max(best, fer::box_iou(f.box, h[0]));
    if (best >= 0.5) ++overlapping;
  }
  ASSERT_GE(both, 20) << "the clip's speaker should be found by both detectors in many frames";
  EXPECT_GE(overlapping, 0.8 * both) << overlapping << " of " << both;
  EXPECT_GE(yunet_frames, both);
}

TEST(Yunet, BoxesFollowTheImageThroughPaddingAndRegions) {
  if (real_clip().empty()) GTEST_SKIP() << "../shared/data/video/face_clip_640x360.mp4 not found";
  fer::FacesConfig config;
  config.detector = "yunet";
  const fer::FaceDetector yunet(config);
  cv::Mat frame;
  fer::Face face;
  for (const auto& f : clip_frames(10)) {
    const auto faces = yunet.detect_faces(f);
    if (faces.size() == 1) {
      frame = f;
      face = faces[0];
      break;
    }
  }
  ASSERT_FALSE(frame.empty()) << "no frame of the clip with exactly one face";
  // The same frame placed at an offset inside a larger canvas (a different letterbox scale).
  cv::Mat canvas(600, 900, CV_8UC3, cv::Scalar(0, 0, 0));
  const cv::Point offset(200, 150);
  frame.copyTo(canvas(cv::Rect(offset, frame.size())));
  const auto moved = yunet.detect_faces(canvas);
  ASSERT_FALSE(moved.empty());
  EXPECT_GT(fer::box_iou(moved[0].box, face.box + offset), 0.7);
  // Re-detection near the box (the region alone, enlarged into the input) finds the same face.
  const auto near = yunet.detect_faces_near(frame, face.box);
  ASSERT_EQ(near.size(), 1u);
  EXPECT_GT(fer::box_iou(near[0].box, face.box), 0.7);
  EXPECT_LT(cv::norm(near[0].landmarks[2] - face.landmarks[2]), 0.1 * face.box.width);
}

TEST(FaceInput, EyeRollIsTheAngleFromTheRightEyeToTheLeft) {
  fer::Face face;
  EXPECT_EQ(fer::eye_roll_degrees(face), 0.0);  // Haar: no landmarks
  face.landmarks = {{10, 10}, {20, 20}, {0, 0}, {0, 0}, {0, 0}};
  EXPECT_NEAR(fer::eye_roll_degrees(face), 45.0, 1e-9);
  face.landmarks[1] = {20, 10};
  EXPECT_NEAR(fer::eye_roll_degrees(face), 0.0, 1e-9);
  face.landmarks[1] = {20, 0};
  EXPECT_NEAR(fer::eye_roll_degrees(face), -45.0, 1e-9);
}

// A textured "face" rotated by 25 degrees about its box centre, with its eye
// landmarks rotated alike: the aligned crop matches the upright crop far more
// closely than the unaligned one does.
TEST(FaceInput, BoxFramingAlignmentUndoesARotationOfTheEyes) {
  cv::Mat upright(200, 200, CV_8U, cv::Scalar(128));
  cv::rectangle(upright, cv::Rect(60, 60, 80, 80), cv::Scalar(200), cv::FILLED);
  cv::rectangle(upright, cv::Rect(70, 80, 20, 10), cv::Scalar(20), cv::FILLED);   // eyes
  cv::rectangle(upright, cv::Rect(110, 80, 20, 10), cv::Scalar(20), cv::FILLED);
  cv::rectangle(upright, cv::Rect(80, 115, 40, 8), cv::Scalar(60), cv::FILLED);   // mouth
  const cv::Point2f centre(100, 100);
  const double angle = 25.0;
  // Rotating the image by -angle (clockwise on screen) puts the eyes at +angle.
  const cv::Mat to_tilted = cv::getRotationMatrix2D(centre, -angle, 1.0);
  cv::Mat tilted;
  cv::warpAffine(upright, tilted, to_tilted, upright.size(), cv::INTER_LINEAR, cv::BORDER_REPLICATE);
  auto moved = [&](cv::Point2f p) {
    return cv::Point2f(static_cast<float>(to_tilted.at<double>(0, 0) * p.x + to_tilted.at<double>(0, 1) * p.y + to_tilted.at<double>(0, 2)),
                       static_cast<float>(to_tilted.at<double>(1, 0) * p.x + to_tilted.at<double>(1, 1) * p.y + to_tilted.at<double>(1, 2)));
  };
  fer::Face face;
  face.box = cv::Rect(60, 60, 80, 80);
  face.landmarks = {moved({80, 85}), moved({120, 85}), moved({100, 100}), moved({85, 119}), moved({115, 119})};
  EXPECT_NEAR(fer::eye_roll_degrees(face), angle, 1e-3);

  fer::FacesConfig config;
  config.framing = "box";
  config.margin = 0.1;
  const auto reference = fer::face_input(upright, face.box, config.margin);
  config.align = true;
  const auto aligned = fer::face_input(tilted, face, config);
  config.align = false;
  const auto unaligned = fer::face_input(tilted, face, config);
  auto mean_abs_diff = [&](const std::vector<std::uint8_t>& a) {
    double sum = 0;
    for (std::size_t i = 0; i < a.size(); ++i) sum += std::abs(int(a[i]) - int(reference[i]));
    return sum / a.size();
  };
  EXPECT_LT(mean_abs_diff(aligned), 3.0);
  EXPECT_GT(mean_abs_diff(unaligned), 4 * mean_abs_diff(aligned));
}

TEST(FaceInput, SimilarityTransformRecoversARotationScaleAndShiftWorkedByHand) {
  // q = 2 * (rotation by 90 degrees) * p + (5, -3): a = 0, b = 2.
  const std::vector<cv::Point2f> from{{0, 0}, {1, 0}, {0, 1}, {3, 2}};
  std::vector<cv::Point2f> to;
  for (const auto& p : from) to.emplace_back(-2 * p.y + 5, 2 * p.x - 3);
  const cv::Matx23d m = fer::similarity_transform(from, to);
  const cv::Matx23d expected(0, -2, 5, 2, 0, -3);
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 3; ++c) EXPECT_NEAR(m(r, c), expected(r, c), 1e-9) << r << "," << c;
  // Points off a similarity: the least-squares fit, still without reflection or shear.
  const cv::Matx23d fit = fer::similarity_transform({{0, 0}, {2, 0}, {0, 2}}, {{0, 0}, {2, 0}, {0, -2}});
  EXPECT_NEAR(fit(0, 0), fit(1, 1), 1e-12);
  EXPECT_NEAR(fit(0, 1), -fit(1, 0), 1e-12);
  EXPECT_THROW(fer::similarity_transform({{1, 1}, {1, 1}}, {{0, 0}, {1, 1}}), std::invalid_argument);
  EXPECT_THROW(fer::similarity_transform({{1, 1}}, {{0, 0}}), std::invalid_argument);
}

// A round face in a tall box (YuNet's boxes are about 2:3) stays round in the
// fer2013 crop; the old box framing stretched it.
TEST(FaceInput, SquareCropsNeverStretchAFace) {
  cv::Mat image(240, 240, CV_8U, cv::Scalar(30));
  cv::circle(image, cv::Point(120, 120), 40, cv::Scalar(220), cv::FILLED, cv::LINE_AA);
  fer::Face face;
  face.box = cv::Rect(90, 75, 60, 90);
  auto extent = [](const std::vector<std::uint8_t>& crop) {  // the bright disc's width and height in the crop
    cv::Mat m(48, 48, CV_8U, const_cast<std::uint8_t*>(crop.data()));
    const cv::Rect r = cv::boundingRect(m > 125);
    return cv::Size(r.width, r.height);
  };
  for (const char* detector : {"haar", "yunet"}) {
    fer::FacesConfig config;
    config.detector = detector;
    const auto square = extent(fer::face_input(image, face, config));
    EXPECT_NEAR(square.width, square.height, 1) << detector;
    config.framing = "box";
    const auto stretched = extent(fer::face_input(image, face, config));
    EXPECT_GT(stretched.width, 1.3 * stretched.height) << detector;
  }
}

// FER-2013's template landmarks turned by `angle` radians about the origin,
// scaled by `scale` and shifted by (200, 90).
fer::Face moved_template_face(double angle, double scale) {
  fer::Face face;
  for (const auto& p : fer::fer2013_landmarks())
    face.landmarks.emplace_back(static_cast<float>(scale * (std::cos(angle) * p.x - std::sin(angle) * p.y) + 200),
                                static_cast<float>(scale * (std::sin(angle) * p.x + std::cos(angle) * p.y) + 90));
  return face;
}

// Five landmarks placed on FER-2013's template, then moved by a rotation, scale
// and shift: the aligned crop maps them back onto the template.
TEST(FaceInput, LandmarkAlignmentPutsAMovedTemplateBackOnFer2013sMeanPositions) {
  const auto& template_points = fer::fer2013_landmarks();
  fer::Face face = moved_template_face(0.4, 3.5);
  face.box = cv::boundingRect(face.landmarks);
  fer::FacesConfig config;
  config.detector = "yunet";
  config.align_to = "landmarks";
  const cv::Matx23d m = fer::face_crop_transform(face, config);
  for (std::size_t i = 0; i < 5; ++i) {
    const cv::Vec2d q = m * cv::Vec3d(face.landmarks[i].x, face.landmarks[i].y, 1);
    EXPECT_NEAR(q[0], template_points[i].x, 1e-3);
    EXPECT_NEAR(q[1], template_points[i].y, 1e-3);
  }
  config.align = false;  // landmarks ignored: the square box crop, unrotated
  EXPECT_EQ(fer::face_crop_transform(face, config)(0, 1), 0.0);
}

// A face turned aside: its eyes and mouth corners draw together across the
// face, its height does not. The crop keeps the upright face's scale.
TEST(FaceInput, AFaceTurnedAsideIsNotZoomedIn) {
  const auto& t = fer::fer2013_landmarks();
  fer::Face frontal, turned;
  const float axis = (t[0].x + t[1].x) / 2;
  for (const auto& p : t) {
    frontal.landmarks.emplace_back(4 * p.x + 100, 4 * p.y + 50);
    turned.landmarks.emplace_back(4 * (axis + 0.6f * (p.x - axis)) + 100, 4 * p.y + 50);
  }
  frontal.box = cv::boundingRect(frontal.landmarks);
  turned.box = cv::boundingRect(turned.landmarks);
  fer::FacesConfig config;
  config.detector = "yunet";
  config.align_to = "landmarks";
  const cv::Matx23d a = fer::face_crop_transform(frontal, config), b = fer::face_crop_transform(turned, config);
  EXPECT_NEAR(std::hypot(a(0, 0), a(1, 0)), 0.25, 1e-6);
  EXPECT_NEAR(std::hypot(b(0, 0), b(1, 0)), 0.25, 0.01);
}

// The default alignment (faces.align_to box): the template's landmarks turned by
// 0.4 rad and scaled 3.5x in a box of 150 x 180 px. The crop is the box framed as
// FER-2013's (its centre on the measured centre, its side sqrt(150 * 180) on the
// measured side) and turned back upright: the eyes-to-mouth axis lies as the
// template's. Opening the mouth (corners 20 px lower) turns and zooms nothing.
TEST(FaceInput, BoxAlignmentTakesScaleAndCentreFromTheBoxAndTurnsTheFaceUpright) {
  const double angle = 0.4, scale = 3.5;
  fer::Face face = moved_template_face(angle, scale);
  face.box = cv::Rect(150, 80, 150, 180);
  fer::FacesConfig config;
  config.detector = "yunet";
  const auto frame = fer::fer2013_box_framing("yunet");
  const double k = frame.side / std::sqrt(150.0 * 180.0);
  const cv::Matx23d m = fer::face_crop_transform(face, config);
  EXPECT_NEAR(std::hypot(m(0, 0), m(1, 0)), k, 1e-9);
  EXPECT_NEAR(std::atan2(m(1, 0), m(0, 0)), -angle, 1e-6);  // turned back by the face's roll
  const cv::Vec2d centre = m * cv::Vec3d(225, 170, 1);
  EXPECT_NEAR(centre[0], frame.centre.x, 1e-6);
  EXPECT_NEAR(centre[1], frame.centre.y, 1e-6);

  fer::Face laughing = face;  // the mouth corners move down the face's axis (eyes' midpoint to mouth's)
  const auto& l = face.landmarks;
  const cv::Point2f axis = (l[3] + l[4]) * 0.5f - (l[0] + l[1]) * 0.5f;
  for (int i : {3, 4}) laughing.landmarks[i] += axis * static_cast<float>(20 / cv::norm(axis));
  const cv::Matx23d open = fer::face_crop_transform(laughing, config);
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 3; ++c) EXPECT_NEAR(open(r, c), m(r, c), 1e-4) << r << "," << c;  // float landmarks
  config.align_to = "landmarks";  // the template reads the longer face as a larger one: it zooms out
  const cv::Matx23d by_template = fer::face_crop_transform(laughing, config);
  EXPECT_LT(std::hypot(by_template(0, 0), by_template(1, 0)), 0.85 / scale);
}

// A face five times the crop's size is area-averaged before sampling: one-pixel
// stripes average to grey instead of aliasing into coarse bands.
TEST(FaceInput, ALargeFaceIsShrunkByAreaNotAliased) {
  cv::Mat image(400, 400, CV_8U);
  for (int x = 0; x < image.cols; ++x) image.col(x).setTo(x % 2 ? 255 : 0);
  fer::Face face;
  face.box = cv::Rect(80, 80, 240, 240);
  const auto crop = fer::face_input(image, face, fer::FacesConfig{});
  cv::Scalar mean, sd;
  cv::meanStdDev(cv::Mat(48, 48, CV_8U, const_cast<std::uint8_t*>(crop.data())), mean, sd);
  EXPECT_NEAR(mean[0], 127.5, 8);
  EXPECT_LT(sd[0], 12);
}

TEST(LiveWithYunet, TheClipRunsEndToEndWithFacesAndTracks) {
  if (real_clip().empty()) GTEST_SKIP() << "../shared/data/video/face_clip_640x360.mp4 not found";
  TempDir dir;
  fer::LiveOptions options;
  options.source = real_clip();
  options.out_dir = dir / "session";
  options.charts = false;
  options.progress = false;
  options.write_video = false;
  // The speaker is on screen from about frame 90 (3 s) of 275.
  options.config.faces.detector = "yunet";
  options.config.faces.align = true;
  const auto summary = fer::run_live(
      (fs::path(fer_test::source_dir()) / "experiments" / "fer2013_paper_cnn" / "best.pt").string(), options);
  EXPECT_EQ(summary.frames, 275);
  EXPECT_GT(summary.frames_with_faces, 100);
  EXPECT_GE(summary.tracks, 1);
  std::ifstream env(dir / "session/environment.json");
  const auto json = nlohmann::json::parse(env);
  EXPECT_EQ(json["face_detector"], "yunet");
}

}  // namespace
