// The training engine, after detectron2's TrainerBase and HookBase: a short
// epoch loop, and every concern (schedule, evaluation, early stopping,
// checkpoints, history, logging, the divergence guard, EMA) a hook with its own
// resumable state. New behaviour is a new hook, not an edit of the loop.
//
//   fer::SupervisedTrainer trainer(model, std::move(optimizer), data, step_options);
//   trainer.register_hook(std::make_shared<fer::EvalHook>(...));
//   trainer.train();   // epochs progress().epoch+1 .. max_epochs, until a hook stops it
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <torch/optim/optimizer.h>

#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "fer/common/enum_names.h"
#include "fer/common/precision.h"
#include "fer/data/augment.h"
#include "fer/engine/history.h"
#include "fer/models/checkpoint.h"
#include "fer/models/model.h"

namespace fer {

class TrainerBase;

// A hook's resumable state: JSON, plus named byte blobs for tensors.
struct HookState {
  nlohmann::json json;
  Blobs blobs;
};

class HookBase {
 public:
  virtual ~HookBase() = default;
  // The key of this hook's state in last.pt; stateless hooks return "".
  virtual std::string name() const { return ""; }
  virtual void before_train(TrainerBase&) {}
  virtual void before_epoch(TrainerBase&) {}
  // The step's loss is computed and not yet back-propagated: progress().loss
  // (with its graph), .inputs and .logits are the batch's; a hook may replace
  // progress().loss with a loss of its own built on them (distillation).
  virtual void before_backward(TrainerBase&) {}
  // Gradients are computed (and unscaled), the optimizer has not stepped.
  virtual void after_backward(TrainerBase&) {}
  virtual void after_step(TrainerBase&) {}
  virtual void after_epoch(TrainerBase&) {}
  // A hook set progress().interrupt during the last step: training stops inside
  // the epoch, progress().step is the next batch to run, and neither
  // after_epoch nor after_train runs. The point to save the position (CheckpointHook).
  virtual void on_interrupt(TrainerBase&) {}
  virtual void after_train(TrainerBase&) {}
  virtual HookState state_dict() const { return {}; }
  virtual void load_state_dict(const HookState&) {}
};

// What the loop and the hooks share.
struct TrainProgress {
  int epoch = 0;                 // the running epoch (1-based); between epochs, the last completed
  int max_epochs = 0;
  std::int64_t step = 0;         // batch index within the epoch
  std::int64_t steps_per_epoch = 0;
  std::int64_t images_in_step = 0;
  std::int64_t images_in_epoch = 0;
  at::Tensor loss;               // the step's loss: with its graph until the backward pass, then detached
  at::Tensor inputs, logits;     // the step's (augmented, mixed) model input and float32 logits
  EpochRecord record;            // this epoch: lr, train_* and seconds from the trainer, val_* from the evaluation hook
  bool improved = false;         // this epoch's model is the best so far (set by BestModelHook)
  bool stop = false;             // set by a hook to end training after this epoch
  std::string stop_reason;
  bool interrupt = false;        // set by a hook during a step to stop after it, inside the epoch (InterruptHook)
  double train_seconds = 0;      // all completed epochs
};

class TrainerBase {
 public:
  virtual ~TrainerBase() = default;
  // Hooks run in registration order at every point of the loop.
  void register_hook(std::shared_ptr<HookBase> hook);
  void train();

  TrainProgress& progress() { return progress_; }
  const TrainProgress& progress() const { return progress_; }
  const std::vector<std::shared_ptr<HookBase>>& hooks() const { return hooks_; }
  // Every named hook's state, by name; and back (hooks absent from `states` keep theirs).
  std::map<std::string, HookState> hook_states() const;
  void load_hook_states(const std::map<std::string, HookState>& states);

 protected:
  virtual void begin_epoch() = 0;  // e.g. shuffle; sets progress().steps_per_epoch
  // One batch; calls notify_before_backward() once progress().loss is computed
  // and notify_after_backward() before the optimizer step.
  virtual void run_step() = 0;
  virtual void end_epoch() = 0;    // fills progress().record's train_* fields
  void notify_before_backward();
  void notify_after_backward();

 private:
  void call(void (HookBase::*point)(TrainerBase&));
  std::vector<std::shared_ptr<HookBase>> hooks_;
  TrainProgress progress_;
};

// Where an interrupted epoch stands, all that a resumed run needs to go on as
// if never stopped besides last.pt's weights and hook states: the next batch,
// the epoch's sums and seconds so far, the model's buffers, and the random streams (the trainer's augmentation generator and the global
// generators dropout draws from, on the CPU and on the training GPU; the bytes
// of at::Generator::get_state()).
struct EpochPosition {
  int epoch = 0;          // the interrupted epoch (1-based)
  std::int64_t step = 0;  // the next batch to run
  double seconds = 0;     // the epoch's training time so far
  double loss_sum = 0;    // sum over its images of the loss, and of the right answers
  std::int64_t correct = 0;
  std::string generator_state, global_cpu_state, global_device_state;  // the last: empty on the CPU
  // The model's buffers (and the eval model's, EMA): BatchNorm statistics are
  // each rank's own until the epoch's end averages them.
  std::string buffers;

