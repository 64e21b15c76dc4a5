#include "fer/report/live/trends.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>

#include "fer/common/io.h"
#include "fer/data/dataset.h"
#include "fer/report/environment.h"
#include "fer/report/plot.h"

namespace fer {
namespace fs = std::filesystem;

std::string write_trend_summary(const TrendSummary& s, const std::string& out_dir, const nlohmann::json& extra) {
  fs::create_directories(out_dir);
  auto json = to_json(s);
  if (extra.is_object()) json.update(extra);
  const std::string path = (fs::path(out_dir) / "summary.json").string();
  write_text_atomic(path, json.dump(2) + "\n");
  return path;
}

std::vector<std::string> plot_trends(const TrendSummary& s, const std::string& out_dir, int max_track_charts) {
  std::vector<std::string> files, failures;
  auto png = [&](const std::string& name) { return (fs::path(out_dir) / name).string(); };
  // One failing chart (a gnuplot that dies, a full disk) must not cost the others.
  auto draw = [&](const std::string& path, const std::function<void()>& plot) {
    try {
      plot();
      files.push_back(path);
    } catch (const std::exception& e) {
      failures.push_back(path + ": " + e.what());
    }
  };
  char title[160];
  std::snprintf(title, sizeof title, "Emotion share, %lld face observations", static_cast<long long>(s.overall.observations));
  draw(png("emotion_pie.png"), [&] { plot_emotion_pie(s.overall.counts, s.class_names, title, png("emotion_pie.png")); });
  draw(png("emotion_bar.png"), [&] {
    plot_emotion_bars(s.overall.counts, s.class_names, "Face observations per emotion", png("emotion_bar.png"));
  });
  draw(png("emotion_timeline.png"), [&] {
    plot_emotion_timeline(s.overall.windows, s.window_s, s.class_names, "Emotion shares over time, all faces",
                          png("emotion_timeline.png"));
  });
  std::vector<std::pair<std::int64_t, int>> by_size;
  for (const auto& [id, t] : s.tracks) by_size.emplace_back(-t.observations, id);
  std::sort(by_size.begin(), by_size.end());
  for (int i = 0; i < std::min<int>(max_track_charts, static_cast<int>(by_size.size())); ++i) {
    const int id = by_size[i].second;
    const auto& t = s.tracks.at(id);
    std::snprintf(title, sizeof title, "Emotion shares over time, track %d (%lld observations, %.1f-%.1f s)", id,
                  static_cast<long long>(t.observations), t.first_s, t.last_s);
    const std::string path = png("tracks/track_" + std::to_string(id) + "_timeline.png");
    draw(path, [&] {
      plot_emotion_timeline(t.windows, s.window_s, s.class_names, title, path, t.first_window * s.window_s);
    });
  }
  if (!failures.empty()) {
    std::string message = std::to_string(failures.size()) + " of " + std::to_string(failures.size() + files.size()) +
                          " charts failed (the others were drawn):";
    for (const auto& f : failures) message += "\n  " + f;
    throw std::runtime_error(message);
  }
  return files;
}

std::vector<std::string> write_trend_report(const TrendSummary& s, const std::string& out_dir, bool charts,
                                            int max_track_charts) {
  std::vector<std::string> files{write_trend_summary(s, out_dir)};
  if (charts)
    for (auto& f : plot_trends(s, out_dir, max_track_charts)) files.push_back(std::move(f));
  return files;
}

}  // namespace fer
