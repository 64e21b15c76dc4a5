// The standard sinks of a live session: frames.csv, alerts, trends, video, crops.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <mutex>
#include <opencv2/videoio.hpp>
#include <thread>

#include "fer/common/io.h"
#include "fer/live/wellbeing.h"
#include "fer/report/image_file.h"
#include "fer/report/live/alert_command.h"
#include "fer/report/live/sinks.h"
#include "fer/report/live/trends.h"

namespace fer {
namespace fs = std::filesystem;

namespace {

std::string path_in(const std::string& dir, const std::string& name) { return (fs::path(dir) / name).string(); }

AppendFile open_log(const std::string& path) { return AppendFile(path, AppendFile::Mode::truncate); }

FrameRecord frame_record(const FrameObservations& frame, const FaceObservation& o) {
  FrameRecord r;
  r.time_s = frame.time_s;
  r.frame = frame.frame;
  r.track = o.track;
  r.x = o.face.box.x;
  r.y = o.face.box.y;
  r.width = o.face.box.width;
  r.height = o.face.box.height;
  r.probabilities = o.probabilities;
  r.label = o.label;
  return r;
}

class FramesCsvSink : public LiveSink {
 public:
  FramesCsvSink(const std::string& out_dir, const std::vector<std::string>& names, const LiveConfig& config)
      : dir_(out_dir), names_(names), rotate_s_(config.frames_rotate_s), keep_(config.frames_keep) {
    open_part(0);
  }
  std::string name() const override { return "frames.csv"; }

  void on_frame(const FrameObservations& frame, const cv::Mat&) override {
    if (rotate_s_ > 0) {
      const auto part = static_cast<std::int64_t>(std::floor(frame.time_s / rotate_s_));
      if (part != part_) open_part(part);
    }
    if (frame.faces.empty()) return;
    std::string rows;
    for (const auto& o : frame.faces) rows += frames_csv_row(frame_record(frame, o), names_) + "\n";
    out_.write(rows);  // nothing lost if the process dies
  }

  void on_end(LiveSummary& summary) override {
    out_.close();
    for (const auto& f : files_) summary.files.push_back(f);
  }

 private:
  void open_part(std::int64_t part) {
    char name[48];
    if (rotate_s_ > 0) std::snprintf(name, sizeof name, "frames.%04lld.csv", static_cast<long long>(part));
    else std::snprintf(name, sizeof name, "frames.csv");
    out_.close();
    out_ = open_log(path_in(dir_, name));
    out_.write(frames_csv_header(names_) + "\n");
    part_ = part;
    files_.push_back(path_in(dir_, name));
    // Retention: the newest keep_ files stay.
    while (keep_ > 0 && static_cast<int>(files_.size()) > keep_) {
      std::error_code ignored;
      fs::remove(files_.front(), ignored);
      files_.pop_front();
    }
  }
  std::string dir_;
  std::vector<std::string> names_;
  double rotate_s_;
  int keep_;
  std::int64_t part_ = 0;
  AppendFile out_;
  std::deque<std::string> files_;
};

class AlertSink : public LiveSink {
 public:
  AlertSink(const std::string& out_dir, const std::vector<std::string>& names, const AlertConfig& config,
            nlohmann::json context)
      : config_(config), monitor_(config, names), path_(path_in(out_dir, "alerts.jsonl")), out_(open_log(path_)),
        context_(std::move(context)) {}
  std::string name() const override { return "wellbeing monitor"; }

  void on_frame(const FrameObservations& frame, const cv::Mat&) override {
    if (config_.enabled)
      for (const auto& o : frame.faces)
        if (const auto alert = monitor_.observe(o.track, frame.time_s, o.label)) raise(*alert, frame.frame);
    // Reap finished alert commands as we go.
    children_.erase(std::remove_if(children_.begin(), children_.end(),
                                   [](pid_t pid) { return wait_child(pid, 0).has_value(); }),
                    children_.end());
  }

  void on_end(LiveSummary& summary) override {
    out_.close();
    for (pid_t pid : children_)
      if (!wait_child(pid, 5.0)) spdlog::warn("alert command (pid {}) still running; not waiting for it", pid);
    summary.alerts = alerts_;
    summary.files.push_back(path_);
  }

