// Live sessions end to end: the frames.csv log and trends, and fer-live on a
// video built from FER-2013 faces and on the real clip (faults included).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <atomic>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <set>
#include <sstream>

#include "fer/config/config.h"
#include "fer/data/dataset.h"
#include "fer/faces/faces.h"
#include "fer/faces/tracking.h"
#include "fer/live/wellbeing.h"
#include "fer/report/evaluate/evaluate.h"
#include "fer/report/explain/batch.h"
#include "fer/report/image_file.h"
#include "fer/report/live/session.h"
#include "fer/report/live/trends.h"
#include "fer/report/plot.h"
#include "test_util.h"

namespace {
using fer_test::TempDir;
using fer_test::write_file;
namespace fs = std::filesystem;

const std::string kModel = (fs::path(fer_test::source_dir()) / "experiments" / "fer2013_paper_cnn" / "best.pt").string();

using fer_test::real_clip;

// fer-live on the real clip into dir/session, headless and quiet, no charts.
fer::LiveOptions clip_session(const std::string& clip, const TempDir& dir) {
  fer::LiveOptions options;
  options.source = clip;
  options.out_dir = dir / "session";
  options.progress = false;
  options.charts = false;
  return options;
}

// ---- frames.csv and trends ----------------------------------------------------------

TEST(FramesCsv, RoundTripsAndNamesTheLineOfABadRow) {
  TempDir dir;
  const auto& names = fer::emotion_names();
  fer::FrameRecord r;
  r.time_s = 1.25;
  r.frame = 37;
  r.track = 2;
  r.x = 10, r.y = 20, r.width = 64, r.height = 64;
  r.probabilities = {0.1f, 0.0f, 0.2f, 0.5f, 0.1f, 0.05f, 0.05f};
  r.label = 3;
  write_file(dir / "frames.csv", fer::frames_csv_header(names) + "\n" + fer::frames_csv_row(r, names) + "\n");
  const auto log = fer::read_frames_csv(dir / "frames.csv");
  EXPECT_EQ(log.class_names, names);
  ASSERT_EQ(log.records.size(), 1u);
  const auto& back = log.records[0];
  EXPECT_DOUBLE_EQ(back.time_s, 1.25);
  EXPECT_EQ(back.frame, 37);
  EXPECT_EQ(back.track, 2);
  EXPECT_EQ(back.width, 64);
  EXPECT_EQ(back.label, 3);
  for (int c = 0; c < 7; ++c) EXPECT_NEAR(back.probabilities[c], r.probabilities[c], 1e-5);

  write_file(dir / "bad.csv", fer::frames_csv_header(names) + "\n" + fer::frames_csv_row(r, names) +
                                  "\n1.3,38,2,10,20,64,64,0.1,0,0.2,x,0.1,0.05,0.05,happy\n");
  try {
    fer::read_frames_csv(dir / "bad.csv");
    FAIL() << "expected a DataError";
  } catch (const fer::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.csv:3"), std::string::npos) << e.what();
  }
}

TEST(Trends, CountsOverallPerTrackAndPerWindowByHand) {
  const auto& names = fer::emotion_names();
  const auto rec = fer_test::frame_record;
  // Window 10 s. Track 1: happy at 0, 5 and 12 s; track 2: sad at 5 and 25 s.
  const std::vector<fer::FrameRecord> records = {rec(0, 0, 1, 3), rec(5, 150, 1, 3), rec(5, 150, 2, 4),
                                                 rec(12, 360, 1, 3), rec(25, 750, 2, 4)};
  const auto s = fer::summarise_trends(records, names, {10});
  EXPECT_EQ(s.frames, 4);  // frame 150 holds two faces
  EXPECT_EQ(s.overall.observations, 5);
  EXPECT_EQ(s.overall.counts[3], 3);
  EXPECT_EQ(s.overall.counts[4], 2);
  ASSERT_EQ(s.overall.windows.size(), 3u);  // [0,10), [10,20), [20,30)
  EXPECT_EQ(s.overall.windows[0][3], 2);
  EXPECT_EQ(s.overall.windows[0][4], 1);
  EXPECT_EQ(s.overall.windows[1][3], 1);
  EXPECT_EQ(s.overall.windows[2][4], 1);
  ASSERT_EQ(s.tracks.size(), 2u);
  EXPECT_EQ(s.tracks.at(2).counts[4], 2);
  EXPECT_EQ(s.tracks.at(2).windows[1][4], 0);
  EXPECT_DOUBLE_EQ(s.tracks.at(2).first_s, 5.0);
  const auto j = fer::to_json(s);
  EXPECT_DOUBLE_EQ(j["overall"]["shares"]["happy"].get<double>(), 0.6);
  EXPECT_EQ(j["overall"]["dominant"], "happy");
  EXPECT_EQ(j["tracks"]["1"]["windows"].size(), 2u);  // empty windows are left out
  EXPECT_THROW(fer::summarise_trends(records, names, {-1}), std::invalid_argument);
}

// FER-2013 faces the Haar cascade finds when enlarged 3x onto a plain background
// (many FER faces are not frontal enough for it; the test needs ones it finds).
struct FaceSprites {
  std::vector<cv::Mat> faces;  // 144x144 gray
  std::vector<int> labels;
};
FaceSprites detectable_faces(std::size_t count) {
  FaceSprites out;
  const auto csv = fer_test::real_fer2013();
  if (csv.empty()) return out;
  const auto splits = fer::load_fer2013_csv(csv);
  const fer::FaceDetector detector(fer::FacesConfig{});
  for (std::size_t i = 0; i < splits.val.size() && out.faces.size() < count; ++i) {
    cv::Mat face48(48, 48, CV_8U, const_cast<std::uint8_t*>(splits.val.image(i)));
    cv::Mat face;
    cv::resize(face48, face, cv::Size(144, 144), 0, 0, cv::INTER_CUBIC);
    cv::Mat canvas(320, 320, CV_8U, cv::Scalar(110));
    face.copyTo(canvas(cv::Rect(88, 88, 144, 144)));
    const auto boxes = detector.detect(canvas);
    if (boxes.size() == 1 && fer::box_iou(boxes[0], cv::Rect(88, 88, 144, 144)) > 0.3) {
      out.faces.push_back(face);
      out.labels.push_back(static_cast<int>(splits.val.labels[i]));
    }
  }
  return out;
}

const char* kNoFer2013 =
    "FER-2013 not found (../shared/data/fer2013/fer2013.csv.gz or $FER2013_CSV): skipping a test built from FER-2013 "
    "faces";

// Two FER faces moving across a 640x360 frame (one left to right, one drifting down).
void write_two_face_video(const std::string& path, const FaceSprites& s, int frames) {
  cv::VideoWriter w(path, cv::VideoWriter::fourcc('m', 'p', '4', 'v'), 25, cv::Size(640, 360));
  ASSERT_TRUE(w.isOpened());
  for (int f = 0; f < frames; ++f) {
    cv::Mat canvas(360, 640, CV_8U, cv::Scalar(110));
    s.faces[0].copyTo(canvas(cv::Rect(20 + 3 * f, 100, 144, 144)));
    s.faces[1].copyTo(canvas(cv::Rect(440, 20 + 2 * f, 144, 144)));
    cv::Mat bgr;
    cv::cvtColor(canvas, bgr, cv::COLOR_GRAY2BGR);
    w.write(bgr);
  }
}

TEST(LiveVideo, TwoMovingFerFacesAreFoundTrackedAndLoggedOncePerFrame) {
  if (fer_test::real_fer2013().empty()) GTEST_SKIP() << kNoFer2013;
  const auto sprites = detectable_faces(2);
  ASSERT_EQ(sprites.faces.size(), 2u) << "too few PublicTest faces found by the cascade";
  TempDir dir;
  const int frames = 60;
  write_two_face_video(dir / "two_faces.mp4", sprites, frames);

  std::map<int, std::vector<fer::FrameRecord>> by_path;
  for (int interval : {1, 5}) {  // reference path (full scan every frame) and the tracked fast path
    fer::LiveOptions options;
    options.source = dir / "two_faces.mp4";
    options.out_dir = dir / ("session_" + std::to_string(interval));
    options.charts = false;
    options.progress = false;
    options.config.live.full_scan_interval = interval;
    options.config.live.threads = 2;
    const auto s = fer::run_live(kModel, options);
    EXPECT_EQ(s.frames, frames);
    EXPECT_EQ(s.end_reason, "end of stream");
    const auto log = fer::read_frames_csv(options.out_dir + "/frames.csv");
    EXPECT_EQ(static_cast<std::int64_t>(log.records.size()), s.faces);
    // One row per face per frame: never the same track twice in a frame, never more than two faces.
    std::map<std::int64_t, std::set<int>> tracks_in_frame;
    for (const auto& r : log.records) EXPECT_TRUE(tracks_in_frame[r.frame].insert(r.track).second) << "frame " << r.frame;
    int both = 0;
    for (const auto& [frame, tracks] : tracks_in_frame) {
      EXPECT_LE(tracks.size(), 2u);
      both += tracks.size() == 2;
    }
    EXPECT_GE(both, 0.9 * frames) << "both faces found in " << both << " of " << frames << " frames (interval "
                                  << interval << ")";
    // Stable ids: the moving face on the left keeps one id, the one on the right another.
    std::set<int> left_ids, right_ids;
    for (const auto& r : log.records) (r.x < 320 ? left_ids : right_ids).insert(r.track);
    EXPECT_EQ(left_ids.size(), 1u) << "interval " << interval;
    EXPECT_EQ(right_ids.size(), 1u) << "interval " << interval;
    EXPECT_EQ(s.tracks, 2);
    by_path[interval] = log.records;
  }
  // The fast path finds the faces where the reference path does (same place within IoU 0.5) in >= 95% of frames.
  std::map<std::pair<std::int64_t, bool>, cv::Rect> reference;
  for (const auto& r : by_path[1]) reference[{r.frame, r.x < 320}] = cv::Rect(r.x, r.y, r.width, r.height);
  int agree = 0;
  for (const auto& r : by_path[5]) {
    const auto it = reference.find({r.frame, r.x < 320});
    agree += it != reference.end() && fer::box_iou(it->second, cv::Rect(r.x, r.y, r.width, r.height)) > 0.5;
  }
  EXPECT_GE(agree, 0.95 * by_path[1].size());
}

TEST(LiveVideo, RealClipRunsHeadlessAndWritesAPlayableVideoLogAndCharts) {
  const auto clip = real_clip();
  if (clip.empty()) GTEST_SKIP() << "../shared/data/video/face_clip_640x360.mp4 not found: skipping the real clip";
  TempDir dir;
  fer::LiveOptions options;
  options.source = clip;
  options.out_dir = dir / "session";
  options.progress = false;
  options.config.live.threads = 2;
  const auto s = fer::run_live(kModel, options);
  EXPECT_EQ(s.end_reason, "end of stream");
  EXPECT_GT(s.frames, 250);
  EXPECT_EQ(s.skipped_frames, 0);
  EXPECT_GT(s.faces, 50);
  cv::VideoCapture video(options.out_dir + "/annotated.mp4");
  ASSERT_TRUE(video.isOpened());
  int decoded = 0;
  cv::Mat frame;
  while (video.read(frame)) {
    EXPECT_EQ(frame.size(), cv::Size(640, 360));
    ++decoded;
  }
  EXPECT_EQ(decoded, s.frames);
  const auto log = fer::read_frames_csv(options.out_dir + "/frames.csv");
  EXPECT_EQ(static_cast<std::int64_t>(log.records.size()), s.faces);
  std::ifstream in(options.out_dir + "/summary.json");
  const auto summary = nlohmann::json::parse(in);
  EXPECT_EQ(summary["overall"]["observations"], s.faces);
  EXPECT_EQ(summary["session"]["frames"], s.frames);
  EXPECT_GE(summary["overall"]["windows"].size(), 10u);  // adaptive windows: a readable timeline for 9 s
  if (fer::gnuplot_available())
    for (const char* png : {"emotion_pie.png", "emotion_bar.png", "emotion_timeline.png"})
      EXPECT_FALSE(cv::imread(options.out_dir + "/" + png).empty()) << png;
}

TEST(LiveVideo, LoopingAFilePlaysItBackToBackWithTimestampsRunningOn) {
  const auto clip = real_clip();
  if (clip.empty()) GTEST_SKIP() << "../shared/data/video/face_clip_640x360.mp4 not found: skipping the real clip";
  TempDir dir;
  auto options = clip_session(clip, dir);
  options.loops = 3;
  const auto s = fer::run_live(kModel, options);
  cv::VideoCapture source(clip);
  const auto per_loop = static_cast<std::int64_t>(source.get(cv::CAP_PROP_FRAME_COUNT));
  const double fps = source.get(cv::CAP_PROP_FPS);
  EXPECT_EQ(s.end_reason, "end of stream");
  EXPECT_EQ(s.frames, 3 * per_loop);
  const auto log = fer::read_frames_csv(options.out_dir + "/frames.csv");
  ASSERT_FALSE(log.records.empty());
  for (std::size_t i = 1; i < log.records.size(); ++i) ASSERT_GE(log.records[i].time_s, log.records[i - 1].time_s);
  EXPECT_GT(log.records.back().time_s, 2 * per_loop / fps);  // the third loop's times follow the second's
  cv::VideoCapture video(options.out_dir + "/annotated.mp4");
  int decoded = 0;
  for (cv::Mat frame; video.read(frame);) ++decoded;
  EXPECT_EQ(decoded, s.frames);  // one video frame per source frame: the file's own pace
  options.source = "0";
  EXPECT_THROW(fer::run_live(kModel, options), std::invalid_argument);  // a camera cannot loop
}

TEST(LiveVideo, StoppingMidStreamClosesTheSessionCleanly) {
  const auto clip = real_clip();
  if (clip.empty()) GTEST_SKIP() << "../shared/data/video/face_clip_640x360.mp4 not found: skipping the real clip";
  TempDir dir;
  std::atomic<bool> stop{false};
  auto options = clip_session(clip, dir);
  options.stop = &stop;
  int seen = 0;
  options.on_frame = [&](const cv::Mat&, double) {
    if (++seen == 40) stop = true;  // what the SIGINT/SIGTERM handler of fer-live does
    return true;
  };
  const auto s = fer::run_live(kModel, options);
  EXPECT_EQ(s.end_reason, "stopped");
  EXPECT_EQ(s.frames, 40);
  cv::VideoCapture video(options.out_dir + "/annotated.mp4");
  int decoded = 0;
  cv::Mat frame;
  while (video.read(frame)) ++decoded;
  EXPECT_EQ(decoded, 40);
  std::ifstream in(options.out_dir + "/summary.json");
  EXPECT_EQ(nlohmann::json::parse(in)["session"]["end_reason"], "stopped");
}

TEST(LiveVideo, FerLiveBinaryFinishesTheSessionOnSigterm) {
  const auto clip = real_clip();
  if (clip.empty()) GTEST_SKIP() << "../shared/data/video/face_clip_640x360.mp4 not found: skipping the real clip";
  TempDir dir;
  const std::string out = dir / "session";
  // Full scans on every frame keep it running long enough to be interrupted.
  // SIGTERM goes once frames.csv (flushed per frame) holds a face row: a fixed
  // delay failed on a loaded machine, where start-up alone took longer.
  const std::string live = std::string(fer_test::bin_dir()) + "/fer-live --model " + kModel + " --source " + clip +
                           " --no-display --no-charts --out " + out +
                           " --set live.full_scan_interval=1 --set live.threads=1 --set faces.detect_scale=1 >" +
                           (dir / "log.txt") + " 2>&1";
  const std::string command = "bash -c '" + live + " & pid=$!; for i in $(seq 1200); do " +
                              "[ \"$(wc -l < " + out + "/frames.csv 2>/dev/null || echo 0)\" -ge 2 ] && break; " +
                              "sleep 0.05; done; kill -TERM $pid || exit 3; wait $pid'";
  const int status = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_NE(WEXITSTATUS(status), 3) << "fer-live ended before SIGTERM: make the run longer";
  std::ifstream in(out + "/summary.json");
  ASSERT_TRUE(in) << "no summary.json after SIGTERM";
  const auto summary = nlohmann::json::parse(in);
  EXPECT_EQ(summary["session"]["end_reason"], "stopped");
  const auto frames = summary["session"]["frames"].get<int>();
  EXPECT_GT(frames, 0);
  EXPECT_LT(frames, 275);
  cv::VideoCapture video(out + "/annotated.mp4");
  int decoded = 0;
  cv::Mat frame;
  while (video.read(frame)) ++decoded;
  EXPECT_EQ(decoded, frames);
  EXPECT_EQ(static_cast<int>(fer::read_frames_csv(out + "/frames.csv").records.size()),
            summary["session"]["faces"].get<int>());
}

TEST(LiveVideo, UnopenableSourcesAreClearErrorsAndBadFramesAreSkippedAndCounted) {
  TempDir dir;
  fer::LiveOptions options;
  options.out_dir = dir / "session";
  options.progress = false;
  options.charts = false;
  options.source = dir / "missing.mp4";
  try {
    fer::run_live(kModel, options);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.mp4"), std::string::npos) << e.what();
  }
  write_file(dir / "not_a_video.mp4", "this is text, not a video");
  options.source = dir / "not_a_video.mp4";
  try {
    fer::run_live(kModel, options);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot open video source"), std::string::npos) << e.what();
  }
  // An image-sequence folder with 3 good frames, a corrupt file, an empty file and one of another size.
  fs::create_directories(dir / "seq");
  cv::Mat frame(120, 160, CV_8UC3, cv::Scalar(90, 90, 90));
  for (const char* name : {"f0.png", "f1.png", "f3.png"}) cv::imwrite(dir / ("seq/" + std::string(name)), frame);
  write_file(dir / "seq/f2.png", "\x89PNG garbage");
  write_file(dir / "seq/f4.png", "");
  cv::imwrite(dir / "seq/f5.png", cv::Mat(60, 60, CV_8UC3, cv::Scalar(0, 0, 0)));
  options.source = dir / "seq";
  const auto s = fer::run_live(kModel, options);
  EXPECT_EQ(s.frames, 3);
  EXPECT_EQ(s.skipped_frames, 3);
  EXPECT_EQ(s.end_reason, "end of stream");
}

// ---- full photos (fer-eval / fer-explain --detect-faces) ---------------------------------

TEST(DetectFaces, PhotosWithoutAFaceAreCountedInTheAllImagesAccuracy) {
  if (fer_test::real_fer2013().empty()) GTEST_SKIP() << kNoFer2013;
  const auto sprites = detectable_faces(4);
  ASSERT_EQ(sprites.faces.size(), 4u) << "too few PublicTest faces found by the cascade";
  TempDir dir;
  for (std::size_t i = 0; i < sprites.faces.size(); ++i) {
    cv::Mat photo(300, 400, CV_8U, cv::Scalar(120));
    sprites.faces[i].copyTo(photo(cv::Rect(40 + 50 * static_cast<int>(i), 60, 144, 144)));
    const auto folder = dir.path() / "photos" / "test" / fer::emotion_names()[sprites.labels[i]];
    fs::create_directories(folder);
    cv::imwrite((folder / ("photo" + std::to_string(i) + ".jpg")).string(), photo);
  }
  const auto blank = dir.path() / "photos" / "test" / "happy" / "blank_wall.jpg";
  fs::create_directories(blank.parent_path());
  cv::imwrite(blank.string(), cv::Mat(300, 400, CV_8U, cv::Scalar(200)));

  const fer::FacesConfig faces;
  const fer::FaceDetector detector(faces);
  const auto folder = fer::load_image_folder_with_faces((dir.path() / "photos").string(), detector);
  EXPECT_EQ(folder.test.size(), 4u);
  ASSERT_EQ(folder.test.no_face.size(), 1u);
  EXPECT_EQ(folder.test.no_face[0], blank.string());
  fer::EvaluationOptions options;
  options.charts = false;
  options.progress = false;
  const auto r = fer::evaluate_checkpoint_on_photos(kModel, folder.test, dir / "eval", options);
  EXPECT_EQ(r.images, 5);
  EXPECT_EQ(r.with_face, 4);
  EXPECT_NEAR(r.accuracy_all_images, r.accuracy_with_face * 4 / 5, 1e-12);
  std::ifstream in(dir / "eval/metrics.json");
  const auto metrics = nlohmann::json::parse(in);
  EXPECT_EQ(metrics["face_detection"]["without_face"], 1);
  EXPECT_EQ(metrics["n"], 4);
  std::ifstream list(dir / "eval/no_face.txt");
  std::string line;
  std::getline(list, line);
  EXPECT_EQ(line, blank.string());

  // fer-explain's input path: the photo becomes its face, the blank one an item with an error.
  const auto items = fer::collect_explain_inputs({(dir.path() / "photos").string()}, "val", 0, fer::emotion_names(), &detector);
  ASSERT_EQ(items.size(), 5u);
  int failed = 0;
  for (const auto& item : items) {
    if (!item.error.empty()) {
      ++failed;
      EXPECT_NE(item.error.find("no face detected"), std::string::npos);
    } else {
      EXPECT_EQ(item.pixels.size(), 48u * 48u);
    }
  }
  EXPECT_EQ(failed, 1);
}

// A writer that fails on its 10th frame, as a dead stream would: it is dropped,
// reported, and the session goes on to the end of the clip.
TEST(LiveFaults, AWriterThatThrowsIsDroppedAndTheSessionGoesOn) {
  const auto clip = real_clip();
  if (clip.empty()) GTEST_SKIP() << "../shared/data/video/face_clip_640x360.mp4 not found: skipping the real clip";
  TempDir dir;
  auto options = clip_session(clip, dir);
  std::atomic<int> written{0};
  options.video_sink = [&](const cv::Mat&) {
    if (++written == 10) throw std::runtime_error("disk full");
  };
  const auto s = fer::run_live(kModel, options);
  EXPECT_EQ(s.end_reason, "end of stream");
  EXPECT_EQ(written.load(), 10);  // nothing is handed to a sink after it failed
  ASSERT_EQ(s.warnings.size(), 1u);
  EXPECT_NE(s.warnings[0].find("video writer failed at frame "), std::string::npos) << s.warnings[0];
  EXPECT_NE(s.warnings[0].find("disk full; dropped, the session went on"), std::string::npos) << s.warnings[0];
  std::ifstream in(dir / "session/summary.json");
  const auto json = nlohmann::json::parse(in);
  EXPECT_EQ(json["session"]["frames"], s.frames);
  EXPECT_EQ(fer::read_frames_csv(dir / "session/frames.csv").records.size(), static_cast<std::size_t>(s.faces));
  EXPECT_FALSE(fs::exists(dir / "session/annotated.mp4"));
}

// The annotated video on a full disk (the file-size limit): OpenCV's writer
// says nothing, so the session checks the finished file and reports it by name.
TEST(LiveFaults, AVideoCutShortByAFullDiskIsReportedByName) {
  const auto clip = real_clip();
  if (clip.empty()) GTEST_SKIP() << "../shared/data/video/face_clip_640x360.mp4 not found: skipping the real clip";
  TempDir dir;
  auto options = clip_session(clip, dir);
  ASSERT_TRUE(options.write_video);
  fer::LiveSummary s;
  {
    fer_test::FileSizeLimit limit(200 * 1024);  // frames.csv and summary.json fit; the video (~1.8 MB) does not
    s = fer::run_live(kModel, options);
  }
  EXPECT_EQ(s.end_reason, "end of stream");
  const std::string video = dir / "session/annotated.mp4";
  bool reported = false;
  for (const auto& w : s.warnings)
    reported = reported || w.find("video writer failed while closing: '" + video + "' was not finalised") == 0;
  EXPECT_TRUE(reported) << (s.warnings.empty() ? "no warning" : s.warnings.front());
}

// A full disk (the process's file-size limit, as fer_test::FileSizeLimit) from
// the middle of frames.csv on: that sink is dropped naming the file and the
// cause, every frame is still processed, and what cannot be written at the end
// (the trend summary) is reported the same way, leaving no temporary file.
TEST(LiveFaults, AFullDiskDropsTheSinkThatHitsItAndTheSessionGoesOn) {
  const auto clip = real_clip();
  if (clip.empty()) GTEST_SKIP() << "../shared/data/video/face_clip_640x360.mp4 not found: skipping the real clip";
  TempDir dir;
  auto unlimited = clip_session(clip, dir);
  unlimited.out_dir = dir / "reference";
  const auto reference = fer::run_live(kModel, unlimited);
  const std::uintmax_t room = 6 * 1024;
  ASSERT_GT(fs::file_size(dir / "reference/frames.csv"), 2 * room);
  fer::LiveSummary s;
  {
    fer_test::FileSizeLimit limit(room);
    s = fer::run_live(kModel, clip_session(clip, dir));
  }
  EXPECT_EQ(s.end_reason, "end of stream");
  EXPECT_EQ(s.frames, reference.frames);
  EXPECT_EQ(s.faces, reference.faces);
  ASSERT_FALSE(s.warnings.empty());
  const std::string frames_csv = dir / "session/frames.csv";
  EXPECT_NE(s.warnings[0].find("frames.csv failed at frame "), std::string::npos) << s.warnings[0];
  EXPECT_NE(s.warnings[0].find("cannot write '" + frames_csv + "': File too large; dropped, the session went on"),
            std::string::npos)
      << s.warnings[0];
  for (const auto& warning : s.warnings)  // the cause, or the video OpenCV could not finalise (it reports none)
    EXPECT_TRUE(warning.find("File too large") != std::string::npos ||
                warning.find("annotated.mp4' was not finalised") != std::string::npos)
        << warning;
  EXPECT_LE(fs::file_size(frames_csv), room);
  const auto kept = fer::read_frames_csv(frames_csv);  // whole rows only: the failed write was cut off
  EXPECT_GT(kept.records.size(), 0u);
  EXPECT_LT(kept.records.size(), static_cast<std::size_t>(s.faces));
  for (const auto& e : fs::directory_iterator(dir / "session"))
    EXPECT_NE(e.path().extension(), ".tmp") << "leftover temporary file " << e.path();
}

}  // namespace

