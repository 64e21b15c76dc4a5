#include "fer/live.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <opencv2/core/utility.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "fer/checkpoint.h"
#include "fer/dataset.h"
#include "fer/faces.h"
#include "fer/inference.h"
#include "fer/progress.h"
#include "fer/run_record.h"
#include "fer/tracking.h"
#include "fer/trends.h"
#include "fer/wellbeing.h"

namespace fer {
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Frames from a camera, a video file or URL, or an image folder, with their
// timestamps. Bad frames are reported, not thrown.
class FrameSource {
 public:
  enum class Kind { camera, video, stream, folder };

  FrameSource(const std::string& source, double sequence_fps) : source_(source), sequence_fps_(sequence_fps) {
    if (source.empty()) throw std::runtime_error("no video source given");
    const bool digits = source.find_first_not_of("0123456789") == std::string::npos;
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
  std::int64_t frame_count() const { return kind_ == Kind::folder ? static_cast<std::int64_t>(files_.size()) : frame_count_; }

  enum class Read { frame, bad_frame, end };
  // The next frame; `time_s` from the source's frame rate when it has one, else the wall clock.
  Read next(cv::Mat& frame, double& time_s, std::string& problem) {
    const std::int64_t index = position_++;
    if (kind_ == Kind::folder) {
      if (index >= static_cast<std::int64_t>(files_.size())) return Read::end;
      frame = cv::imread(files_[index], cv::IMREAD_COLOR);
      time_s = index / sequence_fps_;
      if (frame.empty()) {
        problem = files_[index] + ": cannot decode image";
        return Read::bad_frame;
      }
      return Read::frame;
    }
    if (!capture_.read(frame)) return Read::end;
    if (kind_ == Kind::video && fps_ > 0) time_s = index / fps_;
    else time_s = since(start_);
    if (frame.empty()) {
      problem = "frame " + std::to_string(index) + ": empty";
      return Read::bad_frame;
    }
    return Read::frame;
  }

 private:
  std::string source_;
  Kind kind_ = Kind::video;
  double sequence_fps_;
  double fps_ = 0;
  std::int64_t frame_count_ = 0, position_ = 0;
  cv::VideoCapture capture_;
  std::vector<std::string> files_;
  Clock::time_point start_ = Clock::now();
};

// codec: "mp4v" or "avc1" (live.video_codec).
cv::VideoWriter open_video_writer(const std::string& path, const std::string& codec, double fps, const cv::Size& size) {
  cv::VideoWriter writer;
  writer.open(path, cv::VideoWriter::fourcc(codec[0], codec[1], codec[2], codec[3]), fps, size);
  if (!writer.isOpened())
    throw std::runtime_error("cannot open '" + path + "' for writing with codec " + codec +
                             " (not available in this OpenCV's FFmpeg? try live.video_codec=mp4v)");
  return writer;
}

// Encodes frames on its own thread so encoding overlaps detection of the next
// frame (a few frames queued at most, so memory stays bounded).
class AsyncVideoWriter {
 public:
  using Sink = std::function<void(const cv::Mat&)>;
  explicit AsyncVideoWriter(Sink sink) : sink_(std::move(sink)), thread_([this] { run(); }) {}
  ~AsyncVideoWriter() { close(); }
  // Throws std::runtime_error once the sink has failed (the session then ends).
  void write(const cv::Mat& frame) {
    std::unique_lock<std::mutex> lock(mutex_);
    space_.wait(lock, [this] { return queue_.size() < kMaxQueued || !error_.empty(); });
    if (!error_.empty()) throw std::runtime_error("video writer failed: " + error_);
    queue_.push_back(frame.clone());
    ready_.notify_one();
  }
  // Writes what is queued (unless the sink failed), finalises and joins the thread.
  void close() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (closed_) return;
      closed_ = true;
    }
    ready_.notify_one();
    thread_.join();
    sink_ = nullptr;  // releases the cv::VideoWriter it holds: the file is finalised
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
        sink_(frame);
      } catch (const std::exception& e) {  // an escaping exception would std::terminate the process
        std::lock_guard<std::mutex> lock(mutex_);
        error_ = e.what();
        queue_.clear();
        space_.notify_all();
        return;
      }
    }
  }
  Sink sink_;
  std::mutex mutex_;
  std::condition_variable ready_, space_;
  std::deque<cv::Mat> queue_;
  bool closed_ = false;
  std::string error_;  // set once by the writer thread when the sink throws
  std::thread thread_;
};

