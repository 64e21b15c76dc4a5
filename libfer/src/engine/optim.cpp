#include "fer/engine/optim.h"

#include <torch/torch.h>

#include <cmath>
#include <stdexcept>

namespace fer {

OptimizerOptions OptimizerOptions::from_config(const TrainConfig& c) {
  OptimizerOptions o;
  o.name = c.optimizer;
  o.lr = c.lr;
  o.weight_decay = c.weight_decay;
  o.momentum = c.momentum;
  o.nesterov = c.nesterov;
  return o;
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<torch::Tensor>& parameters,
                                                        const OptimizerOptions& o) {
  namespace optim = torch::optim;
  if (o.name == "adam")
    return std::make_unique<optim::Adam>(parameters, optim::AdamOptions(o.lr).weight_decay(o.weight_decay));
  if (o.name == "adamw")
    return std::make_unique<optim::AdamW>(parameters, optim::AdamWOptions(o.lr).weight_decay(o.weight_decay));
  if (o.name == "sgd") {
    if (o.nesterov && o.momentum <= 0) throw std::invalid_argument("sgd: nesterov needs momentum > 0");
    return std::make_unique<optim::SGD>(
        parameters, optim::SGDOptions(o.lr).momentum(o.momentum).nesterov(o.nesterov).weight_decay(o.weight_decay));
  }
  throw std::invalid_argument("unknown optimizer '" + o.name + "' (known: adam, adamw, sgd)");
}

double optimizer_lr(torch::optim::Optimizer& optimizer) { return optimizer.param_groups().at(0).options().get_lr(); }

void set_optimizer_lr(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

const EnumNames<Schedule>& schedule_names() {
  static const EnumNames<Schedule> names{
      "schedule", {{"plateau", Schedule::plateau}, {"cosine", Schedule::cosine}, {"step", Schedule::step}}};
  return names;
}

Schedule parse_schedule(const std::string& name) { return schedule_names().parse(name); }

ScheduleOptions ScheduleOptions::from_config(const TrainConfig& c) {
  ScheduleOptions o;
  o.kind = parse_schedule(c.schedule);
  o.lr = c.lr;
  o.epochs = c.epochs;
  o.warmup_epochs = c.warmup_epochs;
  o.step_size = c.step_size;
  o.step_gamma = c.step_gamma;
  o.min_lr = c.lr_min;
  o.plateau_factor = c.lr_factor;
  o.plateau_patience = c.lr_patience;
  o.plateau_min_delta = c.lr_min_delta;
  return o;
}

double scheduled_lr(const ScheduleOptions& o, int e) {
  const int w = o.warmup_epochs;
  if (e < w) return o.lr * (e + 1) / (w + 1);
  if (o.kind == Schedule::cosine) {
    const int t_max = std::max(1, o.epochs - w);
    const double t = std::min(e - w, t_max);
    return o.min_lr + (o.lr - o.min_lr) * (1 + std::cos(M_PI * t / t_max)) / 2;
  }
  if (o.kind == Schedule::step) return o.lr * std::pow(o.step_gamma, (e - w) / o.step_size);
  throw std::invalid_argument("scheduled_lr: the plateau schedule is not epoch-indexed");
}

double PlateauRule::step(double metric, double lr) {
  if (metric > best_ + options_.plateau_min_delta) {
    best_ = metric;
    wait_ = 0;
    return lr;
  }
  if (++wait_ <= options_.plateau_patience) return lr;
  wait_ = 0;
  return std::max(lr * options_.plateau_factor, options_.min_lr);
}

void PlateauRule::load_state_dict(const nlohmann::json& s) {
  best_ = s.at("best").get<double>();
  wait_ = s.at("wait").get<int>();
}

}  // namespace fer
