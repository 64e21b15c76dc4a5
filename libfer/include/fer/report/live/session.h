// Live emotion recognition over a camera, video file, stream URL or image
// folder: faces found in every frame, classified, tracked and smoothed, drawn,
// logged, summarised as trends and watched by the wellbeing monitor.
// run_live() is the loop over a source; the session it feeds is a step
// function of its own (fer/live/live_session.h) for other loops and tests.
//
//   fer::LiveOptions options;
//   options.source = "clip.mp4";              // or "0" (camera), a folder, rtsp://...
//   options.out_dir = "session";
//   fer::LiveSummary s = fer::run_live("experiments/fer2013_paper_cnn/best.pt", options);
//   // session/: annotated.mp4, frames.csv, alerts.jsonl, tracks.jsonl, summary.json, emotion_*.png
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "fer/config/config.h"
#include "fer/live/live_session.h"  // LiveSummary

namespace fer {

struct LiveOptions {
  std::string source;        // camera index ("0"), video file, image folder or stream URL
  std::string out_dir;       // where the session's files go (created)
  bool write_video = true;   // annotated.mp4
  bool save_crops = false;   // face crops are stored only when asked (privacy)
  bool charts = true;        // trend PNGs at the end (needs gnuplot)
  bool progress = true;      // progress bar when the frame count is known
  std::int64_t max_frames = 0;  // 0 = until the source ends
  int loops = 1;             // a video file or folder played this many times back to back, timestamps running on
  std::string device;        // overrides config.live.device when non-empty
  Config config;             // the faces, live and alert sections are used
  // Called with every annotated frame and the source's frame interval in
  // seconds (for pacing a display); returning false ends the session.
  std::function<bool(const cv::Mat& annotated, double frame_interval_s)> on_frame;
  // Set from another thread or a signal handler to end the session cleanly.
  const std::atomic<bool>* stop = nullptr;
  // With write_video: receives the annotated frames instead of annotated.mp4
  // (a custom encoder or stream), on the writer thread, paced by timestamps.
  // An exception it throws ends the session cleanly, end_reason "video writer failed: ...".
  std::function<void(const cv::Mat& annotated)> video_sink;
};

// Requires options.source and options.out_dir. Throws std::runtime_error when
// the source cannot be opened (naming it), the checkpoint or cascade cannot be
// loaded, or the output cannot be written. Once frames flow, every way of
// ending (end of stream, stop flag, callback, camera loss) closes the session
// the same way: logs flushed, video finalised, trends and summary written.
LiveSummary run_live(const std::string& checkpoint, const LiveOptions& options);

}  // namespace fer
