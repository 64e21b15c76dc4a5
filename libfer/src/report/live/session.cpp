#include "fer/report/live/session.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <opencv2/core/utility.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "fer/common/emotions.h"
#include "fer/common/io.h"
#include "fer/data/dataset.h"
#include "fer/inference/inference.h"
#include "fer/live/live_session.h"
#include "fer/report/environment.h"
#include "fer/report/live/sinks.h"
#include "fer/report/progress.h"
#include "fer/report/run_lock.h"

namespace fer {
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Frames from a camera, a video file or URL, or an image folder, with their
// timestamps. Bad frames are reported, not thrown. A file or folder can be
// played `loops` times back to back, timestamps running on.
class FrameSource {
 public:
  enum class Kind { camera, video, stream, folder };

  FrameSource(const std::string& source, double sequence_fps, int loops)
      : source_(source), sequence_fps_(sequence_fps), loops_(loops) {
    if (source.empty()) throw std::runtime_error("no video source given");
    if (loops < 1) throw std::invalid_argument("video source '" + source + "': loops must be >= 1");
    const bool digits = source.find_first_not_of("0123456789") == std::string::npos;
    if (loops > 1 && (digits || source.find("://") != std::string::npos))
      throw std::invalid_argument("video source '" + source + "': looping needs a video file or an image folder");
    if (digits) {
      kind_ = Kind::camera;
      capture_.open(std::stoi(source));
    } else if (fs::is_directory(source)) {
      kind_ = Kind::folder;
      for (const auto& e : fs::directory_iterator(source))
        if (e.is_regular_file() && is_image_file(e.path().string())) files_.push_back(e.path().string());
      std::sort(files_.begin(), files_.end());
      if (files_.empty()) throw std::runtime_error("video source '" + source + "': folder holds no image files");
      return;
    } else if (source.find("://") != std::string::npos) {
      kind_ = Kind::stream;
      capture_.open(source);
    } else {
      if (!fs::exists(source)) throw std::runtime_error("video source '" + source + "' does not exist");
      kind_ = Kind::video;
      capture_.open(source);
    }
    if (!capture_.isOpened())
      throw std::runtime_error("cannot open video source '" + source + "'" +
                               (kind_ == Kind::camera ? " (no camera with that index?)" : " (not a video OpenCV can decode?)"));
    fps_ = capture_.get(cv::CAP_PROP_FPS);
    if (!(fps_ > 0 && fps_ < 1000)) fps_ = 0;
    const double count = capture_.get(cv::CAP_PROP_FRAME_COUNT);
    if (kind_ == Kind::video && count > 0) frame_count_ = static_cast<std::int64_t>(count);
  }

  Kind kind() const { return kind_; }
  double fps() const { return kind_ == Kind::folder ? sequence_fps_ : fps_; }
  // Frames over all loops (0 = unknown).
  std::int64_t frame_count() const {
    return loops_ * (kind_ == Kind::folder ? static_cast<std::int64_t>(files_.size()) : frame_count_);
  }

  enum class Read { frame, bad_frame, end };
  // The next frame, in BGR; `time_s` from the source's frame rate when it has
  // one, else the wall clock. Empty, undecodable or wrongly sized frames are bad.
  Read next(cv::Mat& frame, double& time_s, std::string& problem) {
    const Read read = read_frame(frame, time_s, problem);
    if (read != Read::frame) return read;
    if (size_.area() > 0 && frame.size() != size_) {
      problem = "frame " + std::to_string(position_ - 1) + ": size " + std::to_string(frame.cols) + "x" +
                std::to_string(frame.rows) + " differs from the first frame's";
      return Read::bad_frame;
    }
    size_ = frame.size();
    if (frame.channels() == 1) cv::cvtColor(frame, frame, cv::COLOR_GRAY2BGR);
    return Read::frame;
  }

 private:
  Read read_frame(cv::Mat& frame, double& time_s, std::string& problem) {
    const std::int64_t index = position_++;
    if (kind_ == Kind::folder) {
      const auto n = static_cast<std::int64_t>(files_.size());
      if (index >= loops_ * n) return Read::end;
      const std::string& file = files_[index % n];
      time_s = index / sequence_fps_;
      try {
        frame = read_image_file(file, cv::IMREAD_COLOR);
      } catch (const DataError& e) {  // a bad file is a bad frame: the session goes on
        problem = e.what();
        return Read::bad_frame;
      }
      return Read::frame;
    }
    if (!capture_.read(frame) && !(kind_ == Kind::video && rewind() && capture_.read(frame))) return Read::end;
    if (kind_ == Kind::video && fps_ > 0) time_s = index / fps_;
    else time_s = since(start_);
    if (frame.empty()) {
      problem = "frame " + std::to_string(index) + ": empty";
      return Read::bad_frame;
    }
    return Read::frame;
  }

  // Starts the next loop of a video file; false after the last.
  bool rewind() {
    if (++loop_ >= loops_) return false;
    capture_.open(source_);
    return capture_.isOpened();
  }
  std::string source_;
  Kind kind_ = Kind::video;
  double sequence_fps_;
  int loops_ = 1, loop_ = 0;
  double fps_ = 0;
  std::int64_t frame_count_ = 0, position_ = 0;
  cv::VideoCapture capture_;
  std::vector<std::string> files_;
  cv::Size size_;  // the first frame's
  Clock::time_point start_ = Clock::now();
};


}  // namespace


