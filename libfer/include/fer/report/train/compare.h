// Finished (or running) training runs side by side: what fer-compare prints and
// draws, and what fer-sweep ranks.
//
//   auto runs = fer::read_runs({"experiments/a", "experiments/b"});
//   std::fputs(fer::comparison_markdown(fer::compare_runs(runs)).c_str(), stdout);
//   fer::plot_run_curves(runs, "compare.png");
#pragma once

#include <map>
#include <string>
#include <vector>

#include "fer/config/config.h"
#include "fer/engine/history.h"

namespace fer {

// One run folder as fer-train leaves it: config.yaml, history.csv and, once
// best.pt was evaluated, metrics.json.
struct RunRecord {
  std::string dir, label;  // label: the folder's name
  Config config;
  std::vector<EpochRecord> history;
  std::map<std::string, double> metrics;  // metrics.json's numbers (best.pt on the val split); empty before
  int best_epoch = 0;                     // by the run's train.early_stopping_monitor, as best.pt
  double best_val_accuracy = 0, best_val_loss = 0;
  double train_seconds = 0;               // the epochs' seconds summed (across resumes)
  bool evaluated() const { return !metrics.empty(); }
};

// Requires `dir` to hold config.yaml (written when a run starts) and
// history.csv (after its first epoch). Throws std::runtime_error, DataError or
// ConfigError naming the file.
RunRecord read_run(const std::string& dir);
std::vector<RunRecord> read_runs(const std::vector<std::string>& dirs);

// A selection metric's value: a number of metrics.json ("accuracy",
// "balanced_accuracy", "macro_f1", ...; its "votes" record's as
// "votes.cross_entropy", "votes.plurality_accuracy"), or "best_val_accuracy" /
// "best_val_loss" from the history. Throws std::invalid_argument naming the
// metric and the run when it has none (e.g. not evaluated yet).
double run_metric(const RunRecord& run, const std::string& metric);
// Losses and cross-entropies rank ascending, everything else descending.
bool lower_is_better(const std::string& metric);
// The metrics run_metric knows for this run, sorted.
std::vector<std::string> known_metrics(const RunRecord& run);

struct RunComparison {
  std::vector<const RunRecord*> runs;  // points into the vector compared
  // The config keys (key-table order, `name` left out) whose values are not
  // the same in every run, and each run's value of each.
  std::vector<std::string> differing_keys;
  std::vector<std::vector<std::string>> values;  // values[key][run]
};
RunComparison compare_runs(const std::vector<RunRecord>& runs);

// Markdown: one row per run (accuracy, balanced accuracy, macro F1 of best.pt,
// best epoch, epochs, best/final val accuracy, train time), then the config
// differences as a key x run table ("no differences" when there are none).
std::string comparison_markdown(const RunComparison& comparison);

// Validation accuracy (left) and loss (right) per epoch, one colour per run,
// each run's best epoch marked. Requires at least one run with history.
void plot_run_curves(const std::vector<RunRecord>& runs, const std::string& title, const std::string& png_path);

}  // namespace fer
