// The files and charts of a live session's emotion trends (the summary
// itself, TrendBuilder and frames.csv: fer/live/trends.h).
//
//   auto log = fer::read_frames_csv("session/frames.csv");
//   auto trends = fer::summarise_trends(log.records, log.class_names, {/*window_s=*/10});
//   fer::write_trend_report(trends, "session/");   // summary.json + pie, bar, timeline PNGs
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fer/live/trends.h"

namespace fer {

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