 private:
  void raise(const WellbeingAlert& alert, std::int64_t frame) {
    auto json = monitor_.to_json(alert);
    json["frame"] = frame;
    if (context_.is_object()) json.update(context_);
    const std::string line = json.dump();
    out_.write(line + "\n");
    ++alerts_;
    spdlog::warn("wellbeing alert: track {} at {:.1f} s: negative share {:.0f}% over the last {:.0f} s since {:.1f} s",
                 alert.track, alert.time_s, 100 * alert.negative_share, config_.window_s, alert.above_since_s);
    if (config_.command.empty()) return;
    try {
      children_.push_back(spawn_with_input(config_.command, line + "\n"));
    } catch (const std::exception& e) {
      spdlog::error("{}", e.what());  // a broken hook must not end the session
    }
  }
  AlertConfig config_;
  WellbeingMonitor monitor_;
  std::string path_;
  AppendFile out_;
  nlohmann::json context_;
  std::vector<pid_t> children_;
  int alerts_ = 0;
};

// Ended tracks are summarised into tracks.jsonl and dropped from memory, except
// the few largest, which get timeline charts.
constexpr int kTrackCharts = 12;

class TrendSink : public LiveSink {
 public:
  TrendSink(const std::string& out_dir, const std::vector<std::string>& names, const LiveConfig& config, bool charts,
            nlohmann::json context)
      : dir_(out_dir), charts_(charts), context_(std::move(context)),
        builder_(names, TrendOptions{config.trend_window_s, config.trend_max_windows, kTrackCharts}),
        tracks_path_(path_in(out_dir, "tracks.jsonl")), tracks_out_(open_log(tracks_path_)) {
    header_.class_names = names;
  }
  std::string name() const override { return "trends"; }

  void on_frame(const FrameObservations& frame, const cv::Mat&) override {
    for (const auto& o : frame.faces) builder_.add(frame_record(frame, o));
  }

  void on_tracks_ended(const std::vector<int>& tracks, double) override {
    header_.window_s = builder_.window_s();
    std::string lines;
    for (int id : tracks) {
      const TrendSeries series = builder_.end_track(id);
      if (series.observations == 0) continue;
      nlohmann::json line = to_json(series, header_);
      line["track"] = id;
      line["window_s"] = header_.window_s;
      lines += line.dump() + "\n";
    }
    if (!lines.empty()) tracks_out_.write(lines);
  }

  void on_end(LiveSummary& summary) override {
    tracks_out_.close();
    summary.files.push_back(tracks_path_);
    const TrendSummary trends = builder_.summary();
    nlohmann::json session = context_.is_object() ? context_ : nlohmann::json::object();
    session.update(session_json(summary));
    summary.files.push_back(write_trend_summary(trends, dir_, {{"session", session}}));
    if (!charts_) return;
    try {
      for (auto& f : plot_trends(trends, dir_, kTrackCharts)) summary.files.push_back(std::move(f));
    } catch (const std::exception& e) {
      // The log and summary are complete; charts can be redrawn later with fer-trends.
      spdlog::error("trend charts failed: {} (redraw with fer-trends)", e.what());
    }
  }

 private:
  static nlohmann::json session_json(const LiveSummary& s) {
    const auto ms_per_frame = [&](double seconds) { return s.frames ? 1000 * seconds / s.frames : 0.0; };
    return {{"end_reason", s.end_reason},
            {"frames", s.frames},
            {"skipped_frames", s.skipped_frames},
            {"frames_with_faces", s.frames_with_faces},
            {"faces", s.faces},
            {"tracks", s.tracks},
            {"alerts", s.alerts},
            {"seconds", s.seconds},
            {"fps", s.fps},
            {"stage_ms_per_frame",
             {{"decode", ms_per_frame(s.stages.decode)},
              {"detect", ms_per_frame(s.stages.detect)},
              {"classify", ms_per_frame(s.stages.classify)},
              {"draw", ms_per_frame(s.stages.draw)},
              {"write", ms_per_frame(s.stages.write)}}}};
  }
  std::string dir_;
  bool charts_;
  nlohmann::json context_;
  TrendBuilder builder_;
  TrendSummary header_;  // class names and window width for tracks.jsonl
  std::string tracks_path_;
  AppendFile tracks_out_;
};

// Encodes frames on its own thread so encoding overlaps detection of the next
// frame (a few frames queued at most, so memory stays bounded).
class AsyncVideoWriter {
 public:
  explicit AsyncVideoWriter(VideoEncoder encoder) : encoder_(std::move(encoder)), thread_([this] { run(); }) {}
  ~AsyncVideoWriter() { close(); }
  // Queues `copies` references to one copy of `frame`. Throws std::runtime_error
  // (the encoder's message) once the encoder has failed.
  void write(const cv::Mat& frame, int copies) {
    const cv::Mat owned = frame.clone();
    for (int i = 0; i < copies; ++i) {
      std::unique_lock<std::mutex> lock(mutex_);
      space_.wait(lock, [this] { return queue_.size() < kMaxQueued || !error_.empty(); });
      if (!error_.empty()) throw std::runtime_error(error_);
      queue_.push_back(owned);
      ready_.notify_one();
    }
  }
  // Writes what is queued (unless the encoder failed), finalises and joins the thread.
  void close() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (closed_) return;
      closed_ = true;
    }
    ready_.notify_one();
    thread_.join();
    encoder_ = nullptr;  // releases the cv::VideoWriter it holds: the file is finalised
  }

