// Faces across frames: per-track smoothing, the tracker, face crops and the
// Haar cascade's lookup.
#include <gtest/gtest.h>

#include <opencv2/core.hpp>
#include <vector>

#include "fer/faces/faces.h"
#include "fer/faces/tracking.h"
#include "test_util.h"

namespace {
std::vector<float> one_hot(int c, int k = 7) {
  std::vector<float> v(k, 0.0f);
  v[c] = 1.0f;
  return v;
}

// ---- smoothing --------------------------------------------------------------

TEST(RollingMean, AveragesTheLastNVectorsByHand) {
  fer::RollingMean mean(3, 2);
  const float a[] = {1, 0}, b[] = {0, 1}, c[] = {1, 1}, d[] = {0, 0};
  EXPECT_FLOAT_EQ(mean.push(a)[0], 1.0f);          // [1,0]
  EXPECT_FLOAT_EQ(mean.push(b)[1], 0.5f);          // mean of a,b = [0.5,0.5]
  const auto m3 = mean.push(c);                    // a,b,c = [2/3, 2/3]
  EXPECT_NEAR(m3[0], 2.0 / 3, 1e-6);
  EXPECT_NEAR(m3[1], 2.0 / 3, 1e-6);
  const auto m4 = mean.push(d);                    // b,c,d = [1/3, 2/3]: a has left the window
  EXPECT_NEAR(m4[0], 1.0 / 3, 1e-6);
  EXPECT_NEAR(m4[1], 2.0 / 3, 1e-6);
  EXPECT_EQ(mean.count(), 3);
  EXPECT_THROW(fer::RollingMean(0, 2), std::invalid_argument);
}

TEST(RollingMean, StaysExactOverLongStreams) {
  fer::RollingMean mean(5, 1);
  float v = 0;
  for (int i = 0; i < 100000; ++i) {
    v = static_cast<float>(i % 7) * 0.1f;
    mean.push(&v);
  }
  // Last five values: i = 99995..99999 -> i%7 = 0..4 shifted; compute directly.
  double expected = 0;
  for (int i = 99995; i < 100000; ++i) expected += (i % 7) * 0.1;
  EXPECT_NEAR(mean.mean()[0], expected / 5, 1e-5);
}

// ---- tracking ---------------------------------------------------------------

TEST(FaceTracker, KeepsIdsOfMovingFacesAndMatchesByOverlap) {
  fer::FaceTracker tracker(0.3, 2, 5, 7);
  // Two faces moving 4 px per frame in opposite directions, given in swapped order on odd frames.
  for (int f = 0; f < 20; ++f) {
    const cv::Rect left(20 + 4 * f, 50, 60, 60), right(300 - 4 * f, 60, 60, 60);
    const bool swap = f % 2 == 1;
    const auto ids = tracker.update(swap ? std::vector<cv::Rect>{right, left} : std::vector<cv::Rect>{left, right});
    ASSERT_EQ(ids.size(), 2u);
    EXPECT_EQ(ids[swap ? 1 : 0], 1) << "frame " << f;
    EXPECT_EQ(ids[swap ? 0 : 1], 2) << "frame " << f;
  }
  EXPECT_EQ(tracker.tracks_started(), 2);
}

TEST(FaceTracker, EndsATrackAfterMaxMissedFramesAndSmoothsPerTrack) {
  fer::FaceTracker tracker(0.3, 2, 2, 7);
  const cv::Rect box(10, 10, 50, 50);
  EXPECT_EQ(tracker.update({box}), std::vector<int>{1});
  EXPECT_EQ(tracker.observe(1, one_hot(3).data()).label, 3);
  tracker.update({});
  tracker.update({});  // two misses: still alive (max_missed = 2)
  EXPECT_EQ(tracker.update({box}), std::vector<int>{1});
  // Smoothing over 2 frames: happy then sad twice -> sad wins only once both frames are sad.
  const auto& t1 = tracker.observe(1, one_hot(4).data());
  EXPECT_NEAR(t1.confidence, 0.5f, 1e-6);
  EXPECT_EQ(tracker.observe(1, one_hot(4).data()).label, 4);
  for (int i = 0; i < 3; ++i) tracker.update({});  // three misses: ended
  EXPECT_TRUE(tracker.tracks().empty());
  EXPECT_EQ(tracker.update({box}), std::vector<int>{2});
  EXPECT_THROW(tracker.observe(1, one_hot(0).data()), std::out_of_range);
}

TEST(FaceTracker, GivesTheContestedTrackToTheBestOverlap) {
  fer::FaceTracker tracker(0.3, 0, 1, 7);
  tracker.update({cv::Rect(0, 0, 100, 100)});
  // Two detections overlap track 1 (IoU 0.54 and 0.90); the closer one continues it, the other starts track 2.
  const auto ids = tracker.update({cv::Rect(30, 0, 100, 100), cv::Rect(5, 5, 95, 95)});
  EXPECT_EQ(ids, (std::vector<int>{2, 1}));
}

// ---- faces ------------------------------------------------------------------------

TEST(FaceCrop, GrowsByTheMarginClipsToTheImageAndResizesTo48) {
  EXPECT_EQ(fer::grow_box(cv::Rect(100, 100, 50, 40), 0.1, cv::Size(640, 360)), cv::Rect(95, 96, 60, 48));
  EXPECT_EQ(fer::grow_box(cv::Rect(0, 0, 50, 50), 0.2, cv::Size(640, 360)), cv::Rect(0, 0, 60, 60));
  EXPECT_NEAR(fer::box_iou(cv::Rect(0, 0, 10, 10), cv::Rect(5, 0, 10, 10)), 50.0 / 150.0, 1e-12);
  // Left half of the (grown) crop black, right half white: the 48x48 input keeps that split.
  cv::Mat gray(200, 200, CV_8U, cv::Scalar(0));
  gray(cv::Rect(100, 0, 100, 200)).setTo(255);
  const auto face = fer::face_input(gray, cv::Rect(60, 60, 80, 80), 0.25);  // crop 40..160: split at its middle
  ASSERT_EQ(face.size(), 48u * 48u);
  EXPECT_EQ(face[10 * 48 + 5], 0);
  EXPECT_EQ(face[10 * 48 + 42], 255);
  EXPECT_THROW(fer::face_input(gray, cv::Rect(500, 500, 10, 10), 0.1), std::invalid_argument);
}

TEST(FaceDetector, FindsTheCascadeOrNamesWhereItLooked) {
  fer::FacesConfig config;
  config.detector = "haar";
  config.cascade = "/nonexistent/cascade.xml";
  try {
    fer::FaceDetector d(config);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/cascade.xml"), std::string::npos);
  }
  EXPECT_NO_THROW(fer::FaceDetector(fer::FacesConfig{}));
}

}  // namespace
