// fer-live: emotion recognition on a camera, video file, stream or image folder.
#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <opencv2/highgui.hpp>
#include <thread>

#include "app_common.h"
#include "fer/config/config.h"
#include "fer/report/live/session.h"
#include "fer/report/runtime.h"

namespace {
std::atomic<bool> g_stop{false};
extern "C" void request_stop(int) { g_stop.store(true); }

bool display_available() {
  const char* x = std::getenv("DISPLAY");
  const char* wayland = std::getenv("WAYLAND_DISPLAY");
  return (x && *x) || (wayland && *wayland);
}
// The command line, bound to the library's options where one exists.
struct LiveArgs {
  std::string model = fer_app::kDefaultLiveModel, config_path;
  std::vector<std::string> overrides;
  bool display = false, no_display = false, no_video = false, no_charts = false;
  fer::LiveOptions options;  // source, out_dir, save_crops, max_frames, loops, device bound
};

void add_live_options(CLI::App& app, LiveArgs& a) {
  auto& o = a.options;
  app.add_option("--model", a.model, "Checkpoint (.pt) or shipped model name (paper_cnn, ...)")->capture_default_str();
  app.add_option("--source", o.source, "Camera index (0), video file, image-sequence folder or stream URL")->required();
  app.add_option("--out", o.out_dir, "Session directory (default: runs/live/<UTC time>)");
  app.add_option("--config", a.config_path, "YAML with faces/live/alert keys (see fer-train --list-keys)");
  app.add_option("--set", a.overrides, "Override a config key, e.g. --set alert.threshold=0.5 (repeatable)");
  auto* d = app.add_flag("--display", a.display, "Show the overlay window at the source's pace");
  app.add_flag("--no-display", a.no_display, "Headless: process as fast as possible (default without $DISPLAY)")->excludes(d);
  app.add_flag("--save-crops", o.save_crops,
               "Also store each face crop, at the model's face size and before its normalisation (off by default: privacy)");
  app.add_flag("--no-video", a.no_video, "Do not write annotated.mp4");
  app.add_flag("--no-charts", a.no_charts, "Skip the trend PNGs (summary.json is still written)");
  app.add_option("--max-frames", o.max_frames, "Stop after N frames (0 = until the source ends)")->capture_default_str();
  app.add_option("--loop", o.loops, "Play a video file or folder N times back to back, timestamps running on (demos, soak runs)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--device", o.device, "auto | cpu | cuda[:N] (default: live.device)");
}

std::string timestamped_session_dir() {
  const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::gmtime(&now));
  return std::string("runs/live/") + stamp;
}

// The overlay window, holding each frame for the source's frame interval (what
// is left of it after processing); q, Esc or closing the window stops.
std::function<bool(const cv::Mat&, double)> overlay_window() {
  const std::string window = "fer-live (q or Esc to quit)";
  cv::namedWindow(window, cv::WINDOW_AUTOSIZE);
  auto last = std::chrono::steady_clock::now();
  return [window, last](const cv::Mat& frame, double interval_s) mutable {
    cv::imshow(window, frame);
    const double spent = std::chrono::duration<double>(std::chrono::steady_clock::now() - last).count();
    const int key = cv::waitKey(std::max(1, static_cast<int>((interval_s - spent) * 1000)));
    last = std::chrono::steady_clock::now();
    if (key == 'q' || key == 27) return false;
    return cv::getWindowProperty(window, cv::WND_PROP_VISIBLE) >= 1;
  };
}

void print_session(const fer::LiveSummary& s) {
  const double n = std::max<double>(1, s.frames);
  std::printf("%lld frames (%lld skipped) in %.2f s: %.1f frames/s; %lld faces in %lld frames, %d tracks, %d alerts; ended: %s\n",
              static_cast<long long>(s.frames), static_cast<long long>(s.skipped_frames), s.seconds, s.fps,
              static_cast<long long>(s.faces), static_cast<long long>(s.frames_with_faces), s.tracks, s.alerts,
              s.end_reason.c_str());
  std::printf("ms/frame: decode %.2f  detect %.2f  classify %.2f  draw %.2f  write %.2f\n", 1000 * s.stages.decode / n,
              1000 * s.stages.detect / n, 1000 * s.stages.classify / n, 1000 * s.stages.draw / n,
              1000 * s.stages.write / n);
  std::printf("wrote:\n");
  for (const auto& f : s.files) std::printf("  %s\n", f.c_str());
}

int run_live(LiveArgs a) {
  const std::string model = fer_app::resolve_model(a.model);
  auto& options = a.options;
  options.config = a.config_path.empty() ? fer::Config{} : fer::load_config(a.config_path);
  for (const auto& o : a.overrides) fer::apply_override(options.config, o);
  cv::setNumThreads(fer_app::configure_runtime(options.config.live.threads, /*keep_freed_memory=*/false));
  if (options.out_dir.empty()) options.out_dir = timestamped_session_dir();
  options.write_video = !a.no_video;
  options.charts = !a.no_charts;
  options.stop = &g_stop;
  if (a.display && !display_available()) throw std::runtime_error("--display: no display found ($DISPLAY is not set)");
  if (a.display || (!a.no_display && display_available())) options.on_frame = overlay_window();
  std::signal(SIGINT, request_stop);
  std::signal(SIGTERM, request_stop);
  print_session(fer::run_live(model, options));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Live facial emotion recognition: overlay video, frames.csv log, trend charts, wellbeing alerts"};
  LiveArgs args;
  add_live_options(app, args);
  if (const auto status = fer_app::parse_command_line(app, argc, argv)) return *status;
  return fer_app::run_main([&] { return run_live(std::move(args)); });
}
