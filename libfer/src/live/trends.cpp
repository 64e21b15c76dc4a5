#include "fer/live/trends.h"

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

namespace fer {
namespace fs = std::filesystem;

std::string frames_csv_header(const std::vector<std::string>& class_names) {
  std::vector<std::string> h = {"time_s", "frame", "track", "x", "y", "w", "h"};
  for (const auto& c : class_names) h.push_back("p_" + c);
  h.push_back("label");
  return csv_row(h);
}

std::string frames_csv_row(const FrameRecord& r, const std::vector<std::string>& class_names) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.3f,%lld,%d,%d,%d,%d,%d", r.time_s, static_cast<long long>(r.frame), r.track, r.x,
                r.y, r.width, r.height);
  std::string row = buf;
  for (float p : r.probabilities) {
    std::snprintf(buf, sizeof buf, ",%.5f", p);
    row += buf;
  }
  row += ",";
  row += r.label >= 0 && r.label < static_cast<int>(class_names.size()) ? csv_field(class_names[r.label]) : "";
  return row;
}

FramesLog read_frames_csv(const std::string& path) {
  CsvReader csv(path);
  FramesLog log;
  std::vector<std::string> header, f;
  if (!csv.next(header)) throw DataError(path + ": empty file");
  const std::vector<std::string> fixed = {"time_s", "frame", "track", "x", "y", "w", "h"};
  if (header.size() < fixed.size() + 2 || !std::equal(fixed.begin(), fixed.end(), header.begin()) ||
      header.back() != "label")
    throw DataError(path + ":1: expected the header " + frames_csv_header({"<class>"}) + ", got '" + csv_row(header) +
                    "'");
  for (std::size_t i = fixed.size(); i + 1 < header.size(); ++i) {
    if (header[i].rfind("p_", 0) != 0) throw DataError(path + ":1: column '" + header[i] + "' should be p_<class>");
    log.class_names.push_back(header[i].substr(2));
  }
  const std::size_t k = log.class_names.size();
  while (csv.next(f)) {
    const std::string where = csv.where();
    if (f.size() != header.size())
      throw DataError(where + ": " + std::to_string(f.size()) + " fields, expected " + std::to_string(header.size()));
    FrameRecord r;
    try {
      std::size_t used = 0;
      auto number = [&](const std::string& text) {
        const double v = std::stod(text, &used);
        if (used != text.size() || !std::isfinite(v)) throw std::invalid_argument(text);
        return v;
      };
      r.time_s = number(f[0]);
      r.frame = static_cast<std::int64_t>(number(f[1]));
      r.track = static_cast<int>(number(f[2]));
      r.x = static_cast<int>(number(f[3]));
      r.y = static_cast<int>(number(f[4]));
      r.width = static_cast<int>(number(f[5]));
      r.height = static_cast<int>(number(f[6]));
      for (std::size_t c = 0; c < k; ++c) r.probabilities.push_back(static_cast<float>(number(f[7 + c])));
    } catch (const std::exception&) {
      throw DataError(where + ": not a number in '" + csv_row(f) + "'");
    }
    const auto it = std::find(log.class_names.begin(), log.class_names.end(), f.back());
    if (it == log.class_names.end()) throw DataError(where + ": unknown label '" + f.back() + "'");
    r.label = static_cast<int>(it - log.class_names.begin());
    log.records.push_back(std::move(r));
  }
  return log;
}

namespace {
// Adaptive window widths: each a whole multiple of the one before, so windows merge exactly.
constexpr double kWindowLadder[] = {0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400};

double wider_window(double width, bool adaptive) {
  if (adaptive)
    for (double w : kWindowLadder)
      if (w > width * 1.000001) return w;
  return 2 * width;
}

// Re-bins a series' windows into windows `factor` times wider.
void merge_windows(TrendSeries& t, std::int64_t factor, std::size_t classes) {
  if (t.windows.empty()) {
    t.first_window /= factor;
    return;
  }
  const std::int64_t first = t.first_window / factor;
  const std::int64_t last = (t.first_window + static_cast<std::int64_t>(t.windows.size()) - 1) / factor;
  std::vector<std::vector<std::int64_t>> merged(static_cast<std::size_t>(last - first + 1),
                                                std::vector<std::int64_t>(classes, 0));
  for (std::size_t w = 0; w < t.windows.size(); ++w) {
    auto& into = merged[static_cast<std::size_t>((t.first_window + static_cast<std::int64_t>(w)) / factor - first)];
    for (std::size_t c = 0; c < classes; ++c) into[c] += t.windows[w][c];
  }
  t.first_window = first;
  t.windows = std::move(merged);
}

TrendSeries empty_series(std::size_t classes) {
  TrendSeries t;
  t.counts.assign(classes, 0);
  return t;
}
}  // namespace

TrendBuilder::TrendBuilder(std::vector<std::string> class_names, TrendOptions options) : options_(options) {
  if (!(options.window_s >= 0)) throw std::invalid_argument("trend window must be >= 0 s (0 = adaptive)");
  if (options.max_windows < 2) throw std::invalid_argument("trends: max_windows must be >= 2");
  if (options.max_kept_tracks < 0) throw std::invalid_argument("trends: max_kept_tracks must be >= 0");
  summary_.class_names = std::move(class_names);
  summary_.window_s = options.window_s > 0 ? options.window_s : kWindowLadder[0];
  summary_.overall = empty_series(summary_.class_names.size());
}

