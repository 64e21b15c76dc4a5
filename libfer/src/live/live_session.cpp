#include "fer/live/live_session.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <opencv2/dnn.hpp>
#include <opencv2/imgproc.hpp>

#include "fer/common/emotions.h"
#include "fer/data/dataset.h"
#include "fer/deploy/export.h"
#include "fer/inference/inference.h"
#include "fer/models/checkpoint.h"

namespace fer {

namespace {

cv::Scalar bgr(const Rgb& rgb) { return cv::Scalar(rgb.b, rgb.g, rgb.r); }  // OpenCV's channel order

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Boxes from near-track searches can coincide (a track near another face): keep the first of any pair overlapping > 0.5.
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

// A face classifier: class probabilities [n * classes] of n side x side uint8 crops.
struct CropModel {
  std::vector<std::string> class_names;
  int side = kImageSize;  // the model's image_size
  std::function<std::vector<float>(const std::vector<std::uint8_t>& crops, int64_t n)> probabilities;
  nlohmann::json description;
};

// A libfer checkpoint run by LibTorch on `device` in eval.precision.
CropModel checkpoint_model(const std::string& checkpoint, const Config& config, const torch::Device& device) {
  auto loaded = std::make_shared<LoadedCheckpoint>(load_checkpoint(checkpoint, device));
  loaded->model->eval();
  PredictOptions predict;
  predict.input_size = loaded->meta.model.input_size;
  predict.precision = parse_precision(config.eval.precision);
  check_precision_supported(predict.precision, device);
  CropModel m;
  m.class_names = loaded->meta.class_names;
  m.side = static_cast<int>(loaded->meta.model.image_size);
  m.probabilities = [loaded, predict, device, side = int64_t{m.side}](const std::vector<std::uint8_t>& crops,
                                                                       int64_t n) mutable {
    const auto images = torch::from_blob(const_cast<std::uint8_t*>(crops.data()), {n, side, side}, torch::kUInt8);
    predict.batch_size = n;
    const auto p = predict_probabilities(*loaded->model, images, device, predict).contiguous();
    return std::vector<float>(p.data_ptr<float>(), p.data_ptr<float>() + p.numel());
  };
  m.description = {{"model", checkpoint}, {"backend", "libtorch"}, {"normalize", loaded->meta.model.normalize}};
  return m;
}

// Row-wise softmax in place: an export with logits output gives scores, not probabilities.
void softmax_rows(std::vector<float>& v, std::size_t classes) {
  for (std::size_t r = 0; r + classes <= v.size(); r += classes) {
    const float top = *std::max_element(v.begin() + r, v.begin() + r + classes);
    float sum = 0;
    for (std::size_t c = r; c < r + classes; ++c) sum += (v[c] = std::exp(v[c] - top));
    for (std::size_t c = r; c < r + classes; ++c) v[c] /= sum;
  }
}

// An fer-export ONNX file run by OpenCV's DNN module (its default CPU backend, fp32): no LibTorch in the loop.
CropModel onnx_model(const std::string& path) {
  const auto props = onnx_metadata(path);
  if (!props.count("libfer_meta"))
    throw std::runtime_error("'" + path + "' has no libfer_meta metadata: fer-live runs the ONNX files of fer-export");
  const auto meta = nlohmann::json::parse(props.at("libfer_meta"));
  const int side = meta.at("export").at("input_shape").at(2).get<int>();
  const int trained_side = meta.at("model").value("image_size", kImageSize);
  if (side != trained_side)  // a face resized to the input would not be the face the model was trained on
    throw std::runtime_error("'" + path + "' takes " + std::to_string(side) + " px images, its model " +
                             std::to_string(trained_side) + " px faces; fer-live feeds the model's faces (fer-export "
                             "without --image-size)");
  const bool logits = meta.at("export").at("output") == "logits";
  const std::string normalize = meta.at("model").value("normalize", std::string("none"));
  const bool equalize = parse_input_normalization(normalize) == InputNormalization::equalize;
  auto net = std::make_shared<cv::dnn::Net>(cv::dnn::readNetFromONNX(path));
  CropModel m;
  m.class_names = meta.at("class_names").get<std::vector<std::string>>();
  m.side = side;
  m.probabilities = [net, logits, equalize, side, classes = m.class_names.size()](const std::vector<std::uint8_t>& crops,
                                                                                   int64_t n) {
    const int shape[] = {static_cast<int>(n), 1, side, side};
    cv::Mat blob(4, shape, CV_32F);
    cv::Mat pixels(1, static_cast<int>(crops.size()), CV_8U, const_cast<std::uint8_t*>(crops.data()));
    // equalize_histogram's mapping, by OpenCV (tests hold the two equal).
    if (equalize) {
      pixels = pixels.clone();
      for (int64_t i = 0; i < n; ++i) {
        cv::Mat face(side, side, CV_8U, pixels.ptr<std::uint8_t>() + i * side * side);
        cv::equalizeHist(face, face);
      }
    }
    pixels.convertTo(cv::Mat(1, static_cast<int>(crops.size()), CV_32F, blob.ptr<float>()), CV_32F, 1.0 / 255);
    net->setInput(blob);
    const cv::Mat out = net->forward();
    std::vector<float> p(out.ptr<float>(), out.ptr<float>() + n * static_cast<int64_t>(classes));
    if (logits) softmax_rows(p, classes);
    return p;
  };
  m.description = {{"model", path}, {"backend", "opencv_dnn"}, {"normalize", normalize}};
  return m;
}

bool is_onnx(const std::string& path) {
  return path.size() > 5 && path.compare(path.size() - 5, 5, ".onnx") == 0;
}

// The configured detector and a model (a checkpoint, or an exported ONNX file).
class ModelFaceAnalyzer : public FaceAnalyzer {
 public:
  ModelFaceAnalyzer(CropModel model, const Config& config)
      : model_(std::move(model)), faces_config_(config.faces), detector_(config.faces) {}

