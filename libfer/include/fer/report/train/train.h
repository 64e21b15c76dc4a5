// Training of a classifier on FER-2013 as configured: a composition of the
// engine (fer/engine/engine.h) and its hooks (fer/engine/hooks.h) chosen by the config. The
// paper's recipe is the default: Adam, ReduceLROnPlateau on validation
// accuracy, early stopping on validation loss with the best weights restored.
#pragma once

#include <string>
#include <vector>

#include "fer/config/config.h"
#include "fer/data/dataset.h"
#include "fer/distributed/distributed.h"

namespace fer {

struct TrainRequest {
  Config config;
  std::string run_dir;      // fer-train: runs/<name> unless chosen
  bool resume = false;      // continue from run_dir/last.pt
  DistributedEnv distributed;  // this process's rank; a world of one by default
};

struct TrainSummary {
  std::string run_dir;
  int epochs_completed = 0;
  int best_epoch = 0;
  double best_val_loss = 0, best_val_accuracy = 0;
  bool early_stopped = false;
  double final_val_accuracy = 0, final_val_balanced_accuracy = 0;  // best checkpoint, evaluated
  std::string best_checkpoint;
};

// Requires config.data.path to name the dataset. With request.distributed.world_size
// > 1, every rank calls it: data-parallel training over a c10d process group,
// where rank 0 alone writes and evaluates, and the others return after the last
// epoch (their summary holds the epochs only). Writes into run_dir:
// config.yaml, environment.json, history.csv, last.pt (resumable), best.pt,
// train.log, and the evaluation of best.pt on the validation split
// (metrics.json, predictions.csv, charts) and, when present, on the test split (test/).
// With resume, continues as resume_rule() says, with the same optimizer,
// gradient scaler and hook states. Throws std::runtime_error (DataError,
// ConfigError, DivergenceError when the loss or a gradient stops being finite)
// with context.
TrainSummary train(const TrainRequest& request);

// The keys whose value a resumed run may change (a trailing '.' stands for a
// whole section); every other key must equal the run's config.yaml.
const std::vector<std::string>& keys_a_resumed_run_may_change();
bool may_change_on_resume(const std::string& key);
// The rule in one sentence, as errors and docs/training.md state it.
std::string resume_rule();

// Loads the configured dataset and split (canonical or stratified), applies
// max_train / max_val, logs per-class counts. Throws DataError for an empty
// train or validation split.
DatasetSplits load_configured_splits(const Config& config);

}  // namespace fer
