// A live session as a step function: feed it frames with their timestamps, it
// finds, classifies, tracks and smooths the faces and hands the observations
// to its sinks (frames.csv, alerts, trends, video, crops, or your own). The
// loop that reads a camera or file stays outside, as in run_live():
//
//   fer::LiveSession session(fer::make_model_analyzer("best.pt", config, device), config.live);
//   session.add_sink(fer::make_frames_csv_sink("out", session.class_names(), config.live));  // fer/report/live/sinks.h
//   while (camera.read(frame))
//     session.process(frame, seconds_since_start());  // a failing sink is dropped: dropped_sinks()
//   fer::LiveSummary summary = session.finish({});   // every sink closes its files
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "fer/config/config.h"
#include "fer/faces/faces.h"
#include "fer/faces/tracking.h"

namespace fer {

// Seconds spent in each stage, summed over the session.
struct StageSeconds {
  double decode = 0, detect = 0, classify = 0, draw = 0, write = 0;
};

struct LiveSummary {
  std::int64_t frames = 0;          // frames processed
  std::int64_t skipped_frames = 0;  // empty, corrupt or wrongly sized frames (not processed)
  std::int64_t frames_with_faces = 0;
  std::int64_t faces = 0;           // rows of frames.csv
  int tracks = 0;
  int alerts = 0;
  double seconds = 0;               // wall time of the frame loop
  double fps = 0;                   // frames / seconds
  StageSeconds stages;
  std::string end_reason;           // end of stream | stopped | display closed | max frames | camera disconnected
  std::vector<std::string> files;   // what was written
  std::vector<std::string> warnings;  // a sink that failed and was dropped, or failed while closing
};

// Draws one face: box, "#id label confidence" and a bar per class probability.
void draw_face_overlay(cv::Mat& frame, const cv::Rect& box, int track, const std::vector<float>& probabilities,
                       const std::vector<std::string>& class_names);

struct FaceObservation {
  int track = 0;
  Face face;                         // box, detector score, landmarks
  std::vector<float> probabilities;  // this frame's
  std::vector<float> smoothed;       // rolling mean over the track's last live.smoothing_frames
  int label = -1;                    // argmax of `smoothed`
  cv::Mat crop;                      // the 48x48 grayscale model input (empty when the analyzer has none)
};

struct FrameObservations {
  std::int64_t frame = 0;  // index among processed frames (0, 1, ...)
  double time_s = 0;
  std::vector<FaceObservation> faces;
};

// Finds and classifies the faces of a frame. make_model_analyzer() gives the
// configured detector and a checkpoint; tests plug in scripted ones.
class FaceAnalyzer {
 public:
  virtual ~FaceAnalyzer() = default;
  virtual const std::vector<std::string>& class_names() const = 0;
  // True: every frame is scanned whole (near-box searches would not be cheaper).
  virtual bool prefers_full_scans() const { return true; }
  // Faces in `frame` (BGR): the whole frame, or only near each box of `near`.
  virtual std::vector<Face> detect(const cv::Mat& frame, bool full_scan, const std::vector<cv::Rect>& near) = 0;
  // Fills probabilities (one per class) and, if it has them, the crops of
  // `faces`, which detect() found in the same frame.
  virtual void classify(const cv::Mat& frame, std::vector<FaceObservation>& faces) = 0;
  virtual nlohmann::json describe() const { return nlohmann::json::object(); }  // for environment.json
};

// The configured face detector (config.faces) and the model of `checkpoint`
// (eval.precision) on `device`; a `.onnx` file (fer-export's) runs through
// OpenCV's DNN module instead (CPU, fp32; device and precision do not apply).
// Throws when either cannot be loaded.
std::unique_ptr<FaceAnalyzer> make_model_analyzer(const std::string& checkpoint, const Config& config,
                                                  const c10::Device& device);

// Receives a session's observations. A sink that throws is dropped and the
// session goes on (LiveSession::dropped_sinks() names it); finish() still
// closes every sink, the dropped ones included.
class LiveSink {
 public:
  virtual ~LiveSink() = default;
  virtual std::string name() const = 0;
  // Every processed frame, drawn on when the session annotates.
  virtual void on_frame(const FrameObservations& observations, const cv::Mat& frame) = 0;
  // Tracks that have ended: no observation of them will follow.
  virtual void on_tracks_ended(const std::vector<int>& /*tracks*/, double /*time_s*/) {}
  // Once, at the end: flush, close and write; add counts and files to `summary`.
  virtual void on_end(LiveSummary& /*summary*/) {}
};

class LiveSession {
 public:
  // Requires an analyzer (std::invalid_argument). `annotate`: draw boxes, labels
  // and probability bars on the frames given to process().
  LiveSession(std::unique_ptr<FaceAnalyzer> analyzer, const LiveConfig& config, bool annotate = true);
  ~LiveSession();
  LiveSession(const LiveSession&) = delete;
  LiveSession& operator=(const LiveSession&) = delete;

  // Sinks receive observations in the order they were added.
  void add_sink(std::unique_ptr<LiveSink> sink);

  // Requires a non-empty BGR frame. A sink that throws is dropped (see
  // dropped_sinks()) and the session goes on with the others.
  // Times should not decrease (the wellbeing rule needs order per track).
  const FrameObservations& process(cv::Mat& frame, double time_s);

  // The sinks dropped so far, each "<sink name> failed at frame F (T s): <what>";
  // a dropped sink is closed at finish() so that what it wrote stays complete.
  const std::vector<std::string>& dropped_sinks() const { return dropped_; }

  // Ends the remaining tracks, lets every sink close, and returns `summary`
  // with the session's counts, stages and the sinks' files added. Call once.
  LiveSummary finish(LiveSummary summary);

  const std::vector<std::string>& class_names() const { return analyzer_->class_names(); }
  const FaceTracker& tracker() const { return tracker_; }
  const FaceAnalyzer& analyzer() const { return *analyzer_; }

 private:
  std::vector<Face> detect(const cv::Mat& frame);
  void annotate(cv::Mat& frame) const;
  void deliver(const cv::Mat& frame, const std::vector<int>& ended);
  std::unique_ptr<FaceAnalyzer> analyzer_;
  LiveConfig config_;
  bool annotate_;
  FaceTracker tracker_;
  std::vector<std::unique_ptr<LiveSink>> sinks_;
  FrameObservations current_;
  std::int64_t frames_ = 0, frames_with_faces_ = 0, faces_ = 0;
  StageSeconds stages_;
  std::vector<std::string> dropped_;
  std::vector<std::unique_ptr<LiveSink>> failed_sinks_;  // closed at finish()
  bool finished_ = false;
};

// How many copies of a frame at `time_s` keep a video of `fps` frames per
// second in step with time (0: drop it). The first frame sets time zero.
class FramePacer {
 public:
  explicit FramePacer(double fps);  // requires fps > 0
  int copies(double time_s);
  std::int64_t written() const { return written_; }

 private:
  double fps_;
  double origin_s_ = 0;
  std::int64_t written_ = 0;
};

}  // namespace fer
