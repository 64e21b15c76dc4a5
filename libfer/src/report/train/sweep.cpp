#include "fer/report/train/sweep.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "fer/common/io.h"
#include "fer/report/plot.h"
#include "fer/report/run_lock.h"
#include "fer/report/train/train.h"

namespace fer {
namespace fs = std::filesystem;

namespace {

using Overrides = std::vector<std::pair<std::string, std::string>>;

// Splits at commas outside [...], {...} and quotes: list values stay whole.
std::vector<std::string> split_values(const std::string& text) {
  std::vector<std::string> parts(1);
  int depth = 0;
  char quote = 0;
  for (char c : text) {
    if (quote) quote = c == quote ? 0 : quote;
    else if (c == '"' || c == '\'') quote = c;
    else if (c == '[' || c == '{') ++depth;
    else if (c == ']' || c == '}') --depth;
    else if (c == ',' && depth == 0) {
      parts.emplace_back();
      continue;
    }
    parts.back() += c;
  }
  return parts;
}

std::pair<std::string, std::string> split_assignment(const std::string& text, const char* flag) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError(std::string(flag) + " " + text + ": expected key=" + (flag[2] == 'g' ? "v1,v2,..." : "lo:hi[:log]"));
  return {text.substr(0, eq), text.substr(eq + 1)};
}

const ConfigKeyInfo& key_info(const std::string& key, const std::string& where) {
  static const std::vector<ConfigKeyInfo> keys = config_keys();
  for (const auto& info : keys)
    if (info.key == key) return info;
  throw ConfigError(where + ": unknown config key '" + key + "' (fer-train --list-keys lists them)");
}

std::string draw_value(const RandomAxis& axis, std::mt19937_64& rng, const std::string& type) {
  const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;  // [0,1), the same on every standard library
  const double value = axis.log_scale ? std::exp(std::log(axis.lo) + u * (std::log(axis.hi) - std::log(axis.lo)))
                                      : axis.lo + u * (axis.hi - axis.lo);
  if (type == "int") return std::to_string(static_cast<long long>(std::llround(value)));
  char text[32];
  std::snprintf(text, sizeof text, "%.4g", value);
  return text;
}

// The grid's combinations, the first axis slowest.
std::vector<Overrides> grid_points(const std::vector<GridAxis>& grid) {
  std::vector<Overrides> points(1);
  for (const auto& axis : grid) {
    std::vector<Overrides> next;
    for (const auto& point : points)
      for (const auto& value : axis.values) {
        next.push_back(point);
        next.back().emplace_back(axis.key, value);
      }
    points = std::move(next);
  }
  return points;
}

// key=value pairs joined by ','; characters awkward in a shell or a path dropped or replaced.
std::string run_name(const Overrides& overrides, const std::string& prefix) {
  std::string name = prefix;
  for (const auto& [key, value] : overrides) {
    if (!name.empty()) name += ',';
    name += key + '=';
    for (char c : value) {
      if (c == ' ' || c == '[' || c == ']' || c == '{' || c == '}' || c == '"' || c == '\'') continue;
      name += (c == ',') ? '-' : (c == '/' || c == ':' || c == '*' || c == '?') ? '_' : c;
    }
  }
  return name;
}

void check_spec_shape(const SweepSpec& spec) {
  if (spec.out_dir.empty()) throw ConfigError("sweep: an output folder (--out) is required");
  if (spec.grid.empty() && spec.random.empty()) throw ConfigError("sweep: nothing to sweep (give --grid or --random)");
  if (!spec.random.empty() && spec.trials < 1) throw ConfigError("sweep: --random needs --trials N (N >= 1)");
  if (spec.random.empty() && spec.trials > 0) throw ConfigError("sweep: --trials needs at least one --random axis");
  std::vector<std::string> keys;
  for (const auto& axis : spec.grid) keys.push_back(axis.key);
  for (const auto& axis : spec.random) keys.push_back(axis.key);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    key_info(keys[i], "sweep");
    if (std::find(keys.begin(), keys.begin() + i, keys[i]) != keys.begin() + i)
      throw ConfigError("sweep: key '" + keys[i] + "' is swept twice");
  }
  for (const auto& axis : spec.random) {
    const auto& type = key_info(axis.key, "--random " + axis.key).type;
    if (type != "int" && type != "float")
      throw ConfigError("--random " + axis.key + ": key '" + axis.key + "' is " + type + "; random axes need int or float");
  }
}

