// The standard hooks of the training engine (fer/engine/engine.h). Each owns one
// concern and its resumable state; fer::train composes them from the config.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "fer/common/callbacks.h"
#include "fer/engine/engine.h"
#include "fer/engine/optim.h"

namespace fer {

// Thrown by DivergenceGuard: the message names the epoch, the batch and the rate.
class DivergenceError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Sets the rate of each epoch: cosine and step before it starts, plateau after
// the validation accuracy is known. Must come after EvalHook.
class LrScheduleHook : public HookBase {
 public:
  LrScheduleHook(ScheduleOptions options, LogFn log);
  std::string name() const override { return "lr_schedule"; }
  void before_epoch(TrainerBase& trainer) override;
  void after_epoch(TrainerBase& trainer) override;
  HookState state_dict() const override;
  void load_state_dict(const HookState& state) override;

 private:
  ScheduleOptions options_;
  PlateauRule plateau_;
  double lr_;  // the rate of the next epoch
  LogFn log_;
};

class Communicator;

// Validates the trainer's eval_model() on `val` after each epoch (centre crop
// to the model's input size, the training precision): record.val_loss/val_accuracy.
// Sharded validation: given a communicator, `val` is this rank's shard and the
// sums are all-reduced, so every rank records the metrics of the whole split.
class EvalHook : public HookBase {
 public:
  EvalHook(TrainData val, int64_t batch_size, std::shared_ptr<Communicator> comm = nullptr);
  void after_epoch(TrainerBase& trainer) override;

 private:
  TrainData val_;
  int64_t batch_size_;
  std::shared_ptr<Communicator> comm_;
};

// Tracks the best epoch by `monitor` (val_loss: lowest; val_accuracy: highest),
// sets progress().improved, and stops after `patience` epochs without one (0: never).
class BestModelHook : public HookBase {
 public:
  BestModelHook(std::string monitor, int patience, LogFn log);
  std::string name() const override { return "best_model"; }
  void before_train(TrainerBase& trainer) override;
  void after_epoch(TrainerBase& trainer) override;
  HookState state_dict() const override;
  void load_state_dict(const HookState& state) override;

  int best_epoch() const { return best_epoch_; }
  double best_val_loss() const { return best_val_loss_; }
  double best_val_accuracy() const { return best_val_accuracy_; }
  bool early_stopped() const { return early_stopped_; }

 private:
  std::string monitor_;
  int patience_;
  LogFn log_;
  double best_ = 0;
  int best_epoch_ = 0, wait_ = 0;
  double best_val_loss_ = 0, best_val_accuracy_ = 0;
  bool early_stopped_ = false;
};

// The decay of the average's update number `updates` (0 for the first):
// min(decay, (1 + updates) / (10 + updates)), TensorFlow's num_updates rule, so
// the first updates follow the weights closely instead of keeping the random
// initialisation in the average for thousands of steps.
double ema_decay_at(double decay, std::int64_t updates);

// One EMA step: average = decay * average + (1 - decay) * model, over the
// parameters and the floating-point buffers (BatchNorm statistics, averaged
// like the weights they describe); other buffers (counters) are copied.
// Requires modules of the same architecture; throws std::invalid_argument naming
// an entry that is missing or shaped differently.
void ema_update(torch::nn::Module& average, const torch::nn::Module& model, double decay);

// Exponential moving average of the weights and BatchNorm statistics, updated
// after every optimizer step with ema_decay_at's warm-up. Becomes the
// eval_model(), so it is what is validated and saved as best.pt.
class EmaHook : public HookBase {
 public:
  // `average` is a freshly built model of the same architecture as the trainer's.
  EmaHook(double decay, Classifier average);
  std::string name() const override { return "ema"; }
  void before_train(TrainerBase& trainer) override;
  void after_step(TrainerBase& trainer) override;
  HookState state_dict() const override;
  void load_state_dict(const HookState& state) override;

 private:
  double decay_;
  Classifier average_;
  bool initialised_ = false;
  std::int64_t updates_ = 0;
};

// Hinton et al.'s soft-target term: T^2 * KL(softmax(teacher/T) || softmax(student/T)),
// the mean over the batch of [B,classes] logits (T^2 keeps its gradients the
// size of the hard-label loss's as T changes). Requires equal shapes and T > 0.
at::Tensor distillation_loss(const at::Tensor& student_logits, const at::Tensor& teacher_logits, double temperature);

struct DistillOptions {
  double alpha = 0.9;        // weight of the soft-target term; the hard-label loss keeps 1 - alpha
  double temperature = 4.0;
};

// Knowledge distillation: before each backward pass the trainer's loss becomes
// (1 - alpha) * loss + alpha * distillation_loss(student, teacher, T), the
// teacher (eval mode, no gradients, the training precision) seeing the step's
// augmented batch centre-cropped to its own input size. Stateless but for the
// teacher's identity: resuming last.pt with another teacher is an error.
class DistillationHook : public HookBase {
 public:
  // `source` names the teacher in messages and in last.pt (a path or a shipped name).
  // Throws std::invalid_argument for alpha outside [0, 1] or T <= 0.
  DistillationHook(Classifier teacher, int64_t teacher_input_size, DistillOptions options, std::string source);
  std::string name() const override { return "distillation"; }
  void before_train(TrainerBase& trainer) override;
  // Throws std::invalid_argument when the batch is smaller than the teacher's input.
  void before_backward(TrainerBase& trainer) override;
  HookState state_dict() const override;
  // Throws std::runtime_error when last.pt was distilled from a teacher with other weights.
  void load_state_dict(const HookState& state) override;

