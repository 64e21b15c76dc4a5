// Evaluation of a checkpoint on a dataset split: metrics.json, predictions.csv
// and charts (confusion matrices, ROC curves, training curves).
#pragma once

#include <string>
#include <vector>

#include "fer/dataset.h"
#include "fer/metrics.h"

namespace fer {

struct EvaluationOptions {
  bool tta = false;
  int batch_size = 64;
  std::string device = "auto";
  int threads = 0;
  bool charts = true;        // needs gnuplot; without it the charts are skipped with a warning
  bool progress = true;
  std::string history_csv;   // when set, also plot training curves from it
  std::string split = "val"; // recorded in metrics.json
  std::string data_source;   // recorded in metrics.json
};

struct EvaluationResult {
  Metrics metrics;
  std::vector<std::int64_t> predicted;
  std::vector<float> probabilities;  // [n, classes] row-major
  std::vector<std::string> files;    // what was written
};

// Requires a non-empty `data`. Writes into `out_dir` (created):
// metrics.json, predictions.csv, confusion_matrix.png, confusion_matrix_normalized.png,
// roc_curves.png and, given history_csv, training_curves.png.
// Throws std::runtime_error naming the checkpoint or the file that failed.
EvaluationResult evaluate_checkpoint(const std::string& checkpoint_path, const Dataset& data,
                                     const std::string& out_dir, const EvaluationOptions& options);

// The report part alone (no model): metrics, predictions and charts from probabilities.
EvaluationResult write_evaluation(const std::vector<std::int64_t>& labels, const std::vector<float>& probabilities,
                                  const std::vector<std::string>& class_names, const std::string& out_dir,
                                  const EvaluationOptions& options, const std::string& checkpoint_path);

}  // namespace fer
