// The live session as a step function, driven by scripted faces and synthetic
// timestamps (no video, no model): sinks, ended tracks, video pacing, bounded
// trends and wellbeing state, frames.csv retention, and a simulated day-long
// soak run whose memory must stay flat.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <opencv2/videoio.hpp>

#include "fer/data/dataset.h"
#include "fer/live/live_session.h"
#include "fer/live/wellbeing.h"
#include "fer/report/live/sinks.h"
#include "fer/report/live/trends.h"
#include "test_util.h"

namespace {
using fer_test::TempDir;
namespace fs = std::filesystem;

constexpr int kHappy = 3, kSad = 4, kNeutral = 6;

// Faces given by the test before each frame: a box and a class probability vector each.
class ScriptedAnalyzer : public fer::FaceAnalyzer {
 public:
  struct ScriptedFace {
    cv::Rect box;
    int emotion;
  };
  std::vector<ScriptedFace> next;  // the faces of the next frame
  const std::vector<std::string>& class_names() const override { return fer::emotion_names(); }
  std::vector<fer::Face> detect(const cv::Mat&, bool, const std::vector<cv::Rect>&) override {
    std::vector<fer::Face> faces;
    for (const auto& f : next) faces.push_back({f.box, 1.0f, {}});
    return faces;
  }
  void classify(const cv::Mat&, std::vector<fer::FaceObservation>& faces) override {
    for (std::size_t i = 0; i < faces.size(); ++i) {
      faces[i].probabilities.assign(7, 0.05f);
      faces[i].probabilities[next[i].emotion] = 0.7f;
    }
  }
};

// Keeps what it is given.
struct RecordingSink : fer::LiveSink {
  std::vector<fer::FrameObservations> frames;
  std::vector<std::pair<int, double>> ended;
  int ends = 0;
  int fail_at_frame = -1;
  std::string name() const override { return "recorder"; }
  void on_frame(const fer::FrameObservations& o, const cv::Mat&) override {
    if (static_cast<int>(o.frame) == fail_at_frame) throw std::runtime_error("boom");
    frames.push_back(o);
  }
  void on_tracks_ended(const std::vector<int>& ids, double t) override {
    for (int id : ids) ended.emplace_back(id, t);
  }
  void on_end(fer::LiveSummary&) override { ++ends; }
};

fer::LiveConfig small_live_config() {
  fer::LiveConfig c;
  c.max_missed_frames = 2;
  c.smoothing_frames = 2;
  return c;
}

TEST(LiveSession, SmoothsPerTrackAndReportsEndedTracksToEverySink) {
  auto analyzer = std::make_unique<ScriptedAnalyzer>();
  auto* script = analyzer.get();
  fer::LiveSession session(std::move(analyzer), small_live_config(), /*annotate=*/true);
  auto recorder = std::make_unique<RecordingSink>();
  auto* rec = recorder.get();
  session.add_sink(std::move(recorder));
  cv::Mat frame(60, 120, CV_8UC3, cv::Scalar::all(0));
  // Face A (happy, then sad) for frames 0-2; face B (neutral) throughout, 0-5.
  for (int i = 0; i < 6; ++i) {
    script->next.clear();
    if (i < 3) script->next.push_back({{10, 10, 20, 20}, i < 2 ? kHappy : kSad});
    script->next.push_back({{70, 10, 20, 20}, kNeutral});
    session.process(frame, i * 0.5);
  }
  ASSERT_EQ(rec->frames.size(), 6u);
  const auto& a2 = rec->frames[2].faces[0];
  EXPECT_EQ(a2.track, 1);
  // Rolling mean over 2 frames of happy (0.7 happy) and sad (0.7 sad): 0.375 each; argmax ties go to the lower index.
  EXPECT_FLOAT_EQ(a2.smoothed[kHappy], 0.375f);
  EXPECT_FLOAT_EQ(a2.smoothed[kSad], 0.375f);
  EXPECT_EQ(a2.label, kHappy);
  EXPECT_EQ(rec->frames[5].faces.size(), 1u);
  EXPECT_EQ(rec->frames[5].faces[0].track, 2);
  // Track 1 is missed in frames 3, 4, 5 and ends at the third miss (max_missed 2), at t = 2.5 s.
  ASSERT_EQ(rec->ended.size(), 1u);
  EXPECT_EQ(rec->ended[0], std::make_pair(1, 2.5));
  const auto summary = session.finish({});
  EXPECT_EQ(summary.frames, 6);
  EXPECT_EQ(summary.faces, 9);
  EXPECT_EQ(summary.tracks, 2);
  ASSERT_EQ(rec->ended.size(), 2u);  // finish() ends the track still live
  EXPECT_EQ(rec->ended[1].first, 2);
  EXPECT_EQ(rec->ends, 1);
  EXPECT_THROW(session.finish({}), std::logic_error);
}

TEST(LiveSession, AFailingSinkIsReportedAndDroppedAndTheSessionGoesOn) {
  auto analyzer = std::make_unique<ScriptedAnalyzer>();
  analyzer->next.push_back({{10, 10, 20, 20}, kHappy});
  fer::LiveSession session(std::move(analyzer), small_live_config(), /*annotate=*/false);
  auto failing = std::make_unique<RecordingSink>();
  failing->fail_at_frame = 3;
  auto* first = failing.get();
  auto healthy = std::make_unique<RecordingSink>();
  auto* second = healthy.get();
  session.add_sink(std::move(failing));
  session.add_sink(std::move(healthy));
  cv::Mat frame(60, 120, CV_8UC3, cv::Scalar::all(0));
  for (int i = 0; i < 6; ++i) session.process(frame, i * 0.1);
  ASSERT_EQ(session.dropped_sinks().size(), 1u);
  EXPECT_EQ(session.dropped_sinks()[0], "recorder failed at frame 3 (0.30 s): boom");
  EXPECT_EQ(first->frames.size(), 3u);   // frames 0..2; nothing after it failed
  EXPECT_EQ(second->frames.size(), 6u);  // the others see every frame
  const auto summary = session.finish({});
  EXPECT_EQ(summary.end_reason, "");
  EXPECT_EQ(summary.frames, 6);
  ASSERT_EQ(summary.warnings.size(), 1u);
  EXPECT_EQ(summary.warnings[0], "recorder failed at frame 3 (0.30 s): boom; dropped, the session went on");
  EXPECT_EQ(first->ends, 1);  // the dropped sink still closes what it wrote
  EXPECT_EQ(second->ends, 1);
}

TEST(FramePacer, DuplicatesAcrossGapsAndDropsFramesThatComeTooFastByHand) {
  fer::FramePacer pacer(10);
  // Slot k of the video shows time 5.0 + k / 10; a frame fills every slot up to the nearest one.
  EXPECT_EQ(pacer.copies(5.0), 1);   // the first frame sets time zero: slot 0
  EXPECT_EQ(pacer.copies(5.1), 1);   // slot 1
  EXPECT_EQ(pacer.copies(5.42), 3);  // a late frame: slots 2, 3, 4 (duplicates)
  EXPECT_EQ(pacer.written(), 5);
  EXPECT_EQ(pacer.copies(5.43), 0);  // nearest slot 4 is filled: dropped
  EXPECT_EQ(pacer.copies(5.96), 6);  // slots 5 .. 10
  EXPECT_EQ(pacer.written(), 11);
  EXPECT_THROW(fer::FramePacer(0), std::invalid_argument);
}

TEST(LiveSession, AVideoFromASlowSourcePlaysAtRealTime) {
  auto analyzer = std::make_unique<ScriptedAnalyzer>();
  fer::LiveSession session(std::move(analyzer), small_live_config());
  int written = 0;
  TempDir dir;
  session.add_sink(fer::make_video_sink(dir.path().string(), small_live_config(), 30,
                                        [&](const cv::Mat&) { ++written; }));
  cv::Mat frame(36, 64, CV_8UC3, cv::Scalar::all(0));
  // A camera delivering 10 frames/s for 3 s into a 30 frames/s video.
  for (int i = 0; i < 30; ++i) session.process(frame, i * 0.1);
  session.finish({});
  EXPECT_EQ(written, 88);  // slots 0 .. 87 cover 0 .. 2.9 s at 30 frames/s
}

// ---- bounded trends and wellbeing state --------------------------------------

const auto record = fer_test::frame_record;

TEST(Trends, AdaptiveWindowsGiveANineSecondClipAtLeastTenWindows) {
  fer::TrendBuilder builder(fer::emotion_names(), {});
  for (int i = 0; i < 270; ++i) builder.add(record(i / 30.0, i, 1, kHappy));
  const auto s = builder.summary();
  EXPECT_DOUBLE_EQ(s.window_s, 0.5);
  EXPECT_EQ(s.overall.windows.size(), 18u);
}

TEST(Trends, WindowsMergeExactlyWhenTheSessionOutgrowsThemByHand) {
  fer::TrendOptions options;
  options.window_s = 1;
  options.max_windows = 10;
  fer::TrendBuilder builder(fer::emotion_names(), options);
  // One observation per second for 30 s; track 2 only from 25 s (label sad).
  for (int t = 0; t < 30; ++t) builder.add(record(t, t, t < 25 ? 1 : 2, t < 25 ? kHappy : kSad));
  const auto s = builder.summary();
  EXPECT_DOUBLE_EQ(s.window_s, 4);  // 1 s -> 2 s at 10 s -> 4 s at 20 s
  ASSERT_EQ(s.overall.windows.size(), 8u);  // [0,4) ... [28,32)
  for (int w = 0; w < 6; ++w) EXPECT_EQ(s.overall.windows[w][kHappy], 4) << w;
  EXPECT_EQ(s.overall.windows[6][kHappy], 1);  // 24 s
  EXPECT_EQ(s.overall.windows[6][kSad], 3);    // 25, 26, 27 s
  EXPECT_EQ(s.overall.windows[7][kSad], 2);    // 28, 29 s
  const auto& late = s.tracks.at(2);  // windows from its own start
  EXPECT_EQ(late.first_window, 6);
  ASSERT_EQ(late.windows.size(), 2u);
  EXPECT_EQ(late.windows[0][kSad], 3);
  const auto json = fer::to_json(late, s);
  EXPECT_DOUBLE_EQ(json["windows"][0]["start_s"].get<double>(), 24.0);
}

TEST(Trends, EndedTracksBeyondTheKeptFewAreDroppedAfterTheirSummary) {
  fer::TrendOptions options;
  options.max_kept_tracks = 2;
  fer::TrendBuilder builder(fer::emotion_names(), options);
  const std::map<int, int> sizes = {{1, 5}, {2, 3}, {3, 7}, {4, 1}};
  std::int64_t frame = 0;
  for (const auto& [id, n] : sizes)
    for (int i = 0; i < n; ++i) builder.add(record(frame * 0.1, frame, id, kNeutral)), ++frame;
  builder.add(record(frame * 0.1, frame, 9, kNeutral));  // still live
  for (const auto& [id, n] : sizes) EXPECT_EQ(builder.end_track(id).observations, n);
  EXPECT_EQ(builder.end_track(42).observations, 0);  // unknown: nothing
  const auto s = builder.summary();
  EXPECT_EQ(s.tracks_seen, 5);
  std::vector<int> kept;
  for (const auto& [id, t] : s.tracks) kept.push_back(id);
  EXPECT_EQ(kept, (std::vector<int>{1, 3, 9}));  // the two largest ended, and the live one
  EXPECT_EQ(builder.live_tracks(), 1u);
}

TEST(WellbeingMonitor, ForgetsTracksOnceTheirWindowAndCooldownHavePassed) {
  fer::AlertConfig rule;
  rule.window_s = 10;
  rule.min_duration_s = 1;
  rule.cooldown_s = 100;
  fer::WellbeingMonitor monitor(rule, fer::emotion_names());
  // Track 1 alerts at t = 1 s; tracks 2..50 appear once each, one per second.
  EXPECT_FALSE(monitor.observe(1, 0, kSad));
  EXPECT_TRUE(monitor.observe(1, 1, kSad));
  for (int id = 2; id <= 50; ++id) EXPECT_FALSE(monitor.observe(id, id, kHappy));
  // At 50 s only the tracks seen in the last 10 s (plus 5 s between clean-ups) and track 1 (cooldown) remain.
  EXPECT_LE(monitor.tracked(), 17u);
  EXPECT_GE(monitor.tracked(), 11u);
  monitor.observe(99, 200, kHappy);
  EXPECT_EQ(monitor.tracked(), 1u);  // track 1's cooldown has passed too
}

TEST(FramesCsvSink, RotatesByPeriodAndKeepsTheNewestFiles) {
  TempDir dir;
  fer::LiveConfig c = small_live_config();
  c.frames_rotate_s = 10;
  c.frames_keep = 2;
  auto analyzer = std::make_unique<ScriptedAnalyzer>();
  analyzer->next.push_back({{10, 10, 20, 20}, kHappy});
  fer::LiveSession session(std::move(analyzer), c, false);
  session.add_sink(fer::make_frames_csv_sink(dir.path().string(), fer::emotion_names(), c));
  cv::Mat frame(36, 64, CV_8UC3, cv::Scalar::all(0));
  for (int t = 0; t < 36; ++t) session.process(frame, t);
  const auto summary = session.finish({});
  EXPECT_FALSE(fs::exists(dir / "frames.0000.csv"));
  EXPECT_FALSE(fs::exists(dir / "frames.0001.csv"));
  const auto part2 = fer::read_frames_csv(dir / "frames.0002.csv");
  const auto part3 = fer::read_frames_csv(dir / "frames.0003.csv");
  ASSERT_EQ(part2.records.size(), 10u);
  EXPECT_DOUBLE_EQ(part2.records.front().time_s, 20);
  ASSERT_EQ(part3.records.size(), 6u);
  EXPECT_DOUBLE_EQ(part3.records.back().time_s, 35);
  EXPECT_EQ(summary.files, (std::vector<std::string>{dir / "frames.0002.csv", dir / "frames.0003.csv"}));
}

// ---- a day in minutes --------------------------------------------------------

// Bytes the allocator has handed out and not had back (0 where glibc cannot say).
std::size_t heap_in_use() {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
  const auto m = mallinfo2();
  return m.uordblks + m.hblkhd;
#else
  return 0;
#endif
}

std::size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

// Four places where faces come and go: a sad face for 20 s in every 22 s, a
// happy one for 5 s in 7, a neutral one for 3 s in 5, and a flickering one
// (Haar's false positives) for 0.5 s in 2.
struct Slot {
  double present_s, period_s;
  int emotion;
};
const Slot kSlots[] = {{20, 22, kSad}, {5, 7, kHappy}, {3, 5, kNeutral}, {0.5, 2, kHappy}};
constexpr int kFps = 10;

bool present(const Slot& slot, std::int64_t frame) {
  const auto period = static_cast<std::int64_t>(slot.period_s * kFps);
  return frame % period < static_cast<std::int64_t>(slot.present_s * kFps);
}

TEST(LiveSoak, ADayAtTenFramesPerSecondKeepsMemoryFlatFiresEveryAlertAndCountsEveryFrame) {
  const auto level = spdlog::get_level();
  spdlog::set_level(spdlog::level::err);  // thousands of alerts would otherwise be logged
  TempDir dir;
  fer::Config cfg;
  cfg.live.frames_rotate_s = 3600;
  cfg.live.frames_keep = 2;
  cfg.alert.window_s = 60;
  cfg.alert.threshold = 0.6;
  cfg.alert.min_duration_s = 10;
  cfg.alert.cooldown_s = 300;
  auto analyzer = std::make_unique<ScriptedAnalyzer>();
  auto* script = analyzer.get();
  fer::LiveSession session(std::move(analyzer), cfg.live, /*annotate=*/false);
  const std::string out = dir.path().string();
  const auto& names = fer::emotion_names();
  session.add_sink(fer::make_frames_csv_sink(out, names, cfg.live));
  session.add_sink(fer::make_alert_sink(out, names, cfg.alert, {}));
  session.add_sink(fer::make_trend_sink(out, names, cfg.live, /*charts=*/false, {}));

  const std::int64_t frames = 24LL * 3600 * kFps, warm_up = 2LL * 3600 * kFps;
  cv::Mat frame(36, 64, CV_8UC3, cv::Scalar::all(0));
  std::int64_t faces = 0, frames_with_faces = 0;
  std::vector<double> expected_alerts;  // the rule on the script: each sad visit alerts once, 10 s in
  std::size_t heap_warm = 0, resident_warm = 0;
  for (std::int64_t i = 0; i < frames; ++i) {
    script->next.clear();
    for (int s = 0; s < 4; ++s)
      if (present(kSlots[s], i)) script->next.push_back({{s * 16, 4, 12, 12}, kSlots[s].emotion});
    faces += static_cast<std::int64_t>(script->next.size());
    frames_with_faces += !script->next.empty();
    if (i % (22 * kFps) == 10 * kFps) expected_alerts.push_back(i / double(kFps));
    session.process(frame, i / double(kFps));
    ASSERT_TRUE(session.dropped_sinks().empty()) << session.dropped_sinks().front();
    if (i == warm_up) heap_warm = heap_in_use(), resident_warm = resident_bytes();
  }
  const std::size_t heap_end = heap_in_use(), resident_end = resident_bytes();
  const auto summary = session.finish({});
  spdlog::set_level(level);

  // Memory after warm-up: resident within +10%, the heap within 1 MiB (it would grow by
  // gigabytes if trends or the monitor kept every track).
  EXPECT_LE(resident_end, resident_warm + resident_warm / 10) << resident_warm << " -> " << resident_end;
  if (heap_warm > 0) EXPECT_LE(heap_end, heap_warm + (1u << 20)) << heap_warm << " -> " << heap_end;

  // Counts equal what was fed in.
  EXPECT_EQ(summary.frames, frames);
  EXPECT_EQ(summary.faces, faces);
  EXPECT_EQ(summary.frames_with_faces, frames_with_faces);
  std::ifstream summary_json(dir / "summary.json");
  const auto json = nlohmann::json::parse(summary_json);
  EXPECT_EQ(json["overall"]["observations"].get<std::int64_t>(), faces);
  EXPECT_EQ(json["frames_with_faces"].get<std::int64_t>(), frames_with_faces);
  EXPECT_EQ(json["tracks_count"].get<int>(), summary.tracks);
  EXPECT_LE(json["overall"]["windows"].size(), 120u);
  std::ifstream tracks(dir / "tracks.jsonl");
  std::int64_t track_lines = 0, observations = 0;
  for (std::string line; std::getline(tracks, line); ++track_lines)
    observations += nlohmann::json::parse(line)["observations"].get<std::int64_t>();
  EXPECT_EQ(track_lines, summary.tracks);
  EXPECT_EQ(observations, faces);

  // Alerts: one per sad visit, 10 s after it began, and no other.
  std::ifstream alerts(dir / "alerts.jsonl");
  std::vector<double> fired;
  for (std::string line; std::getline(alerts, line);) {
    const auto a = nlohmann::json::parse(line);
    EXPECT_EQ(a["window"]["shares"]["sad"].get<double>(), 1.0);
    fired.push_back(a["time_s"].get<double>());
  }
  ASSERT_EQ(fired.size(), expected_alerts.size());
  for (std::size_t k = 0; k < fired.size(); ++k) EXPECT_NEAR(fired[k], expected_alerts[k], 0.11) << k;
  EXPECT_EQ(summary.alerts, static_cast<int>(expected_alerts.size()));

  // Retention: the last two hours' frames files remain.
  EXPECT_TRUE(fs::exists(dir / "frames.0023.csv"));
  EXPECT_TRUE(fs::exists(dir / "frames.0022.csv"));
  EXPECT_FALSE(fs::exists(dir / "frames.0021.csv"));
}

}  // namespace