  std::string to_bytes() const;  // CBOR
  // Throws std::runtime_error naming the missing field.
  static EpochPosition from_bytes(const std::string& bytes);
};

// The data one supervised run trains on: uint8 images [N,S,S] and labels [N]
// on the training device, and for data with annotator votes (FER+) their
// counts [N,classes] (float; undefined otherwise).
struct TrainData {
  TrainData() = default;
  TrainData(at::Tensor images_, at::Tensor labels_, at::Tensor votes_ = {})
      : images(std::move(images_)), labels(std::move(labels_)), votes(std::move(votes_)) {}
  at::Tensor images, labels;
  at::Tensor votes;
};

// What a step trains towards on data with votes (Barsoum et al. 2016):
//   majority      the label (the majority-rule label; single-label data: the label);
//   probability   the vote distribution, as a soft target;
//   crossentropy  a label drawn from the vote distribution, anew each epoch;
//   multi_target  any class with votes counts as right: -log max over them of p.
enum class TrainTarget { majority, probability, crossentropy, multi_target };
const EnumNames<TrainTarget>& train_target_names();  // majority, probability, crossentropy, multi_target
TrainTarget parse_train_target(const std::string& name);
std::string train_target_name(TrainTarget target);

// How a step turns a batch into a loss.
struct StepOptions {
  int64_t batch_size = 64;
  AugmentOptions augment;
  MixOptions mix;
  double label_smoothing = 0.0;
  TrainTarget target = TrainTarget::majority;  // all but majority need TrainData::votes
  at::Tensor class_weights;  // optional [classes]
  Precision precision = Precision::fp32;
  bool channels_last = false;
  int seed = 42;                // with the epoch, seeds shuffling, dropout and every augmentation draw
  // Data parallelism: every rank shuffles alike and trains on its DistributedSampler
  // slice (fer/distributed/distributed.h) with its own dropout and augmentation draws; rank 0
  // of a world of one draws exactly what a run without ranks does.
  int rank = 0;
  int world_size = 1;
};

// Cross-entropy with optional class weights and label smoothing (PyTorch's
// definition: the target is (1 - s) one-hot + s / classes), mean over the batch.
at::Tensor classification_loss(const at::Tensor& logits, const at::Tensor& target, double label_smoothing,
                                  const at::Tensor& class_weights = {});

// Cross-entropy to soft targets [B,classes] (rows summing to 1), PyTorch's
// definition for probability targets: the target smoothed to (1 - s) t + s /
// classes, -sum_k w_k t_k log p_k per image, the mean over the batch. With a
// one-hot target and no weights it equals classification_loss.
at::Tensor soft_target_loss(const at::Tensor& logits, const at::Tensor& target, double label_smoothing,
                            const at::Tensor& class_weights = {});

// Barsoum et al.'s multi-target loss: -log max_{k in S} p_k per image, S the
// classes where `accepted` [B,classes] is non-zero (each row needs one), the
// mean over the batch.
at::Tensor multi_target_loss(const at::Tensor& logits, const at::Tensor& accepted);

// One label per row of `distribution` [N,classes] (rows summing to 1), drawn
// with the CPU generator seeded by `seed` (train.target crossentropy: anew
// each epoch). Returns int64 [N] on the distribution's device.
at::Tensor draw_labels(const at::Tensor& distribution, uint64_t seed);

// Per-epoch seeds: a resumed run draws exactly what an uninterrupted one would.
uint64_t epoch_seed(int seed, int epoch, uint64_t stream);

// Mini-batch training of a classifier: each epoch a seeded shuffle, batches
// gathered on the device, augmented, optionally mixed, forward/backward under
// autocast, a gradient-scaled optimizer step.
class SupervisedTrainer : public TrainerBase {
 public:
  SupervisedTrainer(Classifier model, std::unique_ptr<torch::optim::Optimizer> optimizer, TrainData data,
                    StepOptions options, c10::Device device);

  Classifier model() const { return model_; }
  // The model that is validated and saved as best.pt: the trained one unless a hook (EMA) replaces it.
  Classifier eval_model() const { return eval_model_ ? eval_model_ : model_; }
  void set_eval_model(Classifier model) { eval_model_ = std::move(model); }
  torch::optim::Optimizer& optimizer() { return *optimizer_; }
  GradScaler& scaler() { return scaler_; }
  const c10::Device& device() const { return device_; }
  const StepOptions& options() const { return options_; }
  // The running epoch's position (meaningful after an interrupt: progress().step
  // is the next batch). Requires a started epoch.
  EpochPosition position() const;
  // The next begin_epoch() of `position.epoch` continues from it instead of
  // starting the epoch (resume of an interrupted run: restore_training_state).
  void resume_at(EpochPosition position) { resume_at_ = std::move(position); }
  // Every rank's position at an interrupt, by rank (InterruptHook gathers them
  // for rank 0, which alone writes last.pt); empty: this process's alone.
  const std::vector<EpochPosition>& rank_positions() const { return rank_positions_; }
  void set_rank_positions(std::vector<EpochPosition> positions) { rank_positions_ = std::move(positions); }

 protected:
  void begin_epoch() override;
  void run_step() override;
  void end_epoch() override;

 private:
  Classifier model_, eval_model_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  TrainData data_;
  StepOptions options_;
  c10::Device device_;
  GradScaler scaler_;
  at::Generator generator_;
  // The batch's loss against its (possibly mixed) targets, by options_.target.
  at::Tensor step_loss(const at::Tensor& logits, const at::Tensor& idx, const MixedBatch& mixed) const;
  at::Tensor order_, loss_sum_, correct_;
  at::Tensor vote_distribution_, epoch_labels_;  // probability / crossentropy targets
  int64_t usable_ = 0;
  std::optional<EpochPosition> resume_at_;
  std::vector<EpochPosition> rank_positions_;
  void continue_epoch(const EpochPosition& position);
};

}  // namespace fer
