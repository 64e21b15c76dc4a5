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
#include "fer/report/live.h"
#include "fer/report/runtime.h"

namespace {
std::atomic<bool> g_stop{false};
extern "C" void request_stop(int) { g_stop.store(true); }

bool display_available() {
  const char* x = std::getenv("DISPLAY");
  const char* wayland = std::getenv("WAYLAND_DISPLAY");
  return (x && *x) || (wayland && *wayland);
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Live facial emotion recognition: overlay video, frames.csv log, trend charts, wellbeing alerts"};
  std::string model = fer_app::kDefaultModel, source, out, config_path, device;
  std::vector<std::string> overrides;
  bool display = false, no_display = false, save_crops = false, no_video = false, no_charts = false;
  std::int64_t max_frames = 0;
  int loops = 1;
  app.add_option("--model", model, "Checkpoint (.pt) or shipped model name (paper_cnn, ...)")->capture_default_str();
  app.add_option("--source", source, "Camera index (0), video file, image-sequence folder or stream URL")->required();
  app.add_option("--out", out, "Session directory (default: experiments/live/<UTC time>)");
  app.add_option("--config", config_path, "YAML with faces/live/alert keys (see fer-train --list-keys)");
  app.add_option("--set", overrides, "Override a config key, e.g. --set alert.threshold=0.5 (repeatable)");
  auto* d = app.add_flag("--display", display, "Show the overlay window at the source's pace");
  app.add_flag("--no-display", no_display, "Headless: process as fast as possible (default without $DISPLAY)")->excludes(d);
  app.add_flag("--save-crops", save_crops, "Also store each 48x48 face crop (off by default: privacy)");
  app.add_flag("--no-video", no_video, "Do not write annotated.mp4");
  app.add_flag("--no-charts", no_charts, "Skip the trend PNGs (summary.json is still written)");
  app.add_option("--max-frames", max_frames, "Stop after N frames (0 = until the source ends)")->capture_default_str();
  app.add_option("--loop", loops, "Play a video file or folder N times back to back, timestamps running on (demos, soak runs)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--device", device, "auto | cpu | cuda[:N] (default: live.device)");
  CLI11_PARSE(app, argc, argv);

  return fer_app::run_main([&] {
    model = fer_app::resolve_model(model);
    fer::LiveOptions options;
    options.config = config_path.empty() ? fer::Config{} : fer::load_config(config_path);
    for (const auto& o : overrides) fer::apply_override(options.config, o);
    cv::setNumThreads(fer_app::configure_runtime(options.config.live.threads, /*keep_freed_memory=*/false));
    options.source = source;
    if (out.empty()) {
      const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
      char stamp[32];
      std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::gmtime(&now));
      out = std::string("experiments/live/") + stamp;
    }
    options.out_dir = out;
    options.save_crops = save_crops;
    options.write_video = !no_video;
    options.charts = !no_charts;
    options.max_frames = max_frames;
    options.loops = loops;
    options.device = device;
    options.stop = &g_stop;
    const bool show = display || (!no_display && display_available());
    if (display && !display_available()) throw std::runtime_error("--display: no display found ($DISPLAY is not set)");
    if (show) {
      const std::string window = "fer-live (q or Esc to quit)";
      cv::namedWindow(window, cv::WINDOW_AUTOSIZE);
      auto last = std::chrono::steady_clock::now();
      options.on_frame = [window, last](const cv::Mat& frame, double interval_s) mutable {
        cv::imshow(window, frame);
        // Hold each frame for the source's frame interval (what is left of it after processing).
        const double spent = std::chrono::duration<double>(std::chrono::steady_clock::now() - last).count();
        const int wait_ms = std::max(1, static_cast<int>((interval_s - spent) * 1000));
        const int key = cv::waitKey(wait_ms);
        last = std::chrono::steady_clock::now();
        if (key == 'q' || key == 27) return false;
        return cv::getWindowProperty(window, cv::WND_PROP_VISIBLE) >= 1;
      };
    }
    std::signal(SIGINT, request_stop);
    std::signal(SIGTERM, request_stop);

    const auto s = fer::run_live(model, options);
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
    return 0;
  });
}
