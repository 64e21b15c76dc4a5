// Training of a classifier on FER-2013 as configured: a composition of the
// engine (fer/engine/engine.h) and its hooks (fer/engine/hooks.h) chosen by the config. The
// paper's recipe is the default: Adam, ReduceLROnPlateau on validation
// accuracy, early stopping on validation loss with the best weights restored.
#pragma once

#include <cstdint>
#include <functional>
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
  // Asked after every batch (fer-train: a SIGTERM, SIGINT or SIGUSR1 arrived):
  // true stops the run there, see TrainSummary::interrupted. Every rank of a
  // distributed run stops after the same batch when any of them is asked.
  std::function<bool()> stop_requested;
};

struct TrainSummary {
  std::string run_dir;
  int epochs_completed = 0;
  int best_epoch = 0;
  double best_val_loss = 0, best_val_accuracy = 0;
  bool early_stopped = false;
  double final_val_accuracy = 0, final_val_balanced_accuracy = 0;  // best checkpoint, evaluated
  std::string best_checkpoint;
  // Stopped by stop_requested inside epoch `epochs_completed + 1`, after batch
  // `interrupted_after_batch` of `batches_per_epoch`: last.pt holds the
  // position, nothing was evaluated, and resuming continues at the next batch
  // exactly as if never stopped.
  bool interrupted = false;
  std::int64_t interrupted_after_batch = 0, batches_per_epoch = 0;
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
// with context. An interrupted run returns at once (see TrainSummary::interrupted).
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
