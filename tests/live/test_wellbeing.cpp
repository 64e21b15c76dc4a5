// The wellbeing rule: when an alert fires, for whom, and what it carries.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <vector>

#include "fer/config/config.h"
#include "fer/common/emotions.h"
#include "fer/live/wellbeing.h"
#include "test_util.h"

namespace {

// ---- wellbeing rule -----------------------------------------------------------

using fer_test::alert_rule;

// Feeds labels at 10 Hz (t = i / 10) and returns the times of the alerts.
std::vector<double> alert_times(fer::WellbeingMonitor& m, const std::vector<int>& labels, int track = 1) {
  std::vector<double> times;
  for (std::size_t i = 0; i < labels.size(); ++i)
    if (const auto a = m.observe(track, i / 10.0, labels[i])) times.push_back(a->time_s);
  return times;
}

TEST(WellbeingMonitor, FiresWhenTheShareStaysAboveTheThresholdForTheMinimumDuration) {
  const int sad = 4, happy = 3;
  fer::WellbeingMonitor m(alert_rule(10, 0.6, 5, 1000), fer::emotion_names());
  // All sad from t = 0: the share is 1 from the first observation, so the alert comes at t = 5.0 exactly.
  const auto times = alert_times(m, std::vector<int>(100, sad));
  ASSERT_EQ(times.size(), 1u);
  EXPECT_NEAR(times[0], 5.0, 1e-9);

  // 4 s happy then sad: at t = 4.0 + k/10 (k < 60) the 10 s window holds 41+k observations, k+1 of them sad,
  // a share <= 0.6 up to k = 59 (60/100 = 0.6 is not above). At k = 60 (t = 10.0) the t = 0 observation has
  // left the window: 61/100 > 0.6. So above_since = 10.0 and the alert comes at 15.0.
  fer::WellbeingMonitor m2(alert_rule(10, 0.6, 5, 1000), fer::emotion_names());
  std::vector<int> labels(40, happy);
  labels.resize(200, sad);
  const auto t2 = alert_times(m2, labels);
  ASSERT_EQ(t2.size(), 1u);
  EXPECT_NEAR(t2[0], 15.0, 1e-9);
}

TEST(WellbeingMonitor, ADipBelowTheThresholdRestartsTheDurationAndCooldownStopsRepeats) {
  const int sad = 4, happy = 3;
  // Window 1 s (10 observations), threshold 0.5, duration 2 s, cooldown 3 s.
  fer::WellbeingMonitor m(alert_rule(1, 0.5, 2, 3), fer::emotion_names());
  std::vector<int> labels(15, sad);          // t 0.0-1.4 sad
  labels.resize(24, happy);                  // t 1.5-2.3 happy: the share falls to <= 0.5 at t 1.9 (5 of 10)
  labels.resize(150, sad);                   // t 2.4- sad again
  // After the dip the share is above 0.5 again from t = 2.9 (6 of the last 10 sad), so the first alert is at 4.9.
  std::vector<double> times = alert_times(m, labels);
  // Reference by brute force over the same rule, kept deliberately naive.
  std::vector<double> expected;
  double above_since = -1, last = -1e9;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const double t = i / 10.0;
    int n = 0, neg = 0;
    for (std::size_t j = 0; j <= i; ++j)
      if (j / 10.0 > t - 1.0) {
        ++n;
        neg += labels[j] == sad;
      }
    if (static_cast<double>(neg) / n <= 0.5) {
      above_since = -1;
      continue;
    }
    if (above_since < 0) above_since = t;
    if (t - above_since >= 2.0 && t - last >= 3.0) {
      expected.push_back(t);
      last = t;
    }
  }
  ASSERT_EQ(times.size(), expected.size());
  for (std::size_t i = 0; i < times.size(); ++i) EXPECT_NEAR(times[i], expected[i], 1e-9);
  // The first alert cannot come before the dip restarted the clock, and repeats respect the cooldown.
  ASSERT_GE(times.size(), 2u);
  EXPECT_NEAR(times[0], 4.9, 1e-9);
  for (std::size_t i = 1; i < times.size(); ++i) EXPECT_GE(times[i] - times[i - 1], 3.0 - 1e-9);
}

TEST(WellbeingMonitor, TracksAreIndependentAndBadInputIsRejected) {
  fer::WellbeingMonitor m(alert_rule(10, 0.6, 0, 1000), fer::emotion_names());
  EXPECT_TRUE(m.observe(1, 0.0, 4).has_value());   // min_duration 0: first negative observation fires
  EXPECT_FALSE(m.observe(2, 0.0, 3).has_value());  // another track, happy
  EXPECT_FALSE(m.observe(2, 0.1, 2).has_value());  // 1 of 2 fear = 0.5: not above 0.6
  EXPECT_THROW(m.observe(1, -1.0, 4), std::invalid_argument);
  EXPECT_THROW(m.observe(1, 1.0, 9), std::invalid_argument);
  auto bad = alert_rule(10, 0.6, 0, 0);
  bad.negative_emotions = {"gloomy"};
  EXPECT_THROW(fer::WellbeingMonitor(bad, fer::emotion_names()), fer::ConfigError);
}

TEST(WellbeingMonitor, AlertJsonCarriesTheWindowAndTheRule) {
  fer::WellbeingMonitor m(alert_rule(10, 0.6, 0, 1000), fer::emotion_names());
  const auto a = m.observe(7, 2.5, 2);
  ASSERT_TRUE(a);
  const auto j = m.to_json(*a);
  EXPECT_EQ(j["track"], 7);
  EXPECT_DOUBLE_EQ(j["time_s"].get<double>(), 2.5);
  EXPECT_DOUBLE_EQ(j["window"]["negative_share"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(j["window"]["shares"]["fear"].get<double>(), 1.0);
  EXPECT_EQ(j["rule"]["negative_emotions"], (std::vector<std::string>{"sad", "fear"}));
  EXPECT_DOUBLE_EQ(j["rule"]["threshold"].get<double>(), 0.6);
}

}  // namespace
