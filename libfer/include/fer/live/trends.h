// Emotion trends of a live session: the frames.csv log and its summary (the
// files and charts: fer/report/live/trends.h).
//
//   auto log = fer::read_frames_csv("session/frames.csv");
//   auto trends = fer::summarise_trends(log.records, log.class_names, {/*window_s=*/10});
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace fer {

// One face in one frame (a row of frames.csv). Numbers only: no image data.
struct FrameRecord {
  double time_s = 0;
  std::int64_t frame = 0;
  int track = 0;
  int x = 0, y = 0, width = 0, height = 0;
  std::vector<float> probabilities;  // raw, this frame
  int label = -1;                    // smoothed label (index into the class names)
};

// "time_s,frame,track,x,y,w,h,p_<class>...,label"
std::string frames_csv_header(const std::vector<std::string>& class_names);
std::string frames_csv_row(const FrameRecord& record, const std::vector<std::string>& class_names);

struct FramesLog {
  std::vector<std::string> class_names;  // from the header's p_<class> columns
  std::vector<FrameRecord> records;
};
// Throws DataError naming file:line for a malformed header or row.
FramesLog read_frames_csv(const std::string& path);

struct TrendSeries {
  std::vector<std::int64_t> counts;                // per class
  std::int64_t first_window = 0;                   // windows[0] is window number first_window
  std::vector<std::vector<std::int64_t>> windows;  // [window][class] counts, from the series' first observation
  std::int64_t observations = 0;
  double first_s = 0, last_s = 0;
};

struct TrendSummary {
  std::vector<std::string> class_names;
  double window_s = 10;       // window k is [k*window_s, (k+1)*window_s)
  std::int64_t frames = 0;    // distinct frame indices with at least one face
  double duration_s = 0;      // last observation's time
  std::int64_t tracks_seen = 0;  // every track observed, including those no longer in `tracks`
  TrendSeries overall;
  std::map<int, TrendSeries> tracks;  // live tracks and the largest ended ones (TrendOptions::max_kept_tracks)
};

struct TrendOptions {
  // > 0: windows of this width. 0: adaptive, the narrowest of 0.5, 1, 5, 10,
  // 30, 60, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400 s (then doubling)
  // that covers the session in at most max_windows windows.
  double window_s = 0;
  // When the session outgrows this many windows, neighbouring windows are
  // merged (the width grows by a whole factor): memory stays bounded.
  int max_windows = 120;
  // Ended tracks kept in the summary: the N with the most observations
  // (0 = all). Live tracks are always kept.
  int max_kept_tracks = 0;
};

// Counts each record's smoothed label overall, per track and per window, one
// record at a time. Memory is bounded by max_windows per series, the live
// tracks and max_kept_tracks, whatever the session's length. Frames are
// counted as distinct runs of `frame` (records in frame order, as fer-live
// writes them).
class TrendBuilder {
 public:
  // Requires window_s >= 0 and max_windows >= 2 (std::invalid_argument).
  TrendBuilder(std::vector<std::string> class_names, TrendOptions options);
  // Requires a label in range and time_s >= 0 (std::invalid_argument).
  void add(const FrameRecord& record);
  // Track `id` has ended: returns its final series (all zero when it was never
  // observed) and keeps it only if it is among the max_kept_tracks largest.
  TrendSeries end_track(int id);
  // The trends so far.
  TrendSummary summary() const;
  double window_s() const { return summary_.window_s; }
  std::size_t live_tracks() const { return live_.size(); }

 private:
  void add_to(TrendSeries& series, int label, double time_s, std::int64_t window);
  void widen_windows(std::int64_t needed_window);
  void keep_ended(int id, const TrendSeries& series);
  TrendOptions options_;
  TrendSummary summary_;          // overall and the kept ended tracks
  std::map<int, TrendSeries> live_;
  std::int64_t last_frame_ = -1;
};

// TrendBuilder over all `records`; every track is kept.
TrendSummary summarise_trends(const std::vector<FrameRecord>& records, const std::vector<std::string>& class_names,
                              TrendOptions options = {});

// The series as JSON: counts, shares, dominant emotion and non-empty windows.
nlohmann::json to_json(const TrendSeries& series, const TrendSummary& summary);

nlohmann::json to_json(const TrendSummary& summary);

}  // namespace fer
