// Wellbeing monitor: an alert when a tracked person shows persistent negative
// emotion (handing it to an institution's own program is fer/report/live/alert_command.h).
//
// Rule (all values from AlertConfig): for each track, the share of its
// observations in the last `window_s` seconds whose (smoothed) label is one of
// `negative_emotions`. When that share stays above `threshold` for at least
// `min_duration_s`, an alert is raised; no new alert for that track until
// `cooldown_s` has passed since its last one.
#pragma once

#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "fer/config/config.h"

namespace fer {

struct WellbeingAlert {
  int track = 0;
  double time_s = 0;           // time of the observation that raised it
  double window_start_s = 0;   // first observation inside the window
  double above_since_s = 0;    // when the share last rose above the threshold
  int observations = 0;        // observations in the window
  double negative_share = 0;
  std::vector<double> shares;  // per class, over the window
};

class WellbeingMonitor {
 public:
  // Throws ConfigError for an unknown emotion in config.negative_emotions.
  WellbeingMonitor(const AlertConfig& config, const std::vector<std::string>& class_names);

  // Records `label` for `track` at `time_s` (non-decreasing per track; an
  // earlier time is std::invalid_argument). Returns an alert when the rule fires.
  // Tracks not seen for window_s, and past their cooldown, are forgotten as
  // time moves on (one that comes back starts afresh: its window has passed),
  // so memory is bounded by the tracks seen in the last max(window_s, cooldown_s).
  std::optional<WellbeingAlert> observe(int track, double time_s, int label);

  // Tracks the monitor holds state for.
  std::size_t tracked() const { return tracks_.size(); }

  // The alert as one JSON object: time, track, window statistics and the rule.
  nlohmann::json to_json(const WellbeingAlert& alert) const;

 private:
  struct TrackState {
    std::deque<std::pair<double, int>> window;  // (time, label)
    std::vector<int> counts;
    std::optional<double> above_since, last_alert;
  };
  AlertConfig config_;
  std::vector<std::string> class_names_;
  std::vector<bool> negative_;
  void forget_idle_tracks(double now_s);
  std::map<int, TrackState> tracks_;
  double next_forget_s_ = 0;
};

}  // namespace fer
