// fer-detect: face detectors measured against known boxes.
//
//   fer-detect --make-photos photos/ --data fer2013.csv.gz --count 1000 [--split train]
//       builds full photos (FER-2013 PublicTest, or Training, faces pasted at random positions,
//       scales and tilts into 640x480 cluttered frames) under photos/test/<emotion>/,
//       with their true boxes in photos/boxes.csv; fer-eval --detect-faces reads
//       the same folder.
//   fer-detect --photos photos/ --set faces.detector=yunet
//       runs the configured detector on every photo: recall (largest face with
//       IoU >= 0.5 to the true box), false faces, milliseconds per photo.
//   fer-detect --framing --data fer2013.csv.gz [--split train] [--count 3000] [--set faces.detector=yunet]
//       measures how FER-2013 frames its faces, as the configured detector sees them:
//       each face enlarged 4x onto a grey canvas, its box and landmarks mapped back
//       into the 48x48 frame, their means and spreads (docs/live.md, "Framing").
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>

#include "app_common.h"
#include "fer/common/io.h"
#include "fer/config/config.h"
#include "fer/data/dataset.h"
#include "fer/faces/faces.h"

namespace fs = std::filesystem;

namespace {

constexpr int kWidth = 640, kHeight = 480;

// A cluttered background: a colour gradient, random rectangles, circles and lines, noise.
cv::Mat cluttered_background(std::mt19937& rng) {
  std::uniform_int_distribution<int> colour(0, 255), x(0, kWidth), y(0, kHeight), r(5, 80);
  cv::Mat canvas(kHeight, kWidth, CV_8UC3);
  const cv::Vec3b a(colour(rng), colour(rng), colour(rng)), b(colour(rng), colour(rng), colour(rng));
  for (int row = 0; row < kHeight; ++row) canvas.row(row).setTo(cv::Scalar(a * (1.0 - row / double(kHeight)) + b * (row / double(kHeight))));
  for (int i = 0; i < 12; ++i) {
    const cv::Scalar c(colour(rng), colour(rng), colour(rng));
    switch (i % 3) {
      case 0: cv::rectangle(canvas, cv::Point(x(rng), y(rng)), cv::Point(x(rng), y(rng)), c, cv::FILLED); break;
      case 1: cv::circle(canvas, cv::Point(x(rng), y(rng)), r(rng), c, cv::FILLED, cv::LINE_AA); break;
      default: cv::line(canvas, cv::Point(x(rng), y(rng)), cv::Point(x(rng), y(rng)), c, 1 + r(rng) / 20, cv::LINE_AA);
    }
  }
  cv::Mat noise(canvas.size(), CV_16SC3);
  cv::randn(noise, 0, 12);
  cv::Mat noisy;
  canvas.convertTo(noisy, CV_16SC3);
  noisy += noise;
  noisy.convertTo(canvas, CV_8UC3);
  return canvas;
}

struct Photo {
  std::string path;
  cv::Rect box;
  double tilt = 0;
};

// One face pasted into a background: side 64-220 px, tilted up to 20 degrees
// (rotated within its square, edges replicated), at a random position.
Photo paste_face(const std::uint8_t* pixels, cv::Mat& canvas, std::mt19937& rng) {
  std::uniform_int_distribution<int> side_dist(64, 220);
  std::uniform_real_distribution<double> tilt_dist(-20, 20);
  const int side = side_dist(rng);
  Photo photo;
  photo.tilt = tilt_dist(rng);
  photo.box = cv::Rect(std::uniform_int_distribution<int>(0, kWidth - side)(rng),
                       std::uniform_int_distribution<int>(0, kHeight - side)(rng), side, side);
  cv::Mat face48(fer::kImageSize, fer::kImageSize, CV_8U, const_cast<std::uint8_t*>(pixels)), face, tilted, bgr;
  cv::resize(face48, face, cv::Size(side, side), 0, 0, cv::INTER_CUBIC);
  const cv::Mat turn = cv::getRotationMatrix2D(cv::Point2f(side / 2.0f, side / 2.0f), photo.tilt, 1.0);
  cv::warpAffine(face, tilted, turn, face.size(), cv::INTER_LINEAR, cv::BORDER_REPLICATE);
  cv::cvtColor(tilted, bgr, cv::COLOR_GRAY2BGR);
  bgr.copyTo(canvas(photo.box));
  return photo;
}

int make_photos(const std::string& out, const std::string& data, const std::string& split, int count, unsigned seed) {
  const auto splits = fer::load_fer2013_csv(data);
  const fer::Dataset& faces = fer::split_of(splits, fer::parse_split_name(split));
  if (faces.size() == 0) throw std::runtime_error(data + " has no " + split + " rows");
  std::mt19937 rng(seed);
  std::vector<std::size_t> order(faces.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  const std::size_t n = std::min<std::size_t>(static_cast<std::size_t>(count), order.size());
  std::string csv = fer::csv_row({"path", "x", "y", "width", "height", "tilt_degrees", "source"}) + "\n";
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t i = order[k];
    cv::Mat canvas = cluttered_background(rng);
    Photo photo = paste_face(faces.image(i), canvas, rng);
    const fs::path dir = fs::path(out) / "test" / faces.class_names[faces.labels[i]];
    fs::create_directories(dir);
    char name[32];
    std::snprintf(name, sizeof name, "photo_%05zu.jpg", k);
    photo.path = (dir / name).string();
    if (!cv::imwrite(photo.path, canvas, {cv::IMWRITE_JPEG_QUALITY, 92}))
      throw std::runtime_error("cannot write '" + photo.path + "'");
    csv += fer::csv_row({photo.path, std::to_string(photo.box.x), std::to_string(photo.box.y),
                         std::to_string(photo.box.width), std::to_string(photo.box.height), fmt::format("{:g}", photo.tilt),
                         faces.sources[i]}) + "\n";
  }
  fer::write_text_atomic((fs::path(out) / "boxes.csv").string(), csv);
  std::printf("%zu photos from %s %s (seed %u) in %s; true boxes in %s\n", n, data.c_str(), split.c_str(), seed, out.c_str(),
              (fs::path(out) / "boxes.csv").c_str());
  return 0;
}

std::vector<Photo> read_boxes(const std::string& dir) {
  const fs::path path = fs::path(dir) / "boxes.csv";
  if (!fs::exists(path))
    throw std::runtime_error("'" + path.string() + "' does not exist (build the set with --make-photos)");
  fer::CsvReader csv(path.string());
  std::vector<Photo> photos;
  std::vector<std::string> field;
  csv.next(field);  // header
  while (csv.next(field)) {
    Photo p;
    try {
      if (field.size() < 6) throw std::invalid_argument("short row");
      p.path = field[0];
      p.box = cv::Rect(std::stoi(field[1]), std::stoi(field[2]), std::stoi(field[3]), std::stoi(field[4]));
      p.tilt = std::stod(field[5]);
    } catch (const std::exception&) {
      throw std::runtime_error(csv.where() + ": not a path,x,y,width,height,tilt row");
    }
    photos.push_back(p);
  }
  return photos;
}

int measure_photos(const std::string& dir, const fer::Config& config) {
  const auto photos = read_boxes(dir);
  const fer::FaceDetector detector(config.faces);
  int found = 0, false_faces = 0, tilted = 0, tilted_found = 0;
  double seconds = 0;
  for (const auto& p : photos) {
    const cv::Mat image = cv::imread(p.path, detector.wants_color() ? cv::IMREAD_COLOR : cv::IMREAD_GRAYSCALE);
    if (image.empty()) throw std::runtime_error(p.path + ": cannot decode image");
    const auto t0 = std::chrono::steady_clock::now();
    const auto faces = detector.detect(image);
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const bool hit = !faces.empty() && fer::box_iou(faces.front(), p.box) >= 0.5;
    found += hit;
    for (const auto& f : faces) false_faces += fer::box_iou(f, p.box) < 0.1;
    if (std::abs(p.tilt) >= 10) {
      ++tilted;
      tilted_found += hit;
    }
  }
  const double n = std::max<std::size_t>(1, photos.size());
  std::printf("detector %s (%s): %zu photos\n", detector.kind().c_str(), detector.model_path().c_str(), photos.size());
  std::printf("  recall (largest face IoU >= 0.5): %.1f%%  (%d)\n", 100.0 * found / n, found);
  std::printf("  recall on faces tilted 10-20 degrees: %.1f%%  (%d of %d)\n", tilted ? 100.0 * tilted_found / tilted : 0.0,
              tilted_found, tilted);
  std::printf("  false faces (IoU < 0.1 with the true box): %d, %.3f per photo\n", false_faces, false_faces / n);
  std::printf("  detection: %.2f ms per photo\n", 1000 * seconds / n);
  return 0;
}

// Mean and standard deviation of a series of values.
struct Spread {
  double sum = 0, sum_sq = 0;
  int n = 0;
  void add(double v) { sum += v, sum_sq += v * v, ++n; }
  double mean() const { return n ? sum / n : 0.0; }
  double sd() const { return n > 1 ? std::sqrt(std::max(0.0, (sum_sq - sum * sum / n) / (n - 1))) : 0.0; }
};

int measure_framing(const std::string& data, const std::string& split, int count, unsigned seed, const fer::Config& config) {
  const auto splits = fer::load_fer2013_csv(data);
  const fer::Dataset& faces = fer::split_of(splits, fer::parse_split_name(split));
  if (faces.size() == 0) throw std::runtime_error(data + " has no " + split + " rows");
  const fer::FaceDetector detector(config.faces);
  constexpr int kScale = 4, kBorder = 48 * kScale / 2;
  std::mt19937 rng(seed);
  std::vector<std::size_t> order(faces.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  const std::size_t n = std::min<std::size_t>(static_cast<std::size_t>(count), order.size());
  Spread cx, cy, w, h, side;
  std::vector<Spread> lx(5), ly(5);
  const cv::Rect face_region(kBorder, kBorder, 48 * kScale, 48 * kScale);
  for (std::size_t k = 0; k < n; ++k) {
    cv::Mat face48(fer::kImageSize, fer::kImageSize, CV_8U, const_cast<std::uint8_t*>(faces.image(order[k]))), big, canvas;
    cv::resize(face48, big, cv::Size(), kScale, kScale, cv::INTER_CUBIC);
    cv::copyMakeBorder(big, canvas, kBorder, kBorder, kBorder, kBorder, cv::BORDER_CONSTANT, cv::Scalar(128));
    if (detector.wants_color()) cv::cvtColor(canvas, canvas, cv::COLOR_GRAY2BGR);
    const auto found = detector.detect_faces(canvas);
    if (found.empty() || fer::box_iou(found.front().box, face_region) < 0.3) continue;
    const auto& f = found.front();
    auto frame = [&](double v) { return (v - kBorder) / kScale; };  // canvas pixels -> the 48x48 frame
    cx.add(frame(f.box.x + f.box.width / 2.0));
    cy.add(frame(f.box.y + f.box.height / 2.0));
    w.add(f.box.width / double(kScale));
    h.add(f.box.height / double(kScale));
    side.add(std::sqrt(double(f.box.width) * f.box.height) / kScale);
    for (std::size_t p = 0; p < f.landmarks.size() && p < 5; ++p) {
      lx[p].add(frame(f.landmarks[p].x));
      ly[p].add(frame(f.landmarks[p].y));
    }
  }
  std::printf("framing of %s %s faces (%zu drawn, seed %u) by %s (%s): %d found\n", data.c_str(), split.c_str(), n, seed,
              detector.kind().c_str(), detector.model_path().c_str(), cx.n);
  std::printf("in the 48x48 frame (mean +- sd):\n");
  std::printf("  box centre x %.2f +- %.2f, y %.2f +- %.2f\n", cx.mean(), cx.sd(), cy.mean(), cy.sd());
  std::printf("  box width %.2f +- %.2f, height %.2f +- %.2f, sqrt(w*h) %.2f +- %.2f\n", w.mean(), w.sd(), h.mean(), h.sd(),
              side.mean(), side.sd());
  const char* names[] = {"right eye", "left eye", "nose tip", "right mouth corner", "left mouth corner"};
  for (int p = 0; p < 5; ++p)
    if (lx[p].n)
      std::printf("  %-18s x %.2f +- %.2f, y %.2f +- %.2f\n", names[p], lx[p].mean(), lx[p].sd(), ly[p].mean(), ly[p].sd());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Face detectors measured on full photos with known face boxes"};
  std::string make_dir, photos_dir, data, config_path, split = "val";
  std::vector<std::string> overrides;
  int count = 1000;
  unsigned seed = 2013;
  auto* make = app.add_option("--make-photos", make_dir, "Build the photo set into this folder");
  auto* photos = app.add_option("--photos", photos_dir, "Measure the configured detector on this photo set");
  bool framing = false;
  auto* framing_flag = app.add_flag("--framing", framing, "Measure where the configured detector puts FER-2013's faces' boxes and landmarks");
  make->excludes(photos);
  framing_flag->excludes(make)->excludes(photos);
  app.add_option("--data", data, "FER-2013 CSV(.gz) whose PublicTest faces are pasted (else $FER2013_CSV, data/fer2013.csv)");
  app.add_option("--split", split, "Split whose faces are pasted: val (PublicTest: the reported set) or train (a set for choosing thresholds)")
      ->capture_default_str()
      ->check(CLI::IsMember({"train", "val", "test"}));
  app.add_option("--count", count, "Photos to build")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--seed", seed, "Seed of face choice, placement and clutter")->capture_default_str();
  app.add_option("--config", config_path, "YAML whose faces.* keys configure the detector");
  app.add_option("--set", overrides, "Override a config key, e.g. --set faces.detector=yunet (repeatable)");
  if (const auto status = fer_app::parse_command_line(app, argc, argv)) return *status;
  return fer_app::run_main([&] {
    if (!make_dir.empty()) return make_photos(make_dir, fer_app::resolve_data_path(data), split, count, seed);
    if (photos_dir.empty() && !framing) throw std::runtime_error("give --make-photos DIR, --photos DIR or --framing");
    fer::Config config = config_path.empty() ? fer::Config{} : fer::load_config(config_path);
    for (const auto& o : overrides) fer::apply_override(config, o);
    if (framing) return measure_framing(fer_app::resolve_data_path(data), split, count, seed, config);
    return measure_photos(photos_dir, config);
  });
}
