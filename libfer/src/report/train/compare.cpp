#include "fer/report/train/compare.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "fer/common/io.h"
#include "fer/report/plot.h"
#include "fer/report/progress.h"

namespace fer {
namespace fs = std::filesystem;

namespace {

// The first epoch with the best monitored value, as BestModelHook picks best.pt.
void find_best_epoch(RunRecord& run) {
  const bool by_loss = run.config.train.early_stopping_monitor == "val_loss";
  const EpochRecord* best = nullptr;
  for (const auto& r : run.history) {
    run.train_seconds += r.seconds;
    if (!best || (by_loss ? r.val_loss < best->val_loss : r.val_accuracy > best->val_accuracy)) best = &r;
  }
  if (!best) return;
  run.best_epoch = best->epoch;
  run.best_val_accuracy = best->val_accuracy;
  run.best_val_loss = best->val_loss;
}

std::map<std::string, double> numbers_of(const std::string& metrics_path) {
  std::map<std::string, double> numbers;
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(read_file(metrics_path));
  } catch (const nlohmann::json::exception& e) {
    throw DataError(metrics_path + ": not valid JSON: " + e.what());
  }
  for (const auto& [key, value] : json.items()) {
    if (value.is_number()) numbers[key] = value.get<double>();
    if (key == "votes" && value.is_object())  // agreement with annotators (FER+): votes.cross_entropy, ...
      for (const auto& [name, number] : value.items())
        if (number.is_number() && name != "n") numbers["votes." + name] = number.get<double>();
  }
  return numbers;
}

std::string decimal(double value, int digits) {
  char text[32];
  std::snprintf(text, sizeof text, "%.*f", digits, value);
  return text;
}

}  // namespace

RunRecord read_run(const std::string& dir) {
  const fs::path root(dir);
  if (!fs::is_directory(root)) throw std::runtime_error(dir + ": no such run folder");
  RunRecord run;
  run.dir = dir;
  run.label = root.filename().empty() ? root.parent_path().filename().string() : root.filename().string();
  const auto config_path = (root / "config.yaml").string();
  if (!fs::exists(config_path)) throw std::runtime_error(config_path + ": missing (not a fer-train run folder?)");
  apply_yaml(run.config, read_file(config_path), config_path);
  const auto history_path = root / "history.csv";
  if (fs::exists(history_path)) run.history = read_history_csv(history_path.string());
  find_best_epoch(run);
  const auto metrics_path = root / "metrics.json";
  if (fs::exists(metrics_path)) run.metrics = numbers_of(metrics_path.string());
  return run;
}

std::vector<RunRecord> read_runs(const std::vector<std::string>& dirs) {
  std::vector<RunRecord> runs;
  for (const auto& dir : dirs) runs.push_back(read_run(dir));
  return runs;
}

bool lower_is_better(const std::string& metric) {
  return metric.find("loss") != std::string::npos || metric.find("cross_entropy") != std::string::npos;
}

std::vector<std::string> known_metrics(const RunRecord& run) {
  std::vector<std::string> names;
  for (const auto& [key, value] : run.metrics) names.push_back(key);
  if (!run.history.empty()) {
    names.push_back("best_val_accuracy");
    names.push_back("best_val_loss");
  }
  std::sort(names.begin(), names.end());
  return names;
}

double run_metric(const RunRecord& run, const std::string& metric) {
  if (!run.history.empty() && metric == "best_val_accuracy") return run.best_val_accuracy;
  if (!run.history.empty() && metric == "best_val_loss") return run.best_val_loss;
  const auto found = run.metrics.find(metric);
  if (found != run.metrics.end()) return found->second;
  std::string known;
  for (const auto& name : known_metrics(run)) known += (known.empty() ? "" : ", ") + name;
  throw std::invalid_argument("run " + run.dir + " has no metric '" + metric + "'" +
                              (known.empty() ? " (not evaluated yet)" : " (it has: " + known + ")"));
}

RunComparison compare_runs(const std::vector<RunRecord>& runs) {
  RunComparison comparison;
  for (const auto& run : runs) comparison.runs.push_back(&run);
  if (runs.empty()) return comparison;
  for (const auto& info : config_keys()) {
    if (info.key == "name") continue;  // the run column names each run
    std::vector<std::string> values;
    for (const auto& run : runs) values.push_back(config_value(run.config, info.key));
    if (std::all_of(values.begin(), values.end(), [&](const auto& v) { return v == values.front(); })) continue;
    comparison.differing_keys.push_back(info.key);
    comparison.values.push_back(values);
  }
  return comparison;
}