void TrendBuilder::add_to(TrendSeries& t, int label, double time_s, std::int64_t window) {
  const std::size_t k = summary_.class_names.size();
  if (t.observations == 0) {
    t.first_s = time_s;
    t.first_window = window;
  }
  t.first_s = std::min(t.first_s, time_s);
  t.last_s = std::max(t.last_s, time_s);
  ++t.counts[label];
  if (window < t.first_window) {  // an out-of-order record: grow at the front
    t.windows.insert(t.windows.begin(), static_cast<std::size_t>(t.first_window - window), std::vector<std::int64_t>(k, 0));
    t.first_window = window;
  }
  const auto index = static_cast<std::size_t>(window - t.first_window);
  if (t.windows.size() <= index) t.windows.resize(index + 1, std::vector<std::int64_t>(k, 0));
  ++t.windows[index][label];
  ++t.observations;
}

void TrendBuilder::widen_windows(std::int64_t needed_window) {
  const std::size_t k = summary_.class_names.size();
  const bool adaptive = options_.window_s == 0;
  while (needed_window >= options_.max_windows) {
    const double wider = wider_window(summary_.window_s, adaptive);
    const auto factor = static_cast<std::int64_t>(std::llround(wider / summary_.window_s));
    merge_windows(summary_.overall, factor, k);
    for (auto& [id, t] : summary_.tracks) merge_windows(t, factor, k);
    for (auto& [id, t] : live_) merge_windows(t, factor, k);
    summary_.window_s = wider;
    needed_window /= factor;
  }
}

void TrendBuilder::add(const FrameRecord& r) {
  const std::size_t k = summary_.class_names.size();
  if (r.label < 0 || r.label >= static_cast<int>(k))
    throw std::invalid_argument("trends: label " + std::to_string(r.label) + " out of range");
  if (!(r.time_s >= 0)) throw std::invalid_argument("trends: negative or invalid time");
  widen_windows(static_cast<std::int64_t>(std::floor(r.time_s / summary_.window_s)));
  const auto w = static_cast<std::int64_t>(std::floor(r.time_s / summary_.window_s));
  add_to(summary_.overall, r.label, r.time_s, w);
  auto it = live_.find(r.track);
  if (it == live_.end()) {
    it = live_.emplace(r.track, empty_series(k)).first;
    ++summary_.tracks_seen;
  }
  add_to(it->second, r.label, r.time_s, w);
  if (r.frame != last_frame_) ++summary_.frames;
  last_frame_ = r.frame;
  summary_.duration_s = std::max(summary_.duration_s, r.time_s);
}

TrendSeries TrendBuilder::end_track(int id) {
  const auto it = live_.find(id);
  if (it == live_.end()) return empty_series(summary_.class_names.size());
  TrendSeries ended = std::move(it->second);
  live_.erase(it);
  keep_ended(id, ended);
  return ended;
}

void TrendBuilder::keep_ended(int id, const TrendSeries& series) {
  summary_.tracks[id] = series;
  if (options_.max_kept_tracks == 0 || static_cast<int>(summary_.tracks.size()) <= options_.max_kept_tracks) return;
  // Drop the smallest (fewest observations; the later id on a tie).
  auto smallest = summary_.tracks.begin();
  for (auto t = summary_.tracks.begin(); t != summary_.tracks.end(); ++t)
    if (t->second.observations <= smallest->second.observations) smallest = t;
  summary_.tracks.erase(smallest);
}

TrendSummary TrendBuilder::summary() const {
  TrendSummary s = summary_;
  for (const auto& [id, t] : live_) s.tracks[id] = t;
  return s;
}

TrendSummary summarise_trends(const std::vector<FrameRecord>& records, const std::vector<std::string>& class_names,
                              TrendOptions options) {
  options.max_kept_tracks = 0;
  TrendBuilder builder(class_names, options);
  for (const auto& r : records) builder.add(r);
  return builder.summary();
}

nlohmann::json to_json(const TrendSeries& t, const TrendSummary& s) {
  nlohmann::json counts = nlohmann::json::object(), shares = nlohmann::json::object();
  for (std::size_t c = 0; c < s.class_names.size(); ++c) {
    counts[s.class_names[c]] = t.counts[c];
    shares[s.class_names[c]] = t.observations ? static_cast<double>(t.counts[c]) / t.observations : 0.0;
  }
  nlohmann::json windows = nlohmann::json::array();
  for (std::size_t w = 0; w < t.windows.size(); ++w) {
    std::int64_t n = 0;
    for (auto v : t.windows[w]) n += v;
    if (n == 0) continue;
    nlohmann::json ws = nlohmann::json::object();
    for (std::size_t c = 0; c < s.class_names.size(); ++c)
      ws[s.class_names[c]] = static_cast<double>(t.windows[w][c]) / n;
    const double start = static_cast<double>(t.first_window + static_cast<std::int64_t>(w)) * s.window_s;
    windows.push_back({{"start_s", start}, {"end_s", start + s.window_s}, {"observations", n}, {"shares", ws}});
  }
  const auto top = std::max_element(t.counts.begin(), t.counts.end());
  return {{"observations", t.observations},
          {"first_s", t.first_s},
          {"last_s", t.last_s},
          {"dominant", t.observations ? s.class_names[top - t.counts.begin()] : ""},
          {"counts", counts},
          {"shares", shares},
          {"windows", windows}};
}

nlohmann::json to_json(const TrendSummary& s) {
  nlohmann::json tracks = nlohmann::json::object();
  for (const auto& [id, t] : s.tracks) tracks[std::to_string(id)] = to_json(t, s);
  return {{"classes", s.class_names}, {"window_s", s.window_s}, {"frames_with_faces", s.frames},
          {"duration_s", s.duration_s}, {"tracks_count", s.tracks_seen}, {"tracks_listed", s.tracks.size()},
          {"overall", to_json(s.overall, s)}, {"tracks", tracks}};
}

}  // namespace fer