SweepRun make_run(const SweepSpec& spec, const Overrides& overrides, const std::string& prefix) {
  SweepRun run;
  run.overrides = overrides;
  run.name = run_name(overrides, prefix);
  run.dir = (fs::path(spec.out_dir) / "runs" / run.name).string();
  run.config = spec.base;
  for (const auto& [key, value] : overrides) {
    try {
      apply_override(run.config, key + "=" + value);
    } catch (const ConfigError& e) {
      throw ConfigError("sweep key '" + key + "' value '" + value + "': " + e.what());
    }
  }
  run.config.name = spec.base.name + "/" + run.name;
  return run;
}

nlohmann::json plan_json(const SweepPlan& plan) {
  nlohmann::json runs = nlohmann::json::array();
  for (const auto& run : plan.runs) {
    nlohmann::json overrides = nlohmann::json::object();
    for (const auto& [key, value] : run.overrides) overrides[key] = value;
    runs.push_back({{"name", run.name}, {"overrides", overrides}});
  }
  nlohmann::json grid = nlohmann::json::object(), random = nlohmann::json::object();
  for (const auto& axis : plan.spec.grid) grid[axis.key] = axis.values;
  for (const auto& axis : plan.spec.random) random[axis.key] = {{"lo", axis.lo}, {"hi", axis.hi}, {"log", axis.log_scale}};
  return {{"base", to_yaml(plan.spec.base)}, {"grid", grid},  {"random", random}, {"trials", plan.spec.trials},
          {"seed", plan.spec.seed},          {"metric", plan.spec.metric}, {"runs", runs}};
}

fs::path result_path(const SweepRun& run) { return fs::path(run.dir) / "sweep_result.json"; }

SweepRunResult finished_result(const SweepRun& run, const std::string& metric) {
  SweepRunResult result;
  result.run = run;
  result.record = read_run(run.dir);
  result.metric = run_metric(result.record, metric);
  result.ok = true;
  return result;
}

void rank_results(SweepResult& result) {
  const bool ascending = lower_is_better(result.plan.spec.metric);
  std::stable_sort(result.ranked.begin(), result.ranked.end(), [&](const auto& a, const auto& b) {
    if (a.ok != b.ok) return a.ok;
    if (!a.ok) return false;
    return ascending ? a.metric < b.metric : a.metric > b.metric;
  });
}

}  // namespace

GridAxis parse_grid_axis(const std::string& text) {
  auto [key, list] = split_assignment(text, "--grid");
  GridAxis axis{key, split_values(list)};
  if (list.empty()) throw ConfigError("--grid " + text + ": key '" + key + "' has an empty list of values");
  for (const auto& value : axis.values)
    if (value.empty()) throw ConfigError("--grid " + text + ": key '" + key + "' has an empty value");
  return axis;
}

RandomAxis parse_random_axis(const std::string& text) {
  auto [key, range] = split_assignment(text, "--random");
  RandomAxis axis;
  axis.key = key;
  std::vector<std::string> parts;
  std::stringstream in(range);
  for (std::string part; std::getline(in, part, ':');) parts.push_back(part);
  const bool shape_ok = (parts.size() == 2 || (parts.size() == 3 && parts[2] == "log"));
  char* end_lo = nullptr;
  char* end_hi = nullptr;
  if (shape_ok) {
    axis.lo = std::strtod(parts[0].c_str(), &end_lo);
    axis.hi = std::strtod(parts[1].c_str(), &end_hi);
  }
  if (!shape_ok || parts[0].empty() || parts[1].empty() || *end_lo || *end_hi)
    throw ConfigError("--random " + text + ": key '" + key + "' needs lo:hi or lo:hi:log (numbers)");
  axis.log_scale = parts.size() == 3;
  if (!(axis.lo < axis.hi)) throw ConfigError("--random " + text + ": key '" + key + "' needs lo < hi");
  if (axis.log_scale && axis.lo <= 0) throw ConfigError("--random " + text + ": key '" + key + "' log range needs lo > 0");
  return axis;
}

SweepPlan plan_sweep(const SweepSpec& spec) {
  check_spec_shape(spec);
  SweepPlan plan{spec, {}};
  std::mt19937_64 rng(spec.seed);
  for (const auto& point : grid_points(spec.grid)) {
    if (spec.random.empty()) {
      plan.runs.push_back(make_run(spec, point, ""));
      continue;
    }
    for (int trial = 0; trial < spec.trials; ++trial) {
      Overrides overrides = point;
      for (const auto& axis : spec.random)
        overrides.emplace_back(axis.key, draw_value(axis, rng, key_info(axis.key, "--random").type));
      char prefix[16];
      std::snprintf(prefix, sizeof prefix, "trial%03d", trial);
      plan.runs.push_back(make_run(spec, overrides, prefix));
    }
  }
  return plan;
}