// An image file on a full disk (the file-size limit): the error names the file
// and the cause, where cv::imwrite would only return false.
TEST(ImageFile, AFailedWriteNamesTheFileAndTheCause) {
  fer_test::TempDir dir;
  const cv::Mat noise = [] {
    cv::Mat m(64, 64, CV_8UC3);
    cv::randu(m, 0, 255);
    return m;
  }();
  const std::string ok = dir / "ok.png", full = dir / "full.png";
  fer::write_image_file(ok, noise);
  EXPECT_EQ(cv::norm(cv::imread(ok), noise, cv::NORM_INF), 0);  // PNG: lossless
  {
    fer_test::FileSizeLimit limit(1024);
    try {
      fer::write_image_file(full, noise);
      FAIL() << "a 12 kB PNG under a 1 kB limit must fail";
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()), "cannot write '" + full + "': File too large");
    }
  }
  EXPECT_THROW(fer::write_image_file(dir / "x.nosuchformat", noise), std::runtime_error);
}

namespace {
// A face of tests/live/data/face_clip_labels.csv: its frames and the box its centre stays in.
struct LabelledFace {
  int first = 0, last = 0;
  std::string name, pose, smiling;
  cv::Rect centre_region;
};

// The shipped live default (fer-live's --model default) and what it must keep:
// with the default crops (box-scaled, turned upright) it reads 47.9% of the
// smiling audience's observations as happy on LibTorch 1.13 (template-aligned
// crops: 19.5%; the model before it: none). Issue 47's goal, 80%, is not reached yet.
const char* const kLiveDefaultFolder = "fer2013_paper_cnn_equalize";
constexpr double kLiveFoundShare = 0.9;
constexpr double kLiveHappyShare = 0.4;

std::vector<LabelledFace> clip_labels() {
  const auto path = fs::path(fer_test::source_dir()) / "tests" / "live" / "data" / "face_clip_labels.csv";
  std::ifstream in(path);
  std::vector<LabelledFace> faces;
  std::string line;
  bool header = true;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (header) {
      header = false;
      continue;
    }
    std::vector<std::string> f;
    std::stringstream fields(line);
    for (std::string x; std::getline(fields, x, ',');) f.push_back(x);
    if (f.size() != 9) throw std::runtime_error(path.string() + ": not 9 fields: " + line);
    const int x0 = std::stoi(f[3]), y0 = std::stoi(f[4]);
    faces.push_back({std::stoi(f[0]), std::stoi(f[1]), f[2], f[7], f[8],
                     cv::Rect(x0, y0, std::stoi(f[5]) - x0, std::stoi(f[6]) - y0)});
  }
  return faces;
}
}  // namespace