 private:
  Classifier teacher_;
  int64_t teacher_input_size_;
  DistillOptions options_;
  std::string source_;
  std::string fingerprint_;  // a hash of the teacher's weights
};

// Keeps every epoch's record and rewrites history.csv after each epoch.
class HistoryHook : public HookBase {
 public:
  explicit HistoryHook(std::string csv_path) : path_(std::move(csv_path)) {}
  std::string name() const override { return "history"; }
  void after_epoch(TrainerBase& trainer) override;
  HookState state_dict() const override;
  void load_state_dict(const HookState& state) override;
  const std::vector<EpochRecord>& history() const { return history_; }

 private:
  std::string path_;
  std::vector<EpochRecord> history_;
};

// After each epoch: best.pt (the eval model) when the epoch improved, then
// last.pt, the resume point: weights, optimizer, gradient scaler, progress and
// every hook's state. Both atomic. Register it after every hook whose state it
// saves. At an interrupt, last.pt alone, with the epoch's position.
class CheckpointHook : public HookBase {
 public:
  CheckpointHook(std::string run_dir, CheckpointMeta meta);
  void after_epoch(TrainerBase& trainer) override;
  void on_interrupt(TrainerBase& trainer) override;

 private:
  std::string run_dir_;
  CheckpointMeta meta_;
};

// The contents of last.pt besides the weights, and their restoration: between
// epochs, or after an interrupt with the epoch's position (the resumed run
// continues at its next batch).
Blobs training_state_blobs(SupervisedTrainer& trainer);
// Throws std::runtime_error naming what is missing.
void restore_training_state(SupervisedTrainer& trainer, const Blobs& blobs);
// The interrupted epoch's position of `rank` that last.pt's blobs hold, if
// any. Throws std::runtime_error when it holds none for that rank.
std::optional<EpochPosition> interrupted_position(const Blobs& blobs, int rank = 0);

// Stops training after the batch during which `requested()` turned true (a
// signal handler's flag: fer-train stops so on SIGTERM, SIGINT and SIGUSR1):
// sets progress().interrupt. Given a communicator of several ranks, the ranks
// agree after every batch (an all-reduce of one number), so all stop at the
// same one when any of them is asked to.
// At the interrupt the ranks' positions (each has its own random streams) are
// gathered for rank 0's last.pt.
class InterruptHook : public HookBase {
 public:
  explicit InterruptHook(std::function<bool()> requested, std::shared_ptr<Communicator> comm = nullptr);
  void after_step(TrainerBase& trainer) override;
  void on_interrupt(TrainerBase& trainer) override;

 private:
  std::function<bool()> requested_;
  std::shared_ptr<Communicator> comm_;
};
// The blob names restore_training_state reads (for load_checkpoint).
std::vector<std::string> training_state_blob_names();

// One log line per epoch and, given a progress factory, a progress sink per
// epoch (fer::train routes the lines to the console and train.log, the progress
// to a bar).
class LoggingHook : public HookBase {
 public:
  explicit LoggingHook(LogFn log, ProgressFactory progress = nullptr)
      : log_(std::move(log)), progress_(std::move(progress)) {}
  void before_epoch(TrainerBase& trainer) override;
  void after_step(TrainerBase& trainer) override;
  void after_epoch(TrainerBase& trainer) override;
  void on_interrupt(TrainerBase& trainer) override;

 private:
  LogFn log_;
  ProgressFactory progress_;
  std::unique_ptr<ProgressSink> bar_;
};

// Stops training at the first non-finite loss or gradient, or a loss above
// `max_loss` (a cross-entropy that large means logits apart by as much: no
// healthy run gets there; it starts near log(classes) ~ 2), before the optimizer
// steps on it, with an error naming the epoch, batch and rate. Nothing of that
// epoch is saved, so last.pt and best.pt stay the last good state. With fp16 loss
// scaling, overflowing gradients are the scaler's to skip: only the loss is checked.
class DivergenceGuard : public HookBase {
 public:
  explicit DivergenceGuard(double max_loss = 1e6) : max_loss_(max_loss) {}
  void after_backward(TrainerBase& trainer) override;

 private:
  double max_loss_;
};

}  // namespace fer