SweepRunState sweep_run_state(const SweepRun& run) {
  if (fs::exists(result_path(run))) return SweepRunState::finished;
  if (fs::exists(fs::path(run.dir) / "last.pt")) return SweepRunState::interrupted;
  return SweepRunState::pending;
}

SweepResult collect_sweep(const SweepPlan& plan) {
  SweepResult result{plan, {}, 0, 0};
  for (const auto& run : plan.runs) {
    if (sweep_run_state(run) == SweepRunState::finished) {
      result.ranked.push_back(finished_result(run, plan.spec.metric));
    } else {
      result.ranked.push_back(SweepRunResult{run, false, "", {}, 0});  // no error: the table says "not run"
      ++result.not_run;
    }
  }
  rank_results(result);
  return result;
}

namespace {

// The shared state of a sweep's workers: which run is next, what ended, the ETA.
class SweepScheduler {
 public:
  SweepScheduler(const SweepPlan& plan, const SweepCallbacks& callbacks) : plan_(plan), callbacks_(callbacks) {
    progress_.total = static_cast<int>(plan.runs.size());
    for (std::size_t i = 0; i < plan.runs.size(); ++i) {
      if (sweep_run_state(plan.runs[i]) == SweepRunState::finished) ++progress_.finished;
      else todo_.push_back(i);
    }
    failures_.resize(plan.runs.size());
  }

  void work() {
    for (std::size_t index; take(index);) {
      const SweepRun& run = plan_.runs[index];
      const bool resume = sweep_run_state(run) == SweepRunState::interrupted;
      log((resume ? "resuming " : "starting ") + run.name);
      const auto start = std::chrono::steady_clock::now();
      std::string error;
      try {
        train(run, resume);
        const double metric = finished_result(run, plan_.spec.metric).metric;
        write_text_atomic(result_path(run).string(),
                          nlohmann::json{{"name", run.name}, {"metric", plan_.spec.metric}, {"value", metric}}.dump(2) + "\n");
      } catch (const RunInterrupted& e) {
        stop(e.what());
        continue;
      } catch (const std::exception& e) {
        error = e.what();
      }
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      finish(index, error, seconds);
    }
  }

  std::vector<std::string> failures() const { return failures_; }
  bool interrupted() const { return interrupted_; }
  SweepProgress progress() const { return progress_; }

 private:
  bool take(std::size_t& index) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (callbacks_.stop_requested && callbacks_.stop_requested()) interrupted_ = true;
    if (next_ >= todo_.size() || interrupted_ || (callbacks_.should_abort && callbacks_.should_abort())) return false;
    index = todo_[next_++];
    return true;
  }

  void train(const SweepRun& run, bool resume) const {
    if (callbacks_.train) return callbacks_.train(run, resume);
    TrainRequest request;
    request.config = run.config;
    request.run_dir = run.dir;
    request.resume = resume;
    request.stop_requested = callbacks_.stop_requested;
    const auto summary = fer::train(request);
    if (summary.interrupted)
      throw RunInterrupted(run.name + " stopped after batch " + std::to_string(summary.interrupted_after_batch) +
                           " of epoch " + std::to_string(summary.epochs_completed + 1) + "; its last.pt holds the position");
  }

  void stop(const std::string& message) {
    std::lock_guard<std::mutex> lock(mutex_);
    interrupted_ = true;
    log(message);
  }

  void finish(std::size_t index, const std::string& error, double seconds) {
    std::lock_guard<std::mutex> lock(mutex_);
    const SweepRun& run = plan_.runs[index];
    if (error.empty()) {
      ++progress_.finished;
      seconds_.push_back(seconds);
      progress_.last = run.name + ": " + plan_.spec.metric + " " +
                       std::to_string(finished_result(run, plan_.spec.metric).metric);
    } else {
      ++progress_.failed;
      failures_[index] = error;
      progress_.last = run.name + " failed: " + error;
    }
    const int remaining = progress_.total - progress_.finished - progress_.failed;
    const int lanes = std::max(1, std::min(callbacks_.parallel, remaining));
    double mean = 0;
    for (double s : seconds_) mean += s / seconds_.size();
    progress_.eta_seconds = seconds_.empty() ? -1 : mean * remaining / lanes;
    log(progress_.last);
    if (callbacks_.on_progress) callbacks_.on_progress(progress_);
  }

  void log(const std::string& message) const {
    if (callbacks_.log) callbacks_.log(message);
  }

  const SweepPlan& plan_;
  const SweepCallbacks& callbacks_;
  std::vector<std::size_t> todo_;
  std::size_t next_ = 0;
  std::vector<double> seconds_;
  std::vector<std::string> failures_;
  bool interrupted_ = false;
  SweepProgress progress_;
  std::mutex mutex_;
};

}  // namespace

