// Emotion trends of a live session: the frames.csv log, its summary and charts.
//
//   auto log = fer::read_frames_csv("session/frames.csv");
//   auto trends = fer::summarise_trends(log.records, log.class_names, /*window_s=*/10);
//   fer::write_trend_report(trends, "session/");   // summary.json + pie, bar, timeline PNGs
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
  std::vector<std::vector<std::int64_t>> windows;  // [window][class] counts
  std::int64_t observations = 0;
  double first_s = 0, last_s = 0;
};

struct TrendSummary {
  std::vector<std::string> class_names;
  double window_s = 10;
  std::int64_t frames = 0;    // distinct frame indices with at least one face
  double duration_s = 0;      // last observation's time
  TrendSeries overall;
  std::map<int, TrendSeries> tracks;
};

// Counts each record's smoothed label overall, per track and per window
// [k*window_s, (k+1)*window_s), one record at a time, so a session of any
// length is summarised in memory proportional to its duration, not its rows.
// Frames are counted as distinct runs of `frame` (records in frame order, as
// fer-live writes them).
class TrendBuilder {
 public:
  // Requires window_s > 0 (std::invalid_argument).
  TrendBuilder(std::vector<std::string> class_names, double window_s);
  // Requires a label in range and time_s >= 0 (std::invalid_argument).
  void add(const FrameRecord& record);
  // The trends so far; every track's windows span the whole session.
  TrendSummary summary() const;

 private:
  void add_to(TrendSeries& series, const FrameRecord& record, std::size_t window);
  TrendSummary summary_;
  std::int64_t last_frame_ = -1;
};

// TrendBuilder over all `records`.
TrendSummary summarise_trends(const std::vector<FrameRecord>& records, const std::vector<std::string>& class_names,
                              double window_s);

nlohmann::json to_json(const TrendSummary& summary);

// Writes out_dir/summary.json: to_json(summary) with the keys of `extra` (an
// object, e.g. {"session": ...}) added. Returns its path.
std::string write_trend_summary(const TrendSummary& summary, const std::string& out_dir,
                                const nlohmann::json& extra = nullptr);

// Draws emotion_pie.png, emotion_bar.png, emotion_timeline.png and
// tracks/track_<id>_timeline.png for the (at most `max_track_charts`) tracks
// with the most observations. Returns the files written. A chart that fails
// does not stop the others: after drawing them all, throws std::runtime_error
// naming each failed chart and why.
std::vector<std::string> plot_trends(const TrendSummary& summary, const std::string& out_dir, int max_track_charts = 12);

// write_trend_summary and, when `charts`, plot_trends. Returns the files written.
std::vector<std::string> write_trend_report(const TrendSummary& summary, const std::string& out_dir, bool charts = true,
                                            int max_track_charts = 12);

}  // namespace fer
