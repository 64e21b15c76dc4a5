#include "fer/faces/tracking.h"

#include <algorithm>
#include <stdexcept>
#include <tuple>

#include "fer/faces/faces.h"

namespace fer {

RollingMean::RollingMean(int window, int size) : window_(window), sum_(size, 0.0), mean_(size, 0.0f) {
  if (window < 1 || size < 1) throw std::invalid_argument("RollingMean needs window >= 1 and size >= 1");
}

const std::vector<float>& RollingMean::push(const float* values) {
  const std::size_t n = sum_.size();
  history_.emplace_back(values, values + n);
  for (std::size_t i = 0; i < n; ++i) sum_[i] += values[i];
  if (static_cast<int>(history_.size()) > window_) {
    for (std::size_t i = 0; i < n; ++i) sum_[i] -= history_.front()[i];
    history_.pop_front();
  }
  for (std::size_t i = 0; i < n; ++i) mean_[i] = static_cast<float>(sum_[i] / history_.size());
  return mean_;
}

FaceTracker::FaceTracker(double iou_threshold, int max_missed, int smoothing_frames, int classes)
    : iou_threshold_(iou_threshold), max_missed_(max_missed), smoothing_frames_(smoothing_frames), classes_(classes) {
  if (!(iou_threshold > 0 && iou_threshold < 1) || max_missed < 0 || smoothing_frames < 1 || classes < 1)
    throw std::invalid_argument("FaceTracker: iou_threshold must be in (0,1), max_missed >= 0, smoothing_frames >= 1");
}

std::vector<int> FaceTracker::update(const std::vector<cv::Rect>& detections) {
  std::vector<std::tuple<double, int, int>> pairs;  // iou, track index, detection index
  for (int t = 0; t < static_cast<int>(tracks_.size()); ++t)
    for (int d = 0; d < static_cast<int>(detections.size()); ++d) {
      const double iou = box_iou(tracks_[t].box, detections[d]);
      if (iou >= iou_threshold_) pairs.emplace_back(iou, t, d);
    }
  // Highest overlap first; ties resolved by order so the result is deterministic.
  std::sort(pairs.begin(), pairs.end(), [](const auto& a, const auto& b) {
    if (std::get<0>(a) != std::get<0>(b)) return std::get<0>(a) > std::get<0>(b);
    return std::make_pair(std::get<1>(a), std::get<2>(a)) < std::make_pair(std::get<1>(b), std::get<2>(b));
  });
  std::vector<int> ids(detections.size(), 0);
  std::vector<bool> track_taken(tracks_.size(), false);
  for (auto& t : tracks_) t.detected = false;
  for (const auto& [iou, t, d] : pairs) {
    if (track_taken[t] || ids[d] != 0) continue;
    track_taken[t] = true;
    ids[d] = tracks_[t].id;
    tracks_[t].box = detections[d];
    tracks_[t].detected = true;
    tracks_[t].missed = 0;
    ++tracks_[t].frames_seen;
  }
  for (std::size_t t = 0; t < track_taken.size(); ++t)
    if (!track_taken[t]) ++tracks_[t].missed;
  ended_.clear();
  for (const auto& t : tracks_)
    if (t.missed > max_missed_) ended_.push_back(t.id);
  tracks_.erase(std::remove_if(tracks_.begin(), tracks_.end(), [&](const Track& t) { return t.missed > max_missed_; }),
                tracks_.end());
  for (std::size_t d = 0; d < detections.size(); ++d) {
    if (ids[d] != 0) continue;
    Track track{next_id_++, detections[d], 0, 1, true, RollingMean(smoothing_frames_, classes_)};
    ids[d] = track.id;
    tracks_.push_back(std::move(track));
  }
  return ids;
}

const Track& FaceTracker::observe(int id, const float* probabilities) {
  const auto it = std::find_if(tracks_.begin(), tracks_.end(), [id](const Track& t) { return t.id == id; });
  if (it == tracks_.end()) throw std::out_of_range("FaceTracker::observe: no track " + std::to_string(id));
  const auto& mean = it->smoother.push(probabilities);
  const auto best = std::max_element(mean.begin(), mean.end());
  it->label = static_cast<int>(best - mean.begin());
  it->confidence = *best;
  return *it;
}

}  // namespace fer