SweepResult run_sweep(const SweepPlan& plan, const SweepCallbacks& callbacks) {
  if (callbacks.parallel < 1) throw std::invalid_argument("run_sweep: parallel must be at least 1");
  if (callbacks.parallel > 1 && !callbacks.train)
    throw std::invalid_argument("run_sweep: parallel runs need a train callback that starts processes");
  const RunFolderLock lock(plan.spec.out_dir);  // the runs below lock their own folders
  write_text_atomic((fs::path(plan.spec.out_dir) / "sweep.json").string(), plan_json(plan).dump(2) + "\n");
  SweepScheduler scheduler(plan, callbacks);
  if (callbacks.on_progress) callbacks.on_progress(scheduler.progress());  // runs finished before this invocation
  std::vector<std::thread> workers;
  for (int lane = 1; lane < callbacks.parallel; ++lane) workers.emplace_back([&] { scheduler.work(); });
  scheduler.work();
  for (auto& worker : workers) worker.join();

  SweepResult result = collect_sweep(plan);
  result.interrupted = scheduler.interrupted();
  const auto failures = scheduler.failures();
  for (auto& entry : result.ranked) {
    const auto at = std::find_if(plan.runs.begin(), plan.runs.end(), [&](const auto& r) { return r.name == entry.run.name; });
    const std::string& error = failures[static_cast<std::size_t>(at - plan.runs.begin())];
    if (entry.ok || error.empty()) continue;
    entry.error = error;
    ++result.failed;
    --result.not_run;
  }
  return result;
}