  const std::vector<std::string>& class_names() const override { return model_.class_names; }
  bool prefers_full_scans() const override { return detector_.prefers_full_scans(); }

  std::vector<Face> detect(const cv::Mat& frame, bool full_scan, const std::vector<cv::Rect>& near) override {
    gray_ = to_gray(frame);  // classify() crops from it
    const cv::Mat& input = detector_.wants_color() ? frame : gray_;
    if (full_scan) return detector_.detect_faces(input);
    std::vector<Face> faces;
    for (const auto& box : near)
      for (const auto& f : detector_.detect_faces_near(input, box)) faces.push_back(f);
    return without_duplicates(faces);
  }

  void classify(const cv::Mat& /*frame*/, std::vector<FaceObservation>& faces) override {
    const auto n = static_cast<int64_t>(faces.size());
    if (n == 0) return;
    const int side = model_.side;
    const std::size_t pixels = static_cast<std::size_t>(side) * side;
    crops_.resize(static_cast<std::size_t>(n) * pixels);
    for (int64_t i = 0; i < n; ++i) face_input(gray_, faces[i].face, faces_config_, crops_.data() + i * pixels, side);
    const auto probs = model_.probabilities(crops_, n);
    const std::size_t classes = class_names().size();
    for (int64_t i = 0; i < n; ++i) {
      faces[i].probabilities.assign(probs.begin() + i * classes, probs.begin() + (i + 1) * classes);
      faces[i].crop = cv::Mat(side, side, CV_8U, crops_.data() + i * pixels).clone();
    }
  }

  nlohmann::json describe() const override {
    auto d = model_.description;
    d["face_detector"] = detector_.kind();
    d["face_model"] = detector_.model_path();
    return d;
  }

