// fer-trends: emotion trend charts and summary.json from a fer-live frames.csv.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>

#include "app_common.h"
#include "fer/report/live/trends.h"

int main(int argc, char** argv) {
  CLI::App app{"Emotion trends (pie, bar, timeline per window, overall and per track) from a frames.csv"};
  std::string frames, out;
  fer::TrendOptions trend;
  int max_tracks = 12;
  bool no_charts = false;
  app.add_option("--frames", frames, "frames.csv written by fer-live")->required()->check(CLI::ExistingFile);
  app.add_option("--out", out, "Output directory (default: trends/ beside --frames)");
  app.add_option("--window", trend.window_s, "Timeline window in seconds (0: adaptive, 0.5 s up, at most --max-windows)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--max-windows", trend.max_windows, "Merge neighbouring windows beyond this many")
      ->check(CLI::Range(10, 1000000))
      ->capture_default_str();
  app.add_option("--max-track-charts", max_tracks, "Timelines for at most this many tracks (most observed first)")->capture_default_str();
  app.add_flag("--no-charts", no_charts, "Only summary.json");
  if (const auto status = fer_app::parse_command_line(app, argc, argv)) return *status;

  return fer_app::run_main([&] {
    const auto log = fer::read_frames_csv(frames);
    const auto trends = fer::summarise_trends(log.records, log.class_names, trend);
    const auto parent = std::filesystem::path(frames).parent_path();
    const std::string dir = out.empty() ? (parent / "trends").string() : out;
    const auto files = fer::write_trend_report(trends, dir, !no_charts, max_tracks);
    std::printf("%zu face observations in %lld frames, %zu tracks, %.1f s\n", log.records.size(),
                static_cast<long long>(trends.frames), trends.tracks.size(), trends.duration_s);
    std::printf("wrote:\n");
    for (const auto& f : files) std::printf("  %s\n", f.c_str());
    return 0;
  });
}
