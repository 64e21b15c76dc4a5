// The standard sinks of a live session (fer/live/live_session.h): the files a
// session writes, the alert command, trend charts, video and crops.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "fer/config/config.h"
#include "fer/live/live_session.h"

namespace fer {

// frames.csv: one row per face per frame (numbers only, no pixels), flushed
// every frame. With live.frames_rotate_s > 0 the rows go to frames.<N>.csv,
// N = floor(time / frames_rotate_s), and only the newest live.frames_keep
// files are kept.
std::unique_ptr<LiveSink> make_frames_csv_sink(const std::string& out_dir, const std::vector<std::string>& class_names,
                                               const LiveConfig& config);

// The wellbeing monitor: alerts.jsonl (one JSON object per alert, `context`
// keys added), the alert command, and summary.alerts.
std::unique_ptr<LiveSink> make_alert_sink(const std::string& out_dir, const std::vector<std::string>& class_names,
                                          const AlertConfig& config, const nlohmann::json& context);

// Trends: summary.json ({"session": ...} from the LiveSummary and `context`),
// tracks.jsonl (one line per ended track) and, when `charts`, the PNGs.
// Memory is bounded whatever the session's length (TrendOptions).
std::unique_ptr<LiveSink> make_trend_sink(const std::string& out_dir, const std::vector<std::string>& class_names,
                                          const LiveConfig& config, bool charts, const nlohmann::json& context);

// Writes the (annotated) frames at `fps` by their timestamps, duplicating or
// dropping frames so the video plays at real time. Encodes on its own thread.
// `encoder` receives each output frame; empty: annotated.mp4 in out_dir with
// live.video_codec, opened at the first frame's size.
using VideoEncoder = std::function<void(const cv::Mat&)>;
std::unique_ptr<LiveSink> make_video_sink(const std::string& out_dir, const LiveConfig& config, double fps,
                                          VideoEncoder encoder = {});

// crops/track_<id>/frame_<index>.png: the 48x48 model inputs (privacy: off by default).
std::unique_ptr<LiveSink> make_crops_sink(const std::string& out_dir);

}  // namespace fer