 private:
  CropModel model_;
  FacesConfig faces_config_;
  FaceDetector detector_;
  cv::Mat gray_;
  std::vector<std::uint8_t> crops_;
};

}  // namespace

void draw_face_overlay(cv::Mat& frame, const cv::Rect& box, int track, const std::vector<float>& probabilities,
                       const std::vector<std::string>& class_names) {
  const int k = static_cast<int>(probabilities.size());
  const int label = static_cast<int>(std::max_element(probabilities.begin(), probabilities.end()) - probabilities.begin());
  const cv::Scalar colour = bgr(class_colour(class_names, static_cast<std::size_t>(label)));
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
    if (w > 0) cv::rectangle(frame, cv::Rect(px + label_w, y + 1, w, bar_h - 1), bgr(class_colour(class_names, c)), cv::FILLED);
  }
}

std::unique_ptr<FaceAnalyzer> make_model_analyzer(const std::string& checkpoint, const Config& config,
                                                  const torch::Device& device) {
  return std::make_unique<ModelFaceAnalyzer>(
      is_onnx(checkpoint) ? onnx_model(checkpoint) : checkpoint_model(checkpoint, config, device), config);
}

namespace {
const FaceAnalyzer& required(const std::unique_ptr<FaceAnalyzer>& analyzer) {
  if (!analyzer) throw std::invalid_argument("LiveSession: no face analyzer");
  return *analyzer;
}
}  // namespace

LiveSession::LiveSession(std::unique_ptr<FaceAnalyzer> analyzer, const LiveConfig& config, bool annotate)
    : analyzer_(std::move(analyzer)),
      config_(config),
      annotate_(annotate),
      tracker_(config.track_iou, config.max_missed_frames, config.smoothing_frames,
               static_cast<int>(required(analyzer_).class_names().size())) {}

LiveSession::~LiveSession() = default;

void LiveSession::add_sink(std::unique_ptr<LiveSink> sink) {
  if (!sink) throw std::invalid_argument("LiveSession::add_sink: null sink");
  sinks_.push_back(std::move(sink));
}

// A full scan every full_scan_interval frames (every frame when the detector prefers it); in
// between near each track (a new face is found at the next full scan, at most interval - 1 frames late).
std::vector<Face> LiveSession::detect(const cv::Mat& frame) {
  const bool full = analyzer_->prefers_full_scans() || frames_ % config_.full_scan_interval == 0;
  std::vector<cv::Rect> near;
  if (!full)
    for (const auto& track : tracker_.tracks()) near.push_back(track.box);
  return analyzer_->detect(frame, full, near);
}

const FrameObservations& LiveSession::process(cv::Mat& frame, double time_s) {
  if (finished_) throw std::logic_error("LiveSession::process after finish()");
  if (frame.empty()) throw std::invalid_argument("LiveSession::process: empty frame");
  current_.frame = frames_;
  current_.time_s = time_s;
  current_.faces.clear();

  auto t = Clock::now();
  const auto faces = detect(frame);
  std::vector<cv::Rect> boxes;
  for (const auto& f : faces) boxes.push_back(f.box);
  const auto ids = tracker_.update(boxes);
  for (std::size_t i = 0; i < faces.size(); ++i) {
    FaceObservation o;
    o.track = ids[i];
    o.face = faces[i];
    current_.faces.push_back(std::move(o));
  }
  stages_.detect += since(t);

  t = Clock::now();
  if (!current_.faces.empty()) analyzer_->classify(frame, current_.faces);
  stages_.classify += since(t);

  t = Clock::now();
  const std::size_t classes = class_names().size();
  for (auto& o : current_.faces) {
    if (o.probabilities.size() != classes)
      throw std::logic_error("FaceAnalyzer::classify gave " + std::to_string(o.probabilities.size()) +
                             " probabilities for " + std::to_string(classes) + " classes");
    const Track& track = tracker_.observe(o.track, o.probabilities.data());
    o.smoothed = track.smoother.mean();
    o.label = track.label;
  }
  if (annotate_) annotate(frame);
  stages_.draw += since(t);

  t = Clock::now();
  deliver(frame, tracker_.ended());
  stages_.write += since(t);
  ++frames_;
  faces_ += static_cast<std::int64_t>(current_.faces.size());
  if (!current_.faces.empty()) ++frames_with_faces_;
  return current_;
}