namespace {

std::vector<std::string> swept_keys(const SweepSpec& spec) {
  std::vector<std::string> keys;
  for (const auto& axis : spec.grid) keys.push_back(axis.key);
  for (const auto& axis : spec.random) keys.push_back(axis.key);
  return keys;
}

std::string override_value(const SweepRun& run, const std::string& key) {
  for (const auto& [k, v] : run.overrides)
    if (k == key) return v;
  return "";
}

// accuracy and balanced accuracy beside the selection metric, unless it is one of them.
std::vector<std::string> other_metrics(const SweepSpec& spec) {
  std::vector<std::string> names;
  for (const char* name : {"accuracy", "balanced_accuracy"})
    if (spec.metric != name) names.push_back(name);
  return names;
}

// rank, run, swept keys, the metric, the other metrics, best epoch, epochs, train seconds, status
std::vector<std::string> summary_header(const SweepSpec& spec) {
  std::vector<std::string> header{"rank", "run"};
  for (const auto& key : swept_keys(spec)) header.push_back(key);
  header.push_back(spec.metric);
  for (const auto& name : other_metrics(spec)) header.push_back(name);
  for (const char* column : {"best_epoch", "epochs", "train_seconds", "status"}) header.push_back(column);
  return header;
}

std::vector<std::string> summary_cells(const SweepResult& result, std::size_t rank) {
  const auto& entry = result.ranked[rank];
  const auto number = [](double value, const char* format) {
    char text[32];
    std::snprintf(text, sizeof text, format, value);
    return std::string(text);
  };
  std::vector<std::string> cells{entry.ok ? std::to_string(rank + 1) : "", entry.run.name};
  for (const auto& key : swept_keys(result.plan.spec)) cells.push_back(override_value(entry.run, key));
  const auto others = other_metrics(result.plan.spec);
  if (entry.ok) {
    const auto& r = entry.record;
    cells.push_back(number(entry.metric, "%.4f"));
    for (const auto& name : others) cells.push_back(r.metrics.count(name) ? number(r.metrics.at(name), "%.4f") : "");
    for (const auto& cell : {std::to_string(r.best_epoch), std::to_string(r.history.size()),
                             number(r.train_seconds, "%.0f"), std::string("finished")})
      cells.push_back(cell);
  } else {
    cells.resize(cells.size() + 4 + others.size());
    cells.push_back(entry.error.empty() ? "not run" : "failed: " + entry.error.substr(0, entry.error.find('\n')));
  }
  return cells;
}

std::string summary_markdown(const SweepResult& result) {
  const auto& spec = result.plan.spec;
  std::ostringstream out;
  out << "# Sweep " << spec.base.name << "\n\n"
      << result.plan.runs.size() << " runs ranked by `" << spec.metric << "` of best.pt on the validation split"
      << (spec.base.data.split == "canonical" ? " (PublicTest for the FER-2013 CSV, val/ for image folders)" : "") << " ("
      << (lower_is_better(spec.metric) ? "lower" : "higher") << " is better)";
  if (result.failed || result.not_run) out << "; " << result.failed << " failed, " << result.not_run << " not run";
  out << ". Swept:";
  for (const auto& axis : spec.grid) {
    out << " `" << axis.key << "` ∈ {";
    for (std::size_t i = 0; i < axis.values.size(); ++i) out << (i ? ", " : "") << axis.values[i];
    out << "}";
  }
  for (const auto& axis : spec.random)
    out << " `" << axis.key << "` ~ " << (axis.log_scale ? "log-uniform" : "uniform") << "(" << axis.lo << ", "
        << axis.hi << ")";
  out << ".\n\n";
  const auto table_row = [](const std::vector<std::string>& cells) {
    std::string row = "|";
    for (const auto& cell : cells) row += " " + cell + " |";
    return row + "\n";
  };
  const auto header = summary_header(spec);
  out << table_row(header) << table_row(std::vector<std::string>(header.size(), "---"));
  for (std::size_t rank = 0; rank < result.ranked.size(); ++rank) out << table_row(summary_cells(result, rank));
  return out.str();
}

bool is_number(const std::string& text, double& value) {
  char* end = nullptr;
  value = std::strtod(text.c_str(), &end);
  return !text.empty() && *end == 0;
}

// The metric of each finished run against one swept key: points on a numeric
// (log when the values span 10x or more) or categorical axis, the best run marked.
void plot_metric_against(const SweepResult& result, const std::string& key, const std::string& png_path) {
  std::vector<std::pair<std::string, double>> points;
  for (const auto& entry : result.ranked)
    if (entry.ok) points.emplace_back(override_value(entry.run, key), entry.metric);
  if (points.empty()) return;
  bool numeric = true;
  double lo = INFINITY, hi = -INFINITY, x = 0;
  for (const auto& p : points) {
    numeric = numeric && is_number(p.first, x);
    if (numeric) lo = std::min(lo, x), hi = std::max(hi, x);
  }
  std::vector<std::string> categories;
  std::ostringstream data;
  for (const auto& [value, metric] : points) {
    if (numeric) {
      data << value << " " << metric << "\n";
      continue;
    }
    auto at = std::find(categories.begin(), categories.end(), value);
    if (at == categories.end()) at = categories.insert(at, value);
    data << (at - categories.begin()) << " " << metric << " \"" << value << "\"\n";
  }
  std::ostringstream s;
  s << "set terminal pngcairo size 800,520 enhanced font 'DejaVu Sans,11'\nset output " << gnuplot_quote(png_path)
    << "\nset border lw 1\nset grid lc rgb '#dddddd'\n$D << EOD\n" << data.str() << "EOD\n$B << EOD\n"
    << data.str().substr(0, data.str().find('\n') + 1) << "EOD\n"
    << "set title " << gnuplot_quote(result.plan.spec.metric + " against " + key) << " noenhanced\n"
    << "set xlabel " << gnuplot_quote(key) << " noenhanced\nset ylabel " << gnuplot_quote(result.plan.spec.metric)
    << " noenhanced\nset offsets graph 0.08, graph 0.08, graph 0.1, graph 0.1\nset key outside top center horizontal\n";
  if (numeric && lo > 0 && hi >= 10 * lo) s << "set logscale x\n";
  if (!numeric) s << "set xtics (" << [&] {
      std::string tics;
      for (std::size_t i = 0; i < categories.size(); ++i)
        tics += (i ? ", " : "") + gnuplot_quote(categories[i]) + " " + std::to_string(i);
      return tics;
    }() << ") noenhanced\n";
  s << "plot $D using 1:2 with points pt 7 ps 1.5 lc rgb '#1f77b4' title 'run', "
    << "$B using 1:2 with points pt 6 ps 3 lw 2 lc rgb '#d62728' title 'best'\n";
  run_gnuplot(s.str(), png_path);
}

}  // namespace

void write_sweep_summary(const SweepResult& result) {
  const fs::path out(result.plan.spec.out_dir);
  fs::create_directories(out);
  std::string csv = csv_row(summary_header(result.plan.spec)) + "\n";
  for (std::size_t rank = 0; rank < result.ranked.size(); ++rank) csv += csv_row(summary_cells(result, rank)) + "\n";
  write_text_atomic((out / "summary.csv").string(), csv);
  write_text_atomic((out / "summary.md").string(), summary_markdown(result));
  if (!gnuplot_available()) return;
  for (const auto& key : swept_keys(result.plan.spec)) plot_metric_against(result, key, (out / (key + ".png")).string());
}

}  // namespace fer