AsyncVideoWriter::Sink video_file_sink(const std::string& path, const std::string& codec, double fps, const cv::Size& size) {
  auto writer = std::make_shared<cv::VideoWriter>(open_video_writer(path, codec, fps, size));
  return [writer](const cv::Mat& frame) { writer->write(frame); };
}

// Boxes from both detection paths can coincide (a track near another face): keep the first of any pair overlapping > 0.5.
std::vector<Face> without_duplicates(const std::vector<Face>& faces) {
  std::vector<Face> kept;
  for (const auto& f : faces)
    if (std::none_of(kept.begin(), kept.end(), [&](const Face& k) { return box_iou(k.box, f.box) > 0.5; }))
      kept.push_back(f);
  return kept;
}

void draw_landmarks(cv::Mat& frame, const Face& face) {
  const int radius = std::max(2, face.box.width / 40);
  for (const auto& p : face.landmarks) cv::circle(frame, p, radius, cv::Scalar(0, 255, 255), cv::FILLED, cv::LINE_AA);
}

const cv::Scalar kClassColours[] = {{40, 39, 214}, {75, 86, 140}, {189, 103, 148}, {44, 160, 44},
                                     {180, 119, 31}, {14, 127, 255}, {127, 127, 127}};

}  // namespace

void draw_face_overlay(cv::Mat& frame, const cv::Rect& box, int track, const std::vector<float>& probabilities,
                       const std::vector<std::string>& class_names) {
  const int k = static_cast<int>(probabilities.size());
  const int label = static_cast<int>(std::max_element(probabilities.begin(), probabilities.end()) - probabilities.begin());
  const cv::Scalar colour = kClassColours[label % 7];
  cv::rectangle(frame, box, colour, 2, cv::LINE_AA);
  char text[96];
  std::snprintf(text, sizeof text, "#%d %s %.0f%%", track, label < (int)class_names.size() ? class_names[label].c_str() : "?",
                100.0 * probabilities[label]);
  int baseline = 0;
  const double scale = 0.5;
  const cv::Size ts = cv::getTextSize(text, cv::FONT_HERSHEY_SIMPLEX, scale, 1, &baseline);
  const int ty = box.y - 6 >= ts.height ? box.y - 6 : box.y + box.height + ts.height + 6;
  cv::rectangle(frame, cv::Point(box.x, ty - ts.height - 3), cv::Point(box.x + ts.width + 4, ty + 3), colour, cv::FILLED);
  cv::putText(frame, text, cv::Point(box.x + 2, ty), cv::FONT_HERSHEY_SIMPLEX, scale, cv::Scalar(255, 255, 255), 1, cv::LINE_AA);
  // One bar per class beside the box (right side when it fits, else left).
  const int bar_h = 9, bar_w = 60, label_w = 22, panel_w = label_w + bar_w + 4;
  int px = box.x + box.width + 4;
  if (px + panel_w > frame.cols) px = std::max(0, box.x - panel_w - 4);
  const int py = std::max(0, std::min(box.y, frame.rows - k * (bar_h + 2)));
  for (int c = 0; c < k; ++c) {
    const int y = py + c * (bar_h + 2);
    cv::rectangle(frame, cv::Rect(px, y, panel_w, bar_h + 1), cv::Scalar(0, 0, 0), cv::FILLED);
    const std::string name = c < (int)class_names.size() ? class_names[c].substr(0, 3) : std::to_string(c);
    cv::putText(frame, name, cv::Point(px + 1, y + bar_h - 1), cv::FONT_HERSHEY_PLAIN, 0.6, cv::Scalar(255, 255, 255), 1);
    const int w = static_cast<int>(std::lround(std::clamp(probabilities[c], 0.0f, 1.0f) * bar_w));
    if (w > 0) cv::rectangle(frame, cv::Rect(px + label_w, y + 1, w, bar_h - 1), kClassColours[c % 7], cv::FILLED);
  }
}