 private:
  static constexpr std::size_t kMaxQueued = 4;
  void run() {
    for (;;) {
      cv::Mat frame;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [this] { return !queue_.empty() || closed_; });
        if (queue_.empty()) return;
        frame = std::move(queue_.front());
        queue_.pop_front();
      }
      space_.notify_one();
      try {
        encoder_(frame);
      } catch (const std::exception& e) {  // an escaping exception would std::terminate the process
        std::lock_guard<std::mutex> lock(mutex_);
        error_ = e.what();
        queue_.clear();
        space_.notify_all();
        return;
      }
    }
  }
  VideoEncoder encoder_;
  std::mutex mutex_;
  std::condition_variable ready_, space_;
  std::deque<cv::Mat> queue_;
  bool closed_ = false;
  std::string error_;  // set once by the writer thread when the encoder throws
  std::thread thread_;
};

// codec: "mp4v" or "avc1" (live.video_codec).
VideoEncoder video_file_encoder(const std::string& path, const std::string& codec, double fps, const cv::Size& size) {
  auto writer = std::make_shared<cv::VideoWriter>();
  writer->open(path, cv::VideoWriter::fourcc(codec[0], codec[1], codec[2], codec[3]), fps, size);
  if (!writer->isOpened())
    throw std::runtime_error("cannot open '" + path + "' for writing with codec " + codec +
                             " (not available in this OpenCV's FFmpeg? try live.video_codec=mp4v)");
  return [writer](const cv::Mat& frame) { writer->write(frame); };
}

// OpenCV's video writer reports no write error: a full disk shows only as a
// file that cannot be played (an MP4 without its index). Throws naming the file.
void check_playable(const std::string& path) {
  cv::VideoCapture video(path);
  cv::Mat first;
  if (video.isOpened() && video.read(first)) return;
  std::error_code ignored;
  const auto space = fs::space(fs::path(path).parent_path(), ignored);
  throw std::runtime_error("'" + path + "' was not finalised and cannot be played" +
                           (!ignored && space.available == 0 ? ": no space left on device"
                                                             : " (was its device full, or its stream cut?)"));
}

class VideoSink : public LiveSink {
 public:
  VideoSink(const std::string& out_dir, const LiveConfig& config, double fps, VideoEncoder encoder)
      : path_(encoder ? "" : path_in(out_dir, "annotated.mp4")), codec_(config.video_codec), fps_(fps),
        encoder_(std::move(encoder)), pacer_(fps) {}
  std::string name() const override { return "video writer"; }

  void on_frame(const FrameObservations& frame, const cv::Mat& image) override {
    if (!writer_)  // opened at the first frame, whose size it takes
      writer_ = std::make_unique<AsyncVideoWriter>(encoder_ ? encoder_ : video_file_encoder(path_, codec_, fps_, image.size()));
    const int copies = pacer_.copies(frame.time_s);
    if (copies > 0) writer_->write(image, copies);
  }

  void on_end(LiveSummary& summary) override {
    if (!writer_) return;
    writer_->close();
    if (path_.empty()) return;
    summary.files.push_back(path_);
    check_playable(path_);
  }

 private:
  std::string path_, codec_;
  double fps_;
  VideoEncoder encoder_;
  FramePacer pacer_;
  std::unique_ptr<AsyncVideoWriter> writer_;
};

class CropsSink : public LiveSink {
 public:
  explicit CropsSink(const std::string& out_dir) : dir_(fs::path(out_dir) / "crops") { fs::create_directories(dir_); }
  std::string name() const override { return "crops"; }
  void on_frame(const FrameObservations& frame, const cv::Mat&) override {
    for (const auto& o : frame.faces) {
      if (o.crop.empty()) continue;
      const fs::path dir = dir_ / ("track_" + std::to_string(o.track));
      fs::create_directories(dir);
      const std::string path = (dir / ("frame_" + std::to_string(frame.frame) + ".png")).string();
      write_image_file(path, o.crop);
    }
  }

 private:
  fs::path dir_;
};

}  // namespace

std::unique_ptr<LiveSink> make_frames_csv_sink(const std::string& out_dir, const std::vector<std::string>& class_names,
                                               const LiveConfig& config) {
  return std::make_unique<FramesCsvSink>(out_dir, class_names, config);
}

std::unique_ptr<LiveSink> make_alert_sink(const std::string& out_dir, const std::vector<std::string>& class_names,
                                          const AlertConfig& config, const nlohmann::json& context) {
  return std::make_unique<AlertSink>(out_dir, class_names, config, context);
}

std::unique_ptr<LiveSink> make_trend_sink(const std::string& out_dir, const std::vector<std::string>& class_names,
                                          const LiveConfig& config, bool charts, const nlohmann::json& context) {
  return std::make_unique<TrendSink>(out_dir, class_names, config, charts, context);
}

std::unique_ptr<LiveSink> make_video_sink(const std::string& out_dir, const LiveConfig& config, double fps,
                                          VideoEncoder encoder) {
  return std::make_unique<VideoSink>(out_dir, config, fps, std::move(encoder));
}

std::unique_ptr<LiveSink> make_crops_sink(const std::string& out_dir) { return std::make_unique<CropsSink>(out_dir); }

}  // namespace fer