std::string comparison_markdown(const RunComparison& comparison) {
  const auto metric = [](const RunRecord& run, const char* name) {
    const auto found = run.metrics.find(name);
    return found == run.metrics.end() ? std::string("–") : decimal(found->second, 4);
  };
  // Runs on voted data (FER+) add the agreement with the annotators.
  const bool votes = std::any_of(comparison.runs.begin(), comparison.runs.end(),
                                 [](const RunRecord* run) { return run->metrics.count("votes.plurality_accuracy") > 0; });
  std::ostringstream out;
  out << "| run | accuracy | balanced acc. | macro F1 |" << (votes ? " vote cross-entropy | plurality acc. |" : "")
      << " best epoch | epochs | best val acc. | final val acc. | train time |\n"
      << "|---|---|---|---|" << (votes ? "---|---|" : "") << "---|---|---|---|---|\n";
  for (const RunRecord* run : comparison.runs) {
    const bool any = !run->history.empty();
    out << "| " << run->label << " | " << metric(*run, "accuracy") << " | " << metric(*run, "balanced_accuracy") << " | "
        << metric(*run, "macro_f1") << " | ";
    if (votes) out << metric(*run, "votes.cross_entropy") << " | " << metric(*run, "votes.plurality_accuracy") << " | ";
    out << (any ? std::to_string(run->best_epoch) : "–") << " | "
        << run->history.size() << " | " << (any ? decimal(run->best_val_accuracy, 4) : "–") << " | "
        << (any ? decimal(run->history.back().val_accuracy, 4) : "–") << " | " << format_duration(run->train_seconds)
        << " |\n";
  }
  out << "\n";
  if (comparison.differing_keys.empty()) return out.str() + "Config differences: none.\n";
  out << "| key |";
  for (const RunRecord* run : comparison.runs) out << " " << run->label << " |";
  out << "\n|---|";
  for (std::size_t i = 0; i < comparison.runs.size(); ++i) out << "---|";
  out << "\n";
  for (std::size_t k = 0; k < comparison.differing_keys.size(); ++k) {
    out << "| `" << comparison.differing_keys[k] << "` |";
    for (const auto& value : comparison.values[k]) out << " " << value << " |";
    out << "\n";
  }
  return out.str();
}

void plot_run_curves(const std::vector<RunRecord>& runs, const std::string& title, const std::string& png_path) {
  std::ostringstream data, accuracy, loss;
  int plotted = 0;
  for (const auto& run : runs) {
    if (run.history.empty()) continue;
    data << "$R" << plotted << " << EOD\n";
    for (const auto& r : run.history) data << r.epoch << " " << r.val_accuracy << " " << r.val_loss << "\n";
    data << "EOD\n$B" << plotted << " << EOD\n"
         << run.best_epoch << " " << run.best_val_accuracy << " " << run.best_val_loss << "\nEOD\n";
    const std::string sep = plotted ? ", " : "plot ";
    const std::string colour = " lc " + std::to_string(plotted + 1);
    accuracy << sep << "$R" << plotted << " using 1:2 with lines lw 2" << colour << " title "
             << gnuplot_quote(run.label) << ", $B" << plotted << " using 1:2 with points pt 7 ps 1.2" << colour
             << " notitle";
    loss << sep << "$R" << plotted << " using 1:3 with lines lw 2" << colour << " title " << gnuplot_quote(run.label)
         << ", $B" << plotted << " using 1:3 with points pt 7 ps 1.2" << colour << " notitle";
    ++plotted;
  }
  if (plotted == 0) throw std::runtime_error("no run has a history.csv to plot");
  int last_epoch = 1;
  for (const auto& run : runs)
    if (!run.history.empty()) last_epoch = std::max(last_epoch, run.history.back().epoch);
  // The legend goes under each plot (inside, a sweep's eight runs covered the
  // curves); the canvas grows by a line per run. Short runs get whole-epoch ticks.
  std::ostringstream s;
  s << "set terminal pngcairo size 1400," << 500 + 18 * plotted
    << " enhanced font 'DejaVu Sans,11'\nset output " << gnuplot_quote(png_path)
    << "\nset border lw 1\nset grid lc rgb '#dddddd'\n" << (last_epoch <= 20 ? "set xtics 1\n" : "")
    << data.str() << "set multiplot layout 1,2 title " << gnuplot_quote(title + " (dots: best epoch)") << "\n"
    << "set xlabel 'Epoch'\nset key below vertical maxcols 1 height 1.5 noenhanced font ',9'\n"
    << "set title 'Validation accuracy'\nset ylabel 'Accuracy'\n" << accuracy.str() << "\n"
    << "set title 'Validation loss'\nset ylabel 'Cross-entropy'\n" << loss.str() << "\n"
    << "unset multiplot\n";
  const fs::path parent = fs::path(png_path).parent_path();
  if (!parent.empty()) fs::create_directories(parent);
  run_gnuplot(s.str(), png_path);
}

}  // namespace fer
