#include "fer/live/wellbeing.h"

#include <algorithm>
#include <iterator>
#include <stdexcept>

#include "fer/common/emotions.h"

namespace fer {

WellbeingMonitor::WellbeingMonitor(const AlertConfig& config, const std::vector<std::string>& class_names)
    : config_(config), class_names_(class_names), negative_(class_names.size(), false) {
  for (const auto& name : config.negative_emotions) {
    const auto it = std::find(class_names.begin(), class_names.end(), name);
    if (it == class_names.end())
      throw ConfigError("alert.negative_emotions: '" + name + "' is not a class of the model (its classes: " +
                        class_name_list(class_names) + "); name some of them, or set alert.enabled: false");
    negative_[it - class_names.begin()] = true;
  }
}

std::optional<WellbeingAlert> WellbeingMonitor::observe(int track, double time_s, int label) {
  if (label < 0 || label >= static_cast<int>(class_names_.size()))
    throw std::invalid_argument("WellbeingMonitor::observe: label " + std::to_string(label) + " out of range");
  if (time_s >= next_forget_s_) forget_idle_tracks(time_s);
  TrackState& s = tracks_[track];
  if (s.counts.empty()) s.counts.assign(class_names_.size(), 0);
  if (!s.window.empty() && time_s < s.window.back().first)
    throw std::invalid_argument("WellbeingMonitor::observe: time went backwards for track " + std::to_string(track));
  s.window.emplace_back(time_s, label);
  ++s.counts[label];
  // The window is (time - window_s, time].
  while (s.window.front().first <= time_s - config_.window_s) {
    --s.counts[s.window.front().second];
    s.window.pop_front();
  }
  int negatives = 0;
  for (std::size_t c = 0; c < negative_.size(); ++c)
    if (negative_[c]) negatives += s.counts[c];
  const double share = static_cast<double>(negatives) / s.window.size();
  if (share <= config_.threshold) {
    s.above_since.reset();
    return std::nullopt;
  }
  if (!s.above_since) s.above_since = time_s;
  if (time_s - *s.above_since < config_.min_duration_s) return std::nullopt;
  if (s.last_alert && time_s - *s.last_alert < config_.cooldown_s) return std::nullopt;
  s.last_alert = time_s;
  WellbeingAlert alert;
  alert.track = track;
  alert.time_s = time_s;
  alert.window_start_s = s.window.front().first;
  alert.above_since_s = *s.above_since;
  alert.observations = static_cast<int>(s.window.size());
  alert.negative_share = share;
  for (int c : s.counts) alert.shares.push_back(static_cast<double>(c) / s.window.size());
  return alert;
}

void WellbeingMonitor::forget_idle_tracks(double now_s) {
  for (auto it = tracks_.begin(); it != tracks_.end();) {
    const TrackState& s = it->second;
    const bool window_passed = s.window.empty() || s.window.back().first <= now_s - config_.window_s;
    const bool cooled_down = !s.last_alert || now_s - *s.last_alert >= config_.cooldown_s;
    it = window_passed && cooled_down ? tracks_.erase(it) : std::next(it);
  }
  next_forget_s_ = now_s + config_.window_s / 2;
}

nlohmann::json WellbeingMonitor::to_json(const WellbeingAlert& a) const {
  nlohmann::json shares = nlohmann::json::object();
  for (std::size_t c = 0; c < class_names_.size(); ++c) shares[class_names_[c]] = a.shares[c];
  return {{"event", "wellbeing_alert"},
          {"time_s", a.time_s},
          {"track", a.track},
          {"window", {{"start_s", a.window_start_s}, {"end_s", a.time_s}, {"observations", a.observations},
                      {"negative_share", a.negative_share}, {"shares", shares}}},
          {"above_threshold_since_s", a.above_since_s},
          {"rule", {{"negative_emotions", config_.negative_emotions}, {"window_s", config_.window_s},
                    {"threshold", config_.threshold}, {"min_duration_s", config_.min_duration_s},
                    {"cooldown_s", config_.cooldown_s}}}};
}

}  // namespace fer