// The live default on the real clip against what a person sees in it (the
// labelled file): every readable face found in nearly every frame it is on
// screen, and the laughing, smiling audience of the last shot read as happy.
TEST(LiveClip, TheLiveDefaultFindsTheLabelledFacesAndReadsTheLaughingAudienceAsHappy) {
  const auto clip = real_clip();
  if (clip.empty()) GTEST_SKIP() << "../shared/data/video/face_clip_640x360.mp4 not found";
  const auto labels = clip_labels();
  ASSERT_EQ(labels.size(), 9u);
  TempDir dir;
  fer::LiveOptions options;  // the default config: YuNet, fer2013 framing, landmark alignment
  options.source = clip;
  options.out_dir = dir / "session";
  options.progress = false;
  options.write_video = false;
  options.charts = false;
  const auto model = (fs::path(fer_test::source_dir()) / "experiments" / kLiveDefaultFolder / "best.pt").string();
  fer::run_live(model, options);
  const auto log = fer::read_frames_csv(options.out_dir + "/frames.csv");
  const auto happy = std::find(log.class_names.begin(), log.class_names.end(), "happy") - log.class_names.begin();
  int smiling_observations = 0, read_happy = 0;
  for (const auto& face : labels) {
    std::set<std::int64_t> frames_found;
    for (const auto& r : log.records) {
      if (r.frame < face.first || r.frame > face.last) continue;
      if (!face.centre_region.contains(cv::Point(r.x + r.width / 2, r.y + r.height / 2))) continue;
      frames_found.insert(r.frame);
      if (face.smiling == "yes") ++smiling_observations, read_happy += r.label == happy;
    }
    if (face.smiling == "unclear") continue;  // too dark or small for a person to read: not required
    const double found = static_cast<double>(frames_found.size()) / (face.last - face.first + 1);
    EXPECT_GE(found, kLiveFoundShare) << face.name << " (frames " << face.first << "-" << face.last << ")";
  }
  ASSERT_GT(smiling_observations, 200);  // four smiling faces over 64 frames
  EXPECT_GE(static_cast<double>(read_happy) / smiling_observations, kLiveHappyShare)
      << read_happy << " of " << smiling_observations << " observations of smiling faces read as happy";
}