void LiveSession::annotate(cv::Mat& frame) const {
  for (const auto& o : current_.faces) {
    draw_face_overlay(frame, o.face.box, o.track, o.smoothed, class_names());
    draw_landmarks(frame, o.face);
  }
  char status[96];
  std::snprintf(status, sizeof status, "t %.2f s  faces %zu  tracks %d", current_.time_s, current_.faces.size(),
                tracker_.tracks_started());
  cv::putText(frame, status, cv::Point(8, frame.rows - 10), cv::FONT_HERSHEY_SIMPLEX, 0.45, cv::Scalar(255, 255, 255), 1,
              cv::LINE_AA);
}

// Every sink gets every frame; one that throws is dropped (a full disk under
// frames.csv must not end a session whose display or video still works).
void LiveSession::deliver(const cv::Mat& frame, const std::vector<int>& ended) {
  for (auto it = sinks_.begin(); it != sinks_.end();) {
    auto& sink = *it;
    try {
      sink->on_frame(current_, frame);
      if (!ended.empty()) sink->on_tracks_ended(ended, current_.time_s);
      ++it;
    } catch (const std::exception& e) {
      char at[64];
      std::snprintf(at, sizeof at, " failed at frame %lld (%.2f s): ", static_cast<long long>(current_.frame),
                    current_.time_s);
      dropped_.push_back(sink->name() + at + e.what());
      failed_sinks_.push_back(std::move(sink));
      it = sinks_.erase(it);
    }
  }
}

LiveSummary LiveSession::finish(LiveSummary summary) {
  if (finished_) throw std::logic_error("LiveSession::finish called twice");
  finished_ = true;
  summary.frames = frames_;
  summary.frames_with_faces = frames_with_faces_;
  summary.faces = faces_;
  summary.tracks = tracker_.tracks_started();
  summary.stages.detect = stages_.detect;
  summary.stages.classify = stages_.classify;
  summary.stages.draw = stages_.draw;
  summary.stages.write = stages_.write;
  for (const auto& message : dropped_) summary.warnings.push_back(message + "; dropped, the session went on");
  std::vector<int> remaining;
  for (const auto& track : tracker_.tracks()) remaining.push_back(track.id);
  // Every sink closes, even after another failed: the files on disk are what the user keeps.
  for (auto& sink : sinks_) {
    try {
      if (!remaining.empty()) sink->on_tracks_ended(remaining, current_.time_s);
      sink->on_end(summary);
    } catch (const std::exception& e) {
      summary.warnings.push_back(sink->name() + " failed while closing: " + e.what());
    }
  }
  for (auto& sink : failed_sinks_) {  // what they wrote before failing, finalised and listed
    try {
      sink->on_end(summary);
    } catch (const std::exception& e) {
      summary.warnings.push_back(sink->name() + " failed while closing: " + e.what());
    }
  }
  return summary;
}

FramePacer::FramePacer(double fps) : fps_(fps) {
  if (!(fps > 0)) throw std::invalid_argument("FramePacer: fps must be > 0");
}

int FramePacer::copies(double time_s) {
  if (written_ == 0) origin_s_ = time_s;
  // Output frame k shows time origin + k / fps; this frame covers every slot up to its own time.
  const auto due = static_cast<std::int64_t>(std::floor((time_s - origin_s_) * fps_ + 0.5)) + 1;
  const std::int64_t n = std::max<std::int64_t>(0, due - written_);
  written_ += n;
  return static_cast<int>(n);
}

}  // namespace fer