LiveSummary run_live(const std::string& checkpoint, const LiveOptions& options) {
  if (options.out_dir.empty()) throw std::runtime_error("run_live: no output directory");
  const Config& cfg = options.config;
  const auto device = resolve_device(options.device.empty() ? cfg.live.device : options.device);
  const int threads = configure_cpu_runtime(cfg.live.threads);
  cv::setNumThreads(threads);
  auto loaded = load_checkpoint(checkpoint, device);
  auto& model = *loaded.model;
  model.eval();
  PredictOptions predict;
  predict.input_size = loaded.meta.model.input_size;
  predict.precision = parse_precision(cfg.eval.precision);
  check_precision_supported(predict.precision, device);
  const auto& names = loaded.meta.class_names;
  const int classes = static_cast<int>(names.size());
  FaceDetector detector(cfg.faces);
  FaceTracker tracker(cfg.live.track_iou, cfg.live.max_missed_frames, cfg.live.smoothing_frames, classes);
  WellbeingMonitor monitor(cfg.alert, names);
  FrameSource source(options.source, cfg.live.sequence_fps);

  const fs::path out(options.out_dir);
  fs::create_directories(out);
  LiveSummary summary;
  auto out_path = [&](const std::string& name) { return (out / name).string(); };
  write_text_atomic(out_path("config.yaml"), to_yaml(cfg));
  write_text_atomic(out_path("environment.json"),
                    environment_json(device, threads, {{"source", options.source}, {"model", checkpoint},
                                                       {"face_detector", detector.kind()},
                                                       {"face_model", detector.model_path()}})
                            .dump(2) +
                        "\n");
  // Logs are appended and flushed as frames are processed, so nothing is lost if the process dies.
  std::ofstream frames_csv(out_path("frames.csv"));
  std::ofstream alerts_jsonl(out_path("alerts.jsonl"));
  if (!frames_csv || !alerts_jsonl) throw std::runtime_error("cannot write into '" + options.out_dir + "'");
  frames_csv << frames_csv_header(names) << "\n" << std::flush;
  if (options.save_crops) fs::create_directories(out / "crops");

  TrendBuilder trends(names, cfg.live.trend_window_s);
  std::vector<pid_t> alert_children;
  std::unique_ptr<AsyncVideoWriter> writer;
  cv::Size frame_size;
  const double interval = source.fps() > 0 ? 1.0 / source.fps() : 1.0 / 30;
  std::unique_ptr<ProgressBar> bar;
  const std::int64_t expected = options.max_frames > 0 && source.frame_count() > 0
                                    ? std::min(options.max_frames, source.frame_count())
                                    : (options.max_frames > 0 ? options.max_frames : source.frame_count());
  if (options.progress && expected > 0) bar = std::make_unique<ProgressBar>(expected, "live", "frames");

  cv::Mat frame;
  std::vector<std::uint8_t> crops;
  const auto loop_start = Clock::now();
  for (std::int64_t index = 0;; ++index) {
    if (options.stop && options.stop->load()) {
      summary.end_reason = "stopped";
      break;
    }
    if (options.max_frames > 0 && summary.frames >= options.max_frames) {
      summary.end_reason = "max frames";
      break;
    }
    auto t = Clock::now();
    double time_s = 0;
    std::string problem;
    const auto read = source.next(frame, time_s, problem);
    summary.stages.decode += since(t);
    if (read == FrameSource::Read::end) {
      summary.end_reason = source.kind() == FrameSource::Kind::camera ? "camera disconnected" : "end of stream";
      break;
    }
    if (read == FrameSource::Read::frame && frame_size.area() > 0 && frame.size() != frame_size) {
      problem = "frame " + std::to_string(index) + ": size " + std::to_string(frame.cols) + "x" +
                std::to_string(frame.rows) + " differs from the first frame's";
    }
    if (read == FrameSource::Read::bad_frame || !problem.empty()) {
      ++summary.skipped_frames;
      spdlog::warn("skipped {}", problem);
      if (bar) bar->advance(1, 0);
      continue;
    }
    if (frame.channels() == 1) cv::cvtColor(frame, frame, cv::COLOR_GRAY2BGR);
    if (frame_size.area() == 0) {
      frame_size = frame.size();
      if (options.write_video)
        writer = std::make_unique<AsyncVideoWriter>(
            options.video_sink ? options.video_sink
                               : video_file_sink(out_path("annotated.mp4"), cfg.live.video_codec, 1.0 / interval, frame_size));
    }

    // Detect: a full scan every full_scan_interval frames (every frame for YuNet), in between
    // near each track (a new face is found at the next full scan, at most interval - 1 frames late).
    t = Clock::now();
    const cv::Mat gray = to_gray(frame);
    const cv::Mat& detector_input = detector.wants_color() ? frame : gray;
    std::vector<Face> faces;
    if (detector.prefers_full_scans() || summary.frames % cfg.live.full_scan_interval == 0) {
      faces = detector.detect_faces(detector_input);
    } else {
      for (const auto& track : tracker.tracks())
        for (const auto& f : detector.detect_faces_near(detector_input, track.box)) faces.push_back(f);
      faces = without_duplicates(faces);
    }
    std::vector<cv::Rect> boxes;
    for (const auto& f : faces) boxes.push_back(f.box);
    const auto ids = tracker.update(boxes);
    summary.stages.detect += since(t);

    // Classify all faces of the frame in one batch.
    t = Clock::now();
    const auto n = static_cast<int64_t>(boxes.size());
    crops.resize(static_cast<std::size_t>(n) * kImagePixels);
    for (int64_t i = 0; i < n; ++i) face_input(gray, faces[i], cfg.faces, crops.data() + i * kImagePixels);
    torch::Tensor probs;
    if (n > 0) {
      const auto images = torch::from_blob(crops.data(), {n, kImageSize, kImageSize}, torch::kUInt8);
      predict.batch_size = std::max<int64_t>(1, n);
      probs = predict_probabilities(model, images, device, predict).contiguous();
    }
    summary.stages.classify += since(t);

    t = Clock::now();
    std::string rows;
    for (int64_t i = 0; i < n; ++i) {
      const float* p = probs.data_ptr<float>() + i * classes;
      const Track& track = tracker.observe(ids[i], p);
      FrameRecord r;
      r.time_s = time_s;
      r.frame = index;
      r.track = ids[i];
      r.x = boxes[i].x;
      r.y = boxes[i].y;
      r.width = boxes[i].width;
      r.height = boxes[i].height;
      r.probabilities.assign(p, p + classes);
      r.label = track.label;
      rows += frames_csv_row(r, names) + "\n";
      trends.add(r);
      draw_face_overlay(frame, boxes[i], ids[i], track.smoother.mean(), names);
      draw_landmarks(frame, faces[i]);
      if (options.save_crops) {
        const fs::path dir = out / "crops" / ("track_" + std::to_string(ids[i]));
        fs::create_directories(dir);
        cv::imwrite((dir / ("frame_" + std::to_string(index) + ".png")).string(),
                    cv::Mat(kImageSize, kImageSize, CV_8U, crops.data() + i * kImagePixels));
      }
      if (cfg.alert.enabled) {
        if (const auto alert = monitor.observe(ids[i], time_s, track.label)) {
          auto json = monitor.to_json(*alert);
          json["frame"] = index;
          json["source"] = options.source;
          const std::string line = json.dump();
          alerts_jsonl << line << "\n" << std::flush;
          ++summary.alerts;
          spdlog::warn("wellbeing alert: track {} at {:.1f} s: negative share {:.0f}% over the last {:.0f} s since {:.1f} s",
                       alert->track, alert->time_s, 100 * alert->negative_share, cfg.alert.window_s,
                       alert->above_since_s);
          if (!cfg.alert.command.empty()) {
            try {
              alert_children.push_back(spawn_with_input(cfg.alert.command, line + "\n"));
            } catch (const std::exception& e) {
              spdlog::error("{}", e.what());  // a broken hook must not end the session
            }
          }
        }
      }
    }
    char status[96];
    std::snprintf(status, sizeof status, "t %.2f s  faces %lld  tracks %d", time_s, static_cast<long long>(n),
                  tracker.tracks_started());
    cv::putText(frame, status, cv::Point(8, frame.rows - 10), cv::FONT_HERSHEY_SIMPLEX, 0.45, cv::Scalar(255, 255, 255), 1,
                cv::LINE_AA);
    summary.stages.draw += since(t);

    t = Clock::now();
    if (!rows.empty()) frames_csv << rows << std::flush;
    std::string writer_failure;
    try {
      if (writer) writer->write(frame);
    } catch (const std::runtime_error& e) {
      writer_failure = e.what();
    }
    summary.stages.write += since(t);

    ++summary.frames;
    summary.faces += n;
    if (n > 0) ++summary.frames_with_faces;
    if (bar) bar->advance(1, 1);
    // Reap finished alert commands as we go.
    alert_children.erase(std::remove_if(alert_children.begin(), alert_children.end(),
                                        [](pid_t pid) { return wait_child(pid, 0).has_value(); }),
                         alert_children.end());
    if (!writer_failure.empty()) {  // the log and summary are still completed below
      spdlog::error("{}; ending the session", writer_failure);
      summary.end_reason = writer_failure;
      break;
    }
    if (options.on_frame && !options.on_frame(frame, interval)) {
      summary.end_reason = "display closed";
      break;
    }
  }
  summary.seconds = since(loop_start);
  summary.fps = summary.seconds > 0 ? summary.frames / summary.seconds : 0;
  summary.tracks = tracker.tracks_started();
  if (bar) bar->finish();

  // Close: the same path for every way of ending.
  if (writer) {
    writer->close();
    if (!options.video_sink) summary.files.push_back(out_path("annotated.mp4"));
  }
  frames_csv.close();
  alerts_jsonl.close();
  summary.files.push_back(out_path("frames.csv"));
  summary.files.push_back(out_path("alerts.jsonl"));
  for (pid_t pid : alert_children)
    if (!wait_child(pid, 5.0)) spdlog::warn("alert command (pid {}) still running; not waiting for it", pid);

  const TrendSummary trend_summary = trends.summary();
  // summary.json: the trends plus how the session ran.
  const auto ms_per_frame = [&](double seconds) { return summary.frames ? 1000 * seconds / summary.frames : 0.0; };
  nlohmann::json session = {
      {"source", options.source},
      {"model", checkpoint},
      {"end_reason", summary.end_reason},
      {"frames", summary.frames},
      {"skipped_frames", summary.skipped_frames},
      {"frames_with_faces", summary.frames_with_faces},
      {"faces", summary.faces},
      {"tracks", summary.tracks},
      {"alerts", summary.alerts},
      {"seconds", summary.seconds},
      {"fps", summary.fps},
      {"stage_ms_per_frame",
       {{"decode", ms_per_frame(summary.stages.decode)},
        {"detect", ms_per_frame(summary.stages.detect)},
        {"classify", ms_per_frame(summary.stages.classify)},
        {"draw", ms_per_frame(summary.stages.draw)},
        {"write", ms_per_frame(summary.stages.write)}}}};
  summary.files.push_back(write_trend_summary(trend_summary, options.out_dir, {{"session", session}}));
  std::vector<std::string> report;
  if (options.charts) {
    try {
      report = plot_trends(trend_summary, options.out_dir);
    } catch (const std::exception& e) {
      // The log and summary are complete; charts can be redrawn later with fer-trends.
      spdlog::error("trend charts failed: {} (redraw with fer-trends --frames {})", e.what(), out_path("frames.csv"));
    }
  }
  for (const auto& f : report) summary.files.push_back(f);
  summary.files.push_back(out_path("config.yaml"));
  summary.files.push_back(out_path("environment.json"));
  return summary;
}

}  // namespace fer