namespace {

// environment.json and config.yaml: how the session was set up.
void write_session_setup(const LiveOptions& options, const torch::Device& device, int threads,
                         const FaceAnalyzer& analyzer) {
  const fs::path out(options.out_dir);
  write_text_atomic((out / "config.yaml").string(), to_yaml(options.config));
  nlohmann::json extra = analyzer.describe();
  extra["source"] = options.source;
  if (options.loops > 1) extra["loops"] = options.loops;
  write_text_atomic((out / "environment.json").string(), environment_json(device, threads, extra).dump(2) + "\n");
}

// The standard sinks, in the order they close: logs first, the trends (which
// report the others' counts) last.
void add_standard_sinks(LiveSession& session, const LiveOptions& options, const std::string& checkpoint,
                        double frame_interval) {
  const Config& cfg = options.config;
  const auto& names = session.class_names();
  const nlohmann::json context = {{"source", options.source}, {"model", checkpoint}};
  session.add_sink(make_frames_csv_sink(options.out_dir, names, cfg.live));
  session.add_sink(make_alert_sink(options.out_dir, names, cfg.alert, {{"source", options.source}}));
  if (options.save_crops) session.add_sink(make_crops_sink(options.out_dir));
  if (options.write_video) session.add_sink(make_video_sink(options.out_dir, cfg.live, 1.0 / frame_interval, options.video_sink));
  session.add_sink(make_trend_sink(options.out_dir, names, cfg.live, options.charts, context));
}

std::unique_ptr<ProgressBar> progress_bar(const LiveOptions& options, const FrameSource& source) {
  const std::int64_t known = source.frame_count();
  const std::int64_t expected = options.max_frames > 0 && known > 0 ? std::min(options.max_frames, known)
                                                                    : (options.max_frames > 0 ? options.max_frames : known);
  if (!options.progress || expected <= 0) return nullptr;
  return std::make_unique<ProgressBar>(expected, "live", "frames");
}

// Why the loop should stop before reading another frame ("" = go on).
std::string stop_reason(const LiveOptions& options, std::int64_t processed) {
  if (options.stop && options.stop->load()) return "stopped";
  if (options.max_frames > 0 && processed >= options.max_frames) return "max frames";
  return "";
}

}  // namespace

LiveSummary run_live(const std::string& checkpoint, const LiveOptions& options) {
  if (options.out_dir.empty()) throw std::runtime_error("run_live: no output directory");
  const Config& cfg = options.config;
  const auto device = resolve_device(options.device.empty() ? cfg.live.device : options.device);
  const int threads = torch::get_num_threads();  // live.threads: fer-live applies it at start
  LiveSession session(make_model_analyzer(checkpoint, cfg, device), cfg.live,
                      /*annotate=*/options.write_video || static_cast<bool>(options.on_frame));
  FrameSource source(options.source, cfg.live.sequence_fps, options.loops);
  const RunFolderLock lock(options.out_dir);
  write_session_setup(options, device, threads, session.analyzer());
  const double interval = source.fps() > 0 ? 1.0 / source.fps() : 1.0 / 30;
  add_standard_sinks(session, options, checkpoint, interval);

  const auto bar = progress_bar(options, source);
  LiveSummary summary;
  cv::Mat frame;
  std::int64_t processed = 0;
  const auto loop_start = Clock::now();
  for (;;) {
    if (!(summary.end_reason = stop_reason(options, processed)).empty()) break;
    const auto t = Clock::now();
    double time_s = 0;
    std::string problem;
    const auto read = source.next(frame, time_s, problem);
    summary.stages.decode += since(t);
    if (read == FrameSource::Read::end) {
      summary.end_reason = source.kind() == FrameSource::Kind::camera ? "camera disconnected" : "end of stream";
      break;
    }
    if (bar) bar->advance(1, read == FrameSource::Read::frame);
    if (read == FrameSource::Read::bad_frame) {
      ++summary.skipped_frames;
      spdlog::warn("skipped {}", problem);
      continue;
    }
    const std::size_t dropped_before = session.dropped_sinks().size();
    session.process(frame, time_s);
    ++processed;
    for (std::size_t i = dropped_before; i < session.dropped_sinks().size(); ++i)
      spdlog::error("{}; dropped, the session goes on", session.dropped_sinks()[i]);
    if (options.on_frame && !options.on_frame(frame, interval)) {
      summary.end_reason = "display closed";
      break;
    }
  }
  summary.seconds = since(loop_start);
  if (bar) bar->finish();
  summary.fps = summary.seconds > 0 ? processed / summary.seconds : 0;
  summary = session.finish(std::move(summary));
  for (const auto& warning : summary.warnings) spdlog::error("{}", warning);
  summary.files.push_back((fs::path(options.out_dir) / "config.yaml").string());
  summary.files.push_back((fs::path(options.out_dir) / "environment.json").string());
  return summary;
}

}  // namespace fer
