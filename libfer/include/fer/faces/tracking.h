// Faces across video frames: an IoU tracker with per-track temporal smoothing.
#pragma once

#include <deque>
#include <opencv2/core.hpp>
#include <vector>

namespace fer {

// Mean of the last `window` vectors pushed (fewer at the start).
class RollingMean {
 public:
  // Requires window >= 1 and size >= 1; throws std::invalid_argument.
  RollingMean(int window, int size);
  // Adds `values` (size() floats) and returns the mean over the window.
  const std::vector<float>& push(const float* values);
  const std::vector<float>& mean() const { return mean_; }
  int count() const { return static_cast<int>(history_.size()); }

 private:
  int window_;
  std::deque<std::vector<float>> history_;
  std::vector<double> sum_;  // running sum in double: no drift over long sessions
  std::vector<float> mean_;
};

struct Track {
  int id = 0;
  cv::Rect box;
  int missed = 0;        // consecutive frames without a matching detection
  int frames_seen = 0;
  bool detected = false; // matched in the current frame
  RollingMean smoother;
  int label = -1;        // argmax of the smoothed probabilities (-1 before the first)
  float confidence = 0;  // smoothed probability of `label`
};

class FaceTracker {
 public:
  // Requires iou_threshold in (0,1), max_missed >= 0, smoothing_frames >= 1, classes >= 1.
  FaceTracker(double iou_threshold, int max_missed, int smoothing_frames, int classes);

  // One frame's detections. Pairs are matched greedily by IoU, highest first,
  // when IoU >= iou_threshold; the matched track takes the detection's box.
  // Unmatched detections start tracks with new ids (1, 2, ...); unmatched
  // tracks count a miss and end after more than max_missed misses in a row.
  // Returns the track id of each detection, in order.
  std::vector<int> update(const std::vector<cv::Rect>& detections);

  // Ids of the tracks that ended in the last update(), oldest first.
  const std::vector<int>& ended() const { return ended_; }

  // Adds a frame's class probabilities to track `id` and updates its smoothed
  // label. Throws std::out_of_range for an unknown id.
  const Track& observe(int id, const float* probabilities);

  const std::vector<Track>& tracks() const { return tracks_; }
  int tracks_started() const { return next_id_ - 1; }

 private:
  double iou_threshold_;
  int max_missed_, smoothing_frames_, classes_;
  int next_id_ = 1;
  std::vector<Track> tracks_;
  std::vector<int> ended_;
};

}  // namespace fer
