// Optimizers and learning-rate schedules, each built from the config by the
// function beside it. The epoch-indexed schedules are pure functions of the
// epoch, so a resumed run gets the rate an uninterrupted one would.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/optim/optimizer.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "fer/common/enum_names.h"
#include "fer/config/config.h"

namespace fer {

struct OptimizerOptions {
  std::string name = "adam";  // adam | adamw | sgd
  double lr = 1e-3;
  double weight_decay = 0.0;  // adam, sgd: L2 in the gradient; adamw: decoupled
  double momentum = 0.9;      // sgd
  bool nesterov = false;      // sgd
  static OptimizerOptions from_config(const TrainConfig& c);
};

// Throws std::invalid_argument for an unknown name (or Nesterov without momentum).
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<at::Tensor>& parameters,
                                                        const OptimizerOptions& options);
double optimizer_lr(torch::optim::Optimizer& optimizer);  // of the first parameter group
void set_optimizer_lr(torch::optim::Optimizer& optimizer, double lr);

enum class Schedule { plateau, cosine, step };
// "plateau" | "cosine" | "step" (train.schedule); throws std::invalid_argument otherwise.
const EnumNames<Schedule>& schedule_names();  // plateau, cosine, step
Schedule parse_schedule(const std::string& name);

struct ScheduleOptions {
  Schedule kind = Schedule::plateau;
  double lr = 1e-3;              // the base (peak) rate
  int epochs = 100;              // cosine: the schedule ends at this epoch
  int warmup_epochs = 0;         // cosine, step
  int step_size = 30;            // step
  double step_gamma = 0.1;       // step
  double min_lr = 1e-6;          // cosine's final rate; plateau's floor
  double plateau_factor = 0.2;
  int plateau_patience = 5;
  double plateau_min_delta = 1e-4;
  static ScheduleOptions from_config(const TrainConfig& c);
};

// The rate of 0-based epoch `e` for the cosine and step schedules:
//   warm-up (e < W): lr * (e + 1) / (W + 1)
//   cosine:  min_lr + (lr - min_lr) * (1 + cos(pi * (e - W) / (epochs - W))) / 2   (PyTorch's CosineAnnealingLR, T_max = epochs - W)
//   step:    lr * gamma ^ floor((e - W) / step_size)                              (PyTorch's StepLR)
// Requires kind cosine or step.
double scheduled_lr(const ScheduleOptions& options, int epoch_index);

// ReduceLROnPlateau in mode "max" on validation accuracy, PyTorch's rule: an
// improvement is a gain of more than min_delta (absolute); after more than
// `patience` epochs without one the rate is multiplied by `factor` (not below min_lr).
class PlateauRule {
 public:
  explicit PlateauRule(const ScheduleOptions& options) : options_(options) {}
  // Returns the rate for the next epoch given this epoch's metric and rate.
  double step(double metric, double lr);
  nlohmann::json state_dict() const { return {{"best", best_}, {"wait", wait_}}; }
  void load_state_dict(const nlohmann::json& s);

 private:
  ScheduleOptions options_;
  double best_ = -1;
  int wait_ = 0;
};

}  // namespace fer
